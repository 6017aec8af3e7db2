"""Security defaults: servers on loopback, no remote code, safetensors only, safe YAML."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from unlearn_lab.errors import UsageError


def test_ui_binds_loopback_unless_told(tmp_path, monkeypatch):
    from unlearn_lab import cli

    calls = []
    monkeypatch.setattr(os, "execvpe", lambda prog, argv, env: calls.append((argv, env)))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    runner = CliRunner()
    shown = runner.invoke(cli.main, ["ui", "--tracking-uri", uri])
    assert shown.exit_code == 0
    assert runner.invoke(cli.main, ["ui", "--tracking-uri", uri, "--host", "0.0.0.0"]).exit_code == 0
    (first, env), (second, _) = calls
    assert first[first.index("--host") + 1] == "127.0.0.1"
    assert second[second.index("--host") + 1] == "0.0.0.0"  # only when asked for
    # one server worker and no job executor by default; the experiment page's URL is printed
    assert first[first.index("--workers") + 1] == "1" and env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    from mlflow.tracking import MlflowClient

    experiment = MlflowClient(uri).get_experiment_by_name("unlearn-lab")
    assert f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs" in shown.output


def test_test_servers_bind_loopback():
    """The PostgreSQL and MLflow servers the tests start listen on 127.0.0.1 only."""
    import inspect

    from tests import servers

    source = " ".join(inspect.getsource(servers).split())  # whitespace-insensitive: the formatter may wrap
    assert "listen_addresses=127.0.0.1" in source and '"--host", "127.0.0.1"' in source


def test_remote_code_is_off_unless_the_experiment_asks(monkeypatch):
    from unlearn_lab.config import load_experiment
    from unlearn_lab.models import load

    assert load_experiment(None).model.trust_remote_code is False
    seen = {}

    class Fake:
        @staticmethod
        def from_pretrained(where, **kwargs):
            seen.update(kwargs)
            return object()

    import transformers

    monkeypatch.setattr(transformers, "AutoModelForCausalLM", Fake)
    monkeypatch.setattr(load, "resolve", lambda spec: (spec, None))
    load.load_model("some/model")
    assert seen["trust_remote_code"] is False and seen["use_safetensors"] is True


def test_yaml_tags_that_run_code_are_refused(tmp_path):
    from unlearn_lab.config import load_experiment

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f"unlearn: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(UsageError, match="is not valid YAML"):
        load_experiment(str(path))
    assert not marker.exists()
