"""Run every method at its defaults on an experiment (default: the embedded world) and print a markdown table.

    .venv/bin/python scripts/methods_table.py [--experiment FILE] [--forget forget10] [--tracking-uri URI]

Each method is one tracked run (MLflow, default ./mlruns); the table is what docs/results.md shows.
"""

from __future__ import annotations

import argparse
import time

from unlearn_lab.commands import make_plan
from unlearn_lab.config import load_experiment
from unlearn_lab.evaluation import eval_data, evaluate_model, load_for_eval, reference_entries
from unlearn_lab.experiment import RunOptions, run_experiment
from unlearn_lab.methods import METHODS
from unlearn_lab.metrics.report import fmt
from unlearn_lab.models.prepare import prepare
from unlearn_lab.runtime import configure_threads
from unlearn_lab.tracking.mlflow_tracker import MlflowTracker

COLUMNS = ("forget_quality", "model_utility", "forget_Q_A_Prob", "forget_Q_A_ROUGE", "privleak", "forget_truth_ratio")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=None)
    parser.add_argument("--forget", default="forget10")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    configure_threads()
    base = load_experiment(args.experiment, [f"data.forget_split={args.forget}"])
    rows = []
    for name, role in (("Finetuned (target)", "target"), ("Retain", "retain")):
        plan = make_plan("eval", base, device=args.device, evaluated=role)
        prepare(plan)
        data = eval_data(plan)
        reference = reference_entries(plan, data, progress=False)
        model, tok = load_for_eval(plan, plan.evaluated.spec)
        rows.append(
            (name, evaluate_model(plan, model, tok, reference=reference, data=data, progress=False).summary, None)
        )
    tracker = MlflowTracker(args.tracking_uri, experiment="unlearn-lab-methods")
    for method in METHODS:
        cfg = load_experiment(args.experiment, [f"data.forget_split={args.forget}", f"unlearn.method={method}"])
        start = time.perf_counter()
        plan = make_plan("run", cfg, device=args.device, task_name=f"table_{method}_{args.forget}")
        result = run_experiment(plan, tracker, RunOptions(progress=False), log=lambda _: None)
        rows.append((method, result.summary, time.perf_counter() - start))
    print(f"| method | {' | '.join(COLUMNS)} | wall time (s) |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for name, summary, seconds in rows:
        cells = " | ".join(fmt(summary.get(c)) for c in COLUMNS)
        print(f"| {name} | {cells} | {'-' if seconds is None else f'{seconds:.1f}'} |")


if __name__ == "__main__":
    main()
