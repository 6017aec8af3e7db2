"""What each command does once click has parsed it, one module per concern: `common` (the plan, the checks, the
models, output), `inspect` (data, methods, ui), `models` (prepare, eval), `runs` (run), `sweeps` (sweep, worker).
The names below are the commands' entry points, as the CLI calls them."""

from __future__ import annotations

from unlearn_lab.commands.common import build_models, check, launched_processes, log, make_plan, say, show
from unlearn_lab.commands.inspect import data_show, data_splits, methods, ui
from unlearn_lab.commands.models import EvalArgs, evaluate, prepare
from unlearn_lab.commands.runs import RunArgs, run, run_config
from unlearn_lab.commands.sweeps import SweepArgs, sweep, worker

__all__ = [
    "EvalArgs", "RunArgs", "SweepArgs", "build_models", "check", "data_show", "data_splits", "evaluate",
    "launched_processes", "log", "make_plan", "methods", "prepare", "run", "run_config", "say", "show", "sweep",
    "ui", "worker",
]  # fmt: skip
