"""The one exception type that reaches users as a clean one-line message (exit code 2)."""


class UsageError(ValueError):
    """Bad input from the user: unknown name, missing file, malformed record, impossible split...

    The message is a single line that says what was wrong and what is accepted. The CLI prints it
    as ``error: <message>`` and exits with code 2; nothing is written before it is raised.
    """


class RunFailed(RuntimeError):
    """A run or sweep that could not finish for a reason outside the input (a lost tracking server, worker
    processes that failed). The CLI prints ``error: <message>`` and exits with code 1."""
