"""The errors that reach users, and the one place that says how each ends: a line on stderr and an exit code.

`UsageError` (bad input: exit 2) and `RunFailed` (a run that could not finish: exit 1) are raised anywhere in
the package; `ProjectGroup` hands them, Ctrl-C / SIGTERM (exit 130) and click's own usage errors to click as
`Exit`, whose `show()` prints the one line, so click's standalone mode prints it and exits with its code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import IO, Any

import click


class UsageError(ValueError):
    """Bad input from the user: unknown name, missing file, malformed record, impossible split...

    The message is a single line that says what was wrong and what is accepted. The CLI prints it
    as ``error: <message>`` and exits with code 2; nothing is written before it is raised.
    """


class RunFailed(RuntimeError):
    """A run or sweep that could not finish for a reason outside the input (a lost tracking server, worker
    processes that failed, a diverged loss). The CLI prints ``error: <message>`` and exits with code 1."""


def unknown(what: str, name: str, accepted: Iterable[str], *, of: str = "", listed: str | None = None) -> UsageError:
    """The one message for a name no registry knows: `unknown <what> 'name' [for <of>]; did you mean 'x'?
    accepted: ...`.

    Close matches are found case-insensitively (`gradascent` suggests `GradAscent`), for a dotted name also by its
    last part (`unlearn.lrr` suggests `lr`); `listed` replaces the accepted list in the message where it is long
    or needs words around it."""
    import difflib

    options = list(accepted)
    by_lower = {o.lower(): o for o in options}
    match = lambda text: difflib.get_close_matches(text.lower(), list(by_lower), n=1, cutoff=0.6)
    close = match(name) or match(name.rsplit(".", 1)[-1])
    hint = f"did you mean '{by_lower[close[0]]}'? " if close else ""
    owner = f" for {of}" if of else ""
    return UsageError(f"unknown {what} '{name}'{owner}; {hint}accepted: {listed or ', '.join(options)}")


# ------------------------------------------------------------------------------------- the CLI's ending

INTERRUPTED = (
    "interrupted ({}): any running MLflow run was marked KILLED and any running sweep trial FAIL; "
    "rerun the same command to resume"
)


class Exit(click.ClickException):
    """How a command ends when it fails: `prefix + message` on stderr, then the class's exit code."""

    prefix = "error: "

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"{self.prefix}{self.format_message()}", file=file, err=True)


class BadInput(Exit):
    exit_code = 2


class Failed(Exit):
    exit_code = 1


class Interrupted(Exit):
    exit_code = 130
    prefix = ""


def as_exit(exc: BaseException) -> Exit:
    """The one mapping: usage errors (ours and click's) exit 2, a failed run 1, Ctrl-C or SIGTERM 130."""
    if isinstance(exc, click.UsageError):
        message = usage_line(exc)
        return BadInput(message[:1].lower() + message[1:])
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted(INTERRUPTED.format(exc.args[0] if exc.args else "SIGINT"))
    return Failed(str(exc)) if isinstance(exc, RunFailed) else BadInput(str(exc))


def usage_line(exc: click.UsageError) -> str:
    """Click's own usage error as one line that says what is wrong and what is accepted."""
    message, ctx = " ".join(exc.format_message().split()), exc.ctx
    if ctx is None:
        return message
    if isinstance(exc, click.exceptions.NoSuchCommand) and isinstance(ctx.command, click.Group):
        return f"{message} accepted: {', '.join(ctx.command.list_commands(ctx))}"
    if isinstance(exc, click.NoSuchOption):
        params = [p for p in ctx.command.get_params(ctx) if isinstance(p, click.Option)]
        return f"{message} accepted: {', '.join(o for p in params for o in (*p.opts, *p.secondary_opts))}"
    if isinstance(exc, click.MissingParameter):
        hint = getattr(exc.param, "help", None)
        return (
            f"{message.rstrip('.')}: {' '.join(hint.split())}"
            if hint
            else f"{message} (see '{ctx.command_path} --help')"
        )
    if isinstance(exc, click.BadParameter):  # click names the expected type, choices or range itself
        return message
    return f"{message} (see '{ctx.command_path} --help')"


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Inside: what a command raises for people leaves as `Exit`; a bare group's help stays click's."""
    try:
        yield
    except (click.exceptions.NoArgsIsHelpError, Exit):
        raise
    except (UsageError, RunFailed, KeyboardInterrupt, click.UsageError) as exc:
        raise as_exit(exc) from None


class ProjectGroup(click.Group):
    """The command group: parsing and every command run inside `one_line_errors`."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        with one_line_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with one_line_errors():
            return super().invoke(ctx)
