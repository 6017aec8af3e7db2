"""`unlearn-lab run --seeds 0,1,2` / `--repeats K`: one setting run once per seed, reported as one result.

One MLflow parent run (kind `repeated`) holds a nested run per seed, each a complete `run_experiment` with its own
model and evaluation; the parent carries the spread of every metric (seeds.tracked_metrics: mean, sd, min, max,
95 % interval; forget_quality on log10) and SEEDS_SUMMARY.json with the per-seed values. The seeds share what does
not depend on them: the checked inputs, the tokenizer and the retain reference (experiment.Shared), loaded once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from unlearn_lab import seeds as S
from unlearn_lab.config import flatten, to_dict
from unlearn_lab.data.prompts import uses_chat_template
from unlearn_lab.errors import RunFailed
from unlearn_lab.experiment import RunOptions, RunResult, Shared, run_experiment
from unlearn_lab.metrics.report import write_json
from unlearn_lab.plan import Plan, tracked_params
from unlearn_lab.records import version_tags
from unlearn_lab.tracking import Guarded, Tracker
from unlearn_lab.train import DivergedError

SUMMARY_FILE = "SEEDS_SUMMARY.json"


@dataclass(frozen=True)
class RepeatedResult:
    run_id: str  # the parent run
    seeds: tuple[int, ...]
    runs: list[RunResult]  # in seed order
    spreads: dict[str, S.Spread]
    summary_path: Path
    seconds: float
    order: tuple[str, ...] = ()  # how the table lists the spreads: the benchmark's headline metrics first


def parent_task(plan: Plan) -> str:
    return f"{plan.task_name}_seeds-{'-'.join(map(str, plan.seeds))}"


def run_repeated(plan: Plan, tracker: Tracker, opts: RunOptions, log: Callable[[str], None] = print) -> RepeatedResult:
    """Run `plan` once per seed in plan.seeds under one parent run; a seed that diverges or fails ends the parent
    FAILED (the seeds already run keep their runs)."""
    started = time.perf_counter()
    shared = Shared.load(plan, log)
    guarded = Guarded(tracker, log)
    parent = _open_parent(plan, guarded, shared)
    runs: list[RunResult] = []
    try:
        for seed in plan.seeds:
            log(f"seed {seed} ({len(runs) + 1} of {len(plan.seeds)})")
            seeded = replace(opts, parent_run_id=parent, extra_tags={**opts.extra_tags, "seed": str(seed)})
            runs.append(run_experiment(plan.with_seed(seed), tracker, seeded, log=log, shared=shared))
    except KeyboardInterrupt:
        guarded.end_run(parent, "KILLED")
        raise
    except BaseException as exc:
        seed = plan.seeds[len(runs)]
        reason = f"seed {seed}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        guarded.set_tags(parent, {"failure": reason[:500]})
        guarded.end_run(parent, "FAILED")
        if isinstance(exc, DivergedError):
            raise RunFailed(f"{reason}; the repeated run is marked FAILED (seeds run before it are kept)") from None
        raise
    if not runs[0].summary:  # not the main process (torchrun / accelerate launch): rank 0 reports
        return RepeatedResult(parent, plan.seeds, runs, {}, Path(), time.perf_counter() - started)
    bench = plan.benchmark
    log_metrics = tuple(o.metric for o in bench.objectives if o.log)
    spreads = S.summarise([r.summary for r in runs], log_metrics)
    path = write_summary(plan, runs, spreads)
    guarded.log_metrics(parent, S.tracked_metrics(spreads))
    guarded.log_artifact(parent, str(path))
    guarded.set_tags(parent, {"seconds": f"{time.perf_counter() - started:.1f}"})
    guarded.end_run(parent, "FINISHED")
    order = tuple(f"log10_{m}" if m in log_metrics else m for m in bench.headline)
    return RepeatedResult(parent, plan.seeds, runs, spreads, path, time.perf_counter() - started, order)


def _open_parent(plan: Plan, tracker: Guarded, shared: Shared) -> str:
    """The setting's run: its tags and params (unlearn.seed lists the seeds), no model of its own."""
    cfg = plan.cfg
    listed = ",".join(map(str, plan.seeds))
    tags = {
        "kind": "repeated",
        "method": cfg.unlearn.method,
        "forget_split": cfg.data.forget_split,
        "model": plan.target.spec,
        "seeds": listed,
        "task": parent_task(plan),
        "device": plan.device,
        **version_tags(),
    }
    name = f"{plan.run_name}-{len(plan.seeds)}seeds"
    parent = tracker.start_run(tracker.unique_name(name) or name, tags=tags)
    chat = uses_chat_template(shared.tokenizer, cfg.prompt)
    params = tracked_params(plan, shared.inputs.hyperparams, chat_template=chat)
    tracker.log_params(parent, {**params, "unlearn.seed": listed})
    return str(parent)


def write_summary(plan: Plan, runs: list[RunResult], spreads: dict[str, S.Spread]) -> Path:
    """SEEDS_SUMMARY.json beside the seeds' evaluations: the setting, each seed's summary and run, the spreads."""
    seeds = plan.seeds
    data: dict[str, Any] = {
        "setting": {k: v for k, v in flatten(to_dict(plan.cfg)).items() if k.startswith("unlearn.")},
        "seeds": list(seeds),
        "per_seed": {
            str(s): {"run_id": r.run_id, "eval_dir": str(r.eval_dir), **r.summary}
            for s, r in zip(seeds, runs, strict=True)
        },
        "spread": {name: s.to_dict() for name, s in spreads.items()},
        "notes": "a log10_<metric> spread is on the log10 scale; <metric> = 10 ** its mean (the geometric mean)",
    }
    data["setting"]["unlearn.seed"] = list(seeds)
    path = plan.eval_dir.parent / parent_task(plan) / SUMMARY_FILE
    write_json(path, data)
    return path


def table(result: RepeatedResult) -> str:
    """The printed result: each metric's mean ± sd, the 95 % interval of its mean, and every seed's value. A metric
    spread on log10 (forget_quality) is shown as its geometric mean ×/÷ its seed spread (10 ** sd of its log10)."""
    order = result.order
    names = [n for n in order if n in result.spreads] + [n for n in result.spreads if n not in order]
    shown = [n.removeprefix("log10_") for n in names]
    width = max(len(n) for n in shown)
    seeds = "  ".join(f"{'seed ' + str(s):>10}" for s in result.seeds)
    lines = [f"{'metric':<{width}}  {'mean ± sd':>21}  {'95% interval of the mean':>24}  {seeds}"]
    for name, label in zip(names, shown, strict=True):
        s = result.spreads[name]
        per_seed = "  ".join(f"{_num(r.summary.get(label)):>10}" for r in result.runs)
        lines.append(f"{label:<{width}}  {_centre(name, s):>21}  {_interval(name, s):>24}  {per_seed}")
    logged = [n.removeprefix("log10_") for n in names if n.startswith("log10_")]
    scales = "".join(f"{m}: geometric mean ×/÷ 10^(sd of log10 {m}); " for m in logged)
    lines.append(f"{len(result.seeds)} seeds; {scales}the interval is Student's t over the seeds")
    return "\n".join(lines)


def _centre(name: str, s: S.Spread) -> str:
    if name.startswith("log10_"):
        text = _num(10**s.mean)
        return text if s.sd is None else f"{text} ×/÷ {10**s.sd:.2f}"
    return _num(s.mean) if s.sd is None else f"{_num(s.mean)} ± {_num(s.sd)}"


def _interval(name: str, s: S.Spread) -> str:
    if s.ci_low is None or s.ci_high is None:
        return "-"
    low, high = (10**s.ci_low, 10**s.ci_high) if name.startswith("log10_") else (s.ci_low, s.ci_high)
    return f"{_num(low)} .. {_num(high)}"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3e}" if value != 0 and abs(value) < 1e-3 else f"{value:.4f}"
