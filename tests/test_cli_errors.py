"""How a command ends when it fails: the one mapping in errors.py from what a command raises to the line click
prints and the exit code (bad input 2, a failed run 1, Ctrl-C or SIGTERM 130), and the checks that run before
anything is written (unwritable outputs). tests/test_bad_input.py drives the same path with real bad input."""

from __future__ import annotations

from types import SimpleNamespace

import click
import pytest
from click.testing import CliRunner

from unlearn_lab import cli, commands
from unlearn_lab.errors import INTERRUPTED, RunFailed, UsageError, as_exit, unknown


@pytest.mark.parametrize(
    ("raised", "code", "line"),
    [
        (UsageError("bad split"), 2, "error: bad split"),
        (RunFailed("tracking store lost"), 1, "error: tracking store lost"),
        (KeyboardInterrupt("SIGTERM"), 130, INTERRUPTED.format("SIGTERM")),
        (KeyboardInterrupt(), 130, INTERRUPTED.format("SIGINT")),
    ],
)
def test_a_command_ends_with_one_line_and_its_exit_code(monkeypatch, raised, code, line):
    def fail() -> None:
        raise raised

    monkeypatch.setattr(commands, "methods", fail)
    result = CliRunner().invoke(cli.main, ["methods"])
    assert result.exit_code == code, result.output
    assert result.stderr.splitlines() == [line] and result.stdout == ""


def test_the_mapping_is_one_table():
    """Click's own usage errors map like ours: exit 2, first letter lowered; an interrupt has no 'error: '."""
    assert (as_exit(UsageError("x")).exit_code, as_exit(RunFailed("x")).exit_code) == (2, 1)
    assert as_exit(click.UsageError("No such thing.")).format_message() == "no such thing."
    assert as_exit(KeyboardInterrupt("SIGTERM")).prefix == ""


def test_a_diverged_run_is_a_failed_run(monkeypatch):
    """A NaN loss ends `run` as RunFailed (exit 1) naming the step, not a traceback."""
    import unlearn_lab.experiment as experiment
    import unlearn_lab.runtime as runtime
    import unlearn_lab.tracking.mlflow_tracker as mlflow_tracker
    from unlearn_lab.train import DivergedError

    def diverge(*args, **kwargs):
        raise DivergedError(step=3, epoch=0.5, value=float("nan"))

    monkeypatch.setattr(experiment, "run_experiment", diverge)
    monkeypatch.setattr(runtime, "configure_threads", lambda threads: None)
    monkeypatch.setattr(mlflow_tracker, "MlflowTracker", lambda uri: SimpleNamespace(uri=uri))
    with pytest.raises(RunFailed, match="the run is marked FAILED"):
        commands.runs._run_experiment(SimpleNamespace(threads=1), None, "none")


def test_unknown_names_suggest_by_the_last_part_of_a_dotted_key():
    message = str(unknown("config key", "unlearn.lrr", ["lr", "epochs", "method"]))
    assert message == "unknown config key 'unlearn.lrr'; did you mean 'lr'? accepted: lr, epochs, method"
    assert "did you mean 'GradAscent'?" in str(unknown("method", "gradascent", ["GradAscent", "NPO"]))


def test_unwritable_names_the_first_folder_in_the_way(tmp_path):
    from unlearn_lab.preflight import unwritable

    (tmp_path / "taken").write_text("x")
    assert unwritable(tmp_path / "taken" / "a" / "b") == f"{tmp_path / 'taken'} is a file, not a folder"
    assert unwritable(tmp_path / "new" / "folder") is None
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_unreadable_weights_are_named_before_loading(tmp_path):
    """A truncated or renamed *.safetensors file is a preflight problem naming the file; a valid header passes."""
    import json

    from unlearn_lab.preflight import unreadable_weights

    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (tmp_path / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(4))
    assert unreadable_weights(tmp_path) is None
    (tmp_path / "model-2.safetensors").write_bytes(b"not safetensors")
    why = unreadable_weights(tmp_path)
    assert why is not None and why.startswith(f"{tmp_path / 'model-2.safetensors'} is not a readable safetensors")
