"""The command group and the options several commands share (parsing only)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

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
        "--data",
        "source",
        metavar="SOURCE",
        help="synthetic (default), a folder of the benchmark's files, or a hub data set (hf:locuslab/TOFU, "
        "hf:muse-bench/MUSE-News).",
    ),
    click.option("--authors", type=int, help="World size (synthetic) or a consistent author subset (folder/hf)."),
    experiment_option,
)


@click.group(cls=ProjectGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def main() -> None:
    """unlearn-lab: experiment-tracked LLM unlearning on the TOFU and MUSE benchmarks."""
