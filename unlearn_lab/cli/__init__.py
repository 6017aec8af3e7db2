"""Thin click front end: parse -> config -> plan -> one call into `commands`. Heavy imports happen there.

Errors end in one place (errors.ProjectGroup): bad input is one line `error: ...` and exit code 2, a run that
could not finish exit code 1, Ctrl-C or SIGTERM exit code 130; click's own usage errors read the same. Each module
of this package declares the commands of one concern on the group in `base`; importing them registers them.
"""

from __future__ import annotations

from unlearn_lab.cli import report, runs, sweeps, tools  # noqa: F401 - registers the commands on `main`
from unlearn_lab.cli.base import main

__all__ = ["main"]
