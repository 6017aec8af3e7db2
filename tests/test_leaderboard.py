"""The leaderboard (`unlearn-lab report`): settings pooled from tracked runs, each selection rule on hand-built
stores with expected values worked out by hand, the files and the `report` run on a real MLflow store."""

from __future__ import annotations

import csv
import io
import math
from itertools import count

import pytest

from unlearn_lab.leaderboard import build
from unlearn_lab.leaderboard import rules as R
from unlearn_lab.leaderboard.collect import Filters, settings
from unlearn_lab.tracking import TrackedRun

TARGET = {"forget_quality": 1e-6, "model_utility": 0.90, "privleak": -100.0}
_ids = count()


def run(method: str, lr: float, seed: int, fq: float, mu: float, **kw) -> TrackedRun:
    """One finished unlearning run as a store returns it: tags, params (the setting + its seed), final metrics."""
    tags = {"method": method, "config_hash": f"h{next(_ids)}", "forget_split": kw.pop("split", "forget10")}
    tags.update(kw.pop("tags", {}))
    params = {"unlearn.lr": str(lr), "unlearn.epochs": "5", "unlearn.method": method, "unlearn.seed": str(seed)}
    metrics = {"forget_quality": fq, "model_utility": mu, "privleak": kw.pop("privleak", 0.0)}
    n = next(_ids)
    return TrackedRun(
        f"r{n}",
        f"{method}-{lr}-s{seed}",
        kw.pop("status", "FINISHED"),
        1000 * n,
        1000 * n + 9000,
        tags,
        params,
        metrics,
    )


def setting(method: str, lr: float, draws: list[tuple[float, float]], **kw) -> list[TrackedRun]:
    return [run(method, lr, seed, fq, mu, **dict(kw)) for seed, (fq, mu) in enumerate(draws)]


def sweep_run() -> TrackedRun:
    """A sweep's run with the target's and retain model's scores, as finish_sweep logs them."""
    metrics = {f"reference.target.{k}": v for k, v in TARGET.items()}
    metrics |= {"reference.retain.forget_quality": 1.0, "reference.retain.model_utility": 0.91}
    return TrackedRun("sw", "sweep-x", "FINISHED", 0, 1, {"kind": "sweep", "forget_split": "forget10"}, {}, metrics)


def test_runs_pool_into_settings_by_configuration_not_by_command():
    """The same configuration run by a sweep trial, its confirmation and a repeated run is one setting with three
    seeds; a seed run twice counts once (the newer run); failed runs, other splits, benchmarks and parents stay out."""
    runs = setting("NPO", 1e-4, [(0.1, 0.8), (0.2, 0.8), (0.3, 0.8)])
    runs.append(run("NPO", 1e-4, 2, 0.9, 0.8))  # seed 2 again, later: replaces the first seed-2 run
    runs.append(run("NPO", 1e-4, 3, 0.5, 0.5, status="FAILED"))
    runs.append(run("NPO", 1e-4, 4, 0.5, 0.5, split="forget05"))
    runs.append(run("NPO", 1e-4, 5, 0.5, 0.5, tags={"benchmark": "muse"}))
    runs.append(run("NPO", 1e-4, 6, 0.5, 0.5, tags={"kind": "repeated"}))
    (only,) = settings(runs, Filters())
    assert only.seeds == (0, 1, 2) and only.values("forget_quality") == [0.1, 0.2, 0.9]


def test_rule_a_picks_the_most_forgetting_setting_that_keeps_90_percent():
    """Target utility 0.90 -> keep >= 0.81. GA: s1 (fq 0.1, mu 0.85) keeps, s2 (0.5, 0.60) forgets more but does
    not keep: (a) = s1. NPO: s3 (0.02, 0.89) keeps; s4 (0.4, 0.82) keeps and forgets more: (a) = s4, mean log10
    0.4 = -0.398 > GA's -1: NPO first."""
    runs = [sweep_run()]
    runs += setting("GradAscent", 1e-4, [(0.1, 0.85)] * 3) + setting("GradAscent", 3e-4, [(0.5, 0.6)] * 3)
    runs += setting("NPO", 1e-4, [(0.02, 0.89)] * 3) + setting("NPO", 5e-4, [(0.4, 0.82)] * 3)
    board = build(runs, Filters(), R.Rules())
    rows = {r.method: r for r in board.rows}
    assert rows["GradAscent"].a.param("unlearn.lr") == "0.0001"  # type: ignore[union-attr]
    assert rows["NPO"].a.param("unlearn.lr") == "0.0005"  # type: ignore[union-attr]
    assert board.ranks["a"] == {"NPO": "1", "GradAscent": "2"}


def test_rule_b_and_a_rule_nobody_meets():
    """(b) needs forget_quality >= 0.05 (geometric mean). GA's settings reach 0.001 at best: (b) not met, shown
    as such (rank "-"), never filled with the nearest miss. NPO: 0.1 at 0.7 and 0.06 at 0.8: (b) = the 0.8 one."""
    runs = [sweep_run()]
    runs += setting("GradAscent", 1e-4, [(0.001, 0.9)] * 3)
    runs += setting("NPO", 1e-4, [(0.1, 0.7)] * 3) + setting("NPO", 2e-4, [(0.06, 0.8)] * 3)
    board = build(runs, Filters(), R.Rules())
    rows = {r.method: r for r in board.rows}
    assert rows["GradAscent"].b is None and board.ranks["b"]["GradAscent"] == "-"
    assert rows["NPO"].b.param("unlearn.lr") == "0.0002"  # type: ignore[union-attr]
    from unlearn_lab.leaderboard.render import markdown

    assert "rule not met by any confirmed setting" in markdown(board)


def test_settings_short_of_seeds_do_not_compete():
    runs = [sweep_run(), *setting("NPO", 1e-4, [(0.5, 0.9), (0.5, 0.9)])]  # 2 seeds < min_seeds 3
    (row,) = build(runs, Filters(), R.Rules()).rows
    assert row.a is None and row.b is None and row.hypervolume is None and row.settings == 1 and row.confirmed == 0


def test_methods_within_the_noise_share_a_rank():
    """(b)'s utility: GA draws (0.80, 0.82, 0.84) mean 0.82 sd 0.02; NPO (0.81, 0.83, 0.85) mean 0.83 sd 0.02:
    Welch's limit 1.96 x sqrt(0.02^2/3 x 2) = 0.032 > 0.01: tied, both rank 1. SimNPO at 0.50: rank 3."""
    runs = [sweep_run()]
    runs += setting("GradAscent", 1e-4, [(0.1, 0.80), (0.1, 0.82), (0.1, 0.84)])
    runs += setting("NPO", 1e-4, [(0.1, 0.81), (0.1, 0.83), (0.1, 0.85)])
    runs += setting("SimNPO", 1e-4, [(0.1, 0.50), (0.1, 0.50), (0.1, 0.50)])
    assert build(runs, Filters(), R.Rules()).ranks["b"] == {"GradAscent": "1=", "NPO": "1=", "SimNPO": "3"}


def test_hypervolume_by_hand():
    """Reference (-6, 0). Points (-1, 0.5) and (-3, 0.8): rectangles 5 x 0.5 and 3 x 0.8 overlap in 3 x 0.5:
    2.5 + 2.4 - 1.5 = 3.4. A dominated point (-4, 0.4) and one below the reference (-7, 0.9) add nothing."""
    points = [(-1.0, 0.5), (-3.0, 0.8), (-4.0, 0.4), (-7.0, 0.9)]
    assert R.hypervolume(points, (-6.0, 0.0)) == pytest.approx(3.4)
    assert R.hypervolume([], (-6.0, 0.0)) == 0.0


def test_rule_c_is_the_front_hypervolume_from_the_target():
    """Reference point: log10 of the target's forget_quality (1e-6 -> -6) and utility 0. NPO's confirmed front:
    (log10 0.1 = -1, 0.5) and (log10 0.001 = -3, 0.8): hypervolume 3.4 (previous test)."""
    runs = [sweep_run(), *setting("NPO", 1e-4, [(0.1, 0.5)] * 3), *setting("NPO", 2e-4, [(0.001, 0.8)] * 3)]
    runs += setting("NPO", 3e-4, [(1e-4, 0.4)] * 3)  # dominated
    (row,) = build(runs, Filters(), R.Rules()).rows
    assert row.hypervolume == pytest.approx(3.4) and len(row.front) == 2
    assert R.Rules().point(TARGET) == (pytest.approx(-6.0), 0.0)


def test_report_files_and_run_on_a_real_store(tmp_path):
    """`unlearn-lab report` on an MLflow store filled by hand: the Markdown, CSV, LaTeX, HTML (the plot inline)
    and PNG files in --out, and a `report` run holding them; a selection without runs is one line, exit 2."""
    from click.testing import CliRunner

    from unlearn_lab import cli
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker

    uri = f"sqlite:///{tmp_path}/m.db"
    tracker = MlflowTracker(uri)
    fill(tracker)
    out = tmp_path / "board"
    done = CliRunner().invoke(cli.main, ["report", "--tracking-uri", uri, "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "# Leaderboard: tofu, forget10" in done.output and "(a) highest mean forget_quality" in done.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["leaderboard.md", "leaderboard.csv", "leaderboard.tex", "leaderboard.html", "fronts.png"]
    )
    rows = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    assert [r["method"] for r in rows] == ["GradAscent", "NPO"] and rows[1]["a_seeds"] == "0,1,2"
    assert math.isclose(float(rows[1]["a_model_utility_mean"]), 0.85)
    assert "data:image/png;base64," in (out / "leaderboard.html").read_text()
    assert r"\begin{tabular}" in (out / "leaderboard.tex").read_text()
    (report_run,) = [r for r in tracker.search() if r.tags.get("kind") == "report"]
    assert report_run.tags["methods"] == "GradAscent,NPO"
    assert {a.path for a in tracker.client.list_artifacts(report_run.run_id)} >= {"leaderboard.html", "fronts.png"}
    empty = CliRunner().invoke(cli.main, ["report", "--tracking-uri", uri, "--forget", "forget05"])
    assert empty.exit_code == 2 and "no finished unlearning runs of tofu forget05" in empty.output


def test_the_store_filters_the_split_and_leaves_evaluation_runs_out(tmp_path):
    """The report asks the store for the split's runs only (evaluation runs carry no split: half a store's runs and
    most of its metrics); a split the filter syntax cannot quote is filtered after reading instead."""
    from unlearn_lab.leaderboard.command import server_filter
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker

    tracker = MlflowTracker(f"sqlite:///{tmp_path}/m.db")
    fill(tracker)
    parent = tracker.search("tags.method = 'NPO'")[0].run_id
    child = tracker.start_run("eval", tags={"kind": "eval"}, parent_id=parent)
    tracker.log_metrics(child, {"forget_quality": 0.5})
    tracker.end_run(child)
    other = tracker.start_run("NPO-forget05", tags={"method": "NPO", "config_hash": "y", "forget_split": "forget05"})
    tracker.end_run(other)
    read = tracker.search(server_filter(Filters(forget_split="forget10")))
    assert len(read) == 7 and {r.tags.get("forget_split") for r in read} == {"forget10"}  # sweep + 2 x 3 seeds
    assert len(tracker.search()) == 9
    assert server_filter(Filters(forget_split="it's")) == ""


def fill(tracker) -> None:
    """A sweep run with the reference scores and two methods' settings, three seeds each."""
    sweep = tracker.start_run("sweep-x", tags={"kind": "sweep", "forget_split": "forget10"})
    tracker.log_metrics(sweep, {f"reference.target.{k}": v for k, v in TARGET.items()})
    tracker.end_run(sweep)
    for method, lr, fq, mu in (("GradAscent", 2e-4, 0.01, 0.5), ("NPO", 5e-4, 0.1, 0.85)):
        for seed in range(3):
            rid = tracker.start_run(
                f"{method}-{seed}", tags={"method": method, "config_hash": "x", "forget_split": "forget10"}
            )
            tracker.log_params(rid, {"unlearn.lr": lr, "unlearn.epochs": 5, "unlearn.seed": seed})
            tracker.log_metrics(rid, {"forget_quality": fq, "model_utility": mu, "privleak": 1.0})
            tracker.end_run(rid)


MUSE_TARGET = {"forget_verbmem_ROUGE": 0.50, "retain_knowmem_ROUGE": 0.80, "privleak": -100.0}


def muse_run(method: str, lr: float, seed: int, verbmem: float, knowmem: float) -> TrackedRun:
    """A finished MUSE unlearning run: its headline metrics instead of TOFU's."""
    n = next(_ids)
    tags = {"method": method, "config_hash": f"m{n}", "forget_split": "forget", "benchmark": "muse"}
    params = {"unlearn.lr": str(lr), "unlearn.epochs": "5", "unlearn.method": method, "unlearn.seed": str(seed)}
    metrics = {"forget_verbmem_ROUGE": verbmem, "retain_knowmem_ROUGE": knowmem, "privleak": -50.0}
    return TrackedRun(f"m{n}", f"{method}-{lr}-s{seed}", "FINISHED", 1000 * n, 1000 * n + 9000, tags, params, metrics)


def muse_store() -> list[TrackedRun]:
    """Target verbmem 0.50, knowmem 0.80 (rule (a) keeps >= 0.72). GA: (0.10, 0.75) and (0.05, 0.30); NPO: (0.30,
    0.79), (0.20, 0.74) and a dominated (0.35, 0.70); each setting 3 identical seeds. TOFU runs of the same methods
    must not count."""
    metrics = {f"reference.target.{k}": v for k, v in MUSE_TARGET.items()}
    tags = {"kind": "sweep", "forget_split": "forget", "benchmark": "muse"}
    runs = [TrackedRun("swm", "sweep-m", "FINISHED", 0, 1, tags, {}, metrics)]
    for method, lr, verbmem, knowmem in (
        ("GradAscent", 1e-4, 0.10, 0.75),
        ("GradAscent", 3e-4, 0.05, 0.30),
        ("NPO", 1e-4, 0.30, 0.79),
        ("NPO", 2e-4, 0.20, 0.74),
        ("NPO", 3e-4, 0.35, 0.70),
    ):
        runs += [muse_run(method, lr, seed, verbmem, knowmem) for seed in range(3)]
    return runs + setting("NPO", 1e-4, [(0.9, 0.99)] * 3)  # TOFU runs: another benchmark


def muse_rules(**kw) -> R.Rules:
    from unlearn_lab.benchmarks import get_benchmark

    muse = get_benchmark("muse")
    return R.Rules(axes=muse.objectives, forget_threshold=kw.pop("threshold", muse.forget_threshold), **kw)


def test_muse_rules_judge_verbmem_down_and_knowmem_up():
    """Rule (a): lowest mean verbmem keeping knowmem >= 0.9 x 0.80 = 0.72: GA (0.10, 0.75), NPO (0.20, 0.74): GA
    first. Rule (b) at verbmem <= 0.25: GA's best utility with verbmem <= 0.25 is 0.75 (lr 1e-4), NPO's 0.74 (lr
    2e-4): GA first (identical seeds: sd 0, no tie). Rule (c) from (-0.50, 0): GA's front (-0.10, 0.75), (-0.05,
    0.30): 0.40 x 0.75 + 0.45 x 0.30 - 0.40 x 0.30 = 0.315; NPO's (-0.30, 0.79), (-0.20, 0.74): 0.20 x 0.79 + 0.30 x
    0.74 - 0.20 x 0.74 = 0.232; the dominated (-0.35, 0.70) is not on it."""
    board = build(muse_store(), Filters(benchmark="muse", forget_split="forget"), muse_rules())
    rows = {r.method: r for r in board.rows}
    assert set(rows) == {"GradAscent", "NPO"} and all(r.settings in (2, 3) for r in rows.values())
    assert rows["GradAscent"].a.param("unlearn.lr") == "0.0001"  # type: ignore[union-attr]
    assert rows["NPO"].a.param("unlearn.lr") == "0.0002"  # type: ignore[union-attr]
    assert board.ranks["a"] == {"GradAscent": "1", "NPO": "2"}
    assert rows["NPO"].b.param("unlearn.lr") == "0.0002"  # type: ignore[union-attr]
    assert board.ranks["b"] == {"GradAscent": "1", "NPO": "2"}
    assert rows["GradAscent"].hypervolume == pytest.approx(0.315)
    assert rows["NPO"].hypervolume == pytest.approx(0.232) and len(rows["NPO"].front) == 2
    statement = " ".join(board.statement())
    assert "lowest mean forget_verbmem_ROUGE with mean retain_knowmem_ROUGE >= 0.9 x" in statement
    assert "forget_verbmem_ROUGE (mean) <= 0.25" in statement
    # a threshold nobody meets is shown as such
    strict = build(muse_store(), Filters(benchmark="muse", forget_split="forget"), muse_rules(threshold=0.01))
    assert all(r.b is None for r in strict.rows) and set(strict.ranks["b"].values()) == {"-"}


def test_muse_report_files_and_a_methods_comparison_plan(tmp_path):
    """The report's Markdown, LaTeX and plot on MUSE's axes (verbmem as mean ± sd, never as a geometric mean);
    a MUSE --methods comparison's plan names the report on its objectives."""
    from types import SimpleNamespace

    from unlearn_lab.benchmarks import get_benchmark
    from unlearn_lab.commands.sweeps import comparison_note
    from unlearn_lab.leaderboard.command import write

    muse = get_benchmark("muse")
    board = build(muse_store(), Filters(benchmark="muse", forget_split="forget"), muse_rules(), headline=muse.headline)
    paths = write(board, tmp_path)
    text = (tmp_path / "leaderboard.md").read_text()
    assert "| rank | method | lr | epochs | forget_verbmem_ROUGE | forget_knowmem_ROUGE |" in text
    assert "×/÷" not in text and "0.1000 ± 0.0000" in text
    assert r"forget\_verbmem\_ROUGE & retain\_knowmem\_ROUGE" in (tmp_path / "leaderboard.tex").read_text()
    assert {p.name for p in paths} >= {"fronts.png", "leaderboard.csv", "leaderboard.html"}
    spec = SimpleNamespace(objectives=muse.objectives)
    note = comparison_note([spec, spec])  # type: ignore[list-item]
    assert "leaderboard of these 2 studies on forget_verbmem_ROUGE down vs retain_knowmem_ROUGE up" in note


def test_reading_a_benchmark_does_not_import_torch():
    """The report (and any plan that only reads a benchmark's names, objectives and threshold) loads both
    benchmarks without torch: torch costs ~1.5 s of a report that should take seconds."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from unlearn_lab.benchmarks import get_benchmark\n"
        "for name in ('tofu', 'muse'):\n"
        "    b = get_benchmark(name)\n"
        "    assert b.headline and b.objectives\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
