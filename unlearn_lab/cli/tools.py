"""`data`, `methods`, `ui`: inspecting data and methods, browsing runs."""

from __future__ import annotations

import click

from unlearn_lab import commands
from unlearn_lab.cli.base import POSITIVE, data_options, main, tracking_option


@main.group()
def data() -> None:
    """Inspect a benchmark's splits (TOFU, MUSE: --experiment) from any source."""


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
