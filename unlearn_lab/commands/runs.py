"""`run`: one tracked unlearning run, or a setting repeated over seeds."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unlearn_lab.commands.common import check, check_tracking, launched_processes, log, make_plan, on_signals, say, show
from unlearn_lab.config import ExperimentConfig, load_experiment
from unlearn_lab.errors import RunFailed, UsageError

if TYPE_CHECKING:
    from unlearn_lab.experiment import RunResult
    from unlearn_lab.plan import Plan
    from unlearn_lab.tracking.memory import MemoryTracker
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker


def run_config(
    experiment: str | None,
    overrides: tuple[str, ...],
    method: str | None = None,
    forget: str | None = None,
    retain: str | None = None,
    lr: float | None = None,
    epochs: int | None = None,
) -> ExperimentConfig:
    """The experiment with `run`'s options applied; `--set method.beta=0.5` is shorthand for
    `unlearn.method_args.beta=0.5`. The method's hyperparameters and the benchmark's split names are checked here."""
    from unlearn_lab.benchmarks import check_method, get_benchmark
    from unlearn_lab.methods import get_method, validate_hyperparams

    pairs = (
        ("unlearn.method", method),
        ("data.forget_split", forget),
        ("data.retain_split", retain),
        ("unlearn.lr", lr),
        ("unlearn.epochs", epochs),
    )
    sets = [f"unlearn.method_args.{s[len('method.') :]}" if s.startswith("method.") else s for s in overrides]
    cfg = load_experiment(experiment, [*sets, *(f"{k}={v}" for k, v in pairs if v is not None)])
    spec = get_method(cfg.unlearn.method)
    validate_hyperparams(spec, cfg.unlearn.method_args)
    bench = get_benchmark(cfg.benchmark)
    bench.resolve(cfg)  # the split names (their sizes are checked by the preflight)
    check_method(bench, spec)
    return cfg


@dataclass(frozen=True)
class RunArgs:
    """`run`'s own options (the experiment, --set, --device and --dry-run are every command's)."""

    method: str | None = None
    forget: str | None = None
    retain: str | None = None
    lr: float | None = None
    epochs: int | None = None
    task_name: str | None = None
    eval_every: str = "none"
    tracking_uri: str | None = None
    seeds: str | None = None  # "0,1,2": the setting once per seed
    repeats: int | None = None  # K seeds from unlearn.seed

    def __post_init__(self) -> None:
        if self.seeds is not None and self.repeats is not None:
            raise UsageError("give --seeds 0,1,2 or --repeats K, not both")

    def config(self, experiment: str | None, overrides: tuple[str, ...]) -> ExperimentConfig:
        chosen = self.method, self.forget, self.retain
        if self.seeds is not None:  # the first listed seed is the setting's own (its config and names)
            from unlearn_lab.seeds import parse_seeds

            overrides = (*overrides, f"unlearn.seed={parse_seeds(self.seeds)[0]}")
        return run_config(experiment, overrides, *chosen, lr=self.lr, epochs=self.epochs)

    def plan(self, cfg: ExperimentConfig, device: str) -> Plan:
        """The run's plan (under torchrun / accelerate launch the processes share this machine's cores)."""
        seeds = self.seed_list(cfg)
        return make_plan("run", cfg, device=device, task_name=self.task_name, workers=launched_processes(), seeds=seeds)

    def seed_list(self, cfg: ExperimentConfig) -> tuple[int, ...]:
        """The seeds of a repeated run (empty: one run with unlearn.seed)."""
        from unlearn_lab.seeds import parse_seeds, seeds_for

        if self.seeds is not None:
            return parse_seeds(self.seeds)
        return seeds_for(cfg.unlearn.seed, self.repeats) if self.repeats is not None else ()


def run(plan: Plan, args: RunArgs, *, dry_run: bool) -> None:
    """`run`: the tracking store checked before anything trains (only rank 0 tracks), then run_experiment."""
    from unlearn_lab.metrics.report import table

    store = check_tracking(args.tracking_uri)
    outputs = (("the unlearned model", plan.save_dir), ("the evaluation", plan.eval_dir), *store)
    plan = check(plan, outputs=outputs)
    show(plan, dry_run=dry_run)
    if dry_run:
        return
    on_signals()
    if plan.seeds:
        _run_repeated(plan, args.tracking_uri, args.eval_every)
        return
    result, tracker = _run_experiment(plan, args.tracking_uri, args.eval_every)
    if tracker is None:  # not rank 0
        return
    say(table(result.summary))
    say(f"model: {result.model_dir}   eval: {result.eval_dir}")
    say(f"MLflow run id: {result.run_id}  ({tracker.uri})")
    say(f"time: {result.seconds:.1f} s (training {result.train_seconds:.1f} s)")


def _tracker(tracking_uri: str | None) -> MlflowTracker | MemoryTracker:
    """MLflow on rank 0; under `accelerate launch` / torchrun the other ranks track nothing (in memory)."""
    from unlearn_lab.tracking.memory import MemoryTracker
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker

    return MlflowTracker(tracking_uri) if int(os.environ.get("RANK", "0")) == 0 else MemoryTracker()


def _run_repeated(plan: Plan, tracking_uri: str | None, eval_every: str) -> None:
    """`run --seeds/--repeats`: the setting once per seed under one parent run; prints the spread."""
    from unlearn_lab.experiment import RunOptions
    from unlearn_lab.repeated import run_repeated, table
    from unlearn_lab.runtime import configure_threads
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker

    tracker = _tracker(tracking_uri)
    configure_threads(threads=plan.threads)
    result = run_repeated(plan, tracker, RunOptions(eval_every=eval_every), log=log)
    if not isinstance(tracker, MlflowTracker):  # not rank 0
        return
    say(table(result))
    say(f"per-seed values and spreads: {result.summary_path}")
    say(f"MLflow parent run id: {result.run_id}  ({tracker.uri}); one nested run per seed")
    say(f"time: {result.seconds:.1f} s for {len(result.seeds)} seeds")


def _run_experiment(plan: Plan, tracking_uri: str | None, eval_every: str) -> tuple[RunResult, MlflowTracker | None]:
    from unlearn_lab.experiment import RunOptions, run_experiment
    from unlearn_lab.runtime import configure_threads
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker
    from unlearn_lab.train import DivergedError

    tracker = _tracker(tracking_uri)
    configure_threads(threads=plan.threads)
    try:
        result = run_experiment(plan, tracker, RunOptions(eval_every=eval_every), log=log)
    except DivergedError as exc:
        raise RunFailed(f"{exc}; the run is marked FAILED") from None
    return result, tracker if isinstance(tracker, MlflowTracker) else None
