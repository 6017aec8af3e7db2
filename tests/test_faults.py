"""Injected faults: Ctrl-C / SIGTERM during a sweep trial, a tracking server lost mid-run, a model save killed
half-way, MLflow runs of failed trials left RUNNING."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import TINY
from tests.test_sweep import load, states, sweep_cli, trial_runs

SETS = [x for item in TINY for x in ("--set", item)]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_marks_the_trial_and_the_study_resumes(tmp_path, prepared, sig):
    """Ctrl-C (SIGINT to the process group) or a scheduler's SIGTERM (to the process) mid-trial: the trial ends
    FAIL with the reason, its MLflow run KILLED, its parameters queued again; the rerun completes the study.
    Trials run 12-13 epochs (a few seconds each, no early stop) so that the trial seen RUNNING is still running when
    the signal lands on a loaded machine (at 2 epochs the whole sweep could end between reading the study and the
    signal)."""
    long = ("--epochs-range", "12:13", "--collapse-utility", "0")
    proc = sweep_cli(tmp_path, "--trials", "3", *long, wait=False)
    deadline, sent = time.time() + 300, None
    while time.time() < deadline and sent is None:
        time.sleep(0.3)
        try:
            study, _, _ = load(tmp_path)
        except (KeyError, AttributeError, ValueError):
            continue
        running = [t for t in study.trials if t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs]
        if running and running[0].number == 1:
            if sig == signal.SIGINT:
                os.killpg(proc.pid, sig)
            else:
                os.kill(proc.pid, sig)
            sent = running[0]
    out, _ = proc.communicate(timeout=120)
    assert sent is not None, "the sweep never reached trial 1"
    out = out.decode()
    assert proc.returncode == 130, out[-2000:]
    assert f"interrupted ({sig.name})" in out and "Traceback" not in out, out[-2000:]
    study, client, runs = load(tmp_path)
    trial = study.trials[1]
    assert trial.state.name == "FAIL" and trial.user_attrs["failure"] == f"interrupted ({sig.name})"
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].state.name == "WAITING"
    assert retry[0].system_attrs["fixed_params"] == trial.params  # queued: its parameters are fixed, not sampled
    assert client.get_run(trial.user_attrs["mlflow_run_id"]).info.status == "KILLED"
    parent = next(r for r in runs if r.data.tags.get("kind") == "sweep")
    assert parent.info.status == "KILLED"

    done = sweep_cli(tmp_path, "--trials", "3", *long)
    assert done.returncode == 0, done.stdout + done.stderr
    study, client, runs = load(tmp_path)
    assert states(study) == ["COMPLETE"] * 3 + ["FAIL"]
    rerun = study.trials[retry[0].number]
    assert rerun.state.name == "COMPLETE" and rerun.params == trial.params  # the interrupted parameters ran again
    complete = [r for r in trial_runs(runs) if r.data.tags.get("trial_state") == "COMPLETE"]
    assert len(complete) == 3 and len({r.data.tags["trial"] for r in complete}) == 3
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_tracking_server_lost_mid_run_finishes_locally(tmp_path, prepared):
    """The MLflow server dies during `unlearn-lab run`: training, the model save and the evaluation finish
    locally; the command says so in one line and exits 1."""
    from mlflow.tracking import MlflowClient

    from tests.servers import MlflowServer

    server = MlflowServer(f"sqlite:///{tmp_path}/server.db", tmp_path / "artifacts").start()
    env = {
        **os.environ,
        "UNLEARN_LAB_THREADS": "1",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    }
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "unlearn_lab.cli",
                "run",
                "--method",
                "GradAscent",
                "--forget",
                "forget10",
                *SETS,
                "--set",
                "unlearn.epochs=20",
                "--task-name",
                "lost",
                "--tracking-uri",
                server.uri,
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        client = MlflowClient(server.uri)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            experiment = client.get_experiment_by_name("unlearn-lab")
            if experiment and client.search_runs([experiment.experiment_id]):
                break
            time.sleep(0.1)
        server.stop()  # SIGKILL: the server is gone mid-run
        _out, err = proc.communicate(timeout=300)
    finally:
        server.stop()
    assert proc.returncode == 1, err[-2000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: tracking store lost during the run") and "the run finished locally" in last, err
    model = tmp_path / "saves" / "unlearn" / "lost"
    assert (model / "model.safetensors").is_file() and (model / "config.json").is_file()
    summary = json.loads((tmp_path / "saves" / "eval" / "lost" / "TOFU_SUMMARY.json").read_text())
    assert "forget_quality" in summary and "model_utility" in summary
    assert "model saves/unlearn/lost, evaluation saves/eval/lost" in last


SAVE_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from unlearn_lab.models import load

    model = load.load_model(sys.argv[1])
    tokenizer = load.load_tokenizer(sys.argv[1])
    real_save = model.save_pretrained

    def slow_save(folder, **kwargs):  # write the weights, then hang before the tokenizer and the rename
        real_save(folder, **kwargs)
        Path(sys.argv[3]).write_text("written")
        time.sleep(600)

    model.save_pretrained = slow_save
    load.save_model(model, tokenizer, sys.argv[2])
""")


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "replacing-a-folder"])
def test_killed_model_save_leaves_no_half_written_folder(tmp_path, prepared, existing):
    from unlearn_lab.models import load

    out = tmp_path / "saves" / "model"
    if existing:  # a complete earlier save must survive a killed replacement untouched
        load.save_model(load.load_model(prepared.target), load.load_tokenizer(prepared.target), out)
        before = {p.name: p.read_bytes() for p in out.iterdir()}
    flag = tmp_path / "flag"
    proc = subprocess.Popen([sys.executable, "-c", SAVE_SCRIPT, prepared.target, str(out), str(flag)])
    deadline = time.time() + 120
    while not flag.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert flag.exists(), "the save never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if existing:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        load.load_model(str(out))  # still a loadable model
    else:
        assert not out.exists()
    # what the killed save wrote lies only in a hidden temporary folder beside it
    leftovers = [p.name for p in out.parent.iterdir() if p.name != "model"]
    assert leftovers and all(name.startswith(".model.") for name in leftovers)


def test_failed_trials_runs_left_running_are_closed():
    """A trial failed while its MLflow run could not be closed (server down, worker gone): the next command's
    reap marks the run KILLED with the reason, and leaves finished runs alone."""
    import optuna

    from unlearn_lab.sweep.study import close_orphan_runs
    from unlearn_lab.tracking.memory import MemoryTracker

    tracker = MemoryTracker()
    orphan, finished = tracker.start_run("t0"), tracker.start_run("t1")
    tracker.end_run(finished, "FINISHED")
    study = optuna.create_study(directions=["maximize", "maximize"])
    for run_id, reason in ((orphan, "TrackingLost: server gone"), (finished, "DivergedError: nan")):
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.FAIL, user_attrs={"mlflow_run_id": run_id, "failure": reason}
            )
        )
    assert close_orphan_runs(study, tracker) == [0]
    assert tracker.runs[orphan].status == "KILLED" and tracker.runs[orphan].tags["failure"].startswith("TrackingLost")
    assert tracker.runs[finished].status == "FINISHED"
    assert close_orphan_runs(study, tracker) == []  # idempotent


def test_a_requeued_trial_is_run_even_when_the_budget_looks_taken():
    """A re-queued (WAITING) trial holds the slot of the trial it replaces: workers must run it, not wait on it."""
    import optuna

    from unlearn_lab.sweep.study import budget_left, work_left

    study = optuna.create_study(directions=["maximize", "maximize"])
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, values=[0.0, 0.0]))
    assert not work_left(study, 2)
    study.enqueue_trial({"lr": 1e-4}, user_attrs={"retry_of": 0, "retries": 1})
    assert budget_left(study, 3) == 0 and work_left(study, 3)


@pytest.mark.slow
def test_tracking_server_restart_is_ridden_out(tmp_path, monkeypatch):
    """A server that comes back within MLflow's retries (unlearn-lab's defaults: ~30 s) is not noticed."""
    import threading

    from tests.servers import MlflowServer
    from unlearn_lab.tracking.mlflow_tracker import HTTP_RETRY_DEFAULTS, MlflowTracker

    for key in HTTP_RETRY_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    server = MlflowServer(f"sqlite:///{tmp_path}/server.db", tmp_path / "artifacts").start()
    try:
        tracker = MlflowTracker(server.uri)
        run_id = tracker.start_run("restarted")
        server.stop()
        restart = threading.Thread(target=lambda: (time.sleep(2), server.start()))
        restart.start()
        tracker.log_metrics(run_id, {"loss": -1.5}, step=3)  # retried until the server is back
        restart.join()
        assert tracker.client.get_run(run_id).data.metrics == {"loss": -1.5}
    finally:
        server.stop()


@pytest.mark.slow
def test_sweep_with_tracking_server_lost_fails_clearly_then_resumes(tmp_path, prepared):
    """`sweep --workers 2` whose MLflow server dies: the running trials end FAIL (the study is another store),
    the worker processes are not respawned, the command prints one line and exits 1. With the server back, the
    same command marks the orphaned trial runs KILLED and completes the study."""
    import optuna
    from mlflow.tracking import MlflowClient

    from tests.servers import MlflowServer

    server = MlflowServer(f"sqlite:///{tmp_path}/server.db", tmp_path / "artifacts").start()
    storage = f"journal:{tmp_path}/study.log"
    cmd = [
        sys.executable,
        "-m",
        "unlearn_lab.cli",
        "sweep",
        "--method",
        "GradAscent",
        "--lr-range",
        "1e-4:1e-3",
        "--epochs-range",
        "1:2",
        *SETS,
        "--trials",
        "3",
        "--workers",
        "2",
        "--storage",
        storage,
        "--study",
        "lost",
        "--tracking-uri",
        server.uri,
        "--repeats",
        "1",  # single draws: the test is about the lost server, not about confirmation runs
    ]
    env = {
        **os.environ,
        "UNLEARN_LAB_THREADS": "1",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    }
    try:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            try:
                study = optuna.load_study(
                    study_name="lost",
                    storage=optuna.storages.journal.JournalStorage(
                        optuna.storages.journal.JournalFileBackend(f"{tmp_path}/study.log")
                    ),
                )
            except (KeyError, ValueError):
                time.sleep(0.2)
                continue
            if any("mlflow_run_id" in t.user_attrs for t in study.trials if t.state.name == "RUNNING"):
                break
            time.sleep(0.2)
        server.stop()
        _out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        assert err.strip().splitlines()[-1].startswith("error: worker processes exited with codes"), err[-3000:]
        assert "tracking store lost during the run" in err or "tracking server unreachable" in err

        server.start()  # back: the rerun closes what it could not close before and finishes the study
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        client = MlflowClient(server.uri)
        runs = client.search_runs([client.get_experiment_by_name("unlearn-lab").experiment_id])
        assert not [r for r in runs if r.info.status == "RUNNING"]
        complete = [r for r in runs if r.data.tags.get("trial_state") == "COMPLETE"]
        assert len(complete) == 3 and len({r.data.tags["trial"] for r in complete}) == 3
    finally:
        server.stop()
