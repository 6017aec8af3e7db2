"""Thin click front end: parse -> config -> call. Heavy imports happen inside the commands."""

from __future__ import annotations

import functools
import os
import sys

import click

from unlearn_lab.errors import UsageError


def friendly(fn):
    """Usage errors become one line on stderr and exit code 2 (no traceback). A lost tracking store is one line
    and exit code 1; Ctrl-C or SIGTERM (after the run or trial was marked) one line and exit code 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from unlearn_lab.errors import RunFailed
        from unlearn_lab.runtime import interrupt_on_sigterm

        interrupt_on_sigterm()
        try:
            return fn(*args, **kwargs)
        except UsageError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except RunFailed as exc:  # a lost tracking server, failed worker processes
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt as exc:
            what = exc.args[0] if exc.args else "SIGINT"
            click.echo(
                f"interrupted ({what}): any running MLflow run was marked KILLED and any running sweep trial "
                "FAIL; rerun the same command to resume",
                err=True,
            )
            sys.exit(130)

    return wrapper


experiment_option = click.option(
    "--experiment",
    "-e",
    default=None,
    metavar="FILE",
    help="Experiment YAML (default: experiments/embedded/default.yaml, the embedded world).",
)
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set finetune.epochs=5 (repeatable).",
)
dry_run_option = click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan (what is trained, evaluated and cached, device, dtype, size, "
    "memory) and check that every piece is reachable; load no weights, track nothing.",
)
device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda", "mps"]),
    default="auto",
    show_default=True,
    help="Where every stage runs (auto: CUDA, else MPS, else CPU).",
)


def usage_line(exc: click.UsageError) -> str:
    """Click's own usage error as one line that says what is wrong and what is accepted."""
    message = " ".join(exc.format_message().split())
    ctx = exc.ctx
    if ctx is None:
        return message
    if isinstance(exc, click.exceptions.NoSuchCommand) and isinstance(ctx.command, click.Group):
        return f"{message} accepted: {', '.join(ctx.command.list_commands(ctx))}"
    if isinstance(exc, click.NoSuchOption):
        options = [
            o for p in ctx.command.get_params(ctx) if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)
        ]
        return f"{message} accepted: {', '.join(options)}"
    if isinstance(exc, click.MissingParameter) and getattr(exc.param, "help", None):
        return f"{message.rstrip('.')}: {' '.join(exc.param.help.split())}"
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
        # click names the expected type, choices or range itself
        return message
    return f"{message} (see '{ctx.command_path} --help')"


class OneLineGroup(click.Group):
    """Click's usage errors (unknown option or command, a non-integer --epochs...) print like ours: one line
    `error: ...` and exit code 2, instead of click's Usage block. A bare command group still prints its help."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            self._fail(exc)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            self._fail(exc)

    @staticmethod
    def _fail(exc: click.UsageError):
        if isinstance(exc, click.exceptions.NoArgsIsHelpError):
            raise exc
        message = usage_line(exc)
        click.echo(f"error: {message[:1].lower()}{message[1:]}", err=True)
        sys.exit(2)


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """unlearn-lab: experiment-tracked LLM unlearning on the TOFU benchmark."""


# --------------------------------------------------------------------------------------------- data


@main.group()
def data():
    """Inspect TOFU splits from any source."""


data_option = click.option(
    "--data",
    "source",
    default=None,
    metavar="SOURCE",
    help="synthetic (default), a folder of TOFU files, or hf:locuslab/TOFU.",
)
authors_option = click.option(
    "--authors", type=int, default=None, help="World size (synthetic) or a consistent author subset (folder/hf)."
)


def _source(source, authors, experiment=None):
    from unlearn_lab.config import load_experiment
    from unlearn_lab.data.tofu import make_source

    cfg = load_experiment(experiment)
    if source is None:
        return make_source(cfg.data.source, authors or cfg.data.authors, cfg.data.seed)
    return make_source(source, authors, cfg.data.seed)


@data.command("splits")
@data_option
@authors_option
@experiment_option
@friendly
def data_splits(source, authors, experiment):
    """Print each split's size and fields."""
    from unlearn_lab.data.tofu import SPLITS, MissingSplit, split_summary

    src = _source(source, authors, experiment)
    rows, found = [], 0
    for split in SPLITS:  # a malformed record is an error (exit 2); a split the folder lacks is listed as missing
        try:
            n, keys = split_summary(src, split)
        except MissingSplit as exc:
            rows.append(f"{split:<24} {'-':>8}  ({exc})")
            continue
        found += split != "idk"  # idk falls back to built-in answers: it proves nothing about the folder
        rows.append(f"{split:<24} {n:>8}  {', '.join(keys)}")
    if not found:
        raise UsageError(
            f"{src.name} holds no TOFU split; accepted: a folder with files such as full.json, "
            "forget10.json, retain90.json (JSON, JSON lines or parquet), 'synthetic' or hf:locuslab/TOFU"
        )
    click.echo(f"source: {src.name}")
    click.echo(f"{'split':<24} {'records':>8}  fields")
    click.echo("\n".join(rows))


@data.command("show")
@click.argument("split")
@click.option("-n", "count", type=click.IntRange(min=1), default=3, show_default=True, help="Number of records.")
@data_option
@authors_option
@experiment_option
@friendly
def data_show(split, count, source, authors, experiment):
    """Print the first records of SPLIT."""
    import json

    records = _source(source, authors, experiment).load(split)
    for record in records[:count]:
        click.echo(json.dumps(record, indent=2, ensure_ascii=False))


# ------------------------------------------------------------------------------------------ prepare


@main.command()
@experiment_option
@set_option
@device_option
@dry_run_option
@friendly
def prepare(experiment, overrides, device, dry_run):
    """Build (or find in the cache) the base, target and retain models."""
    import time

    from unlearn_lab import commands
    from unlearn_lab.config import load_experiment

    start = time.perf_counter()
    plan = commands.make_plan("prepare", load_experiment(experiment, overrides), device=device)
    plan = commands.check(plan, log=_log)
    commands.show(plan, dry_run=dry_run, log=_log, echo=click.echo)
    if dry_run:
        return
    lines = commands.prepare(plan, _log)
    click.echo("\n".join(lines) + f" in {time.perf_counter() - start:.1f} s")


def _log(message: str) -> None:
    click.echo(message, err=True)


# --------------------------------------------------------------------------------------------- eval

tracking_option = click.option(
    "--tracking-uri",
    default=None,
    metavar="URI",
    help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db).",
)


@main.command("eval")
@click.option(
    "--model",
    "model_spec",
    required=True,
    metavar="PATH|HUB-ID|models:/NAME@ALIAS",
    help="Model folder, hub id, .gguf file, 'target' / 'retain' (the experiment's prepared models), or a "
    "registered MLflow model (models:/<name>@<alias>, models:/<name>/<version>, models:/<id>).",
)
@experiment_option
@click.option(
    "--data",
    "data_source",
    default=None,
    metavar="SOURCE",
    help="Data source (default: the experiment's): synthetic, a folder of TOFU files, or hf:locuslab/TOFU.",
)
@click.option("--forget", "forget_split", default=None, help="Forget split (default: the experiment's).")
@click.option("--holdout", "holdout_split", default=None, help="Holdout split for MIA (default: the experiment's).")
@click.option(
    "--retain-model",
    default=None,
    metavar="PATH|HUB-ID",
    help="Retain model for the forget_quality / privleak reference (default: the experiment's).",
)
@click.option(
    "--retain-logs",
    default=None,
    metavar="TOFU_EVAL.json",
    help="A retain model's TOFU_EVAL.json to use as the reference instead.",
)
@click.option(
    "--no-reference",
    is_flag=True,
    help="Compute only the metrics that need no retain reference (forget_quality and privleak are skipped).",
)
@click.option("--metrics", default=None, help="default | all | comma-separated metric names.")
@click.option("--out", "out_dir", default=None, metavar="DIR", help="Output folder (default: saves/eval/<task>).")
@click.option("--task-name", default=None, help="Name for the default output folder.")
@tracking_option
@set_option
@device_option
@dry_run_option
@friendly
def eval_command(
    model_spec,
    experiment,
    data_source,
    forget_split,
    holdout_split,
    retain_model,
    retain_logs,
    no_reference,
    metrics,
    out_dir,
    task_name,
    tracking_uri,
    overrides,
    device,
    dry_run,
):
    """Evaluate a model on the TOFU suite; writes TOFU_EVAL.json and TOFU_SUMMARY.json."""
    from unlearn_lab import commands
    from unlearn_lab.config import load_experiment
    from unlearn_lab.metrics.report import table
    from unlearn_lab.models.load import cache_root

    if model_spec.startswith("models:/"):  # fetched once from the registry into the cache, then a plain folder
        from unlearn_lab.tracking.mlflow_tracker import fetch_registered

        model_spec = str(fetch_registered(model_spec, tracking_uri, cache_root() / "registry"))

    given = [
        o
        for o, on in (
            ("--retain-model", retain_model),
            ("--retain-logs", retain_logs),
            ("--no-reference", no_reference),
        )
        if on
    ]
    if len(given) > 1:
        raise UsageError(f"give at most one of --retain-model, --retain-logs, --no-reference (got {', '.join(given)})")
    extra = [f"data.source={data_source}"] if data_source else []
    extra += [f"data.forget_split={forget_split}"] if forget_split else []
    extra += [f"data.holdout_split={holdout_split}"] if holdout_split else []
    extra += [f"eval.metrics={metrics}"] if metrics else []
    cfg = load_experiment(experiment, [*overrides, *extra])
    plan = commands.make_plan(
        "eval",
        cfg,
        device=device,
        task_name=task_name,
        evaluated=model_spec,
        retain_model=retain_model,
        retain_logs=retain_logs,
        no_reference=no_reference,
    )
    plan = commands.check(plan, log=_log, extra_files=(("retain logs", retain_logs),) if retain_logs else ())
    if retain_logs:  # a malformed or mismatched reference fails before anything is built or loaded
        from unlearn_lab.evaluation import check_reference
        from unlearn_lab.metrics.report import read_json

        check_reference(read_json(retain_logs), plan, retain_logs)
    commands.show(plan, dry_run=dry_run, log=_log, echo=click.echo)
    if dry_run:
        return
    result = commands.evaluate(plan, out_dir, _log)
    click.echo(table(result.summary))
    click.echo(f"wrote {result.out_dir}/TOFU_EVAL.json and TOFU_SUMMARY.json ({result.seconds:.1f} s)")


# ---------------------------------------------------------------------------------------------- run


def build_run_config(experiment, method, forget, retain, lr, epochs, overrides):
    from unlearn_lab.config import load_experiment
    from unlearn_lab.data.tofu import check_pair
    from unlearn_lab.methods import get_method, validate_hyperparams

    extra = [f"unlearn.method={method}"] if method else []
    extra += [f"data.forget_split={forget}"] if forget else []
    extra += [f"data.retain_split={retain}"] if retain else []
    extra += [f"unlearn.lr={lr}"] if lr is not None else []
    extra += [f"unlearn.epochs={epochs}"] if epochs is not None else []
    # --set method.beta=0.5 is shorthand for unlearn.method_args.beta=0.5
    sets = [f"unlearn.method_args.{s[len('method.') :]}" if s.startswith("method.") else s for s in overrides]
    cfg = load_experiment(experiment, [*sets, *extra])
    validate_hyperparams(get_method(cfg.unlearn.method), cfg.unlearn.method_args)
    check_pair(cfg.data.forget_split, cfg.data.retain_split)  # the splits' sizes are checked by the preflight
    return cfg


@main.command()
@click.option("--method", "-m", default=None, help="Unlearning method (see `unlearn-lab methods`).")
@click.option("--forget", default=None, help="Forget split: forget01, forget05 or forget10.")
@click.option("--retain", default=None, help="Retain split (default: the complement of --forget).")
@experiment_option
@click.option("--lr", type=float, default=None, help="Learning rate (> 0).")
@click.option("--epochs", type=int, default=None, help="Epochs (> 0).")
@set_option
@click.option(
    "--task-name",
    default=None,
    help="Run name; also saves/unlearn/<task> and saves/eval/<task> "
    "(default: <model>_<method>_<forget>_<config hash>).",
)
@click.option(
    "--eval-every",
    type=click.Choice(["epoch", "none"]),
    default="none",
    show_default=True,
    help="Also evaluate after every epoch (nested runs, step = epoch).",
)
@tracking_option
@device_option
@dry_run_option
@friendly
def run(
    method, forget, retain, experiment, lr, epochs, overrides, task_name, eval_every, tracking_uri, device, dry_run
):
    """Unlearn, save and evaluate one model as one MLflow run (nested evaluation runs)."""
    import os

    from unlearn_lab import commands
    from unlearn_lab.metrics.report import table
    from unlearn_lab.tracking.mlflow_tracker import check_reachable, resolve_uri
    from unlearn_lab.train import DivergedError

    cfg = build_run_config(experiment, method, forget, retain, lr, epochs, overrides)
    plan = commands.make_plan(
        "run", cfg, device=device, task_name=task_name, workers=int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    )
    plan = commands.check(plan, log=_log)
    check_reachable(resolve_uri(tracking_uri), create=False)  # before anything is printed, built or opened
    commands.show(plan, dry_run=dry_run, log=_log, echo=click.echo)
    if dry_run:
        return
    try:
        result, tracker, main_process = commands.run(plan, tracking_uri, eval_every, _log)
    except DivergedError as exc:
        click.echo(f"error: {exc}; the run is marked FAILED", err=True)
        sys.exit(1)
    if not main_process:
        return
    click.echo(table(result.summary))
    click.echo(f"model: {result.model_dir}   eval: {result.eval_dir}")
    click.echo(f"MLflow run id: {result.run_id}  ({tracker.uri})")
    click.echo(f"time: {result.seconds:.1f} s (training {result.train_seconds:.1f} s)")


heartbeat_option = click.option(
    "--heartbeat-seconds",
    type=int,
    default=60,
    show_default=True,
    help="RDB storages: trial heartbeat interval; a trial silent for 3x this is failed and replaced.",
)


@main.command()
@click.option("--method", "-m", default=None, help="Unlearning method (default: the experiment's).")
@click.option("--forget", default=None, help="Forget split (default: the experiment's).")
@click.option("--trials", type=int, default=20, show_default=True, help="COMPLETE trials wanted in the study.")
@experiment_option
@click.option(
    "--lr-range", default=None, help="LOW:HIGH, searched on a log scale (default: the experiment's sweep.lr)."
)
@click.option("--epochs-range", default=None, help="LOW:HIGH, integers (default: the experiment's sweep.epochs).")
@click.option(
    "--space",
    "space_file",
    default=None,
    metavar="FILE.yaml",
    help="Method hyperparameters to search: name: LOW:HIGH | log:LOW:HIGH | [choices].",
)
@click.option("--study", "study_name", default=None, help="Study name (default: <experiment>_<method>_<forget>).")
@click.option(
    "--storage",
    default=None,
    metavar="URL",
    help="journal:PATH (default mlruns/optuna/<study>.log), sqlite:///..., postgresql://...",
)
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes on this machine.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampler seed.")
@click.option("--min-utility", type=float, default=None, help="Constraint: model_utility >= this.")
@click.option(
    "--reuse-epochs",
    is_flag=True,
    help="Train the largest epoch count once per lr (schedule planned over it) and make every epoch's "
    "checkpoint a trial; runs whose utility collapses stop early.",
)
@click.option(
    "--collapse-utility",
    type=float,
    default=0.01,
    show_default=True,
    help="With --reuse-epochs: stop a run once model_utility falls below this.",
)
@heartbeat_option
@set_option
@tracking_option
@device_option
@dry_run_option
@friendly
def sweep(
    method,
    forget,
    trials,
    experiment,
    lr_range,
    epochs_range,
    space_file,
    study_name,
    storage,
    workers,
    seed,
    min_utility,
    reuse_epochs,
    collapse_utility,
    heartbeat_seconds,
    overrides,
    tracking_uri,
    device,
    dry_run,
):
    """Optuna search over lr and epochs (and --space) for the forget-quality vs model-utility trade-off."""
    from unlearn_lab import commands
    from unlearn_lab.methods import get_method, validate_hyperparams
    from unlearn_lab.sweep import run_sweep
    from unlearn_lab.sweep.space import build_space
    from unlearn_lab.sweep.study import SweepSpec, check_storage_url, default_storage, make_storage
    from unlearn_lab.tracking.mlflow_tracker import check_reachable, resolve_uri

    if trials <= 0:
        raise UsageError(f"--trials must be > 0, got {trials}")
    if workers <= 0:
        raise UsageError(f"--workers must be > 0, got {workers}")
    if min_utility is not None and not 0 <= min_utility <= 1:
        raise UsageError(f"--min-utility must be in [0, 1], got {min_utility}")
    cfg = build_run_config(experiment, method, forget, None, None, None, overrides)
    declared_lr, declared_epochs = cfg.sweep.ranges(cfg.unlearn.method)
    space = build_space(
        lr_range or declared_lr,
        epochs_range or declared_epochs,
        space_file,
        validate_hyperparams(get_method(cfg.unlearn.method), cfg.unlearn.method_args),
        declared=cfg.sweep.space,
    )
    name = study_name or f"{cfg.name}_{cfg.unlearn.method}_{cfg.data.forget_split}"
    storage = storage or default_storage(name)
    if heartbeat_seconds <= 0:
        raise UsageError(f"--heartbeat-seconds must be > 0, got {heartbeat_seconds}")
    plan = commands.make_plan("sweep", cfg, device=device, workers=workers)
    plan = commands.check(plan, log=_log)
    check_reachable(resolve_uri(tracking_uri), create=False)  # before the study's storage is created
    if dry_run:
        check_storage_url(storage)
        commands.show(plan, dry_run=True, log=_log, echo=click.echo)
        click.echo(
            f"  sweep     study {name}: {trials} trials over {', '.join(p.describe() for p in space.params)}"
            f" on {workers} worker(s); storage {storage}"
        )
        return
    make_storage(storage, heartbeat_seconds)  # malformed URLs fail here, before anything is printed or built
    commands.show(plan, dry_run=False, log=_log, echo=click.echo)
    commands.prepare(plan, _log)  # once, before the workers start (they find the models cached)
    sets = tuple(s for s in overrides if not s.startswith(("unlearn.lr=", "unlearn.epochs=")))
    spec = SweepSpec(
        cfg=cfg,
        space=space,
        study_name=name,
        storage=storage,
        trials=trials,
        seed=seed,
        min_utility=min_utility,
        tracking_uri=tracking_uri,
        experiment_arg=experiment,
        extra_sets=sets,
        reuse_epochs=reuse_epochs,
        collapse_utility=collapse_utility,
        heartbeat=heartbeat_seconds,
        device=device,
    )
    result = run_sweep(spec, workers=workers, log=lambda msg: click.echo(msg, err=True))
    click.echo(
        f"study {name}: {result.complete} complete, {result.failed} failed trials, "
        f"{result.epochs_saved} training epochs saved; Pareto front:"
    )
    click.echo(result.table)
    click.echo(f"reports: {result.out_dir}   MLflow parent run: {result.parent_run_id}")


@main.command()
@click.option("--study", "study_name", required=True, help="The study a `sweep` command created.")
@click.option(
    "--storage", required=True, metavar="URL", help="Its storage (postgresql://..., sqlite:///..., journal:PATH)."
)
@click.option(
    "--wait",
    "wait_seconds",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Wait up to this many seconds for the sweep to create the study (array jobs start at once).",
)
@heartbeat_option
@tracking_option
@friendly
def worker(study_name, storage, wait_seconds, heartbeat_seconds, tracking_uri):
    """Join an existing sweep from any machine: run its trials until the study has enough. Trials are tracked
    where the sweep tracks them (the study records the store) unless --tracking-uri says otherwise."""
    from unlearn_lab.sweep import join_sweep

    if heartbeat_seconds <= 0:
        raise UsageError(f"--heartbeat-seconds must be > 0, got {heartbeat_seconds}")
    result = join_sweep(
        study_name,
        storage,
        tracking_uri=tracking_uri,
        wait_seconds=wait_seconds,
        heartbeat=heartbeat_seconds,
        log=lambda msg: click.echo(msg, err=True),
    )
    click.echo(f"worker: {result.complete} complete, {result.failed} failed trials")
    if result.finished is not None:
        click.echo(result.finished.table)


@main.command()
def methods():
    """List the unlearning methods with their hyperparameters and defaults."""
    from unlearn_lab.methods import METHODS

    for name, spec in METHODS.items():
        params = ", ".join(f"{k}={v}" for k, v in spec.defaults.items()) or "(none)"
        needs = [
            n
            for n, on in (
                ("retain", spec.needs_retain),
                ("reference model", spec.needs_reference),
                ("idk answers", spec.needs_alternate),
            )
            if on
        ]
        click.echo(f"{name:<11} {params}")
        click.echo(f"{'':<11} needs: {', '.join(needs) or 'forget only'}; paper: {spec.paper}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback by default).")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 16),
    help="Server worker processes (each holds ~0.3 GB; one serves a researcher's browser).",
)
@tracking_option
@friendly
def ui(host, port, workers, tracking_uri):
    """Start the MLflow UI on the project's store; prints the experiment page's URL."""
    from unlearn_lab.tracking.mlflow_tracker import ui_command

    url, argv, env = ui_command(tracking_uri, host, port, workers)
    click.echo(f"MLflow UI: {url}", err=True)
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    main()
