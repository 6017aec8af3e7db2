"""Scale-out on real servers on loopback: PostgreSQL (Optuna's RDB storage and MLflow's backend store) and
`mlflow server`. Three workers on one study, one SIGKILLed mid-trial: nothing lost, nothing duplicated."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests import scale_out


@pytest.mark.slow
def test_three_workers_one_killed_lose_and_duplicate_nothing(tmp_path, prepared, pg_server, mlflow_pg):
    """Exactly the requested trials complete, the killed one is failed by heartbeat and re-run once, the front is
    confirmed on a second seed by whichever workers are alive (each confirmation run exactly once), and only the
    sweep process writes the reports and sets the registry aliases (a joined worker used to race it there)."""
    result = scale_out.three_workers(tmp_path, pg_server["optuna"], mlflow_pg.uri, trials=6, heartbeat=2, repeats=2)
    logs = "\n".join(f"--- worker {i}\n{text[-1500:]}" for i, text in result["logs"].items())
    assert result["exit_codes"] == {0: 0, 2: 0}, logs
    states, killed = result["states"], result["killed_trial"]
    # exactly the requested COMPLETE trials; the killed trial is the only FAIL; nothing left RUNNING/WAITING
    assert len(states["COMPLETE"]) == 6, (states, logs)
    assert states.get("FAIL") == [killed], (states, logs)
    assert set(states) <= {"COMPLETE", "FAIL", "PRUNED"}, states
    assert result["lost"] == 0 and result["duplicated"] == 0 and result["complete_runs_match"], result
    assert result["distinct_complete_params"] == 6, result  # workers on several "hosts" never repeat a setting
    # the killed trial: its MLflow run KILLED (never left RUNNING), its parameters re-run once by another worker
    assert result["trial_run_status"][killed] == "KILLED"
    assert list(result["retries"].values()) == [killed] and result["retries"].keys() <= set(states["COMPLETE"])
    assert result["runs_still_running"] == [] and result["parent_status"] == "FINISHED"
    assert result["evals_per_complete_trial"] == [1]
    # each worker folder is its own "host": the survivors both ran trials
    assert "trial" in result["logs"][2] and "Pareto front" in result["logs"][0]
    # one writer of the reports: the sweep registered its front (an alias per Pareto rank), the joined worker
    # wrote nothing at the end
    assert "Pareto front" not in result["logs"][2], result["logs"][2][-1500:]
    assert result["pareto_size"] >= 1, result
    assert result["aliases"] == [f"pareto-{k}" for k in range(1, result["pareto_size"] + 1)], result
    assert "waiting up to 300 s for the study" in result["logs"][2]  # started before the study existed
    # every confirmed setting got its second seed exactly once, and no confirmation run was lost
    assert result["confirmed_settings"] and [c for c, _ in result["confirmations"]] == result["confirmed_settings"]
    assert {s for _, s in result["confirmations"]} == {1}
    assert set(result["confirmation_states"]) <= {"COMPLETE"}, result


def test_unreachable_postgres_storage_is_one_line(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "unlearn_lab.cli",
            "worker",
            "--study",
            "s",
            "--storage",
            "postgresql+psycopg2://nobody@127.0.0.1:9/optuna",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot open storage 'postgresql+psycopg2://"), done.stderr
    assert list(tmp_path.iterdir()) == []


def test_worker_wait_gives_up_with_one_clear_line(tmp_path):
    import time

    start = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "unlearn_lab.cli",
            "worker",
            "--study",
            "s",
            "--storage",
            f"journal:{tmp_path}/none.log",
            "--wait",
            "2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and time.monotonic() - start >= 2
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("waiting up to 2 s for the study: no study journal at")
    assert lines[-1].startswith("error: no study journal at") and "Traceback" not in done.stderr
