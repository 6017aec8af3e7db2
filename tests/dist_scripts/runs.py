"""Run by tests/test_distributed.py under torchrun (gloo, CPU): one unlearning run on the tiny world through
run_experiment (prepare -> session -> the shared loop under DDP -> rank 0 saves and evaluates), one JSON line per
rank in $DIST_RESULTS/rank<r>.jsonl. UNLEARN_LAB_CACHE names the model cache; the settings are
tests/conftest.py's TINY plus argv.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout's unlearn_lab and tests

from tests.conftest import TINY
from unlearn_lab.config import load_experiment
from unlearn_lab.experiment import RunOptions, run_experiment
from unlearn_lab.plan import resolve
from unlearn_lab.runtime import configure_threads, launched_processes
from unlearn_lab.tracking.memory import MemoryTracker


def main(saves: str, eval_every: str, *sets: str) -> None:
    configure_threads(threads=1)
    plan = resolve("run", load_experiment(None, [*TINY, *sets]), device="cpu", threads=1, saves=saves)
    result = run_experiment(plan, MemoryTracker(), RunOptions(eval_every=eval_every, progress=False), log=print)
    line = {
        "processes": launched_processes(),
        "steps": [s.step for s in result.steps],
        "losses": [s.loss for s in result.steps],
        "summary": result.summary,
        "epochs_evaluated": sorted(result.epoch_summaries),
        "target": plan.target.spec,
        "retain": plan.retain.spec,
    }
    rank = int(os.environ["RANK"])
    with open(Path(os.environ["DIST_RESULTS"]) / f"rank{rank}.jsonl", "a") as fh:  # a pipe would mix the ranks
        fh.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
