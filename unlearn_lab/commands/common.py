"""What every command shares once click has parsed it: where output goes, the plan, the checks before anything
runs, the models prepared, SIGTERM handled like Ctrl-C.

Order for every command: config (validated) -> plan (no weights) -> preflight (every missing piece at once, and
every output folder writable: exit 2) -> tracking store (run, sweep) -> the plan printed (`--dry-run` stops
here) -> threads -> prepare -> the command's stages. Results go to stdout, progress to stderr.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from unlearn_lab.config import ExperimentConfig

if TYPE_CHECKING:  # the modules behind these import torch: loaded by the stages that need them
    from unlearn_lab.plan import Plan


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
        from unlearn_lab.estimates import describe

        (say if dry_run else log)(describe(plan))


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


def on_signals() -> None:
    from unlearn_lab.runtime import interrupt_on_signals

    interrupt_on_signals()
