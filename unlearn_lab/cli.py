"""Thin click front end: parse -> config -> plan -> one call into `commands`. Heavy imports happen there.

Errors end in one place (errors.ProjectGroup): bad input is one line `error: ...` and exit code 2, a run that
could not finish exit code 1, Ctrl-C or SIGTERM exit code 130; click's own usage errors read the same.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from unlearn_lab import commands
from unlearn_lab.config import load_experiment
from unlearn_lab.errors import ProjectGroup

F = TypeVar("F", bound=Callable[..., Any])
POSITIVE = click.IntRange(min=1)
DEVICES = click.Choice(["auto", "cpu", "cuda", "mps"])


def options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several click options as one decorator, listed in --help in the order given."""
    return lambda fn: functools.reduce(lambda f, decorate: decorate(f), reversed(decorators), fn)


experiment_option = click.option(
    "--experiment", "-e", metavar="FILE", help="Experiment YAML (default: experiments/embedded/default.yaml)."
)
tracking_option = click.option(
    "--tracking-uri", metavar="URI", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)."
)
heartbeat_option = click.option(
    "--heartbeat-seconds", type=POSITIVE, default=60, help="RDB storages: a trial silent for 3x this is failed."
)
# every command that resolves a plan: prepare, eval, run, sweep
plan_options = options(
    experiment_option,
    click.option(
        "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value (repeatable)."
    ),
    click.option(
        "--device", type=DEVICES, default="auto", help="Where every stage runs (auto: CUDA, else MPS, else CPU)."
    ),
    click.option(
        "--dry-run",
        is_flag=True,
        help="Print the plan, check every piece is reachable; load no weights, track nothing.",
    ),
)
data_options = options(
    click.option(
        "--data", "source", metavar="SOURCE", help="synthetic (default), a folder of TOFU files, or hf:locuslab/TOFU."
    ),
    click.option("--authors", type=int, help="World size (synthetic) or a consistent author subset (folder/hf)."),
    experiment_option,
)


@click.group(cls=ProjectGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def main() -> None:
    """unlearn-lab: experiment-tracked LLM unlearning on the TOFU benchmark."""


@main.group()
def data() -> None:
    """Inspect TOFU splits from any source."""


@data.command("splits")
@data_options
def data_splits(source: str | None, authors: int | None, experiment: str | None) -> None:
    """Print each split's size and fields."""
    commands.data_splits(source, authors, experiment)


@data.command("show")
@click.argument("split")
@click.option("-n", "count", type=POSITIVE, default=3, help="Number of records.")
@data_options
def data_show(split: str, count: int, source: str | None, authors: int | None, experiment: str | None) -> None:
    """Print the first records of SPLIT."""
    commands.data_show(split, count, source, authors, experiment)


@main.command()
@plan_options
def prepare(experiment: str | None, overrides: tuple[str, ...], device: str, dry_run: bool) -> None:
    """Build (or find in the cache) the base, target and retain models."""
    commands.prepare(
        commands.make_plan("prepare", load_experiment(experiment, overrides), device=device), dry_run=dry_run
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
@plan_options
@click.option(
    "--data",
    "data_source",
    metavar="SOURCE",
    help="Data source (default: the experiment's): synthetic, a folder of TOFU files, or hf:locuslab/TOFU.",
)
@click.option("--forget", "forget_split", help="Forget split (default: the experiment's).")
@click.option("--holdout", "holdout_split", help="Holdout split for MIA (default: the experiment's).")
@click.option(
    "--retain-model",
    metavar="PATH|HUB-ID",
    help="Retain model for the forget_quality / privleak reference (default: the experiment's).",
)
@click.option(
    "--retain-logs", metavar="TOFU_EVAL.json", help="A retain model's TOFU_EVAL.json to use as the reference instead."
)
@click.option("--no-reference", is_flag=True, help="Skip forget_quality and privleak (they need a retain reference).")
@click.option("--metrics", help="default | all | comma-separated metric names.")
@click.option("--out", "out_dir", metavar="DIR", help="Output folder (default: saves/eval/<task>).")
@click.option("--task-name", help="Name for the default output folder.")
@tracking_option
def eval_command(experiment: str | None, overrides: tuple[str, ...], device: str, dry_run: bool, **given: Any) -> None:
    """Evaluate a model on the TOFU suite; writes TOFU_EVAL.json and TOFU_SUMMARY.json."""
    args = commands.EvalArgs(**given)
    commands.evaluate(args.plan(args.config(experiment, overrides), device), args, dry_run=dry_run)


@main.command()
@click.option("--method", "-m", help="Unlearning method (see `unlearn-lab methods`).")
@click.option("--forget", help="Forget split: forget01, forget05 or forget10.")
@click.option("--retain", help="Retain split (default: the complement of --forget).")
@plan_options
@click.option("--lr", type=float, help="Learning rate (> 0).")
@click.option("--epochs", type=int, help="Epochs (> 0).")
@click.option(
    "--task-name",
    help="Run name; also saves/unlearn/<task> and saves/eval/<task> (default: <model>_<method>_<forget>_<hash>).",
)
@click.option(
    "--eval-every",
    type=click.Choice(["epoch", "none"]),
    default="none",
    help="Also evaluate after every epoch (nested runs, step = epoch).",
)
@click.option(
    "--seeds", metavar="0,1,2", help="Run the setting once per seed: one parent run, mean ± sd of each metric."
)
@click.option("--repeats", type=POSITIVE, metavar="K", help="--seeds of K consecutive seeds from unlearn.seed.")
@tracking_option
def run(experiment: str | None, overrides: tuple[str, ...], device: str, dry_run: bool, **given: Any) -> None:
    """Unlearn, save and evaluate one model as one MLflow run (nested evaluation runs); with --seeds or --repeats,
    the setting once per seed under one parent run that carries each metric's spread."""
    args = commands.RunArgs(**given)
    commands.run(args.plan(args.config(experiment, overrides), device), args, dry_run=dry_run)


@main.command()
@click.option("--method", "-m", help="Unlearning method (default: the experiment's).")
@click.option("--methods", metavar="A,B,...", help="Search the method too, each with its own lr/epochs ranges.")
@click.option("--forget", help="Forget split (default: the experiment's).")
@click.option("--trials", type=POSITIVE, default=20, help="COMPLETE trials wanted in the study.")
@plan_options
@click.option("--lr-range", help="LOW:HIGH, searched on a log scale (default: the experiment's sweep.lr).")
@click.option("--epochs-range", help="LOW:HIGH, integers (default: the experiment's sweep.epochs).")
@click.option(
    "--space",
    "space_file",
    metavar="FILE.yaml",
    help="Method hyperparameters: name: LOW:HIGH | log:LOW:HIGH | [choices].",
)
@click.option("--study", "study_name", help="Study name (default: <experiment>_<method>_<forget>).")
@click.option(
    "--storage", metavar="URL", help="journal:PATH (default mlruns/optuna/<study>.log), sqlite:///..., postgresql://..."
)
@click.option("--workers", type=POSITIVE, default=1, help="Worker processes on this machine.")
@click.option("--seed", type=int, default=0, help="Sampler seed.")
@click.option("--min-utility", type=click.FloatRange(0, 1), help="Constraint: model_utility >= this.")
@click.option(
    "--reuse-epochs",
    is_flag=True,
    help="Train the largest epoch count once per lr (schedule planned over it) and make every epoch's "
    "checkpoint a trial; runs whose utility collapses stop early.",
)
@click.option(
    "--collapse-utility",
    type=click.FloatRange(0, 1),
    default=None,
    help="Stop a trial after the epoch its model_utility falls below this [default: sweep.collapse_utility, 0.01].",
)
@click.option("--repeats", type=POSITIVE, metavar="K", help="Judge the front on K seeds [default: sweep.repeats, 3].")
@heartbeat_option
@tracking_option
def sweep(experiment: str | None, overrides: tuple[str, ...], device: str, dry_run: bool, **given: Any) -> None:
    """Optuna search over lr and epochs (and --space) for the forget-quality vs model-utility trade-off."""
    args = commands.SweepArgs(**given)
    cfg = commands.run_config(experiment, overrides, method=args.method, forget=args.forget)
    plan = commands.make_plan("sweep", cfg, device=device, workers=args.workers)
    commands.sweep(plan, args, experiment=experiment, overrides=overrides, device=device, dry_run=dry_run)


@main.command()
@click.option("--study", "study_name", required=True, help="The study a `sweep` command created.")
@click.option("--storage", required=True, metavar="URL", help="Its storage (postgresql://, sqlite:///, journal:PATH).")
@click.option(
    "--wait",
    "wait_seconds",
    type=click.IntRange(min=0),
    default=0,
    help="Wait up to this many seconds for the sweep to create the study (array jobs start at once).",
)
@heartbeat_option
@tracking_option
def worker(study_name: str, storage: str, wait_seconds: int, heartbeat_seconds: int, tracking_uri: str | None) -> None:
    """Join an existing sweep from any machine: run its trials until the study has enough. Trials are tracked
    where the sweep tracks them (the study records the store) unless --tracking-uri says otherwise."""
    commands.worker(
        study_name, storage, wait_seconds=wait_seconds, heartbeat=heartbeat_seconds, tracking_uri=tracking_uri
    )


@main.command()
def methods() -> None:
    """List the unlearning methods with their hyperparameters, defaults and bounds."""
    commands.methods()


@main.command()
@click.option("--host", default="127.0.0.1", help="Bind address (loopback by default).")
@click.option("--port", default=5000, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=1,
    type=click.IntRange(1, 16),
    help="Server worker processes (each holds ~0.3 GB; one serves a researcher's browser).",
)
@tracking_option
def ui(host: str, port: int, workers: int, tracking_uri: str | None) -> None:
    """Start the MLflow UI on the project's store; prints the experiment page's URL."""
    commands.ui(host, port, workers, tracking_uri)


if __name__ == "__main__":
    main()
