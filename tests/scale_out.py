"""The scale-out scenario, shared by tests/test_scale_out.py (asserts) and benchmarks/reliability.py (figures).

Three workers on one study in PostgreSQL, tracked by an `mlflow server` whose backend store is PostgreSQL too:
worker 0 is `unlearn-lab sweep` (creates the study and the parent run), workers 1 and 2 are
`unlearn-lab worker --study --storage`, each in its own folder as if on its own host. Worker 1 is SIGKILLed
mid-trial and its trial is made to look like another host's, so that only the heartbeat can tell it died.
Only worker 0 (the sweep) writes the study's reports and registers its front.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.conftest import TINY

SETS = [x for item in TINY for x in ("--set", item)]
STUDY = "scale"
T = TypeVar("T")


def cli(args: list[str], cwd: Path, tracking_uri: str, log: Path) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "UNLEARN_LAB_THREADS": "1", "MLFLOW_TRACKING_URI": tracking_uri}
    out = open(log, "w")
    return subprocess.Popen(
        [sys.executable, "-m", "unlearn_lab.cli", *args],
        cwd=cwd,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def load_study(storage: str) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=STUDY, storage=storage)


def relabel_host(storage: str, study: str, number: int, host: str) -> None:
    """Make trial `number` look like another host's (so only its heartbeat can show its worker died), through
    Optuna's public storage API: the trial's storage id from the study's id and the trial number."""
    import optuna

    rdb = optuna.storages.RDBStorage(storage)
    trial_id = rdb.get_trial_id_from_study_id_trial_number(rdb.get_study_id_from_name(study), number)
    rdb.set_trial_user_attr(trial_id, "host", host)


def poll(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """`check()`'s first truthy value within `timeout` seconds."""
    from sqlalchemy.exc import SQLAlchemyError

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = check()
        # the study is not there yet, or Optuna's tables are being created by the workers at this very moment
        # (opening the storage here creates them too: PostgreSQL refuses one of the two with a UniqueViolation)
        except (KeyError, ValueError, SQLAlchemyError):
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not happen within {timeout} s")


def three_workers(
    tmp: Path,
    storage: str,
    tracking_uri: str,
    trials: int = 6,
    heartbeat: int = 2,
    timeout: float = 900,
    repeats: int = 1,
) -> dict[str, Any]:
    """Run the scenario; return what happened (figures and the raw states for the asserts). With `repeats` > 1 the
    sweep then confirms its front over that many seeds, and the joined workers run confirmation trials too."""
    start = time.time()
    logs = [tmp / f"worker-{i}.log" for i in range(3)]
    common = ["--storage", storage, "--heartbeat-seconds", str(heartbeat)]
    sweep = ["sweep", "--method", "GradAscent", "--lr-range", "1e-4:1e-3", "--epochs-range", "1:2", *SETS]
    sweep += ["--trials", str(trials), "--study", STUDY, "--repeats", str(repeats), *common]
    procs = [cli(sweep, tmp / "host-0", tracking_uri, logs[0])]
    # the workers start with the sweep, before the study exists (like a job array): --wait lets them join it
    procs += [
        cli(["worker", "--study", STUDY, "--wait", "300", *common], tmp / f"host-{i}", tracking_uri, logs[i])
        for i in (1, 2)
    ]
    try:
        killed = kill_mid_trial(procs[1], storage)
        killed_at = time.time() - start
        codes = {i: procs[i].wait(timeout=max(1.0, timeout - (time.time() - start))) for i in (0, 2)}
    except Exception as exc:  # say what the workers were doing
        tails = "\n".join(f"--- worker {i}\n{log.read_text()[-3000:]}" for i, log in enumerate(logs) if log.exists())
        raise RuntimeError(f"{type(exc).__name__}: {exc}\n{tails}") from exc
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    return {
        "killed_trial": killed.number,
        "killed_at": killed_at,
        "seconds": time.time() - start,
        "exit_codes": codes,
        "logs": {i: logs[i].read_text() for i in range(3)},
        **account(storage, tracking_uri, trials),
    }


def kill_mid_trial(victim: subprocess.Popen, storage: str) -> Any:
    """Wait until `victim` runs a trial, relabel that trial as another host's, SIGKILL the victim; returns the
    trial (as it was before the kill)."""

    def victim_trial() -> Any:
        running = [
            t
            for t in load_study(storage).trials
            if t.state.name == "RUNNING" and t.user_attrs.get("pid") == victim.pid and "mlflow_run_id" in t.user_attrs
        ]
        return running[0] if running else None

    killed = poll(victim_trial, 600, "worker 1 running a trial")
    # as if on another host (relabelled while it still runs): only its silent heartbeat can show it died
    relabel_host(storage, STUDY, killed.number, "another-host")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    return killed


def account(storage: str, tracking_uri: str, trials: int) -> dict[str, Any]:
    """Trials and MLflow runs, counted: lost = requested COMPLETE trials without a finished, tagged run;
    duplicated = extra runs recorded as COMPLETE for the same trial."""
    from mlflow.tracking import MlflowClient

    from unlearn_lab.sweep.study import retry_of

    study = load_study(storage)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("unlearn-lab")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    confirmations = [t for t in study.trials if "confirms" in t.user_attrs]
    done_confirmations = [
        (t.user_attrs["confirms"], t.user_attrs["seed"]) for t in confirmations if t.state.name == "COMPLETE"
    ]
    trial_runs = [r for r in runs if "trial" in r.data.tags and "confirms" not in r.data.tags]
    by_state: dict[str, list[int]] = {}
    for t in study.trials:
        if "confirms" not in t.user_attrs:
            by_state.setdefault(t.state.name, []).append(t.number)
    complete = set(by_state.get("COMPLETE", []))
    tagged = [int(r.data.tags["trial"]) for r in trial_runs if r.data.tags.get("trial_state") == "COMPLETE"]
    finished = {
        int(r.data.tags["trial"])
        for r in trial_runs
        if r.data.tags.get("trial_state") == "COMPLETE" and r.info.status == "FINISHED"
    }
    parent = next((r for r in runs if r.data.tags.get("kind") == "sweep"), None)
    registered = bool(client.search_registered_models(f"name = '{STUDY}'"))
    return {
        "trials_requested": trials,
        "states": by_state,
        "lost": trials - len(complete & finished),
        "duplicated": len(tagged) - len(set(tagged)),
        "complete_runs_match": sorted(set(tagged)) == sorted(complete),
        # distinct parameter settings among COMPLETE trials (the issue found 12 trials covering only 8)
        "distinct_complete_params": len(
            {tuple(sorted(t.params.items())) for t in study.trials if t.state.name == "COMPLETE"}
        ),
        "runs_still_running": [r.data.tags.get("mlflow.runName") for r in runs if r.info.status == "RUNNING"],
        "trial_run_status": {int(r.data.tags["trial"]): r.info.status for r in trial_runs},
        "retries": {t.number: retry_of(t) for t in study.trials if retry_of(t) is not None},
        "failures": {t.number: t.user_attrs.get("failure", "") for t in study.trials if t.state.name == "FAIL"},
        "parent_status": parent.info.status if parent else None,
        # the front as the sweep's run counts it, and the aliases the registry holds for it
        "pareto_size": int(parent.data.metrics.get("pareto_size", -1)) if parent else None,
        "aliases": sorted(client.get_registered_model(STUDY).aliases, key=lambda a: int(a.split("-")[1]))
        if registered
        else [],
        "evals_per_complete_trial": sorted(
            {
                sum(
                    1
                    for e in runs
                    if e.data.tags.get("mlflow.parentRunId") == r.info.run_id and e.data.tags.get("kind") == "eval"
                )
                for r in trial_runs
                if r.data.tags.get("trial_state") == "COMPLETE"
            }
        ),
        # confirmation runs: (trial confirmed, seed) of each COMPLETE one, and the settings that were confirmed
        "confirmations": sorted(done_confirmations),
        "confirmed_settings": sorted({c for c, _ in done_confirmations}),
        "confirmation_states": sorted(t.state.name for t in confirmations),
    }
