"""Reliability figures for docs/reliability.md: three workers on one study in a real PostgreSQL, tracked by a
real `mlflow server` (PostgreSQL backend), one worker SIGKILLed mid-trial; trials lost and duplicated counted
from the study and from MLflow.

    .venv/bin/python benchmarks/reliability.py [--trials 12] [--heartbeat 2]

Needs PostgreSQL's server programs (Debian's postgresql package). Uses the tiny world of the tests and a
private model cache; takes a few minutes on 2 cores. The fault-injection tests (Ctrl-C, SIGTERM, tracking server
lost, killed model save) and the bad-input catalogue are tests/test_faults.py and tests/test_bad_input.py.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--heartbeat", type=int, default=2)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="unlearn-lab-reliability-"))
    os.environ["UNLEARN_LAB_CACHE"] = str(tmp / "cache")
    from tests import scale_out, servers
    from tests.conftest import TINY
    from unlearn_lab.commands import make_plan
    from unlearn_lab.config import load_experiment
    from unlearn_lab.models.prepare import prepare

    if servers.postgres_binaries() is None:
        sys.exit("PostgreSQL server programs not found (Debian: apt-get install postgresql)")
    start = time.time()
    prepare(make_plan("prepare", load_experiment(None, TINY), device="cpu"), log=lambda _: None)
    print(f"tiny models prepared in {time.time() - start:.0f} s", flush=True)
    with servers.postgres() as dbs:
        start = time.time()
        with servers.mlflow_server(dbs["mlflow"], tmp / "artifacts") as server:
            print(f"PostgreSQL + mlflow server up in {time.time() - start:.0f} s ({server.uri})", flush=True)
            r = scale_out.three_workers(tmp, dbs["optuna"], server.uri, trials=args.trials, heartbeat=args.heartbeat)
    states = {k: len(v) for k, v in r["states"].items()}
    rows = [
        ("workers", "3 (1 sweep + 2 worker commands, separate folders)"),
        (
            "faults injected",
            f"1 SIGKILL of worker 1 mid-trial (trial {r['killed_trial']}, at {r['killed_at']:.0f} s); "
            "its trial relabelled as another host's, so only its heartbeat could reveal it",
        ),
        ("trials requested", str(r["trials_requested"])),
        ("trial states", ", ".join(f"{k} {v}" for k, v in sorted(states.items()))),
        (
            "killed trial",
            f"FAIL, MLflow run {r['trial_run_status'][r['killed_trial']]}; re-queued as "
            + ", ".join(f"trial {n}" for n, of in r["retries"].items() if of == r["killed_trial"]),
        ),
        ("trials lost", str(r["lost"])),
        ("trials duplicated", str(r["duplicated"])),
        ("COMPLETE trials == runs tagged COMPLETE", str(r["complete_runs_match"])),
        ("MLflow runs left RUNNING", str(len(r["runs_still_running"]))),
        ("sweep parent run", str(r["parent_status"])),
        (
            "COMPLETE trials run per worker",
            ", ".join(
                f"worker {i}: {len(re.findall(r'^trial [0-9]+: lr=', text, re.M))}" for i, text in r["logs"].items()
            ),
        ),
        ("surviving workers' exit codes", str(r["exit_codes"])),
        ("wall time", f"{r['seconds']:.0f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print(f"logs and data: {tmp}")


if __name__ == "__main__":
    main()
