"""What each command does once click has parsed it: resolve the plan, check it, show it, then run the stages.

Order for every command: config (validated) -> plan (no weights) -> preflight (every missing piece at once, and
every output folder writable: exit 2) -> tracking store (run, sweep) -> the plan printed (`--dry-run` stops
here) -> threads -> prepare -> the command's stages. Results go to stdout, progress to stderr.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from unlearn_lab.config import ExperimentConfig, load_experiment
from unlearn_lab.errors import RunFailed, UsageError

if TYPE_CHECKING:  # the modules behind these import torch: loaded by the stages that need them
    from unlearn_lab.data.tofu import Source
    from unlearn_lab.experiment import RunResult
    from unlearn_lab.plan import Plan
    from unlearn_lab.sweep.study import SweepSpec
    from unlearn_lab.tracking.memory import MemoryTracker
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker


def say(message: str) -> None:
    """A result, on stdout."""
    click.echo(message)


def log(message: str) -> None:
    """Progress and notes, on stderr."""
    click.echo(message, err=True)


def make_plan(command: str, cfg: ExperimentConfig, *, device: str | None, workers: int = 1, **kw: Any) -> Plan:
    from unlearn_lab.plan import resolve
    from unlearn_lab.runtime import choose_device, thread_count

    return resolve(command, cfg, device=choose_device(device), threads=thread_count(workers), **kw)


def launched_processes() -> int:
    """Processes on this machine under torchrun / accelerate launch (1 otherwise): they share its cores."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def check(
    plan: Plan, *, extra_files: tuple[tuple[str, str], ...] = (), outputs: tuple[tuple[str, Path], ...] = ()
) -> Plan:
    """Everything the plan needs is reachable and every folder it writes is writable (all missing pieces at once,
    one error, before anything is opened or loaded); returns the plan with its tokenizer notes."""
    from unlearn_lab import preflight

    checked = preflight.check(plan, extra_files=extra_files)
    preflight.check_outputs(plan, outputs)
    if checked.offline:
        log("the hub is not reachable; everything needed is in the local cache: loading offline")
        preflight.go_offline()
    return plan.with_notes(preflight.tokenizer_notes(plan))


def check_tracking(tracking_uri: str | None) -> tuple[tuple[str, Path], ...]:
    """The tracking store answers (an http(s) server) before anything is printed, built or opened; returns the
    folder a SQLite store will be written to, for `check`'s outputs."""
    from unlearn_lab.tracking.mlflow_tracker import check_reachable, resolve_uri

    uri = resolve_uri(tracking_uri)
    check_reachable(uri, create=False)
    sqlite = "sqlite:///"
    return (("the tracking store", Path(uri[len(sqlite) :]).parent),) if uri.startswith(sqlite) else ()


def show(plan: Plan, *, dry_run: bool) -> None:
    """The plan on stdout for --dry-run, else on stderr; under torchrun / accelerate launch rank 0 speaks."""
    if int(os.environ.get("RANK", "0")) == 0:
        (say if dry_run else log)(plan.describe())


def build_models(plan: Plan) -> list[str]:
    """Prepare what the plan lists (threads set first); one line per role and what was built."""
    from unlearn_lab.models.prepare import prepare as build
    from unlearn_lab.runtime import configure_threads

    configure_threads(threads=plan.threads)
    built = build(plan, log=log).built
    return [
        f"target: {plan.target.spec}",
        f"retain: {plan.retain.spec}",
        f"prepare: {'built ' + ', '.join(built) if built else 'all cached'}",
    ]


def _on_sigterm() -> None:
    from unlearn_lab.runtime import interrupt_on_sigterm

    interrupt_on_sigterm()


# --------------------------------------------------------------------------------------------------- data


def data_source(source: str | None, authors: int | None, experiment: str | None) -> Source:
    """`--data` (default: the experiment's source, with its author count unless `--authors` says otherwise)."""
    from unlearn_lab.data.tofu import make_source

    d = load_experiment(experiment).data
    if source is None:
        return make_source(d.source, authors or d.authors, d.seed)
    return make_source(source, authors, d.seed)


def data_splits(source: str | None, authors: int | None, experiment: str | None) -> None:
    from unlearn_lab.data.tofu import describe_splits

    say(describe_splits(data_source(source, authors, experiment)))


def data_show(split: str, count: int, source: str | None, authors: int | None, experiment: str | None) -> None:
    import json

    records = data_source(source, authors, experiment).load(split)[:count]
    say("\n".join(json.dumps(record, indent=2, ensure_ascii=False) for record in records))


# ------------------------------------------------------------------------------------------------ prepare


def prepare(plan: Plan, *, dry_run: bool) -> None:
    """`prepare`: build (or find in the cache) the base, target and retain models."""
    import time

    start = time.perf_counter()
    plan = check(plan)
    show(plan, dry_run=dry_run)
    if dry_run:
        return
    _on_sigterm()
    say("\n".join(build_models(plan)) + f" in {time.perf_counter() - start:.1f} s")


# --------------------------------------------------------------------------------------------------- eval


@dataclass(frozen=True)
class EvalArgs:
    """`eval`'s own options (the experiment, --set, --device and --dry-run are every command's)."""

    model_spec: str
    data_source: str | None = None
    forget_split: str | None = None
    holdout_split: str | None = None
    retain_model: str | None = None
    retain_logs: str | None = None
    no_reference: bool = False
    metrics: str | None = None
    out_dir: str | None = None
    task_name: str | None = None
    tracking_uri: str | None = None

    def __post_init__(self) -> None:
        flags = (("--retain-model", self.retain_model), ("--retain-logs", self.retain_logs))
        given = [o for o, on in (*flags, ("--no-reference", self.no_reference)) if on]
        if len(given) > 1:
            raise UsageError(
                f"give at most one of --retain-model, --retain-logs, --no-reference (got {', '.join(given)})"
            )

    def config(self, experiment: str | None, overrides: tuple[str, ...]) -> ExperimentConfig:
        pairs = (
            ("data.source", self.data_source),
            ("data.forget_split", self.forget_split),
            ("data.holdout_split", self.holdout_split),
            ("eval.metrics", self.metrics),
        )
        return load_experiment(experiment, [*overrides, *(f"{k}={v}" for k, v in pairs if v)])

    def plan(self, cfg: ExperimentConfig, device: str) -> Plan:
        """The plan, once the config is valid: a registered model (models:/...) is fetched into the cache first."""
        model = self.model_spec
        if model.startswith("models:/"):
            from unlearn_lab.models.load import cache_root
            from unlearn_lab.tracking.mlflow_tracker import fetch_registered

            model = str(fetch_registered(model, self.tracking_uri, cache_root() / "registry"))
        return make_plan(
            "eval",
            cfg,
            device=device,
            task_name=self.task_name,
            evaluated=model,
            retain_model=self.retain_model,
            retain_logs=self.retain_logs,
            no_reference=self.no_reference,
        )


def evaluate(plan: Plan, args: EvalArgs, *, dry_run: bool) -> None:
    """`eval`: check (a malformed or mismatched --retain-logs too), then prepare what the plan lists, the reference,
    then the evaluated model on the plan's device and eval dtype; prints the summary table."""
    from unlearn_lab.evaluation import check_reference, eval_data, evaluate_model, load_for_eval, reference_entries
    from unlearn_lab.metrics.report import read_json, table

    out_dir = Path(args.out_dir) if args.out_dir else plan.eval_dir
    logs = (("retain logs", args.retain_logs),) if args.retain_logs else ()
    plan = check(plan, extra_files=logs, outputs=(("the evaluation", out_dir),))
    if args.retain_logs:
        check_reference(read_json(args.retain_logs), plan, args.retain_logs)
    show(plan, dry_run=dry_run)
    if dry_run:
        return
    _on_sigterm()
    build_models(plan)
    data = eval_data(plan)
    reference = reference_entries(plan, data, log=log)
    assert plan.evaluated is not None  # an eval plan always names its model
    model, tokenizer = load_for_eval(plan, plan.evaluated.spec)
    result = evaluate_model(plan, model, tokenizer, reference=reference, data=data, out_dir=out_dir, log=log)
    say(table(result.summary))
    say(f"wrote {result.out_dir}/TOFU_EVAL.json and TOFU_SUMMARY.json ({result.seconds:.1f} s)")


# ---------------------------------------------------------------------------------------------------- run


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
    `unlearn.method_args.beta=0.5`. The method's hyperparameters and the split pair are checked here."""
    from unlearn_lab.data.tofu import check_pair
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
    validate_hyperparams(get_method(cfg.unlearn.method), cfg.unlearn.method_args)
    check_pair(cfg.data.forget_split, cfg.data.retain_split)  # the splits' sizes are checked by the preflight
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
    _on_sigterm()
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


# -------------------------------------------------------------------------------------------- sweep, worker


@dataclass(frozen=True)
class SweepArgs:
    """`sweep`'s own options (click checks the numbers' ranges)."""

    method: str | None
    methods: str | None  # "A,B,...": the method searched too
    forget: str | None
    trials: int
    lr_range: str | None
    epochs_range: str | None
    space_file: str | None
    study_name: str | None
    storage: str | None
    workers: int
    seed: int
    min_utility: float | None
    reuse_epochs: bool
    collapse_utility: float | None  # None: the experiment's sweep.collapse_utility
    heartbeat_seconds: int
    tracking_uri: str | None
    repeats: int | None = None  # None: the experiment's sweep.repeats

    def spec(
        self, cfg: ExperimentConfig, *, experiment: str | None, overrides: tuple[str, ...], device: str
    ) -> SweepSpec:
        """The study's spec: its search space (ranges from the options, else the experiment's), name and storage."""
        from unlearn_lab.methods import get_method, validate_hyperparams
        from unlearn_lab.sweep.space import build_space, check_space, with_methods
        from unlearn_lab.sweep.study import SweepSpec, default_storage

        lr, epochs = cfg.sweep.ranges(cfg.unlearn.method)
        hyper = validate_hyperparams(get_method(cfg.unlearn.method), cfg.unlearn.method_args)
        space = build_space(
            self.lr_range or lr, self.epochs_range or epochs, self.space_file, hyper, declared=cfg.sweep.space
        )
        check_space(space, get_method(cfg.unlearn.method))
        if self.methods:
            space = with_methods(
                space, self.methods, cfg.sweep.ranges, self.lr_range, self.epochs_range, reuse_epochs=self.reuse_epochs
            )
        searched = "+".join(m.name for m in space.methods) or cfg.unlearn.method
        name = self.study_name or f"{cfg.name}_{searched}_{cfg.data.forget_split}"
        return SweepSpec(
            cfg=cfg,
            space=space,
            study_name=name,
            storage=self.storage or default_storage(name),
            trials=self.trials,
            seed=self.seed,
            min_utility=self.min_utility,
            tracking_uri=self.tracking_uri,
            experiment_arg=experiment,
            extra_sets=tuple(s for s in overrides if not s.startswith(("unlearn.lr=", "unlearn.epochs="))),
            reuse_epochs=self.reuse_epochs,
            collapse_utility=cfg.sweep.collapse_utility if self.collapse_utility is None else self.collapse_utility,
            heartbeat=self.heartbeat_seconds,
            device=device,
            repeats=cfg.sweep.repeats if self.repeats is None else self.repeats,
        )


def sweep(
    plan: Plan, args: SweepArgs, *, experiment: str | None, overrides: tuple[str, ...], device: str, dry_run: bool
) -> None:
    """`sweep`: the search space, study storage and tracking store checked, the models prepared once (the
    workers find them cached), then the study run to its trial count; prints the Pareto front."""
    from unlearn_lab.sweep import run_sweep
    from unlearn_lab.sweep.study import check_storage_url, make_storage

    spec = args.spec(plan.cfg, experiment=experiment, overrides=overrides, device=device)
    plan = check(plan, outputs=check_tracking(args.tracking_uri))  # before the study's storage is created
    check_storage_url(spec.storage)
    if dry_run:
        show(plan, dry_run=True)
        over = spec.space.describe()
        confirmed = (
            f"front candidates and the default config confirmed over seeds {', '.join(map(str, spec.seeds))}"
            if spec.repeats > 1
            else "single draws (no confirmation)"
        )
        say(
            f"  sweep     study {spec.study_name}: {spec.trials} trials over {over} on {args.workers} worker(s), "
            f"{confirmed}; storage {spec.storage}"
        )
        return
    make_storage(spec.storage, spec.heartbeat)  # a storage that does not open fails before anything is built
    _on_sigterm()
    show(plan, dry_run=False)
    build_models(plan)
    result = run_sweep(spec, workers=args.workers, log=log)
    judged = f"on {spec.repeats}-seed means" if spec.repeats > 1 else "on single draws"
    say(
        f"study {spec.study_name}: {result.complete} complete, {result.stopped_early} stopped early (utility "
        f"collapsed), {result.failed} failed trials, {result.confirmations} confirmation runs, "
        f"{result.epochs_saved} training epochs saved; Pareto front {judged}:"
    )
    say(result.table)
    say(result.summary)
    say(f"reports: {result.out_dir}   MLflow parent run: {result.parent_run_id}")


def worker(study: str, storage: str, *, wait_seconds: int, heartbeat: int, tracking_uri: str | None) -> None:
    """`worker`: join the study (waiting for it up to `wait_seconds`) and run its trials until it has enough."""
    from unlearn_lab.sweep import join_sweep

    _on_sigterm()
    result = join_sweep(
        study, storage, tracking_uri=tracking_uri, wait_seconds=wait_seconds, heartbeat=heartbeat, log=log
    )
    say(
        f"worker: {result.complete} complete, {result.stopped_early} stopped early (utility collapsed), "
        f"{result.failed} failed trials; the sweep process writes the reports"
    )


# ------------------------------------------------------------------------------------------- methods, ui


def methods() -> None:
    """The methods, their hyperparameters (defaults and bounds), what each needs and its paper."""
    from unlearn_lab.methods import METHODS, requires_reference

    for name, spec in METHODS.items():
        bounded = {k: f" ({spec.bounds[k]})" if k in spec.bounds else "" for k in spec.defaults}
        params = ", ".join(f"{k}={v}{bounded[k]}" for k, v in spec.defaults.items()) or "(none)"
        wants = (("retain", spec.needs_retain), ("reference model", requires_reference(spec, dict(spec.defaults))))
        needs = [n for n, on in (*wants, ("idk answers", spec.needs_alternate)) if on]
        say(f"{name:<11} {params}")
        say(f"{'':<11} needs: {', '.join(needs) or 'forget only'}; paper: {spec.paper}")


def ui(host: str, port: int, workers: int, tracking_uri: str | None) -> None:
    """`ui`: the MLflow UI on the project's store (this process becomes the server); prints the experiment page."""
    from unlearn_lab.tracking.mlflow_tracker import ui_command

    url, argv, env = ui_command(tracking_uri, host, port, workers)
    log(f"MLflow UI: {url}")
    os.execvpe(argv[0], argv, env)
