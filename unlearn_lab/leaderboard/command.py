"""What `unlearn-lab report` does once parsed: read the store, build the leaderboard, write its files, log them as
a `report` run, print the Markdown."""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from unlearn_lab.errors import UsageError
from unlearn_lab.leaderboard import Leaderboard, build
from unlearn_lab.leaderboard.collect import Filters
from unlearn_lab.leaderboard.rules import Rules

FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.tex", "leaderboard.html", "fronts.png")


@dataclass(frozen=True)
class ReportArgs:
    benchmark: str = "tofu"
    forget: str = "forget10"
    studies: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # KEY=VALUE
    since: datetime | None = None
    until: datetime | None = None
    min_seeds: int = 3
    utility_ratio: float = 0.9
    forget_threshold: float | None = None  # rule (b); None: the benchmark's (TOFU forget_quality 0.05)
    objectives: str | None = None  # FORGET,UTILITY from the benchmark's choices; None: its sweep objectives
    out: str | None = None
    tracking_uri: str | None = None

    def filters(self) -> Filters:
        self.benchmark_obj()  # an unknown benchmark is one line with the accepted ones
        pairs = []
        for item in self.tags:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UsageError(f"--tag expects KEY=VALUE (e.g. sweep=my-study), got '{item}'")
            pairs.append((key, value))
        utc = lambda d: d.replace(tzinfo=timezone.utc) if d is not None and d.tzinfo is None else d
        return Filters(
            self.benchmark,
            self.forget,
            self.studies,
            self.methods,
            tuple(pairs),
            utc(self.since),
            utc(self.until),
        )

    def benchmark_obj(self) -> Any:
        from unlearn_lab.benchmarks import get_benchmark

        return get_benchmark(self.benchmark)

    def rules(self) -> Rules:
        """The rules on the benchmark's axes (its sweep objectives, or --objectives) and thresholds."""
        from unlearn_lab.benchmarks import choose_objectives

        bench = self.benchmark_obj()
        threshold = bench.forget_threshold if self.forget_threshold is None else self.forget_threshold
        axes = choose_objectives(bench, self.objectives)
        return Rules(self.min_seeds, self.utility_ratio, threshold, axes=axes)

    @property
    def out_dir(self) -> Path:
        return Path(self.out or Path("saves") / "report" / f"{self.benchmark}_{self.forget}")


def report(args: ReportArgs, say: Callable[[str], None] = print) -> Leaderboard:
    """The leaderboard of the store's runs: an unusable store, or a selection without runs, is one line (exit 2)
    before anything is written."""
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker, check_reachable, resolve_uri

    filters, rules = args.filters(), args.rules()  # bad options first, before the store is opened
    uri = resolve_uri(args.tracking_uri)
    check_reachable(uri, create=False)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise UsageError(f"no tracking database at {uri[len('sqlite:///') :]}; give the store with --tracking-uri")
    tracker = MlflowTracker(uri)
    runs = tracker.search(server_filter(filters))
    board = build(runs, filters, rules, store=uri, headline=tuple(args.benchmark_obj().headline))
    if not board.rows:
        f = board.filters
        raise UsageError(
            f"no finished unlearning runs of {f.benchmark} {f.forget_split} in {uri} match the filters "
            "(--benchmark, --forget, --study, --method, --tag, --since, --until)"
        )
    paths = write(board, args.out_dir)
    log_report(tracker, board, paths)
    say(paths[0].read_text())
    say(f"wrote {', '.join(p.name for p in paths)} to {args.out_dir}")
    return board


def server_filter(filters: Filters) -> str:
    """The part of the filters the store applies itself: the forget split (every run a report reads carries the
    tag; evaluation runs, half of a store's runs and most of its metrics, do not). A split the filter syntax
    cannot quote is filtered here instead."""
    split = filters.forget_split
    return f"tags.forget_split = '{split}'" if re.fullmatch(r"[\w.-]+", split) else ""


def write(board: Leaderboard, out: Path) -> list[Path]:
    """The five files, each written to a temporary name and renamed (never half-written)."""
    from unlearn_lab.leaderboard import render

    fig = render.figure(board)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    contents: dict[str, str | bytes] = {
        "leaderboard.md": render.markdown(board),
        "leaderboard.csv": render.csv_text(board),
        "leaderboard.tex": render.latex(board),
        "leaderboard.html": render.page(board, png.getvalue()),
        "fronts.png": png.getvalue(),
    }
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in FILES:
        data = contents[name]
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, out / name)
        paths.append(out / name)
    return paths


def log_report(tracker, board: Leaderboard, paths: list[Path]) -> str:
    """A `report` run holding the files (its HTML page is the comparison MLflow's artifact viewer shows)."""
    from unlearn_lab.fingerprint import software_tags

    f = board.filters
    tags = {
        "kind": "report",
        "benchmark": f.benchmark,
        "forget_split": f.forget_split,
        "methods": ",".join(r.method for r in board.rows),
        "studies": ",".join(f.studies),
        "rules": " | ".join(board.statement())[:4000],
        **software_tags(numerics=False),
    }
    run_id = tracker.start_run(tracker.unique_name(f"report-{f.benchmark}-{f.forget_split}"), tags=tags)
    for path in paths:
        tracker.log_artifact(run_id, str(path))
    tracker.end_run(run_id)
    return run_id
