"""Extension points: the examples/ packages installed as real distributions (pip, into a folder on sys.path) are
found through their entry points, listed, run, tracked with their version and computed into TOFU_EVAL.json; a
method from a plain module runs with `--method module:Name`; a broken plugin is one line and the built-ins work."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY, make_plan
from unlearn_lab import plugins
from unlearn_lab.config import load_experiment
from unlearn_lab.errors import UsageError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Both example packages pip-installed (no deps, no network) into a folder put on sys.path: real
    distributions, with dist-info and entry points, found by importlib.metadata."""
    target = tmp_path_factory.mktemp("site")
    for name in ("gakl_method", "refusal_metric"):
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
        done = subprocess.run([*cmd, "--target", str(target), str(EXAMPLES / name)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    sys.path.insert(0, str(target))
    plugins.refresh()
    yield target
    sys.path.remove(str(target))
    plugins.refresh()


def test_installed_plugins_are_found_with_their_version(installed):
    from unlearn_lab.methods import METHODS, all_methods, get_method, method_origin
    from unlearn_lab.metrics.suite import parse_metrics

    assert "GAKL" in all_methods() and "GAKL" not in METHODS  # added to the registry, not written into it
    assert method_origin("GAKL") == "unlearn-lab-gakl 0.1.0" and method_origin("NPO") == "built-in"
    spec = get_method("GAKL")
    assert spec.defaults == {"alpha": 0.5, "gamma": 1.0} and spec.reference_sides == {"forget"}
    assert parse_metrics("default,forget_refusal_rate")[-1] == "forget_refusal_rate"


def test_plugin_hyperparameters_keep_their_bounds(installed):
    from unlearn_lab.methods import get_method, validate_hyperparams
    from unlearn_lab.sweep.space import build_space, check_space

    with pytest.raises(UsageError, match="GAKL hyperparameter 'alpha' must be >= 0, got -1"):
        validate_hyperparams(get_method("GAKL"), {"alpha": -1})
    space = build_space("1e-4:1e-3", "1:3", None, {"alpha": 0.5, "gamma": 1.0}, {"alpha": "-1:2"})
    with pytest.raises(UsageError, match="space parameter alpha"):
        check_space(space, get_method("GAKL"))


@pytest.mark.slow
def test_a_plugin_method_runs_and_a_plugin_metric_is_computed(installed, prepared, tmp_path):
    """GAKL through run_experiment on the tiny world with forget_refusal_rate asked for: the run is tagged with
    the plugin's distribution and version (and the param says it), the metric is in TOFU_EVAL.json and on the
    evaluation run, its values 0/1 per forget question."""
    import json

    from unlearn_lab.experiment import RunOptions, run_experiment
    from unlearn_lab.tracking.memory import MemoryTracker

    cfg = load_experiment(
        None, [*TINY, "unlearn.method=GAKL", "unlearn.epochs=1", "eval.metrics=default,forget_refusal_rate"]
    )
    tracker = MemoryTracker()
    result = run_experiment(make_plan(cfg, saves=tmp_path), tracker, RunOptions(progress=False), log=lambda _: None)
    run = tracker.runs[result.run_id]
    assert run.tags["plugin"] == "unlearn-lab-gakl 0.1.0" and run.params["unlearn.method_origin"] == run.tags["plugin"]
    entry = json.loads((result.eval_dir / "TOFU_EVAL.json").read_text())["forget_refusal_rate"]
    assert {v["score"] for v in entry["value_by_index"].values()} <= {0.0, 1.0}
    (evaluation,) = tracker.children(result.run_id)
    assert "forget_refusal_rate" in tracker.runs[evaluation].metrics


def test_the_cli_lists_a_plugin_and_refuses_its_bad_hyperparameters(installed):
    env_path = f"{installed}:{Path(__file__).resolve().parents[1]}"
    run = lambda *argv: subprocess.run(
        [sys.executable, "-m", "unlearn_lab.cli", *argv],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    listed = run("methods")
    assert listed.returncode == 0 and "GAKL" in listed.stdout and "[plugin: unlearn-lab-gakl 0.1.0]" in listed.stdout
    bad = run("run", "--method", "GAKL", "--set", "method.alpha=-2", "--dry-run")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: GAKL hyperparameter 'alpha' must be >= 0, got -2"
    ]


def test_a_method_from_a_module_without_packaging(tmp_path, monkeypatch):
    """`--method my_loss:SPEC` imports the module (from sys.path) and takes its MethodSpec; what it names must be
    a MethodSpec; a missing module or name is one line."""
    (tmp_path / "my_loss.py").write_text(
        "from unlearn_lab.methods import method_spec, LossOutput\n"
        "from unlearn_lab.methods.common import nll\n"
        "def loss(features, state, *, gamma: float = 1.0):\n"
        "    f = -nll(features.forget)\n"
        "    return LossOutput(loss=gamma * f, forget_loss=f, retain_loss=None)\n"
        "SPEC = method_spec('Mine', loss, paper='a test')\n"
        "NOT_A_SPEC = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from unlearn_lab.methods import get_method, method_origin

    assert get_method("my_loss:SPEC").name == "Mine" and method_origin("my_loss:SPEC") == "module my_loss:SPEC"
    with pytest.raises(UsageError, match="is a int, not a MethodSpec"):
        get_method("my_loss:NOT_A_SPEC")
    with pytest.raises(UsageError, match="cannot be loaded: ModuleNotFoundError"):
        get_method("no_such_module:SPEC")


def declare(folder: Path, name: str, version: str, group: str, entries: str) -> None:
    """A distribution declared by hand: a dist-info folder with its METADATA and entry points (on sys.path once
    `folder` is)."""
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entries}\n")


def test_broken_plugins_are_one_line_each_and_the_built_ins_still_work(tmp_path, monkeypatch, caplog):
    """Three distributions declared by hand (dist-info folders on sys.path): one whose module fails to import, one
    whose object is not a MethodSpec, one that takes a built-in's name. Each is one warning naming the plugin and
    what is wrong; none is registered; GradAscent still is."""
    (tmp_path / "broken_mod.py").write_text("raise RuntimeError('missing dependency xyz')\n")
    (tmp_path / "wrong_mod.py").write_text("THING = {'not': 'a spec'}\n")
    (tmp_path / "clash_mod.py").write_text("from unlearn_lab.methods import METHODS\nSPEC = METHODS['NPO']\n")
    for dist, entry in (
        ("broken", "Broken = broken_mod:SPEC"),
        ("wrong", "Wrong = wrong_mod:THING"),
        ("clash", "NPO = clash_mod:SPEC"),
    ):
        declare(tmp_path, f"{dist}-plugin", "1.0", "unlearn_lab.methods", entry)
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.refresh()
    try:
        from unlearn_lab.methods import all_methods, get_method

        with caplog.at_level(logging.WARNING, logger="unlearn_lab.plugins"):
            found = all_methods()
        lines = [r.getMessage() for r in caplog.records]
        assert "GradAscent" in found and not {"Broken", "Wrong"} & set(found) and found["NPO"] is get_method("NPO")
        assert any(
            "broken-plugin 1.0" in line and "cannot be imported (RuntimeError: missing dependency xyz)" in line
            for line in lines
        )
        assert any("wrong-plugin 1.0" in line and "is a dict, not a MethodSpec" in line for line in lines)
        assert any("clash-plugin 1.0" in line and "'NPO' is already registered" in line for line in lines)
        assert len(lines) == 3 and all("\n" not in line for line in lines)
    finally:
        plugins.refresh()


def test_benchmark_plugins_are_checked_against_the_interface(tmp_path, monkeypatch, caplog):
    """Benchmarks from entry points: one that implements the interface (a TOFU variant under its own name) is
    found by get_benchmark; one lacking the interface's members is one warning naming what it lacks; one taking
    a built-in's name is refused; tofu and muse still resolve."""
    (tmp_path / "bench_mod.py").write_text(
        "from unlearn_lab.benchmarks.tofu import Tofu\n"
        "class Copy(Tofu):\n    name = 'tofu_copy'\n"
        "COPY = Copy()\n"
        "class Half:\n    name = 'half'\n    eval_file = 'HALF.json'\n"
        "    def evaluate(self, *a, **k):\n        return {}\n"
        "HALF = Half()\n"
        "class Clash(Tofu):\n    name = 'muse'\n"
        "CLASH = Clash()\n"
    )
    entries = "tofu_copy = bench_mod:COPY\nhalf = bench_mod:HALF\nmuse = bench_mod:CLASH"
    declare(tmp_path, "bench-plugin", "2.0", "unlearn_lab.benchmarks", entries)
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.refresh()
    try:
        from unlearn_lab.benchmarks import all_benchmarks, get_benchmark

        with caplog.at_level(logging.WARNING, logger="unlearn_lab.plugins"):
            found = all_benchmarks()
        lines = [r.getMessage() for r in caplog.records]
        assert set(found) == {"tofu", "muse", "tofu_copy"}
        assert get_benchmark("tofu_copy").eval_file == "TOFU_EVAL.json"
        assert type(get_benchmark("muse")).__name__ == "Muse"
        half = [line for line in lines if "half = bench_mod:HALF (bench-plugin 2.0)" in line]
        assert len(half) == 1 and "without the Benchmark interface's " in half[0]
        # names what is missing, and not what it has
        assert "summary" in half[0] and "resolve" in half[0] and "eval_file" not in half[0].split("interface's")[1]
        assert any("'muse' is already registered" in line for line in lines)
        assert len(lines) == 2 and all("\n" not in line for line in lines)
        with pytest.raises(UsageError, match="unknown benchmark 'half'"):
            get_benchmark("half")
    finally:
        plugins.refresh()
