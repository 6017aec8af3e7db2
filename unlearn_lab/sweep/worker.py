"""One sweep worker: ask a trial, run it as a nested MLflow run, tell the objectives; repeat within budget.

With `reuse_epochs`, a trial trains the range's largest epoch count once (the lr schedule planned over it),
evaluates every epoch's checkpoint, and each checkpoint inside the epochs range becomes a COMPLETE trial of
its own (params lr, epochs = k). Every trial stops early once its utility collapses below `collapse_utility`
after an epoch (RunOptions.collapse_utility): it ends with the collapsed epoch's evaluation, spending no more
epochs, and is told to Optuna as an infeasible COMPLETE trial (see `constraints`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from unlearn_lab.errors import RunFailed, UsageError
from unlearn_lab.runtime import check_interrupted, deferred
from unlearn_lab.sweep.study import (
    StudyHandle,
    SweepSpec,
    budget_left,
    duplicate_of,
    enqueue_retry,
    objective_values,
    open_study,
    reap,
    trial_config,
    within_budget,
    work_left,
)
from unlearn_lab.tracking import Guarded, Tracker, TrackingLost

if TYPE_CHECKING:
    import optuna

    from unlearn_lab.experiment import RunOptions, RunResult
    from unlearn_lab.plan import Plan

MAX_FAILURE_STREAK = 10
MAX_DUPLICATES = 20
GAVE_UP = 3  # exit code of a spawned worker that stopped after MAX_FAILURE_STREAK failed trials in a row
STOP, AGAIN = "stop", "again"  # what a draw that yields no trial to run means for the worker's loop


@dataclass
class WorkerCounts:
    """What one worker did."""

    complete: int = 0
    failed: int = 0
    checkpoint_trials: int = 0
    epochs_saved: int = 0
    stopped_early: int = 0  # trials that ended at the epoch their utility collapsed (never counted as failed)
    gave_up: bool = False  # stopped after MAX_FAILURE_STREAK failed trials in a row


def run_worker(
    spec: SweepSpec,
    tracker: Tracker,
    parent_run_id: str,
    *,
    worker: int = 0,
    workers: int = 1,
    log: Callable[[str], None] = print,
    sweep_pid: int | None = None,
) -> WorkerCounts:
    """Run trials, tracked by `tracker` under the sweep's run, until the study has `spec.trials` COMPLETE ones (a
    local worker of the `sweep` process `sweep_pid` stops before its next trial once that process is gone)."""
    from unlearn_lab.runtime import choose_device, configure_threads, use_worker_gpu

    threads = configure_threads(workers)
    device = choose_device(spec.device)
    use_worker_gpu(worker, device)  # worker i on visible GPU i % count, not every worker on GPU 0
    handle = open_study(spec, worker)
    return _Worker(spec, tracker, parent_run_id, handle, worker, device, threads, log, sweep_pid).run()


class _Worker:
    """One worker's loop: reap dead trials, draw a trial, run it, record what it gave."""

    def __init__(
        self,
        spec: SweepSpec,
        tracker: Tracker,
        parent_run_id: str,
        handle: StudyHandle,
        worker: int,
        device: str,
        threads: int,
        log: Callable[[str], None],
        sweep_pid: int | None = None,
    ):
        self.spec, self.tracker, self.parent_run_id, self.handle = spec, tracker, parent_run_id, handle
        self.sweep_pid = sweep_pid
        self.study = handle.study
        self.worker, self.device, self.threads, self.log = worker, device, threads, log
        self.counts = WorkerCounts()
        self.streak = 0  # consecutive trials of this worker that produced nothing
        self.duplicates = 0  # consecutive draws that repeated another trial's parameters

    def run(self) -> WorkerCounts:
        while work_left(self.study, self.spec.trials):
            if self.sweep_pid is not None and os.getppid() != self.sweep_pid:
                # die_with_parent's SIGTERM can be lost (an interrupt raised where Python ignores it, e.g. in a
                # finaliser): the trial then ends normally, and the worker must not draw another
                raise KeyboardInterrupt("the sweep process is gone")
            check_interrupted()  # a signal whose KeyboardInterrupt Python dropped: no further trial
            with deferred():  # the study's bookkeeping is never cut half-way (an SQLite storage would stay locked)
                reap(self.handle, self.tracker, self.log)  # other workers may have died since the last trial
            if self.streak >= MAX_FAILURE_STREAK:
                self.log(
                    f"worker {self.worker} gives up: {self.streak} consecutive trials failed; "
                    "check the ranges and the logs"
                )
                self.counts.gave_up = True
                break
            with deferred():
                drawn = self._draw()
            if drawn == STOP:
                break
            if isinstance(drawn, tuple):
                trial, params = drawn
                result = self._run(trial, params)  # interruptible, but for its own store calls
                if result is not None:
                    with deferred():
                        self._record(trial, params, result)
        return self.counts

    def _draw(self) -> tuple[optuna.Trial, dict[str, Any]] | str:
        """Ask for a trial and its parameters; STOP when the budget is taken or the space looks exhausted, AGAIN
        when the draw repeated another trial (it ends PRUNED)."""
        from optuna.trial import TrialState

        study, spec = self.study, self.spec
        with warnings.catch_warnings():  # Optuna warns that heartbeats are meant for Study.optimize: we beat ourselves
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = study.ask()
        params = self._params(trial)
        if not within_budget(study, trial.number, spec.trials):  # another worker took the last slot
            study.tell(trial, state=TrialState.PRUNED)
            return STOP
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        if "confirms" in trial.user_attrs:  # another seed of a setting: its enqueued parameters, trained as they say
            return trial, params
        trial.set_user_attr("seed", spec.cfg.unlearn.seed)
        twin = duplicate_of(study.get_trials(deepcopy=False), trial.number, params)
        if twin is None:
            self.duplicates = 0
            return trial, params
        # the same parameters are done or running elsewhere: draw again
        trial.set_user_attr("duplicate_of", twin)
        study.tell(trial, state=TrialState.PRUNED)
        self.duplicates += 1
        if self.duplicates >= MAX_DUPLICATES:
            self.log(
                f"worker {self.worker} stops: {self.duplicates} draws in a row repeated finished trials "
                "(space exhausted?)"
            )
            return STOP
        return AGAIN

    def _params(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trial's parameters: queued ones (the default config, a retry, a confirmation run) as queued, even
        outside the searched ranges; drawn ones from the space. With reuse_epochs every exploration run trains the
        range's largest epoch count (its checkpoints are trials); a confirmation run trains its setting's."""
        with warnings.catch_warnings():  # a queued value outside a range: Optuna warns, and takes it
            warnings.filterwarnings("ignore", message="Fixed parameter")
            reuse = self.spec.reuse_epochs and "confirms" not in trial.user_attrs
            return self.spec.space.draw(trial, reuse_epochs=reuse)

    def _plan(self, trial: optuna.Trial, params: dict[str, Any]) -> tuple[Plan, RunOptions]:
        """The trial as a run: its config, plan (nested under the sweep's run) and options."""
        from unlearn_lab.experiment import RunOptions
        from unlearn_lab.plan import default_run_name, resolve

        spec = self.spec
        confirms = trial.user_attrs.get("confirms")
        seed = int(trial.user_attrs.get("seed", spec.cfg.unlearn.seed))
        cfg = trial_config(spec.cfg, spec.space, params, reuse_epochs=spec.reuse_epochs, seed=seed)
        tags = {"sweep": spec.study_name, "trial": str(trial.number), "worker": str(self.worker), "seed": str(seed)}
        if trial.user_attrs.get("startup"):  # one of the start-up grid's trials (study.enqueue_startup)
            tags["startup"] = str(trial.user_attrs["startup"])
        parent, name = self.parent_run_id, default_run_name(cfg, prefix=f"t{trial.number}-")
        if confirms is not None:  # nested under the run of the trial it confirms, named after it
            parent = self.study.trials[int(confirms)].user_attrs.get("mlflow_run_id") or parent
            name, tags["confirms"] = f"t{confirms}-seed{seed}", str(confirms)
        plan = resolve(
            "run",
            cfg,
            device=self.device,
            threads=self.threads,
            task_name=f"{spec.study_name}_trial-{trial.number}",
            saves=spec.saves,
            count=False,
            run_name=name,
        )
        opts = RunOptions(
            progress=False,
            parent_run_id=parent,
            extra_tags=tags,
            eval_every="epoch" if spec.reuse_epochs and confirms is None else "none",
            collapse_utility=spec.collapse_utility,
            collapse_metric=spec.objectives[1].metric,
            on_run_started=lambda run_id: trial.set_user_attr("mlflow_run_id", run_id),
        )
        return plan, opts

    def _run(self, trial: optuna.Trial, params: dict[str, Any]) -> RunResult | None:
        """Run the trial under its heartbeat; None when it failed (marked FAIL, the sweep goes on)."""
        from unlearn_lab.experiment import run_experiment

        study, tracker = self.study, self.tracker
        plan, opts = self._plan(trial, params)
        try:
            with heartbeat(self.handle, trial):
                return run_experiment(plan, tracker, opts, log=lambda _: None)
        except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM: mark the trial (run_experiment marked its run KILLED)
            with deferred():
                _fail(study, tracker, trial, f"interrupted ({exc.args[0] if exc.args else 'SIGINT'})")
                queued = enqueue_retry(study, study.get_trials(deepcopy=False)[trial.number])
            self.log(
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
            self.counts.failed += 1
            self.streak += 1
            self.log(f"trial {trial.number} FAILED: {reason}")
            return None

    def _record(self, trial: optuna.Trial, params: dict[str, Any], result: RunResult) -> None:
        """Checkpoint trials (--reuse-epochs), then the trial itself. A trial stopped early for a collapsed utility
        is COMPLETE with the scores it ended with (so the sampler learns where utility collapses and moves away)
        but marked `stopped_at`, and never a Pareto point (its params name epochs it did not train); with
        --reuse-epochs its run FAILs instead, the checkpoint of its stopping epoch being a trial of its own."""
        study, spec, counts = self.study, self.spec, self.counts
        confirms = trial.user_attrs.get("confirms")
        reuse = spec.reuse_epochs and confirms is None  # a confirmation run trains exactly its setting's epochs
        added: list[int] = []
        if reuse:
            added = _add_checkpoint_trials(study, spec, trial, params, result)
            counts.checkpoint_trials += len(added)
        if reuse or result.stopped_at is not None:
            saved = epochs_saved(added, result.stopped_at, params["epochs"])
            trial.set_user_attr("epochs_saved", saved)
            counts.epochs_saved += saved
        if result.stopped_at is not None:
            trial.set_user_attr("stopped_at", result.stopped_at)
            self.log(f"trial {trial.number}: {result.stop_reason} at epoch {result.stopped_at}; stopped early")
            counts.stopped_early += 1  # not a failure, whatever Optuna state the trial ends in
            if reuse:
                _fail(study, self.tracker, trial, f"stopped early at epoch {result.stopped_at}: {result.stop_reason}")
                self.streak = 0 if added else self.streak + 1
                return
        values = objective_values(spec, result.summary)
        for o in spec.objectives:
            trial.set_user_attr(o.metric, result.summary[o.metric])
        for name, value in constraints(spec, values[1]).items():
            trial.set_constraint(name, value)
        study.tell(trial, values)
        tags = {f"objective.{o.name}": f"{v:.6g}" for o, v in zip(spec.objectives, values, strict=True)}
        Guarded(self.tracker, self.log).set_tags(result.run_id, {"trial_state": "COMPLETE", **tags})
        counts.complete += 1
        self.streak = 0
        what = f" (confirms trial {confirms}, seed {trial.user_attrs['seed']})" if confirms is not None else ""
        self.log(
            f"trial {trial.number}{what}: {params['method'] + ' ' if 'method' in params else ''}"
            f"lr={params['lr']:.3g} epochs={params['epochs']} -> "
            + " ".join(f"{o.metric}={result.summary[o.metric]:.4g}" for o in spec.objectives)
            + f" ({result.seconds:.0f} s)"
        )


def constraints(spec: SweepSpec, utility: float) -> dict[str, float]:
    """Optuna constraints (feasible when <= 0): a trial whose utility collapsed below the floor, or falls below
    --min-utility, is infeasible, so the sampler steers away from it and it is never on the Pareto front."""
    out = {"collapse_utility": spec.collapse_utility - utility}
    if spec.min_utility is not None:
        out["min_utility"] = spec.min_utility - utility
    return out


@contextlib.contextmanager
def heartbeat(handle: StudyHandle, trial: optuna.Trial) -> Iterator[None]:
    """RDB storages: record the trial's heartbeat while it runs, so a dead worker's trial can be failed."""
    interval = handle.heartbeat_interval
    if interval is None:
        yield
        return
    trial_id = handle.trial_id(trial.number)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            handle.record_heartbeat(trial_id)

    handle.record_heartbeat(trial_id)
    thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial.number}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _fail(study: optuna.Study, tracker: Tracker, trial: optuna.Trial, reason: str) -> None:
    """The study first (it decides what is retried), then the MLflow tags, which may be unreachable."""
    from optuna.trial import TrialState

    trial.set_user_attr("failure", reason)
    study.tell(trial, state=TrialState.FAIL)
    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id:
        Guarded(tracker, log=lambda _: None).set_tags(run_id, {"trial_state": "FAIL", "failure": reason[:500]})


def _add_checkpoint_trials(
    study: optuna.Study, spec: SweepSpec, trial: optuna.Trial, params: dict[str, Any], result: RunResult
) -> list[int]:
    """One COMPLETE trial per evaluated epoch k in [low, last) of this run (and the stopping epoch of a run
    stopped early), while the budget lasts; returns the epochs added."""
    import optuna

    low, high = (int(end) for end in spec.space.epochs.bounds())
    last = result.stopped_at or high
    added: list[int] = []
    for epoch in range(low, last + (result.stopped_at is not None)):
        summary = result.epoch_summaries.get(epoch)
        if summary is None or epoch == high:
            continue
        # the running trial already holds a slot; if it stopped early it will FAIL and free that slot
        if budget_left(study, spec.trials) <= (-1 if result.stopped_at is not None else 0):
            break
        values = objective_values(spec, summary)
        study.add_trial(
            optuna.trial.create_trial(
                params={**params, "epochs": epoch},
                distributions={
                    **trial.distributions,
                    "epochs": optuna.distributions.IntDistribution(low, high),
                },
                values=list(values),
                user_attrs={
                    "checkpoint_of": trial.number,
                    "seed": spec.cfg.unlearn.seed,
                    **{o.metric: summary[o.metric] for o in spec.objectives},
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

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(poll)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, daemon=True, name="die-with-parent")
    thread.start()
    return thread


def worker_entry(spec: SweepSpec, parent_run_id: str, worker: int, workers: int, sweep_pid: int | None = None) -> None:
    """multiprocessing entry point (spawned processes): a new process, so it builds its one tracker here."""
    from unlearn_lab.runtime import interrupt_on_signals
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker

    interrupt_on_signals()
    if sweep_pid is not None:
        die_with_parent(sweep_pid)
    tracker: Tracker | None = None
    try:
        tracker = MlflowTracker(spec.tracking_uri)
        counts = run_worker(spec, tracker, parent_run_id, worker=worker, workers=workers, sweep_pid=sweep_pid)
    except KeyboardInterrupt:  # the trial is marked; exit quietly (the parent reports)
        if sweep_pid is not None and os.getppid() != sweep_pid:  # orphaned: nobody else will close the sweep's run
            closer = tracker if tracker is not None else MlflowTracker(spec.tracking_uri)  # interrupted while built
            Guarded(closer, log=lambda _: None).end_run(parent_run_id, "KILLED")
        raise SystemExit(130) from None
    except (RunFailed, UsageError) as exc:  # one line, as the CLI would print it
        print(f"error: worker {worker}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if counts.gave_up:
        raise SystemExit(GAVE_UP)
