"""`unlearn-lab sweep`: the study's MLflow parent run, its workers, and the reports at the end.

One process writes a study's reports: the `sweep` command, which owns the study's parent run. Local worker
processes and joined `unlearn-lab worker`s run trials only; if the sweep process is gone when the study
completes, rerunning the same `sweep` command finds it complete and writes the reports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearn_lab.errors import RunFailed, UsageError
from unlearn_lab.sweep.finish import REFERENCE_POINTS, SweepResult, finish_sweep
from unlearn_lab.sweep.study import (
    StudyHandle,
    StudyNotReady,
    SweepSpec,
    enqueue_default,
    enqueue_startup,
    explored,
    make_storage,
    open_study,
    reap,
    reap_dead_trials,
    save_spec,
    spec_from_study,
    work_left,
)
from unlearn_lab.tracking import Guarded, Tracker

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    import optuna

Log = Callable[[str], None]


def run_sweep(spec: SweepSpec, *, workers: int = 1, log: Log = print) -> SweepResult:
    """`unlearn-lab sweep`: create or resume the study and its parent run, run `workers` local workers until the
    study is complete (waiting for trials other workers run), then write the reports. The one tracker of this
    process is built here and handed to everything below; spawned workers build their own."""
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker

    tracker = MlflowTracker(spec.tracking_uri)
    handle = open_study(spec)
    study = handle.study
    save_spec(study, spec)
    if not study.trials:  # a new study: the default config, then the start-up grid
        enqueue_default(study, spec)
        enqueue_startup(study, spec)
    reap(handle, tracker, log, orphans=True)
    if REFERENCE_POINTS not in study.user_attrs:  # once per study: the Pareto plot draws them
        study.set_user_attr(REFERENCE_POINTS, experiment_models(spec, log))
    parent = _parent_run(study, spec, tracker)
    local = LocalWorkers(spec, tracker, parent, handle, workers, log)
    guarded = Guarded(tracker, log)  # the server may be the reason we are failing
    try:
        complete_study(handle, spec, tracker, local.run, log)
        confirm_front(handle, spec, tracker, local.run, log)
        return finish_sweep(study, spec, tracker, parent)
    except KeyboardInterrupt:
        local.stop()
        guarded.end_run(parent, "KILLED")
        raise
    except BaseException:
        local.stop()
        guarded.end_run(parent, "FAILED")
        raise


def _parent_run(study: optuna.Study, spec: SweepSpec, tracker: Tracker) -> str:
    """The sweep's MLflow run: resumed from the study, or started (and recorded in the study) the first time."""
    parent = study.user_attrs.get("mlflow_parent_run_id")
    if parent:
        tracker.resume_run(parent)
        return str(parent)
    tags = {
        "kind": "sweep",
        "method": ",".join(m.name for m in spec.space.methods) or spec.cfg.unlearn.method,
        "forget_split": spec.cfg.data.forget_split,
        "study": spec.study_name,
        "storage": spec.storage,
    }
    parent = tracker.start_run(tracker.unique_name(f"sweep-{spec.study_name}"), tags=tags)
    study.set_user_attr("mlflow_parent_run_id", parent)
    tracker.log_params(
        parent,
        {
            "trials": spec.trials,
            "seed": spec.seed,
            "min_utility": spec.min_utility,
            **{f"space.{p.name}": p.describe() for p in spec.space.params},
            **{f"space.{m.name}": m.describe() for m in spec.space.methods},
        },
    )
    return str(parent)


class LocalWorkers:
    """This machine's workers of a `sweep` command: in this process (one worker, sharing its tracker) or as
    spawned processes (several; each builds its own tracker)."""

    def __init__(
        self, spec: SweepSpec, tracker: Tracker, parent: str, handle: StudyHandle, workers: int, log: Log = print
    ):
        self.spec, self.tracker, self.parent, self.handle = spec, tracker, parent, handle
        self.workers, self.log = workers, log
        self.procs: list[BaseProcess] = []

    def run(self) -> bool:
        """Run trials until the budget is taken; True if the workers gave up (failure streak)."""
        from unlearn_lab.sweep.worker import GAVE_UP, run_worker, worker_entry

        if self.workers <= 1:
            return run_worker(self.spec, self.tracker, self.parent, log=self.log).gave_up
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.procs = [
            ctx.Process(target=worker_entry, args=(self.spec, self.parent, i, self.workers, os.getpid()))
            for i in range(self.workers)
        ]
        for p in self.procs:
            p.start()
        for p in self.procs:
            p.join()
        reap_dead_trials(self.handle, self.tracker)
        codes = [p.exitcode for p in self.procs]
        if all(code == GAVE_UP for code in codes):
            return True
        if any(code not in (0, GAVE_UP) for code in codes):  # do not respawn workers that fail at once
            raise RunFailed(f"worker processes exited with codes {codes}; their messages are above")
        return False

    def stop(self) -> None:
        """Ctrl-C reaches every process of a terminal's group; a signal sent to this process alone is passed on,
        so that each worker marks its own trial before exiting."""
        for p in self.procs:
            if p.is_alive() and p.pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(p.pid, signal.SIGINT)
        for p in self.procs:
            p.join(timeout=60)


def experiment_models(spec: SweepSpec, log: Log = print) -> dict[str, dict[str, Any]]:
    """The target's and the retain model's scores (forget_quality, model_utility, ...) for the Pareto plot."""
    from unlearn_lab.evaluation import reference_points
    from unlearn_lab.plan import resolve
    from unlearn_lab.runtime import choose_device, release_memory, thread_count

    log("the target and retain models' scores, as reference points for the Pareto plot (computed once, cached)")
    plan = resolve(
        "eval", spec.cfg, device=choose_device(spec.device), threads=thread_count(1), evaluated="target", count=False
    )
    points = reference_points(plan, log=log)
    release_memory()  # the GPU memory the two evaluations cached goes back before the workers train
    keep = plan.benchmark.headline
    return {role: {k: v for k, v in summary.items() if k in keep} for role, summary in points.items()}


@dataclass(frozen=True)
class WorkerResult:
    complete: int
    failed: int
    stopped_early: int = 0


def join_sweep(
    study_name: str,
    storage: str,
    *,
    tracking_uri: str | None = None,
    wait_seconds: int = 0,
    heartbeat: int = 60,
    log: Log = print,
) -> WorkerResult:
    """`unlearn-lab worker`: join a study a `sweep` command created (waiting up to `wait_seconds` for it), track
    its trials where the sweep tracks (the study records it) unless `tracking_uri` says otherwise, and stay until
    the study is complete, replacing trials whose workers died. It writes no reports: the `sweep` process that
    owns the study's run does, once."""
    from unlearn_lab.sweep.worker import run_worker
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker, check_reachable

    if tracking_uri is not None:  # told where to track: an unusable store fails before the study is looked at
        check_reachable(tracking_uri, create=False)
    spec, handle, parent = _wait_for_study(study_name, storage, tracking_uri, heartbeat, wait_seconds, log)
    tracker = MlflowTracker(spec.tracking_uri)
    if not tracker.has_run(parent):
        raise UsageError(
            f"tracking store {tracker.uri} has no run {parent} (the sweep's run of study "
            f"'{study_name}'); give the store the sweep tracks to with --tracking-uri, or leave it out "
            "to use the one the study records"
        )
    reap(handle, tracker, log, orphans=True)
    # a seed of its own: a worker seeded like the sweep (seed + 0) would draw the sweep's own start-up trials
    index = 1000 + zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 1_000_000
    counts = {"complete": 0, "failed": 0, "stopped_early": 0}

    def run_local() -> bool:
        done = run_worker(spec, tracker, parent, worker=index, log=log)
        for key in counts:
            counts[key] += getattr(done, key)
        return done.gave_up

    complete_study(handle, spec, tracker, run_local, log)  # stays until the study is complete
    follow_confirmations(handle, spec, tracker, run_local, log)
    return WorkerResult(counts["complete"], counts["failed"], counts["stopped_early"])


def _wait_for_study(
    study_name: str, storage: str, tracking_uri: str | None, heartbeat: int, wait_seconds: int, log: Log
) -> tuple[SweepSpec, StudyHandle, str]:
    """_open_for_worker, retried while the study is not ready, for up to `wait_seconds`."""
    deadline, said = time.monotonic() + wait_seconds, ""
    while True:
        try:
            return _open_for_worker(study_name, storage, tracking_uri, heartbeat)
        except StudyNotReady as exc:
            if time.monotonic() >= deadline:
                raise
            if str(exc) != said:
                log(f"waiting up to {wait_seconds} s for the study: {exc}")
                said = str(exc)
            time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))


def _open_for_worker(
    study_name: str, storage: str, tracking_uri: str | None, heartbeat: int
) -> tuple[SweepSpec, StudyHandle, str]:
    """The study's stored spec, the study and its sweep run id; StudyNotReady while they are not there yet."""
    from unlearn_lab.tracking.mlflow_tracker import check_reachable, resolve_uri

    for scheme, what in (("journal:", "study journal"), ("sqlite:///", "study database")):
        if storage.startswith(scheme) and not Path(storage[len(scheme) :]).is_file():
            raise StudyNotReady(f"no {what} at {storage[len(scheme) :]}; start the study with unlearn-lab sweep")
    make_storage(storage, heartbeat)
    spec = spec_from_study(study_name, storage, tracking_uri, heartbeat)
    uri = resolve_uri(spec.tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise UsageError(
            f"no tracking database at {uri[len('sqlite:///') :]}; the sweep's runs are where the study "
            "says (leave --tracking-uri out) or give that store with --tracking-uri"
        )
    check_reachable(uri, create=False)
    handle = open_study(spec)
    parent = handle.study.user_attrs.get("mlflow_parent_run_id")
    if not parent:
        raise StudyNotReady(f"study '{study_name}' has no sweep run yet; start it with unlearn-lab sweep first")
    return spec, handle, str(parent)


def complete_study(
    handle: StudyHandle,
    spec: SweepSpec,
    tracker: Tracker,
    run_local: Callable[[], bool],
    log: Log = print,
    poll: float | None = None,
    done: Callable[[], bool] | None = None,
) -> None:
    """Run local workers until `done` (default: `spec.trials` COMPLETE exploration trials); meanwhile wait for the
    trials other workers (other hosts) are running, failing those whose worker died (pid gone on this host, or
    heartbeat silent) and running their replacements here."""
    from optuna.trial import TrialState

    study = handle.study
    poll = poll or min(spec.heartbeat, 5)
    done = done or (lambda: explored(study) >= spec.trials)
    waiting_for: tuple[int, ...] = ()
    while not done():
        reap(handle, tracker, log)
        if work_left(study, spec.trials):
            if run_local():
                return
            continue
        running = tuple(t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if running != waiting_for:
            log(f"waiting for trial(s) {', '.join(map(str, running))} running on other workers")
            waiting_for = running
        time.sleep(poll)


PHASE = "phase"  # study attribute: "exploring", "confirming", "done" (joined workers follow it)


def confirm_front(
    handle: StudyHandle, spec: SweepSpec, tracker: Tracker, run_local: Callable[[], bool], log: Log = print
) -> None:
    """Re-run every front candidate (and the default config) with the seeds it lacks, as confirmation trials that
    any worker runs, round after round until the front judged on means holds only confirmed settings: a lucky draw
    whose mean falls back uncovers the settings it dominated, which become candidates in the next round. Each
    setting is confirmed at most once, so there are at most as many rounds as settings."""
    from unlearn_lab.sweep import confirm

    study = handle.study
    for _ in range(len(study.trials) if spec.repeats > 1 else 0):
        trials = study.get_trials(deepcopy=False)
        asked = {  # runs already done, queued or running
            (int(t.user_attrs["confirms"]), int(t.user_attrs["seed"]))
            for t in trials
            if confirm.is_confirmation(t) and t.state.name in ("WAITING", "RUNNING", "COMPLETE")
        }
        known = confirm.settings(trials, spec.cfg.unlearn.seed, spec.objectives)
        found = confirm.to_confirm(known, spec.floors, spec.seeds)
        todo = [job for job in found if job not in asked]
        if not todo and not _confirmations_pending(study):
            break
        if todo:
            numbers = sorted({n for n, _ in todo})
            log(
                f"confirming {len(numbers)} setting(s) over seeds {', '.join(map(str, spec.seeds))}: trial(s) "
                f"{', '.join(map(str, numbers))} ({len(todo)} runs)"
            )
            for number, seed in todo:
                study.enqueue_trial(dict(study.trials[number].params), user_attrs={"confirms": number, "seed": seed})
        study.set_user_attr(PHASE, "confirming")
        complete_study(handle, spec, tracker, run_local, log, done=lambda: not _confirmations_pending(study))
    study.set_user_attr(PHASE, "done")


def follow_confirmations(
    handle: StudyHandle,
    spec: SweepSpec,
    tracker: Tracker,
    run_local: Callable[[], bool],
    log: Log = print,
    grace: float = 60.0,
) -> None:
    """A joined worker, once exploration is complete: run the confirmation trials the `sweep` process queues until
    it says the study is done, or nothing has been queued or running for `grace` seconds (a sweep process that
    is gone: rerunning `sweep` resumes the confirmation)."""
    if spec.repeats <= 1:
        return
    study, idle_since = handle.study, [time.monotonic()]

    def done() -> bool:
        if study.user_attrs.get(PHASE) == "done":
            return True
        if _confirmations_pending(study):
            idle_since[0] = time.monotonic()
            return False
        return time.monotonic() - idle_since[0] > grace

    complete_study(handle, spec, tracker, run_local, log, done=done)


def _confirmations_pending(study: optuna.Study) -> bool:
    """Confirmation trials still queued or running (on any worker)."""
    from optuna.trial import TrialState

    from unlearn_lab.sweep.confirm import is_confirmation

    live = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    return any(is_confirmation(t) for t in live)
