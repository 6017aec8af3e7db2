"""The sweep on the tiny world: MLflow run tree, resume after a kill, two workers, failures."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TINY
from tests.scale_out import relabel_host
from unlearn_lab.benchmarks import get_benchmark
from unlearn_lab.plan import lr_text

SETS = [x for item in TINY for x in ("--set", item)]
STUDY = "embedded_default_GradAscent_forget10"


def sweep_cli(tmp_path: Path, *args: str, wait: bool = True) -> Any:
    """`unlearn-lab sweep` on the tiny world in `tmp_path`: the finished process, or (wait=False) the running one."""
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
        *args,
        *(() if "--repeats" in args else ("--repeats", "1")),  # single draws unless a test confirms on seeds
    ]
    env = {**os.environ, "UNLEARN_LAB_THREADS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlruns/mlflow.db"}
    if not wait:  # Ctrl-C reaches it even when the tests run in a background job, which ignores SIGINT
        return subprocess.Popen(
            cmd,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def load(tmp_path: Path, name: str = STUDY) -> tuple[Any, Any, list[Any]]:
    """The study (journal storage), an MLflow client and the experiment's runs."""
    import optuna
    from mlflow.tracking import MlflowClient

    from unlearn_lab.sweep.study import make_storage

    study = optuna.load_study(study_name=name, storage=make_storage(f"journal:{tmp_path}/mlruns/optuna/{name}.log"))
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("unlearn-lab").experiment_id])
    return study, client, runs


def states(study: Any) -> list[str]:
    return sorted(t.state.name for t in study.trials)


def trial_runs(runs: list[Any]) -> list[Any]:
    return [r for r in runs if "trial" in r.data.tags]


def test_sweep_run_tree_and_artifacts(tmp_path, prepared):
    done = sweep_cli(tmp_path, "--trials", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Pareto front" in done.stdout and "unlearn-lab run --method GradAscent" in done.stdout
    study, client, runs = load(tmp_path)
    assert states(study) == ["COMPLETE"] * 3
    # the experiment's own config (lr 2e-4, TINY's 2 epochs) is enqueued as the first trial
    assert study.trials[0].params == {"lr": 2e-4, "epochs": 2} and study.trials[0].user_attrs["default_config"]
    # then the start-up grid of 3 - 1 runs: lr 1e-4 and 1e-3 (the range's ends) at the middle epoch count, 2
    assert [t.params for t in study.trials[1:]] == [{"lr": 1e-4, "epochs": 2}, {"lr": 1e-3, "epochs": 2}]
    by_trial = {r.data.tags["trial"]: r for r in trial_runs(runs)}
    assert [by_trial[k].data.tags.get("startup") for k in "012"] == [None, "grid", "grid"]
    parent = _check_run_tree(study, client, runs)
    best = _check_registry(study, client)
    _check_registered_models_evaluate(tmp_path, best, trial_runs(runs))
    assert parent.info.status == "FINISHED"


def _check_run_tree(study: Any, client: Any, runs: list[Any]) -> Any:
    """The sweep's run, its trial runs (named, tagged, nested) each with one nested eval run, the reports on the
    sweep's run and the reference points in the study; returns the sweep's run."""
    parent = next(r for r in runs if r.data.tags.get("kind") == "sweep")
    assert parent.info.run_name == f"sweep-{STUDY}"
    trials = trial_runs(runs)
    assert sorted(int(r.data.tags["trial"]) for r in trials) == [0, 1, 2]
    for r in trials:  # t<k>-<method>-lr<x>-ep<n>: told apart at a glance
        k = int(r.data.tags["trial"])
        params = study.trials[k].params
        assert r.info.run_name == f"t{k}-GradAscent-lr{lr_text(params['lr'])}-ep{params['epochs']}"
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials)
    assert all(r.data.tags["trial_state"] == "COMPLETE" and "objective.model_utility" in r.data.tags for r in trials)
    for t in trials:  # each trial has its own nested eval run
        evals = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == t.info.run_id]
        assert len(evals) == 1 and "forget_quality" in evals[0].data.metrics
        assert evals[0].info.run_name == "eval-final"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "pareto.csv", "pareto_front.png", "pareto_front.txt", "optimization_history.png"} <= artifacts
    # the experiment's own models, scored once for the Pareto plot: the retain model against its own reference
    points = study.user_attrs["reference_points"]
    assert points["retain"]["forget_quality"] == 1.0 and points["retain"]["privleak"] == 0.0
    assert 0 < points["target"]["forget_quality"] < 1 and 0 <= points["target"]["model_utility"] <= 1  # tiny: ~0
    return parent


def _check_registry(study: Any, client: Any) -> Any:
    """The front's best-utility model is registered as `<study>@pareto-1`, tagged with its trial's parameters and
    scores and pointing at the trial's logged MLflow model; returns that version."""
    assert "pareto-1" in client.get_registered_model(STUDY).aliases
    best = client.get_model_version_by_alias(STUDY, "pareto-1")
    trial = study.trials[int(best.tags["trial"])]
    assert best.tags["method"] == "GradAscent" and best.tags["study"] == STUDY
    assert (
        float(best.tags["lr"]) == pytest.approx(trial.params["lr"])
        and int(best.tags["epochs"]) == trial.params["epochs"]
    )
    assert float(best.tags["model_utility"]) == pytest.approx(trial.user_attrs["model_utility"])
    assert float(best.tags["forget_quality"]) == pytest.approx(trial.user_attrs["forget_quality"], rel=1e-5)
    model_id = client.get_run(best.run_id).data.tags["model_id"]  # the trial's logged MLflow model
    assert best.source == client.get_logged_model(model_id).artifact_location
    return best


def _check_registered_models_evaluate(tmp_path: Path, best: Any, trials: list[Any]) -> None:
    """`eval --model models:/<study>@pareto-1` evaluates the registered model; a moved alias is followed; an
    unknown alias is one line and exit 2."""
    uri, spec = f"sqlite:///{tmp_path}/mlruns/mlflow.db", f"models:/{STUDY}@pareto-1"
    env = {**os.environ, "UNLEARN_LAB_THREADS": "1", "MLFLOW_TRACKING_URI": uri}
    evaluate = [sys.executable, "-m", "unlearn_lab.cli", "eval", "--no-reference", *SETS, "--model"]
    out = ["--metrics", "forget_Q_A_Prob", "--out", str(tmp_path / "registered")]
    done = subprocess.run([*evaluate, spec, *out], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "forget_Q_A_Prob" in done.stdout and (tmp_path / "registered" / "TOFU_SUMMARY.json").is_file()
    # the alias moved (a sweep registered again): the next fetch follows it instead of reusing the cached folder
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker, fetch_registered

    first = fetch_registered(spec, uri, tmp_path / "registry")
    other = next(r for r in trials if r.info.run_id != best.run_id)
    MlflowTracker(uri).register_model(STUDY, other.info.run_id, alias="pareto-1")
    moved = fetch_registered(spec, uri, tmp_path / "registry")
    assert moved != first and (moved / "config.json").is_file()
    assert fetch_registered(spec, uri, tmp_path / "registry") == moved  # and is cached from then on
    missing = subprocess.run(
        [*evaluate, f"models:/{STUDY}@no-such-alias"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = missing.stderr.strip().splitlines()
    assert missing.returncode == 2 and len(lines) == 1 and "cannot fetch models:/" in lines[0], missing.stderr


def test_killed_sweep_resumes_exactly_the_missing_trials(tmp_path, prepared):
    import optuna

    proc = sweep_cli(tmp_path, "--trials", "3", wait=False)
    deadline = time.time() + 300
    killed = False
    while time.time() < deadline and not killed:
        time.sleep(0.5)
        try:
            study, _, _ = load(tmp_path)
        except (KeyError, AttributeError, ValueError):  # the study or the MLflow store is not there yet
            continue
        # trial 1 running with its MLflow run open (killed earlier, it has no run to be marked KILLED)
        if any(t.number == 1 and t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs for t in study.trials):
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
    proc.wait(timeout=30)
    assert killed, "the sweep never reached trial 1"
    study, _, _ = load(tmp_path)
    assert states(study).count("RUNNING") == 1
    done = sweep_cli(tmp_path, "--trials", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "trial 1 was left RUNNING by a dead process" in done.stderr
    study, _client, runs = load(tmp_path)
    assert states(study) == ["COMPLETE"] * 3 + ["FAIL"]
    killed_run = next(r for r in trial_runs(runs) if r.data.tags["trial"] == "1")
    assert killed_run.info.status == "KILLED"
    complete = [r for r in trial_runs(runs) if r.data.tags.get("trial_state") == "COMPLETE"]
    assert len(complete) == 3 and len({r.data.tags["trial"] for r in complete}) == 3
    assert optuna.trial.TrialState.RUNNING not in {t.state for t in study.trials}


def test_two_workers_lose_and_duplicate_nothing(tmp_path, prepared):
    done = sweep_cli(tmp_path, "--trials", "4", "--workers", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    study, _client, runs = load(tmp_path)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4 and not [t for t in study.trials if t.state.name in ("RUNNING", "FAIL")]
    tagged = [r for r in trial_runs(runs) if r.data.tags.get("trial_state") == "COMPLETE"]
    assert sorted(int(r.data.tags["trial"]) for r in tagged) == sorted(t.number for t in complete)
    assert {r.data.tags["worker"] for r in trial_runs(runs)} <= {"0", "1"}
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len({tuple(sorted(t.params.items())) for t in complete}) == len(complete)  # no parameters run twice


def test_diverging_trial_fails_and_the_sweep_goes_on(tmp_path, prepared, tiny_cfg, monkeypatch):
    import dataclasses

    from unlearn_lab import experiment
    from unlearn_lab.methods import METHODS, LossOutput
    from unlearn_lab.sweep import run_sweep
    from unlearn_lab.sweep.space import build_space
    from unlearn_lab.sweep.study import SweepSpec

    real = METHODS["GradAscent"]
    runs = {"n": 0}

    def get_method(name):
        runs["n"] += 1
        if runs["n"] != 2:  # the second trial's loss turns NaN
            return real
        return dataclasses.replace(
            real,
            loss=lambda f, s, **hp: LossOutput(real.loss(f, s).loss * float("nan"), real.loss(f, s).forget_loss, None),
        )

    monkeypatch.setattr(experiment, "get_method", get_method)
    spec = SweepSpec(
        cfg=tiny_cfg,
        space=build_space("1e-4:1e-3", "1:2", None, {}),
        study_name="diverge",
        storage=f"journal:{tmp_path}/study.log",
        trials=2,
        tracking_uri=f"sqlite:///{tmp_path}/m.db",
        saves=tmp_path / "saves",
    )
    result = run_sweep(spec, log=lambda _: None)
    import optuna

    study = optuna.load_study(
        study_name="diverge",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(f"{tmp_path}/study.log")),
    )
    assert states(study) == ["COMPLETE", "COMPLETE", "FAIL"]
    failed = next(t for t in study.trials if t.state.name == "FAIL")
    assert "diverged" in failed.user_attrs["failure"]
    assert result.complete == 2 and result.failed == 1


def test_reuse_epochs_turns_checkpoints_into_trials(tmp_path, prepared):
    """Epochs 1:2 with --reuse-epochs: each training run (2 epochs, schedule planned over 2) gives the epoch-1
    checkpoint as a trial of its own plus the run's own trial; 4 trials need 2 runs and save 1 epoch each."""
    done = sweep_cli(tmp_path, "--trials", "4", "--reuse-epochs", "--collapse-utility", "0")  # tiny model: MU ~ 0
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 training epochs saved" in done.stdout
    assert "--set unlearn.schedule_epochs=2" in done.stdout
    study, _client, runs = load(tmp_path)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4
    checkpoints = [t for t in complete if "checkpoint_of" in t.user_attrs]
    assert len(checkpoints) == 2 and all(t.params["epochs"] == 1 for t in checkpoints)
    assert len(trial_runs(runs)) == 2  # two trainings in MLflow, each with one eval per epoch (the last = final)
    for run in trial_runs(runs):
        assert run.data.params["unlearn.schedule_epochs"] == "2"
        evals = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == run.info.run_id]
        assert sorted(r.info.run_name for r in evals) == ["eval-ep1", "eval-final"]


def test_collapsed_utility_stops_early(tmp_path, prepared):
    """--collapse-utility 1 (every utility below 1 counts as collapsed): each run stops after epoch 1, its trial FAILs
    with the reason, the epoch-1 checkpoint fills a COMPLETE slot, and epoch 2 is never trained."""
    done = sweep_cli(tmp_path, "--trials", "2", "--reuse-epochs", "--collapse-utility", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 training epochs saved" in done.stdout  # two runs, each stopped one epoch short
    study, _, runs = load(tmp_path)
    assert states(study) == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert all("stopped early at epoch 1" in t.user_attrs["failure"] for t in failed)
    assert all(t.params["epochs"] == 1 for t in study.trials if t.state.name == "COMPLETE")
    assert all(r.data.tags.get("stopped_early", "").startswith("epoch 1") for r in trial_runs(runs))
    # the summary counts the two FAILed runs as stopped early, not as failures
    assert "2 complete, 2 stopped early (utility collapsed), 0 failed trials" in done.stdout


def test_worker_joins_and_heartbeats_fail_a_dead_trial(tmp_path, prepared):
    """RDB storage (SQLite here; PostgreSQL in production): a sweep is killed mid-trial; its trial is made to
    look like another host's (so only the heartbeat can tell it is dead); `unlearn-lab worker` joins with
    only --study/--storage, fails the silent trial, marks its MLflow run KILLED and completes the study. The
    worker writes no reports: the sweep command, rerun, finds the study complete and writes them."""
    import optuna
    from mlflow.tracking import MlflowClient

    storage = f"sqlite:///{tmp_path}/optuna.db"
    _kill_sweep_mid_trial(tmp_path, storage)
    time.sleep(4)  # past the grace period (3 x 1 s)
    done = _join_from_elsewhere(tmp_path, storage)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "was left RUNNING by a dead process" in done.stderr, done.stderr[-1500:] + done.stdout[-800:]
    # the trial it failed for silence is not one it ran: its own counts hold no failure
    assert re.search(r"worker: \d+ complete, 0 stopped early \(utility collapsed\), 0 failed trials", done.stdout)
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert states(study) == ["COMPLETE"] * 3 + ["FAIL"]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    dead = next(t for t in study.trials if t.state.name == "FAIL")
    assert client.get_run(dead.user_attrs["mlflow_run_id"]).info.status == "KILLED"
    # the worker ended the study but only ran trials: no reports, no registered versions
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert "Pareto" not in done.stdout and client.list_artifacts(parent) == []
    assert client.search_registered_models(f"name = '{STUDY}'") == []
    again = sweep_cli(tmp_path, "--trials", "3", "--storage", storage, "--heartbeat-seconds", "1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Pareto front" in again.stdout and "3 complete" in again.stdout
    assert states(optuna.load_study(study_name=STUDY, storage=storage)) == ["COMPLETE"] * 3 + ["FAIL"]
    assert {"trials.csv", "pareto_front.txt"} <= {a.path for a in client.list_artifacts(parent)}
    assert client.get_run(parent).info.status == "FINISHED" and "pareto-1" in client.get_registered_model(STUDY).aliases


def _kill_sweep_mid_trial(tmp_path: Path, storage: str) -> None:
    """SIGKILL a sweep running on `storage` once trial 1 or later runs, relabelling that trial as another host's."""
    import optuna

    proc = sweep_cli(tmp_path, "--trials", "3", "--storage", storage, "--heartbeat-seconds", "1", wait=False)
    deadline, killed = time.time() + 300, False
    while time.time() < deadline and not killed:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name=STUDY, storage=storage)
        except (KeyError, ValueError):
            continue
        running = [t for t in study.trials if t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs]
        if running and running[0].number >= 1:
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            relabel_host(storage, STUDY, running[0].number, "another-host")
    proc.wait(timeout=30)
    assert killed


def _join_from_elsewhere(tmp_path: Path, storage: str) -> subprocess.CompletedProcess[str]:
    """`unlearn-lab worker` from another folder, with no tracking URI: it tracks where the study says the sweep
    tracks. Stores that lack the sweep's run are refused first, in one line, creating nothing."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["UNLEARN_LAB_THREADS"] = "1"
    worker = [sys.executable, "-m", "unlearn_lab.cli", "worker", "--study", STUDY, "--storage", storage]
    worker += ["--heartbeat-seconds", "1"]
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker

    MlflowTracker(f"sqlite:///{elsewhere}/other.db")  # a store that lacks the sweep's run
    for uri, says in (
        (f"sqlite:///{elsewhere}/other.db", "has no run"),
        (f"sqlite:///{elsewhere}/none.db", "no tracking database at"),
    ):
        wrong = subprocess.run(
            [*worker, "--tracking-uri", uri], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
        )
        lines = wrong.stderr.strip().splitlines()
        assert wrong.returncode == 2 and len(lines) == 1 and says in lines[0], wrong.stderr[-1500:]
        assert "--tracking-uri" in lines[0]
    assert sorted(p.name for p in elsewhere.iterdir()) == ["other.db"]
    return subprocess.run(worker, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)


def _setting_row(k: int, means: tuple[float, float], objectives, *, default: bool = False) -> dict:
    """A trials.csv row of a setting confirmed on 3 seeds with these means (on the objectives' scales), sd 0.1/0.01."""
    from unlearn_lab.sweep.confirm import Draw, Setting
    from unlearn_lab.sweep.report import spread_columns

    first, second = objectives
    maximised = [o.value({o.metric: o.central(m) if o.log else m}) for o, m in zip(objectives, means, strict=True)]
    draws = tuple(Draw(k, seed, maximised[0] + d, maximised[1] + d / 10) for seed, d in enumerate((-0.1, 0.0, 0.1)))
    row = {"trial": k, "state": "COMPLETE", "confirms": "", "default_config": default, "seed": 0}
    row[first.metric] = first.central(means[0]) if first.log else means[0]
    row[second.metric] = means[1]
    row.update(spread_columns(Setting(k, {}, draws, default), objectives))
    return row


def test_pareto_figure_is_log_scaled_annotated_and_fades_dominated_settings():
    """TOFU: forget_quality on a log axis at each setting's geometric mean; the front drawn with error bars, other
    settings faded, the default starred, the target and retain models as reference points."""
    from unlearn_lab.sweep.report import pareto_figure

    tofu = get_benchmark("tofu").objectives
    rows = [
        _setting_row(0, (-20, 0.9), tofu, default=True),
        _setting_row(1, (-5, 0.6), tofu),
        _setting_row(2, (-8, 0.5), tofu),  # dominated by trial 1
        _setting_row(3, (-0.5, 0.1), tofu),
    ]
    rows.append({"trial": 4, "state": "FAIL", "confirms": "", "n_seeds": "", "forget_quality": None})
    pareto = [{**r, "rank": i, "tied_with": ""} for i, r in enumerate(rows) if r["trial"] in (0, 1, 3)]
    refs = {
        "target": {"forget_quality": 1e-22, "model_utility": 0.94},
        "retain": {"forget_quality": 1.0, "model_utility": 0.93},
    }
    fig = pareto_figure(rows, pareto, "study", refs, tofu)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and "forget_quality" in ax.get_xlabel() and "model_utility" in ax.get_ylabel()
    texts = {t.get_text(): t for t in ax.texts}
    assert {"t0", "t1", "t2", "t3", "target", "retain"} <= set(texts) and "t4" not in texts
    assert texts["t2"].get_alpha() < texts["t1"].get_alpha()
    faded = next(c for c in ax.collections if c.get_label() == "other setting (mean)")
    assert faded.get_alpha() < 1 and [tuple(p) for p in faded.get_offsets()] == [pytest.approx((1e-8, 0.5))]
    front = next(c for c in ax.containers if c.get_label() == "confirmed front (mean ± sd)").lines[0]
    assert list(front.get_xdata()) == pytest.approx([1e-20, 1e-5, 10**-0.5])  # sorted by forget_quality
    labels = {c.get_label() for c in ax.collections}
    assert {"target model", "retain model", "default config (mean)"} <= labels


def test_pareto_figure_names_the_objectives_it_was_given():
    """MUSE's pair: forget_verbmem_ROUGE (lower is better) on a linear axis against retain_knowmem_ROUGE; the
    reference points read those metrics from the models' summaries."""
    from unlearn_lab.sweep.report import pareto_figure

    muse = get_benchmark("muse").objectives
    rows = [_setting_row(0, (0.5, 0.8), muse, default=True), _setting_row(1, (0.2, 0.7), muse)]
    pareto = [{**r, "rank": i + 1, "tied_with": ""} for i, r in enumerate(rows)]
    refs = {"target": {"forget_verbmem_ROUGE": 0.55, "retain_knowmem_ROUGE": 0.78}}
    ax = pareto_figure(rows, pareto, "muse study", refs, muse).axes[0]
    assert ax.get_xscale() == "linear"
    assert ax.get_xlabel() == "forget_verbmem_ROUGE (lower is better)"
    assert ax.get_ylabel() == "retain_knowmem_ROUGE (higher is better)"
    front = next(c for c in ax.containers if c.get_label() == "confirmed front (mean ± sd)").lines[0]
    assert list(front.get_xdata()) == pytest.approx([0.2, 0.5]) and list(front.get_ydata()) == pytest.approx([0.7, 0.8])
    target = next(c for c in ax.collections if c.get_label() == "target model")
    assert [tuple(p) for p in target.get_offsets()] == [pytest.approx((0.55, 0.78))]


def test_local_workers_die_with_a_killed_sweep(tmp_path, prepared):
    """SIGKILL of the `sweep` process alone: its two worker processes notice, mark their trials FAIL (queued
    again), close the sweep's MLflow run as KILLED and exit, instead of running on to the end of the study."""
    import optuna

    proc = sweep_cli(tmp_path, "--trials", "6", "--workers", "2", wait=False)
    deadline, workers = time.time() + 300, []
    while time.time() < deadline and not workers:
        time.sleep(0.5)
        try:
            study, _, _ = load(tmp_path)
        except (KeyError, AttributeError, ValueError):
            continue
        if any(t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs for t in study.trials):
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            workers = [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert len(workers) == 2, "the sweep never started its workers"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.time() + 60
    while time.time() < deadline and any(_running(w) for w in workers):
        time.sleep(0.5)
    assert not [w for w in workers if _running(w)], "orphaned workers kept running"
    study, _client, runs = load(tmp_path)
    assert "RUNNING" not in states(study) and "FAIL" in states(study)
    assert any(t.state.name == "WAITING" for t in study.trials)  # the interrupted parameters are queued again
    parent = next(r for r in runs if r.data.tags.get("kind") == "sweep")
    assert parent.info.status == "KILLED"
    assert all(r.info.status != "RUNNING" for r in trial_runs(runs))
    assert optuna.trial.TrialState.RUNNING not in {t.state for t in study.trials}


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def test_the_experiment_declares_the_search_space():
    from click.testing import CliRunner

    from unlearn_lab import cli
    from unlearn_lab.config import load_experiment
    from unlearn_lab.errors import UsageError

    cfg = load_experiment(None)
    assert cfg.sweep.ranges("GradAscent") == ("1.7e-4:6e-4", "4:8")
    assert cfg.sweep.ranges("NPO") == ("2e-4:2e-3", "3:10")
    bad = load_experiment(None, ["sweep.methods={NPO: {lr: '1e-4:1e-3', beta: '0.1:1'}}"])
    with pytest.raises(UsageError, match="accepts lr and epochs, not beta"):
        bad.sweep.ranges("NPO")
    runner = CliRunner()
    shown = runner.invoke(cli.main, ["sweep", "--method", "NPO", "--dry-run"])
    assert shown.exit_code == 0, shown.output
    assert "lr in [0.0002, 0.002] (log), epochs in [3, 10]" in shown.output
    told = runner.invoke(cli.main, ["sweep", "--method", "NPO", "--dry-run", "--lr-range", "1e-5:1e-4"])
    assert "lr in [1e-05, 0.0001] (log), epochs in [3, 10]" in told.output
    declared = runner.invoke(
        cli.main, ["sweep", "--dry-run", "--set", "sweep.space={alpha: '0.5:2'}", "--method", "GradDiff"]
    )
    assert declared.exit_code == 0 and "alpha in [0.5, 2]" in declared.output, declared.output


def test_no_two_trials_run_the_same_parameters_unless_retried():
    import optuna

    from unlearn_lab.sweep.study import duplicate_of

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "maximize"])
    dist = {
        "lr": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True),
        "epochs": optuna.distributions.IntDistribution(1, 4),
    }
    study.add_trial(optuna.trial.create_trial(params={"lr": 1e-4, "epochs": 2}, distributions=dist, values=[-3, 0.9]))
    study.add_trial(
        optuna.trial.create_trial(
            params={"lr": 2e-4, "epochs": 2}, distributions=dist, state=optuna.trial.TrialState.FAIL
        )
    )
    study.enqueue_trial({"lr": 2e-4, "epochs": 2}, user_attrs={"retry_of": 1})
    retry = study.ask()
    assert duplicate_of(study.trials, retry.number, {"lr": 2e-4, "epochs": 2}) is None  # a failed trial's retry
    assert duplicate_of(study.trials, retry.number, {"lr": 1e-4, "epochs": 2}) == 0  # repeats a COMPLETE trial
    assert duplicate_of(study.trials, retry.number, {"lr": 1e-4, "epochs": 3}) is None


def test_the_method_can_be_searched_with_its_own_ranges():
    """--methods GradAscent,NPO: the method is a categorical parameter and each method keeps its own lr / epochs
    ranges (the experiment's sweep.methods); the space survives the study's JSON; bad combinations are one line."""
    import optuna

    from unlearn_lab.config import load_experiment
    from unlearn_lab.errors import UsageError
    from unlearn_lab.sweep.space import SearchSpace, build_space, with_methods

    cfg = load_experiment(None)
    base = build_space("1e-4:1e-3", "1:10", None, {})
    space = with_methods(base, "GradAscent, NPO", cfg.sweep.ranges)
    assert [p.name for p in space.params] == ["method", "lr", "epochs"]
    assert space.ranges("NPO")[0].bounds() == (2e-4, 2e-3) and space.ranges("GradAscent")[1].bounds() == (4, 8)
    assert space.lr.bounds() == (1.7e-4, 2e-3) and space.epochs.bounds() == (3, 10)  # the envelope
    drawn = space.draw(optuna.trial.FixedTrial({"method": "NPO", "lr": 1e-3, "epochs": 9}))
    assert drawn == {"method": "NPO", "lr": 1e-3, "epochs": 9}
    assert space.contains(drawn) and not space.contains({**drawn, "method": "GradAscent"})  # 9 > GA's 8 epochs
    assert space.overrides(drawn)[:2] == ["unlearn.method=NPO", "unlearn.method_args={}"]
    assert SearchSpace.from_dict(space.to_dict()) == space
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=optuna.samplers.TPESampler(seed=0))
    for _ in range(12):  # every draw respects the drawn method's own ranges
        values = space.draw(study.ask())
        lr, epochs = space.ranges(values["method"])
        assert lr.contains(values["lr"]) and epochs.contains(values["epochs"])
    with pytest.raises(UsageError, match="did you mean 'NPO'"):
        with_methods(base, "GradAscent,NPOO", cfg.sweep.ranges)
    with pytest.raises(UsageError, match="two or more methods"):
        with_methods(base, "NPO", cfg.sweep.ranges)
    with pytest.raises(UsageError, match="--reuse-epochs"):
        with_methods(base, "GradAscent,NPO", cfg.sweep.ranges, reuse_epochs=True)
    with pytest.raises(UsageError, match="belongs to one method"):
        with_methods(
            build_space("1e-4:1e-3", "1:10", None, {"beta": 0.1}, {"beta": "0.05:1"}),
            "GradAscent,NPO",
            cfg.sweep.ranges,
        )


def test_a_sweep_over_methods_tracks_each_trial_as_its_method(tmp_path, prepared):
    done = sweep_cli(tmp_path, "--trials", "3", "--methods", "GradAscent,NPO", "--joint", "--study", "both")
    assert done.returncode == 0, done.stdout + done.stderr
    study, _client, runs = load(tmp_path, "both")
    assert states(study) == ["COMPLETE"] * 3
    assert study.trials[0].params["method"] == "GradAscent"  # the experiment's own config first
    parent = next(r for r in runs if r.data.tags.get("kind") == "sweep")
    assert parent.data.tags["method"] == "GradAscent,NPO"
    for run in trial_runs(runs):
        trial = study.trials[int(run.data.tags["trial"])]
        assert run.data.tags["method"] == trial.params["method"]
        assert run.info.run_name.startswith(f"t{trial.number}-{trial.params['method']}-")
    for line in done.stdout.splitlines():  # each Pareto row (rank, trial, ...) reproduces its own method
        if "unlearn-lab run" in line:
            trial = study.trials[int(line.split()[1])]
            assert f"--method {trial.params['method']} " in line


def test_collapsed_trials_stop_early_and_are_infeasible(tmp_path, prepared):
    """Without --reuse-epochs, --collapse-utility 1 (every utility is below 1): a 2-epoch trial stops after epoch 1
    (its utility bound is below 1), ends COMPLETE with that epoch's scores, and is infeasible like every trial
    here, so the sampler learns from it and the Pareto front (and registry) stays empty."""
    done = sweep_cli(tmp_path, "--trials", "3", "--collapse-utility", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    study, client, runs = load(tmp_path)
    assert states(study) == ["COMPLETE"] * 3
    two = [t for t in study.trials if t.params["epochs"] == 2]
    assert two and all(t.user_attrs["stopped_at"] == 1 for t in two)
    assert all("stopped_at" not in t.user_attrs for t in study.trials if t.params["epochs"] == 1)
    assert all(t.constraints["collapse_utility"] == 1 - t.user_attrs["model_utility"] > 0 for t in study.trials)
    assert study.best_trials == [] and f"{len(two)} stopped early" in done.stdout
    assert client.search_registered_models() == []
    for run in trial_runs(runs):
        if int(run.data.tags["trial"]) in {t.number for t in two}:
            assert run.data.tags["stopped_early"].startswith("epoch 1: utility collapsed")


class NoisyObjective:
    """An injected objective over real tiny runs (their MLflow runs and models stay real): the default config
    (lr 2e-4) scores forget_quality 1e-3 / utility 0.90 on every seed; the first other lr the sweep draws is
    *lucky*: 0.5 / 0.95 on seed 0 (it dominates everything) but 1e-4 / 0.30 on every other seed; the next ones are
    steady, k = 0, 1, 2, ...: forget_quality (0.02, 0.021, 0.05)[k] x 10^(0.05 (seed - 1)) and utility (0.80,
    0.795, 0.60)[k] + 0.01 (seed - 1), so steady 0 and 1 differ by less than the seed noise (sd 0.05 on log10
    forget_quality, 0.01 on utility) and are tied."""

    STEADY = ((0.02, 0.80), (0.021, 0.795), (0.05, 0.60))

    def __init__(self, real):
        self.real, self.roles = real, {}

    def values(self, lr: float, seed: int) -> tuple[float, float]:
        if abs(lr - 2e-4) < 1e-12:
            return 1e-3, 0.90
        role = self.roles.setdefault(lr, len(self.roles))
        if role == 0:
            return (0.5, 0.95) if seed == 0 else (1e-4, 0.30)
        fq, mu = self.STEADY[min(role - 1, 2)]
        return fq * 10 ** (0.05 * (seed - 1)), mu + 0.01 * (seed - 1)

    def __call__(self, plan, tracker, opts, log=print, shared=None):
        import dataclasses

        result = self.real(plan, tracker, opts, log, shared)
        fq, mu = self.values(plan.cfg.unlearn.lr, plan.cfg.unlearn.seed)
        tracker.log_metrics(result.run_id, {"injected.forget_quality": fq, "injected.model_utility": mu})
        return dataclasses.replace(result, summary={**result.summary, "forget_quality": fq, "model_utility": mu})


def test_the_front_is_confirmed_on_seeds_and_a_lucky_draw_leaves_it(tmp_path, prepared, tiny_cfg, monkeypatch):
    """4 exploration trials on seed 0; the lucky draw is the whole single-draw front. Confirmation re-runs it and
    the default with seeds 1 and 2; the lucky setting's mean (log10 fq (-0.30 - 4 - 4) / 3, utility 0.52) falls
    behind, which makes the steady settings candidates, confirmed in a second round. The front on 3-seed means:
    the default (utility 0.90) and the steady settings, two of them tied; the lucky one is gone."""
    from mlflow.tracking import MlflowClient

    from unlearn_lab import experiment
    from unlearn_lab.sweep import run_sweep
    from unlearn_lab.sweep.space import build_space
    from unlearn_lab.sweep.study import SweepSpec

    objective = NoisyObjective(experiment.run_experiment)
    monkeypatch.setattr(experiment, "run_experiment", objective)
    spec = SweepSpec(
        cfg=tiny_cfg,
        space=build_space("1e-4:1e-3", "1:2", None, {}),
        study_name="confirm",
        storage=f"journal:{tmp_path}/study.log",
        trials=4,
        tracking_uri=f"sqlite:///{tmp_path}/m.db",
        saves=tmp_path / "saves",
        repeats=3,
    )
    messages: list[str] = []
    result = run_sweep(spec, log=messages.append)
    lucky = next(lr for lr, role in objective.roles.items() if role == 0)
    study = _study(tmp_path, "confirm")
    number = {t.params["lr"]: t.number for t in study.trials if "confirms" not in t.user_attrs}
    front = {int(r["trial"]): r for r in result.pareto}
    assert number[lucky] not in front and number[2e-4] in front  # the lucky draw left; the default holds
    assert all(r["n_seeds"] == 3 and r["seeds"] == "0,1,2" for r in result.pareto)
    steady = sorted((t for lr, t in number.items() if objective.roles.get(lr, 0) > 0), key=lambda t: t)
    assert set(steady) <= set(front)
    tied = [r for r in result.pareto if r["tied_with"]]
    assert {int(r["trial"]) for r in tied} == set(steady[:2]) and tied[0]["rank"] == tied[1]["rank"]
    assert "0 of the 1 single-draw front points survived" in result.summary
    assert "seed noise (sd over seeds, pooled over" in result.summary
    assert any(m.startswith("confirming 2 setting(s)") for m in messages)  # the lucky one and the default first
    assert result.confirmations == 2 * (2 + len(steady))
    _check_confirmed_tracking(MlflowClient(f"sqlite:///{tmp_path}/m.db"), study, result)


def _study(tmp_path: Path, name: str) -> Any:
    import optuna

    backend = optuna.storages.journal.JournalFileBackend(f"{tmp_path}/study.log")
    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(backend))


def _check_confirmed_tracking(client: Any, study: Any, result: Any) -> None:
    """Confirmation runs nest under the run of the trial they confirm, named t<k>-seed<s>; a confirmed trial's run
    carries its setting's mean and sd; the sweep's run the noise floor; registry versions the seeds and mean ± sd."""
    runs = client.search_runs([client.get_experiment_by_name("unlearn-lab").experiment_id])
    by_id = {r.info.run_id: r for r in runs}
    confirmations = [r for r in runs if "confirms" in r.data.tags]
    assert len(confirmations) == result.confirmations
    for run in confirmations:
        confirmed = study.trials[int(run.data.tags["confirms"])]
        assert run.data.tags["mlflow.parentRunId"] == confirmed.user_attrs["mlflow_run_id"]
        assert run.info.run_name == f"t{confirmed.number}-seed{run.data.tags['seed']}"
        assert run.data.params["unlearn.seed"] == run.data.tags["seed"] != "0"
        setting_run = by_id[confirmed.user_attrs["mlflow_run_id"]]
        assert setting_run.data.metrics["model_utility.n"] == 3 and "model_utility.sd" in setting_run.data.metrics
    parent = by_id[result.parent_run_id]
    assert parent.data.metrics["noise_sd.model_utility"] > 0 and parent.data.metrics["survived_confirmation"] == 0
    best = client.get_model_version_by_alias("confirm", "pareto-1")
    assert best.tags["seeds"] == "0,1,2" and "±" in best.tags["model_utility"]
    assert float(best.tags["model_utility"].split("±")[0]) == pytest.approx(0.90)


def test_a_methods_comparison_runs_a_study_per_method_then_the_leaderboard(tmp_path, prepared):
    """`--methods GradAscent,NPO` (not --joint): one study per method with the same budget (2 trials, confirmed on 2
    seeds), then the report of exactly those studies: the leaderboard printed, its files written, a report run."""
    done = sweep_cli(tmp_path, "--trials", "2", "--repeats", "2", "--methods", "GradAscent,NPO", "--study", "cmp")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for method in ("GradAscent", "NPO"):
        study, _, _ = load(tmp_path, f"cmp_{method}")
        explored = [t for t in study.trials if "confirms" not in t.user_attrs and t.state.name == "COMPLETE"]
        assert len(explored) == 2 and all(t.params.keys() == {"lr", "epochs"} for t in explored)
        assert any("confirms" in t.user_attrs for t in study.trials)  # confirmed on a second seed
    assert "# Leaderboard: tofu, forget10" in done.stdout and "| NPO |" in done.stdout
    out = tmp_path / "saves" / "report" / "cmp"  # the studies' name, without the method
    assert (out / "leaderboard.md").is_file() and (out / "leaderboard.html").is_file()
    _, _, runs = load(tmp_path, "cmp_NPO")
    (board,) = [r for r in runs if r.data.tags.get("kind") == "report"]
    assert board.data.tags["studies"] == "cmp_GradAscent,cmp_NPO" and board.data.tags["methods"] == "GradAscent,NPO"


def test_the_default_is_queued_even_outside_the_searched_ranges(tiny_cfg):
    """The default (lr 2e-4, 2 epochs here) outside epochs 4:8 is still trial 0 (so the sweep is compared with it);
    a worker's draw takes its queued values; a default method outside --methods choices cannot be queued."""
    import optuna

    from unlearn_lab.sweep.space import build_space, with_methods
    from unlearn_lab.sweep.study import SweepSpec, enqueue_default

    space = build_space("1e-4:1e-3", "4:8", None, {})
    spec = SweepSpec(cfg=tiny_cfg, space=space, study_name="s", storage="journal:unused", trials=3)
    study = optuna.create_study(directions=["maximize", "maximize"])
    enqueue_default(study, spec)
    (queued,) = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert queued.user_attrs["default_config"] and queued.system_attrs["fixed_params"] == {"lr": 2e-4, "epochs": 2}
    joint = with_methods(space, "NPO,SimNPO", tiny_cfg.sweep.ranges)
    other = optuna.create_study(directions=["maximize", "maximize"])
    enqueue_default(other, SweepSpec(cfg=tiny_cfg, space=joint, study_name="j", storage="journal:unused", trials=3))
    assert other.trials == []  # GradAscent is not among the searched methods


def test_the_grid_is_the_one_people_run_by_hand():
    """SearchSpace.grid(n): n // 5 epoch counts (at most 5 and the range's count; the middle one alone below 10)
    times n // that many learning rates, log-spaced over the range with both ends, to 4 significant digits."""
    from unlearn_lab.sweep.space import build_space

    space = build_space("1e-4:1e-3", "1:5", None, {})
    decade = [1e-4, 1.778e-4, 3.162e-4, 5.623e-4, 1e-3]  # 1e-4 x 10^(i/4)
    assert space.grid(10) == [{"lr": lr, "epochs": e} for lr in decade for e in (1, 5)]
    assert space.grid(5) == [{"lr": lr, "epochs": 3} for lr in decade]
    assert space.grid(3) == [{"lr": lr, "epochs": 3} for lr in (1e-4, 3.162e-4, 1e-3)]
    forty = space.grid(40)  # 8 lrs x all 5 epoch counts of the range
    assert len(forty) == 40 and sorted({p["epochs"] for p in forty}) == [1, 2, 3, 4, 5]
    assert forty[-1] == {"lr": 1e-3, "epochs": 5} and forty[5]["lr"] == pytest.approx(1e-4 * 10 ** (1 / 7), rel=1e-3)
    assert space.grid(0) == [] and space.grid(1) == [{"lr": 3.162e-4, "epochs": 3}]
    narrow = build_space("1e-4:1e-3", "2:3", None, {})
    assert len(narrow.grid(20)) == 20 and {p["epochs"] for p in narrow.grid(20)} == {2, 3}  # 10 lrs x 2 counts


def test_a_new_study_starts_with_the_default_then_the_grid(tiny_cfg):
    """The start-up trials queued after the default: the grid of min(10, trials - 1) runs, less the default's own
    setting; none with --startup random, --joint (--methods in one study) or --reuse-epochs."""
    from dataclasses import replace

    import optuna

    from unlearn_lab.sweep.space import build_space, with_methods
    from unlearn_lab.sweep.study import SweepSpec, enqueue_default, enqueue_startup

    def queued(spec):
        study = optuna.create_study(directions=["maximize", "maximize"])
        enqueue_default(study, spec)
        enqueue_startup(study, spec)
        return [(t.system_attrs["fixed_params"], t.user_attrs) for t in study.trials]

    space = build_space("1e-4:1e-3", "1:2", None, {})  # the default, lr 2e-4 x 2 epochs, lies inside
    spec = SweepSpec(cfg=tiny_cfg, space=space, study_name="s", storage="journal:unused", trials=20)
    trials = queued(spec)
    assert trials[0] == ({"lr": 2e-4, "epochs": 2}, {"default_config": True})
    decade = [1e-4, 1.778e-4, 3.162e-4, 5.623e-4, 1e-3]
    assert [t[0] for t in trials[1:]] == [{"lr": lr, "epochs": e} for lr in decade for e in (1, 2)]
    assert all(t[1] == {"startup": "grid"} for t in trials[1:])
    on_grid = replace(spec, cfg=replace(tiny_cfg, unlearn=replace(tiny_cfg.unlearn, lr=1e-4, epochs=1)))
    assert len(queued(on_grid)) == 10  # the default is a grid point: it is run once
    assert [t[0] for t in queued(replace(spec, trials=4))[1:]] == [
        {"lr": lr, "epochs": 2}
        for lr in (1e-4, 3.162e-4, 1e-3)  # 3 runs: the middle epoch count, round(1.5)
    ]
    assert len(queued(replace(spec, startup="random"))) == 1
    assert len(queued(replace(spec, reuse_epochs=True))) == 1  # the default trains the largest count, 2: queued
    joint = with_methods(space, "GradAscent,NPO", tiny_cfg.sweep.ranges)
    assert len(queued(replace(spec, space=joint))) == 1


def test_both_samplers_read_the_constraints_and_stay_in_the_space():
    """The sweep's sampler (multivariate TPE by default; "gp", Optuna's GPSampler, the benchmark's alternative),
    told constrained two-objective trials as the workers tell them, keeps proposing inside the space once its
    model is fitted."""
    import math

    import optuna

    from unlearn_lab.sweep.study import SAMPLER, sampler

    assert SAMPLER == "tpe" and isinstance(sampler(0), optuna.samplers.TPESampler)
    with pytest.raises(ValueError, match="gp or tpe"):
        sampler(0, "cmaes")
    for kind, cls in (("tpe", optuna.samplers.TPESampler), ("gp", optuna.samplers.GPSampler)):
        study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler(0, kind, startup=4))
        assert isinstance(study.sampler, cls)
        for _ in range(8):
            trial = study.ask()
            lr, epochs = trial.suggest_float("lr", 1e-4, 1e-3, log=True), trial.suggest_int("epochs", 2, 8)
            utility = max(0.0, 1 - lr * epochs / 4e-3)
            trial.set_constraint("collapse_utility", 0.01 - utility)
            study.tell(trial, (math.log10(min(1.0, lr * epochs * 100)), utility))
        assert len(study.trials) == 8
        assert all(1e-4 <= t.params["lr"] <= 1e-3 and 2 <= t.params["epochs"] <= 8 for t in study.trials)
