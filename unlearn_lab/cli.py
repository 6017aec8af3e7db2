"""Thin click front end: parse -> config -> call. Heavy imports happen inside the commands."""
from __future__ import annotations

import functools
import sys

import click

from unlearn_lab.errors import UsageError


def friendly(fn):
    """Usage errors become one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UsageError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


experiment_option = click.option(
    "--experiment", "-e", default=None, metavar="FILE",
    help="Experiment YAML (default: experiments/embedded/default.yaml, the embedded world).",
)
set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a config value, e.g. --set finetune.epochs=5 (repeatable).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """unlearn-lab: experiment-tracked LLM unlearning on the TOFU benchmark."""


# --------------------------------------------------------------------------------------------- data


@main.group()
def data():
    """Inspect TOFU splits from any source."""


data_option = click.option("--data", "source", default=None, metavar="SOURCE",
                           help="synthetic (default), a folder of TOFU files, or hf:locuslab/TOFU.")
authors_option = click.option("--authors", type=int, default=None,
                              help="World size (synthetic) or a consistent author subset (folder/hf).")


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
    from unlearn_lab.data.tofu import SPLITS, split_summary

    src = _source(source, authors, experiment)
    click.echo(f"source: {src.name}")
    click.echo(f"{'split':<24} {'records':>8}  fields")
    for split in SPLITS:
        try:
            n, keys = split_summary(src, split)
        except UsageError as exc:
            click.echo(f"{split:<24} {'-':>8}  ({exc})")
            continue
        click.echo(f"{split:<24} {n:>8}  {', '.join(keys)}")


@data.command("show")
@click.argument("split")
@click.option("-n", "count", type=int, default=3, show_default=True, help="Number of records.")
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
@friendly
def prepare(experiment, overrides):
    """Build (or find in the cache) the base, target and retain models."""
    import time

    from unlearn_lab.config import load_experiment
    from unlearn_lab.models.prepare import prepare as run_prepare

    from unlearn_lab.runtime import configure_threads

    cfg = load_experiment(experiment, overrides)
    configure_threads()
    start = time.perf_counter()
    result = run_prepare(cfg, log=lambda msg: click.echo(msg, err=True))
    click.echo(f"target: {result.target}")
    click.echo(f"retain: {result.retain}")
    state = f"built {', '.join(result.built)}" if result.built else "all cached"
    click.echo(f"prepare: {state} in {time.perf_counter() - start:.1f} s")


# --------------------------------------------------------------------------------------------- eval


@main.command("eval")
@click.option("--model", "model_spec", required=True, metavar="PATH|HUB-ID",
              help="Model folder, hub id, .gguf file, or 'target' / 'retain' (the experiment's prepared models).")
@experiment_option
@click.option("--forget", "forget_split", default=None, help="Forget split (default: the experiment's).")
@click.option("--holdout", "holdout_split", default=None, help="Holdout split for MIA (default: the experiment's).")
@click.option("--retain-model", default=None, metavar="PATH|HUB-ID",
              help="Retain model for the forget_quality / privleak reference (default: the experiment's).")
@click.option("--retain-logs", default=None, metavar="TOFU_EVAL.json",
              help="A retain model's TOFU_EVAL.json to use as the reference instead.")
@click.option("--metrics", default=None, help="default | all | comma-separated metric names.")
@click.option("--out", "out_dir", default=None, metavar="DIR", help="Output folder (default: saves/eval/<task>).")
@click.option("--task-name", default=None, help="Name for the default output folder.")
@set_option
@friendly
def eval_command(model_spec, experiment, forget_split, holdout_split, retain_model, retain_logs, metrics,
                 out_dir, task_name, overrides):
    """Evaluate a model on the TOFU suite; writes TOFU_EVAL.json and TOFU_SUMMARY.json."""
    from unlearn_lab.config import load_experiment
    from unlearn_lab.data.tofu import check_pair
    from unlearn_lab.evaluation import evaluate_model, load_for_eval, resolve_model
    from unlearn_lab.metrics.report import table
    from unlearn_lab.metrics.suite import parse_metrics
    from unlearn_lab.runtime import configure_threads

    extra = [f"data.forget_split={forget_split}"] if forget_split else []
    extra += [f"data.holdout_split={holdout_split}"] if holdout_split else []
    extra += [f"eval.metrics={metrics}"] if metrics else []
    if retain_model and retain_logs:
        raise UsageError("give either --retain-model or --retain-logs, not both")
    cfg = load_experiment(experiment, [*overrides, *extra])
    check_pair(cfg.data.forget_split, None)
    parse_metrics(cfg.eval.metrics)
    configure_threads()
    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    spec = resolve_model(model_spec, cfg, log)
    if retain_model:
        retain_model = resolve_model(retain_model, cfg, log)
    model, tokenizer = load_for_eval(spec, cfg)
    name = task_name or f"{cfg.name}_{model_spec if model_spec in ('target', 'retain') else 'model'}_{cfg.data.forget_split}"
    out = out_dir or f"saves/eval/{name}"
    result = evaluate_model(cfg, model, tokenizer, retain_model=retain_model, retain_logs=retain_logs,
                            out_dir=out, log=log)
    click.echo(table(result.summary))
    click.echo(f"wrote {out}/TOFU_EVAL.json and TOFU_SUMMARY.json ({result.seconds:.1f} s)")


# ---------------------------------------------------------------------------------------------- run


tracking_option = click.option("--tracking-uri", default=None, metavar="URI",
                               help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db).")


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
    sets = [f"unlearn.method_args.{s[len('method.'):]}" if s.startswith("method.") else s for s in overrides]
    cfg = load_experiment(experiment, [*sets, *extra])
    validate_hyperparams(get_method(cfg.unlearn.method), cfg.unlearn.method_args)
    check_pair(cfg.data.forget_split, cfg.data.retain_split)
    return cfg


@main.command()
@click.option("--method", "-m", default=None, help="Unlearning method (see `unlearn-lab methods`).")
@click.option("--forget", default=None, help="Forget split: forget01, forget05 or forget10.")
@click.option("--retain", default=None, help="Retain split (default: the complement of --forget).")
@experiment_option
@click.option("--lr", type=float, default=None, help="Learning rate (> 0).")
@click.option("--epochs", type=int, default=None, help="Epochs (> 0).")
@set_option
@click.option("--task-name", default=None, help="Run name; also saves/unlearn/<task> and saves/eval/<task>.")
@click.option("--eval-every", type=click.Choice(["epoch", "none"]), default="none", show_default=True,
              help="Also evaluate after every epoch (nested runs, step = epoch).")
@tracking_option
@friendly
def run(method, forget, retain, experiment, lr, epochs, overrides, task_name, eval_every, tracking_uri):
    """Unlearn, save and evaluate one model as one MLflow run (nested evaluation runs)."""
    from unlearn_lab.experiment import RunOptions, run_experiment
    from unlearn_lab.metrics.report import table
    from unlearn_lab.runtime import configure_threads
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker
    from unlearn_lab.train import DivergedError

    import os

    from unlearn_lab.tracking.memory import MemoryTracker

    cfg = build_run_config(experiment, method, forget, retain, lr, epochs, overrides)
    # under `accelerate launch`, only rank 0 tracks (the other ranks train their shard and stop)
    main_process = int(os.environ.get("RANK", "0")) == 0
    tracker = MlflowTracker(tracking_uri) if main_process else MemoryTracker()  # checks the store first
    configure_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    task = task_name or f"{cfg.name}_{cfg.unlearn.method}_{cfg.data.forget_split}"
    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    try:
        result = run_experiment(cfg, tracker, RunOptions(task_name=task, eval_every=eval_every), log=log)
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
    "--heartbeat-seconds", type=int, default=60, show_default=True,
    help="RDB storages: trial heartbeat interval; a trial silent for 3x this is failed and replaced.")


@main.command()
@click.option("--method", "-m", default=None, help="Unlearning method (default: the experiment's).")
@click.option("--forget", default=None, help="Forget split (default: the experiment's).")
@click.option("--trials", type=int, default=20, show_default=True, help="COMPLETE trials wanted in the study.")
@experiment_option
@click.option("--lr-range", default="1e-6:1e-3", show_default=True, help="LOW:HIGH, searched on a log scale.")
@click.option("--epochs-range", default="1:10", show_default=True, help="LOW:HIGH, integers.")
@click.option("--space", "space_file", default=None, metavar="FILE.yaml",
              help="Method hyperparameters to search: name: LOW:HIGH | log:LOW:HIGH | [choices].")
@click.option("--study", "study_name", default=None, help="Study name (default: <experiment>_<method>_<forget>).")
@click.option("--storage", default=None, metavar="URL",
              help="journal:PATH (default mlruns/optuna/<study>.log), sqlite:///..., postgresql://...")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes on this machine.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampler seed.")
@click.option("--min-utility", type=float, default=None, help="Constraint: model_utility >= this.")
@click.option("--reuse-epochs", is_flag=True,
              help="Train the largest epoch count once per lr (schedule planned over it) and make every epoch's "
                   "checkpoint a trial; runs whose utility collapses stop early.")
@click.option("--collapse-utility", type=float, default=0.01, show_default=True,
              help="With --reuse-epochs: stop a run once model_utility falls below this.")
@heartbeat_option
@set_option
@tracking_option
@friendly
def sweep(method, forget, trials, experiment, lr_range, epochs_range, space_file, study_name, storage, workers,
          seed, min_utility, reuse_epochs, collapse_utility, heartbeat_seconds, overrides, tracking_uri):
    """Optuna search over lr and epochs (and --space) for the forget-quality vs model-utility trade-off."""
    from unlearn_lab.methods import get_method, validate_hyperparams
    from unlearn_lab.sweep import run_sweep
    from unlearn_lab.sweep.space import build_space
    from unlearn_lab.sweep.study import SweepSpec, default_storage, make_storage

    if trials <= 0:
        raise UsageError(f"--trials must be > 0, got {trials}")
    if workers <= 0:
        raise UsageError(f"--workers must be > 0, got {workers}")
    if min_utility is not None and not 0 <= min_utility <= 1:
        raise UsageError(f"--min-utility must be in [0, 1], got {min_utility}")
    cfg = build_run_config(experiment, method, forget, None, None, None, overrides)
    space = build_space(lr_range, epochs_range, space_file,
                        validate_hyperparams(get_method(cfg.unlearn.method), cfg.unlearn.method_args))
    name = study_name or f"{cfg.name}_{cfg.unlearn.method}_{cfg.data.forget_split}"
    storage = storage or default_storage(name)
    if heartbeat_seconds <= 0:
        raise UsageError(f"--heartbeat-seconds must be > 0, got {heartbeat_seconds}")
    make_storage(storage, heartbeat_seconds)  # malformed URLs fail here, before anything is created
    sets = tuple(s for s in overrides if not s.startswith(("unlearn.lr=", "unlearn.epochs=")))
    spec = SweepSpec(cfg=cfg, space=space, study_name=name, storage=storage, trials=trials, seed=seed,
                     min_utility=min_utility, tracking_uri=tracking_uri, experiment_arg=experiment, extra_sets=sets,
                     reuse_epochs=reuse_epochs, collapse_utility=collapse_utility, heartbeat=heartbeat_seconds)
    result = run_sweep(spec, workers=workers, log=lambda msg: click.echo(msg, err=True))
    click.echo(f"study {name}: {result.complete} complete, {result.failed} failed trials, "
               f"{result.epochs_saved} training epochs saved; Pareto front:")
    click.echo(result.table)
    click.echo(f"reports: {result.out_dir}   MLflow parent run: {result.parent_run_id}")


@main.command()
@click.option("--study", "study_name", required=True, help="The study a `sweep` command created.")
@click.option("--storage", required=True, metavar="URL", help="Its storage (postgresql://..., sqlite:///..., journal:PATH).")
@heartbeat_option
@tracking_option
@friendly
def worker(study_name, storage, heartbeat_seconds, tracking_uri):
    """Join an existing sweep from any machine: run its trials until the study has enough."""
    from pathlib import Path

    from unlearn_lab.sweep import finish_sweep
    from unlearn_lab.sweep.study import budget_left, make_storage, open_study, reap, spec_from_study
    from unlearn_lab.sweep.worker import run_worker
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker

    if storage.startswith("journal:") and not Path(storage[len("journal:"):]).is_file():
        raise UsageError(f"no study journal at {storage[len('journal:'):]}; start the study with unlearn-lab sweep")
    make_storage(storage, heartbeat_seconds)
    spec = spec_from_study(study_name, storage, tracking_uri, heartbeat_seconds)
    tracker = MlflowTracker(tracking_uri)
    study = open_study(spec)
    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    reap(study, tracker, log)
    parent = study.user_attrs.get("mlflow_parent_run_id")
    if not parent:
        raise UsageError(f"study '{study_name}' has no sweep run yet; start it with unlearn-lab sweep first")
    counts = run_worker(spec, parent, log=log)
    click.echo(f"worker: {counts['complete']} complete, {counts['failed']} failed trials")
    if budget_left(study, spec.trials) <= 0 and not [t for t in study.trials if t.state.name == "RUNNING"]:
        click.echo(finish_sweep(study, spec, tracker, parent).table)


@main.command()
def methods():
    """List the unlearning methods with their hyperparameters and defaults."""
    from unlearn_lab.methods import METHODS

    for name, spec in METHODS.items():
        params = ", ".join(f"{k}={v}" for k, v in spec.defaults.items()) or "(none)"
        needs = [n for n, on in (("retain", spec.needs_retain), ("reference model", spec.needs_reference),
                                 ("idk answers", spec.needs_alternate)) if on]
        click.echo(f"{name:<11} {params}")
        click.echo(f"{'':<11} needs: {', '.join(needs) or 'forget only'}; paper: {spec.paper}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback by default).")
@click.option("--port", default=5000, show_default=True, type=int)
@tracking_option
@friendly
def ui(host, port, tracking_uri):
    """Start the MLflow UI on the project's store."""
    import os

    from unlearn_lab.tracking.mlflow_tracker import check_reachable, resolve_uri

    uri = resolve_uri(tracking_uri)
    check_reachable(uri)
    click.echo(f"MLflow UI for {uri} on http://{host}:{port}", err=True)
    # the UI needs no job executor; without it the server uses ~0.5 GB instead of ~1.5 GB (machine notes)
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execvp(sys.executable, [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                               "--host", host, "--port", str(port)])


if __name__ == "__main__":
    main()
