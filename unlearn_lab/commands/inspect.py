"""`data splits|show`, `methods`, `ui`: looking at data and methods, browsing runs."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from unlearn_lab.commands.common import log, say
from unlearn_lab.config import load_experiment

if TYPE_CHECKING:
    from unlearn_lab.benchmarks import Benchmark


def data_source(source: str | None, authors: int | None, experiment: str | None) -> tuple[Benchmark, Any]:
    """The experiment's benchmark and its data source: `--data` (default: the experiment's source, with its author
    count unless `--authors` says otherwise)."""
    from dataclasses import replace

    from unlearn_lab.benchmarks import get_benchmark

    cfg = load_experiment(experiment)
    bench = get_benchmark(cfg.benchmark)
    d = cfg.data
    data = replace(d, authors=authors or d.authors) if source is None else replace(d, source=source, authors=authors)
    return bench, bench.source(replace(cfg, data=data))


def data_splits(source: str | None, authors: int | None, experiment: str | None) -> None:
    bench, found = data_source(source, authors, experiment)
    say(bench.describe(found))


def data_show(split: str, count: int, source: str | None, authors: int | None, experiment: str | None) -> None:
    import json

    bench, found = data_source(source, authors, experiment)
    records = bench.show(found, split, count)
    say("\n".join(json.dumps(record, indent=2, ensure_ascii=False) for record in records))


def methods() -> None:
    """The methods (built-in, then installed plugins' with their distribution and version), their hyperparameters
    (defaults and bounds), what each needs and its paper."""
    from unlearn_lab.methods import all_methods, method_origin, requires_reference

    for name, spec in all_methods().items():
        bounded = {k: f" ({spec.bounds[k]})" if k in spec.bounds else "" for k in spec.defaults}
        params = ", ".join(f"{k}={v}{bounded[k]}" for k, v in spec.defaults.items()) or "(none)"
        wants = (("retain", spec.needs_retain), ("reference model", requires_reference(spec, dict(spec.defaults))))
        needs = [n for n, on in (*wants, ("idk answers", spec.needs_alternate)) if on]
        origin = method_origin(name)
        say(f"{name:<11} {params}" + ("" if origin == "built-in" else f"  [plugin: {origin}]"))
        say(f"{'':<11} needs: {', '.join(needs) or 'forget only'}; paper: {spec.paper}")


def ui(host: str, port: int, workers: int, tracking_uri: str | None) -> None:
    """`ui`: the MLflow UI on the project's store (this process becomes the server); prints the experiment page."""
    from unlearn_lab.tracking.mlflow_tracker import ui_command

    url, argv, env = ui_command(tracking_uri, host, port, workers)
    log(f"MLflow UI: {url}")
    os.execvpe(argv[0], argv, env)
