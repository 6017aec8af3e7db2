"""`sweep` and `worker`: the Optuna study and the processes that join it."""

from __future__ import annotations

from typing import Any

import click

from unlearn_lab import commands
from unlearn_lab.cli.base import POSITIVE, heartbeat_option, main, plan_options, tracking_option


@main.command()
@click.option("--method", "-m", help="Unlearning method (default: the experiment's).")
@click.option(
    "--methods",
    metavar="A,B,...|all",
    help="Compare methods: one study per method with the same budget, then the leaderboard (--joint: one study).",
)
@click.option("--joint", is_flag=True, help="With --methods: one study that searches the method too.")
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
@click.option(
    "--startup",
    type=click.Choice(["grid", "random"]),
    default="grid",
    show_default=True,
    help="The sampler's first trials after the default config: the 10-run lr x epochs grid, or random draws.",
)
@click.option(
    "--objectives",
    metavar="FORGET,UTILITY",
    help="The two metrics the study optimises, from the benchmark's headline metrics [default: TOFU "
    "forget_quality,model_utility; MUSE forget_verbmem_ROUGE,retain_knowmem_ROUGE].",
)
@click.option("--min-utility", type=click.FloatRange(0, 1), help="Constraint: the utility objective >= this.")
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
    help="Stop a trial after the epoch its utility objective falls below this [default: sweep.collapse_utility, 0.01].",
)
@click.option("--repeats", type=POSITIVE, metavar="K", help="Judge the front on K seeds [default: sweep.repeats, 3].")
@heartbeat_option
@tracking_option
def sweep(experiment: str | None, overrides: tuple[str, ...], device: str, dry_run: bool, **given: Any) -> None:
    """Optuna search over lr and epochs (and --space) for the best trade-off between forgetting and utility
    (TOFU: forget_quality vs model_utility; MUSE: forget_verbmem_ROUGE vs retain_knowmem_ROUGE; --objectives)."""
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
