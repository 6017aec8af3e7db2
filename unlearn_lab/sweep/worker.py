"""One sweep worker: ask a trial, run it as a nested MLflow run, tell the objectives; repeat within budget.

With `reuse_epochs`, a trial trains the range's largest epoch count once (the lr schedule planned over it),
evaluates every epoch's checkpoint, and each checkpoint inside the epochs range becomes a COMPLETE trial of
its own (params lr, epochs = k); a run whose model_utility falls below `collapse_utility` stops early.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import warnings

from unlearn_lab.errors import RunFailed, UsageError
from unlearn_lab.sweep.study import (
    SweepSpec,
    budget_left,
    duplicate_of,
    enqueue_retry,
    has_heartbeats,
    objectives,
    open_study,
    reap,
    trial_config,
    within_budget,
    work_left,
)
from unlearn_lab.tracking import Guarded, TrackingLost

MAX_FAILURE_STREAK = 10
MAX_DUPLICATES = 20
GAVE_UP = 3  # exit code of a spawned worker that stopped after MAX_FAILURE_STREAK failed trials in a row


def run_worker(spec: SweepSpec, parent_run_id: str, *, worker: int = 0, workers: int = 1, log=print) -> dict:
    """Run trials until the study has `spec.trials` COMPLETE ones; returns counts for this worker."""
    from optuna.trial import TrialState

    from unlearn_lab.experiment import RunOptions, run_experiment
    from unlearn_lab.plan import default_run_name, resolve
    from unlearn_lab.runtime import choose_device, configure_threads
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker

    threads = configure_threads(workers)
    device = choose_device(spec.device)
    tracker = MlflowTracker(spec.tracking_uri)
    study = open_study(spec, worker)
    counts = {"complete": 0, "failed": 0, "checkpoint_trials": 0, "epochs_saved": 0, "gave_up": False}
    high = spec.space.epochs.high
    streak = 0  # consecutive trials of this worker that produced nothing
    duplicates = 0  # consecutive draws that repeated another trial's parameters
    while work_left(study, spec.trials):
        reap(study, tracker, log)  # other workers may have died since the last trial
        if streak >= MAX_FAILURE_STREAK:
            log(f"worker {worker} gives up: {streak} consecutive trials failed; check the ranges and the logs")
            counts["gave_up"] = True
            break
        with warnings.catch_warnings():  # Optuna warns that heartbeats are meant for Study.optimize: we beat ourselves
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = study.ask()
        if not within_budget(study, trial.number, spec.trials):  # another worker took the last slot
            study.tell(trial, state=TrialState.PRUNED)
            break
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        params = {
            p.name: (
                trial.suggest_int("epochs", high, high)
                if spec.reuse_epochs and p.name == "epochs"
                else p.suggest(trial)
            )
            for p in spec.space.params
        }
        twin = duplicate_of(study.get_trials(deepcopy=False), trial.number, params)
        if twin is not None:  # the same parameters are done or running elsewhere: draw again
            trial.set_user_attr("duplicate_of", twin)
            study.tell(trial, state=TrialState.PRUNED)
            duplicates += 1
            if duplicates >= MAX_DUPLICATES:
                log(f"worker {worker} stops: {duplicates} draws in a row repeated finished trials (space exhausted?)")
                break
            continue
        duplicates = 0
        cfg = trial_config(spec.cfg, spec.space, params, reuse_epochs=spec.reuse_epochs)
        name = f"{spec.study_name}_trial-{trial.number}"
        tags = {"sweep": spec.study_name, "trial": str(trial.number), "worker": str(worker)}
        collapse = lambda epoch, summary: (
            f"model_utility {summary['model_utility']:.3g} < {spec.collapse_utility}"
            if summary.get("model_utility", 1.0) < spec.collapse_utility
            else None
        )
        plan = resolve(
            "run",
            cfg,
            device=device,
            threads=threads,
            task_name=name,
            saves=spec.saves,
            count=False,
            run_name=default_run_name(cfg, prefix=f"t{trial.number}-"),
        )
        opts = RunOptions(
            progress=False,
            parent_run_id=parent_run_id,
            extra_tags=tags,
            eval_every="epoch" if spec.reuse_epochs else "none",
            stop_when=collapse if spec.reuse_epochs else None,
            on_run_started=lambda run_id, t=trial: t.set_user_attr("mlflow_run_id", run_id),
        )
        try:
            with heartbeat(study, trial):
                result = run_experiment(plan, tracker, opts, log=lambda _: None)
        except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM: mark the trial (run_experiment marked its run KILLED)
            _fail(study, tracker, trial, f"interrupted ({exc.args[0] if exc.args else 'SIGINT'})")
            queued = enqueue_retry(study, study.get_trials(deepcopy=False)[trial.number])
            log(
                f"trial {trial.number} interrupted: marked FAIL{', its parameters queued again' if queued else ''}; "
                "rerun the command to resume the study"
            )
            raise
        except TrackingLost as exc:  # every later trial would fail the same way: stop this worker
            _fail(study, tracker, trial, f"TrackingLost: {exc}")
            raise
        except Exception as exc:  # noqa: BLE001 - DivergedError included: the trial fails with its reason, the sweep goes on
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            _fail(study, tracker, trial, reason)
            counts["failed"] += 1
            streak += 1
            log(f"trial {trial.number} FAILED: {reason}")
            continue
        if spec.reuse_epochs:
            added = _add_checkpoint_trials(study, spec, trial, params, result)
            saved = epochs_saved(added, result.stopped_at, high)
            trial.set_user_attr("epochs_saved", saved)
            counts["checkpoint_trials"] += len(added)
            counts["epochs_saved"] += saved
            if result.stopped_at is not None:
                trial.set_user_attr("stopped_at", result.stopped_at)
                _fail(study, tracker, trial, f"stopped early at epoch {result.stopped_at}: utility collapsed")
                counts["failed"] += 1
                streak = 0 if added else streak + 1
                log(f"trial {trial.number}: utility collapsed at epoch {result.stopped_at}; stopped early")
                continue
        values = objectives(result.summary)
        trial.set_user_attr("model_utility", values[1])
        trial.set_user_attr("forget_quality", result.summary["forget_quality"])
        study.tell(trial, values)
        Guarded(tracker, log).set_tags(
            result.run_id,
            {
                "trial_state": "COMPLETE",
                "objective.log10_forget_quality": f"{values[0]:.6g}",
                "objective.model_utility": f"{values[1]:.6g}",
            },
        )
        counts["complete"] += 1
        streak = 0
        log(
            f"trial {trial.number}: lr={params['lr']:.3g} epochs={params['epochs']} -> "
            f"forget_quality={result.summary['forget_quality']:.3g} model_utility={values[1]:.4f} "
            f"({result.seconds:.0f} s)"
        )
    return counts


@contextlib.contextmanager
def heartbeat(study, trial):
    """RDB storages: record the trial's heartbeat while it runs, so a dead worker's trial can be failed."""
    if not has_heartbeats(study):
        yield
        return
    storage = study._storage
    interval = storage.get_heartbeat_interval()
    stop = threading.Event()

    def beat():
        while not stop.wait(interval):
            storage.record_heartbeat(trial._trial_id)

    storage.record_heartbeat(trial._trial_id)
    thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial.number}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _fail(study, tracker, trial, reason: str) -> None:
    """The study first (it decides what is retried), then the MLflow tags, which may be unreachable."""
    from optuna.trial import TrialState

    trial.set_user_attr("failure", reason)
    study.tell(trial, state=TrialState.FAIL)
    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id:
        Guarded(tracker, log=lambda _: None).set_tags(run_id, {"trial_state": "FAIL", "failure": reason[:500]})


def _add_checkpoint_trials(study, spec: SweepSpec, trial, params: dict, result) -> int:
    """One COMPLETE trial per evaluated epoch k in [low, last) of this run (and the stopping epoch of a run
    stopped early), while the budget lasts; returns the epochs added."""
    import optuna

    last = result.stopped_at or spec.space.epochs.high
    added: list[int] = []
    for epoch in range(spec.space.epochs.low, last + (result.stopped_at is not None)):
        summary = result.epoch_summaries.get(epoch)
        if summary is None or epoch == spec.space.epochs.high:
            continue
        # the running trial already holds a slot; if it stopped early it will FAIL and free that slot
        if budget_left(study, spec.trials) <= (-1 if result.stopped_at is not None else 0):
            break
        values = objectives(summary)
        study.add_trial(
            optuna.trial.create_trial(
                params={**params, "epochs": epoch},
                distributions={
                    **trial.distributions,
                    "epochs": optuna.distributions.IntDistribution(spec.space.epochs.low, spec.space.epochs.high),
                },
                values=list(values),
                user_attrs={
                    "checkpoint_of": trial.number,
                    "forget_quality": summary["forget_quality"],
                    "model_utility": values[1],
                    "mlflow_run_id": trial.user_attrs.get("mlflow_run_id", ""),
                },
            )
        )
        added.append(epoch)
    return added


def epochs_saved(added: list[int], stopped_at: int | None, high: int) -> int:
    """Checkpoints before the last trained epoch came free (a separate trial would train k epochs each);
    a run stopped at epoch s also skipped high - s epochs. The checkpoint at s itself was the run's work."""
    last = stopped_at or high
    return sum(k for k in added if k < last) + (high - stopped_at if stopped_at is not None else 0)


def die_with_parent(parent_pid: int, poll: float = 1.0) -> threading.Thread:
    """A local worker whose `sweep` process is gone (SIGKILL, a crashed terminal) stops too: it sends itself
    SIGTERM, so its trial is marked FAIL and queued again, and the sweep's run is marked KILLED."""
    import signal

    def watch():
        while os.getppid() == parent_pid:
            threading.Event().wait(poll)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, daemon=True, name="die-with-parent")
    thread.start()
    return thread


def worker_entry(spec: SweepSpec, parent_run_id: str, worker: int, workers: int, sweep_pid: int | None = None) -> None:
    """multiprocessing entry point (spawned processes)."""
    from unlearn_lab.runtime import interrupt_on_sigterm
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker

    interrupt_on_sigterm()
    if sweep_pid is not None:
        die_with_parent(sweep_pid)
    try:
        counts = run_worker(spec, parent_run_id, worker=worker, workers=workers)
    except KeyboardInterrupt:  # the trial is marked; exit quietly (the parent reports)
        if sweep_pid is not None and os.getppid() != sweep_pid:  # orphaned: nobody else will close the sweep's run
            Guarded(MlflowTracker(spec.tracking_uri), log=lambda _: None).end_run(parent_run_id, "KILLED")
        raise SystemExit(130) from None
    except (RunFailed, UsageError) as exc:  # one line, as the CLI would print it
        print(f"error: worker {worker}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if counts["gave_up"]:
        raise SystemExit(GAVE_UP)
