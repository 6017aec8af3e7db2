"""One sweep worker: ask a trial, run it as a nested MLflow run, tell the objectives; repeat within budget."""
from __future__ import annotations

import os
import socket

from unlearn_lab.sweep.study import (SweepSpec, budget_left, objectives, open_study, reap_dead_trials, trial_config,
                                     within_budget)


def run_worker(spec: SweepSpec, parent_run_id: str, *, worker: int = 0, workers: int = 1, log=print) -> int:
    """Run trials until the study has `spec.trials` COMPLETE ones; returns how many this worker completed."""
    from optuna.trial import TrialState

    from unlearn_lab.experiment import RunOptions, run_experiment
    from unlearn_lab.runtime import configure_threads
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker
    from unlearn_lab.train import DivergedError

    configure_threads(workers)
    tracker = MlflowTracker(spec.tracking_uri)
    study = open_study(spec, worker)
    done = 0
    while budget_left(study, spec.trials) > 0:
        trial = study.ask()
        if not within_budget(study, trial.number, spec.trials):  # another worker took the last slot
            study.tell(trial, state=TrialState.PRUNED)
            break
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        params = {p.name: p.suggest(trial) for p in spec.space.params}
        cfg = trial_config(spec.cfg, spec.space, params)
        name = f"{spec.study_name}/trial-{trial.number}"
        tags = {"sweep": spec.study_name, "trial": str(trial.number), "worker": str(worker)}
        opts = RunOptions(task_name=name.replace("/", "_"), saves=spec.saves, progress=False,
                          parent_run_id=parent_run_id, extra_tags=tags,
                          on_run_started=lambda run_id, t=trial: t.set_user_attr("mlflow_run_id", run_id))
        try:
            result = run_experiment(cfg, tracker, opts, log=lambda _: None)
        except DivergedError as exc:
            trial.set_user_attr("failure", str(exc))
            _tag_trial(tracker, trial, "FAIL")
            study.tell(trial, state=TrialState.FAIL)
            log(f"trial {trial.number} FAILED: {exc}")
            continue
        except Exception as exc:
            trial.set_user_attr("failure", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            _tag_trial(tracker, trial, "FAIL")
            study.tell(trial, state=TrialState.FAIL)
            log(f"trial {trial.number} FAILED: {exc}")
            continue
        values = objectives(result.summary)
        trial.set_user_attr("model_utility", values[1])
        trial.set_user_attr("forget_quality", result.summary["forget_quality"])
        trial.set_user_attr("model_dir", str(result.model_dir))
        study.tell(trial, values)
        tracker.set_tags(result.run_id, {"trial_state": "COMPLETE", "objective.log10_forget_quality": f"{values[0]:.6g}",
                                         "objective.model_utility": f"{values[1]:.6g}"})
        done += 1
        log(f"trial {trial.number}: lr={params['lr']:.3g} epochs={params['epochs']} -> "
            f"forget_quality={result.summary['forget_quality']:.3g} model_utility={values[1]:.4f} "
            f"({result.seconds:.0f} s)")
    return done


def _tag_trial(tracker, trial, state: str) -> None:
    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id:
        tracker.set_tags(run_id, {"trial_state": state, "failure": trial.user_attrs.get("failure", "")[:500]})


def worker_entry(spec: SweepSpec, parent_run_id: str, worker: int, workers: int) -> None:
    """multiprocessing entry point (spawned processes)."""
    run_worker(spec, parent_run_id, worker=worker, workers=workers)


__all__ = ["run_worker", "worker_entry", "reap_dead_trials"]
