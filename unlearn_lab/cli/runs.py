"""`prepare`, `eval` and `run`: the commands that resolve one plan and run its stages."""

from __future__ import annotations

from typing import Any

import click

from unlearn_lab import commands
from unlearn_lab.cli.base import POSITIVE, main, plan_options, tracking_option
from unlearn_lab.config import load_experiment


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
    help="Data source (default: the experiment's): synthetic, a folder of the benchmark's files, or a hub data "
    "set (hf:locuslab/TOFU, hf:muse-bench/MUSE-News).",
)
@click.option("--forget", "forget_split", help="Forget split (default: the experiment's).")
@click.option("--holdout", "holdout_split", help="Holdout split for MIA (default: the experiment's).")
@click.option(
    "--retain-model",
    metavar="PATH|HUB-ID",
    help="Retain model for the forget_quality / privleak reference (default: the experiment's).",
)
@click.option(
    "--retain-logs",
    metavar="EVAL.json",
    help="A retain model's TOFU_EVAL.json / MUSE_EVAL.json to use as the reference instead.",
)
@click.option(
    "--no-reference",
    is_flag=True,
    help="Skip the metrics that need a retain reference (TOFU: forget_quality, privleak; MUSE: privleak).",
)
@click.option("--metrics", help="default | all | comma-separated metric names.")
@click.option("--out", "out_dir", metavar="DIR", help="Output folder (default: saves/eval/<task>).")
@click.option("--task-name", help="Name for the default output folder.")
@tracking_option
def eval_command(experiment: str | None, overrides: tuple[str, ...], device: str, dry_run: bool, **given: Any) -> None:
    """Evaluate a model on the benchmark's suite; writes TOFU_EVAL.json and TOFU_SUMMARY.json (MUSE: MUSE_*)."""
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
