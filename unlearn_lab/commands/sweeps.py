"""`sweep` and `worker`: an Optuna study over one method, or one per method for a fair comparison."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from unlearn_lab.commands.common import build_models, check, check_tracking, log, on_signals, say, show
from unlearn_lab.config import ExperimentConfig
from unlearn_lab.errors import UsageError

if TYPE_CHECKING:
    from unlearn_lab.plan import Plan
    from unlearn_lab.sweep.study import SweepSpec


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
    joint: bool = False  # --methods: one study searching the method too, instead of one study per method
    objectives: str | None = None  # "FORGET,UTILITY" (None: the benchmark's pair)
    startup: str = "grid"  # the sampler's start-up trials: the lr x epochs grid, or random draws

    def method_list(self) -> list[str]:
        """--methods: 'all' (every registered method) or A,B,... (two or more, known)."""
        from unlearn_lab.methods import all_methods, get_method

        if not self.methods:
            return []
        if self.methods.strip() == "all":
            return list(all_methods())
        names = list(dict.fromkeys(n.strip() for n in self.methods.split(",") if n.strip()))
        for name in names:
            get_method(name)  # unknown names: one line with a suggestion
        if len(names) < 2:
            raise UsageError("--methods takes all, or two or more methods separated by commas (one: --method)")
        return names

    def comparison(
        self, cfg: ExperimentConfig, *, experiment: str | None, overrides: tuple[str, ...], device: str
    ) -> list[SweepSpec]:
        """--methods without --joint: one study per method, each with the same budget (trials, seeds) in its own
        space (the experiment's sweep.methods.<method> ranges, else sweep.lr / sweep.epochs; its default
        hyperparameters), named <experiment>_<method>_<forget> (--study S: S_<method>)."""
        from dataclasses import replace

        if self.space_file:
            raise UsageError("--space belongs to one method; a comparison over --methods searches lr and epochs")
        specs = []
        for method in self.method_list():
            own = replace(cfg, unlearn=replace(cfg.unlearn, method=method, method_args={}))
            if method != cfg.unlearn.method:  # the experiment's declared hyperparameter space is its own method's
                own = replace(own, sweep=replace(own.sweep, space={}))
            study = f"{self.study_name}_{method}" if self.study_name else None
            specs.append(
                replace(self, methods=None, study_name=study).spec(
                    own, experiment=experiment, overrides=overrides, device=device
                )
            )
        return specs

    def spec(
        self, cfg: ExperimentConfig, *, experiment: str | None, overrides: tuple[str, ...], device: str
    ) -> SweepSpec:
        """The study's spec: its search space (ranges from the options, else the experiment's), objectives, name and
        storage."""
        from unlearn_lab.benchmarks import choose_objectives, get_benchmark
        from unlearn_lab.methods import get_method, validate_hyperparams
        from unlearn_lab.sweep.space import build_space, check_space, with_methods
        from unlearn_lab.sweep.study import SweepSpec, default_storage

        lr, epochs = cfg.sweep.ranges(cfg.unlearn.method)
        hyper = validate_hyperparams(get_method(cfg.unlearn.method), cfg.unlearn.method_args)
        space = build_space(
            self.lr_range or lr, self.epochs_range or epochs, self.space_file, hyper, declared=cfg.sweep.space
        )
        check_space(space, get_method(cfg.unlearn.method))
        if self.methods and self.joint:
            listed = ",".join(self.method_list())
            space = with_methods(
                space, listed, cfg.sweep.ranges, self.lr_range, self.epochs_range, reuse_epochs=self.reuse_epochs
            )
        bench = get_benchmark(cfg.benchmark)
        objectives = choose_objectives(bench, self.objectives)
        evaluated = set(bench.metrics(cfg.eval.metrics))
        for o in objectives:
            if o.metric not in evaluated:
                raise UsageError(
                    f"objective {o.metric} is not among the evaluated metrics (eval.metrics: {cfg.eval.metrics}); "
                    f"add it: --set eval.metrics={cfg.eval.metrics},{o.metric}"
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
            objectives=objectives,
            startup=self.startup,
        )


def sweep(
    plan: Plan, args: SweepArgs, *, experiment: str | None, overrides: tuple[str, ...], device: str, dry_run: bool
) -> None:
    """`sweep`: the search space, study storage and tracking store checked, the models prepared once (the
    workers find them cached), then the study run to its trial count; prints the Pareto front. With --methods (not
    --joint): one such study per method, then the leaderboard of those studies."""
    if args.methods and not args.joint:
        specs = args.comparison(plan.cfg, experiment=experiment, overrides=overrides, device=device)
    else:
        specs = [args.spec(plan.cfg, experiment=experiment, overrides=overrides, device=device)]
    from unlearn_lab.sweep.study import check_storage_url, make_storage

    plan = check(plan, outputs=check_tracking(args.tracking_uri))  # before the study's storage is created
    for spec in specs:
        check_storage_url(spec.storage)
    if dry_run:
        show(plan, dry_run=True)
        for spec in specs:
            say(describe(spec, args.workers))
        if len(specs) > 1:
            say(comparison_note(specs))
        return
    for spec in specs:
        make_storage(spec.storage, spec.heartbeat)  # a storage that does not open fails before anything is built
    on_signals()
    show(plan, dry_run=False)
    build_models(plan)
    if len(specs) > 1:
        log(comparison_note(specs).strip())
    for i, spec in enumerate(specs, 1):
        if len(specs) > 1:
            log(f"method {i} of {len(specs)}: {spec.cfg.unlearn.method} (study {spec.study_name})")
        run_study(spec, args.workers)
    if len(specs) > 1:
        first = specs[0].cfg
        leaderboard(specs, args.tracking_uri, args.study_name or f"{first.name}_{first.data.forget_split}")


def comparison_note(specs: list[SweepSpec]) -> str:
    """What a --methods comparison ends in, for its plan."""
    axes = " vs ".join(o.wording for o in specs[0].objectives)
    return f"  report    the leaderboard of these {len(specs)} studies on {axes} (docs/leaderboard.md)"


def describe(spec: SweepSpec, workers: int) -> str:
    from unlearn_lab.sweep.study import startup_settings

    confirmed = (
        f"front candidates and the default config confirmed over seeds {', '.join(map(str, spec.seeds))}"
        if spec.repeats > 1
        else "single draws (no confirmation)"
    )
    wanted = " and ".join(o.wording for o in spec.objectives)
    grid = len(startup_settings(spec))
    first = "the default config, then " + (f"a {grid}-run lr x epochs grid, then TPE" if grid else "TPE")
    return (
        f"  sweep     study {spec.study_name}: {spec.trials} trials over {spec.space.describe()} ({first}) on "
        f"{workers} worker(s), objectives {wanted}, {confirmed}; storage {spec.storage}"
    )


def run_study(spec: SweepSpec, workers: int) -> None:
    """One study to its budget (resumed if it exists), its front printed."""
    from unlearn_lab.sweep import run_sweep

    result = run_sweep(spec, workers=workers, log=log)
    judged = f"on {spec.repeats}-seed means" if spec.repeats > 1 else "on single draws"
    say(
        f"study {spec.study_name}: {result.complete} complete, {result.stopped_early} stopped early (utility "
        f"collapsed), {result.failed} failed trials, {result.confirmations} confirmation runs, "
        f"{result.epochs_saved} training epochs saved; Pareto front {judged}:"
    )
    say(result.table)
    say(result.summary)
    say(f"reports: {result.out_dir}   MLflow parent run: {result.parent_run_id}")


def leaderboard(specs: list[SweepSpec], tracking_uri: str | None, name: str) -> None:
    """The report of a --methods comparison: its studies' runs only, the seeds they were confirmed on, judged on
    the objectives the studies searched, written to saves/report/<name> (`--study S`: S, else
    <experiment>_<forget>)."""
    from unlearn_lab.leaderboard.command import ReportArgs, report

    first = specs[0]
    args = ReportArgs(
        benchmark=first.cfg.benchmark,
        forget=first.cfg.data.forget_split,
        studies=tuple(s.study_name for s in specs),
        min_seeds=first.repeats,
        objectives=",".join(o.metric for o in first.objectives),
        tracking_uri=tracking_uri,
        out=str(first.saves / "report" / name),
    )
    report(args, say=say)


def worker(study: str, storage: str, *, wait_seconds: int, heartbeat: int, tracking_uri: str | None) -> None:
    """`worker`: join the study (waiting for it up to `wait_seconds`) and run its trials until it has enough."""
    from unlearn_lab.sweep import join_sweep

    on_signals()
    result = join_sweep(
        study, storage, tracking_uri=tracking_uri, wait_seconds=wait_seconds, heartbeat=heartbeat, log=log
    )
    say(
        f"worker: {result.complete} complete, {result.stopped_early} stopped early (utility collapsed), "
        f"{result.failed} failed trials; the sweep process writes the reports"
    )
