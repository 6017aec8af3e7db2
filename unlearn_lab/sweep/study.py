"""`unlearn-lab sweep`: an Optuna study over the unlearning run, two objectives, resumable, multi-process.

Objectives (both maximised): the benchmark's pair or --objectives (TOFU: log10(forget_quality), which spans
1e-239..1, and model_utility; MUSE: -forget_verbmem_ROUGE and retain_knowmem_ROUGE). Each trial is
`run_experiment` with overrides, nested under the sweep's MLflow run; the objective reads the values it
returns. The study lives in persistent storage (default: an Optuna journal file under mlruns/optuna/,
safe for several processes on one machine); rerunning the command continues it until `trials` trials are
COMPLETE. A trial whose process died (same host, pid gone) is marked FAIL, and its MLflow run KILLED,
before new trials start.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearn_lab.benchmarks import Objective
from unlearn_lab.config import ExperimentConfig, apply_override, parse_scalar, validate
from unlearn_lab.errors import UsageError
from unlearn_lab.sweep.confirm import is_confirmation
from unlearn_lab.sweep.space import SearchSpace

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial, TrialState

    from unlearn_lab.tracking import Tracker

MAX_RETRIES = 2  # a trial whose worker died or was interrupted is re-queued with the same parameters at most twice


class StudyNotReady(UsageError):
    """The study a worker should join cannot be opened yet: its storage does not answer, the study does not exist,
    or it has no sweep run yet (`worker --wait` retries these)."""


@dataclass(frozen=True)
class SweepSpec:
    cfg: ExperimentConfig
    space: SearchSpace
    study_name: str
    storage: str
    trials: int
    seed: int = 0
    min_utility: float | None = None
    tracking_uri: str | None = None
    saves: Path = Path("saves")
    experiment_arg: str | None = None  # for the printed reproduce commands
    extra_sets: tuple[str, ...] = field(default_factory=tuple)
    # Reuse per-epoch checkpoints: one training run of the range's largest epoch count (lr schedule planned
    # over it) yields a trial for every epoch in the range; runs whose utility falls below collapse_utility
    # stop early. Off: every trial trains its own sampled number of epochs.
    reuse_epochs: bool = False
    collapse_utility: float = 0.01
    heartbeat: int = 60  # RDB storages: seconds between trial heartbeats; a trial silent for 3x is failed
    device: str = "auto"  # this host's workers (workers on other hosts choose their own: auto)
    # Seeds per reported setting: exploration trials run unlearn.seed; every front candidate and the default
    # config are then re-run until they have this many seeds (unlearn.seed, +1, ...), and the front is judged on
    # the means (sweep/confirm.py). 1: no confirmation (single draws, as before).
    repeats: int = 1
    # (forget, utility): what the study maximises; () = the benchmark's own pair (resolved in __post_init__)
    objectives: tuple[Objective, ...] = ()
    # The sampler's start-up trials after the default config: "grid", the STARTUP_TRIALS-run lr x epochs grid
    # (queued once, when the study is created); "random", Optuna's random draws. benchmarks/bench_search.py
    # measured the choice (docs/sweep.md, "Does the search pay?").
    startup: str = "grid"  # STARTUP

    def __post_init__(self) -> None:
        if not self.objectives:
            from unlearn_lab.benchmarks import get_benchmark

            object.__setattr__(self, "objectives", tuple(get_benchmark(self.cfg.benchmark).objectives))

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seeds every reported setting is run with."""
        base = self.cfg.unlearn.seed
        return tuple(range(base, base + self.repeats))

    @property
    def floors(self) -> tuple[float, ...]:
        """The utility a setting's mean must reach to be feasible: the collapse floor and --min-utility."""
        return (self.collapse_utility,) + (() if self.min_utility is None else (self.min_utility,))


def default_storage(study_name: str, root: str | Path = ".") -> str:
    return f"journal:{(Path(root) / 'mlruns' / 'optuna' / f'{study_name}.log').resolve()}"


def check_storage_url(url: str) -> None:
    """A malformed storage URL is a usage error; nothing is created (--dry-run)."""
    if url.startswith("journal:"):
        if not Path(url[len("journal:") :]).name:
            raise UsageError(f"malformed storage URL '{url}': journal:PATH needs a file path")
    elif not url.startswith(("sqlite:///", "postgresql://", "postgresql+", "mysql://", "mysql+")):
        raise UsageError(
            f"malformed storage URL '{url}'; accepted: journal:PATH, sqlite:///PATH, postgresql://..., mysql://..."
        )


def make_storage(url: str, heartbeat: int = 60) -> BaseStorage:
    """journal:PATH (default) | sqlite:///... | postgresql://... | mysql://... -> an Optuna storage."""
    import optuna

    check_storage_url(url)
    if url.startswith("journal:"):
        path = Path(url[len("journal:") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith(("sqlite:///", "postgresql://", "postgresql+", "mysql://", "mysql+")):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # a trial failed for a silent heartbeat is re-queued with the same parameters (MAX_RETRIES times)
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=heartbeat,
                    grace_period=3 * heartbeat,
                    heartbeat_stale_trial_callback=_requeue_stale,
                )
        except Exception as exc:  # noqa: BLE001 - unreachable server, bad credentials, tables being created by another worker
            raise StudyNotReady(f"cannot open storage '{url}': {str(exc).splitlines()[0]}") from None
    raise UsageError(
        f"malformed storage URL '{url}'; accepted: journal:PATH, sqlite:///PATH, postgresql://..., mysql://..."
    )


def _requeue_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna's heartbeat_stale_trial_callback: a trial it failed for a silent heartbeat is queued again."""
    enqueue_retry(study, trial)


@dataclass(frozen=True)
class StudyHandle:
    """An open study and the storage object it was opened on. A Study does not expose its storage, and Optuna's
    public storage API (BaseStorage) is what reaches a trial this process does not run (another worker's dead
    trial) and records a trial's heartbeat; both address trials by their storage id."""

    study: optuna.Study
    storage: BaseStorage
    study_id: int
    heartbeat_interval: int | None  # seconds between heartbeats (RDB storages); None: no heartbeats (journal)

    def trial_id(self, number: int) -> int:
        """The storage's id of the study's trial `number`."""
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def record_heartbeat(self, trial_id: int) -> None:
        """RDB storages: the trial's worker is alive now (other storages record no heartbeats)."""
        import optuna

        if isinstance(self.storage, optuna.storages.RDBStorage):
            self.storage.record_heartbeat(trial_id)


def trial_config(
    base: ExperimentConfig, space: SearchSpace, params: dict, *, reuse_epochs: bool = False, seed: int | None = None
) -> ExperimentConfig:
    """The experiment with a trial's parameters (and its seed: a confirmation run's own)."""
    cfg = base
    overrides = space.overrides(params)
    if reuse_epochs:
        overrides.append(f"unlearn.schedule_epochs={space.epochs.high}")
    if seed is not None:
        overrides.append(f"unlearn.seed={seed}")
    for item in overrides:
        key, _, text = item.partition("=")
        cfg = apply_override(cfg, key, parse_scalar(text))
    return validate(cfg)


def objective_values(spec: SweepSpec, summary: dict[str, Any]) -> tuple[float, float]:
    """The study's two maximised values from an evaluation summary (a missing metric is an error)."""
    first, second = (o.value(summary) for o in spec.objectives)
    return first, second


def open_study(spec: SweepSpec, worker: int = 0) -> StudyHandle:
    """Create or load the study. Each worker seeds its sampler with seed + worker: identical seeds would make
    parallel workers draw the same start-up trials. A resumed study also offsets the seed by the trials it
    already holds: the same seed in a new process would replay the first run's draws."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(spec.storage, spec.heartbeat)
    study = optuna.create_study(
        study_name=spec.study_name,
        storage=storage,
        sampler=sampler(spec.seed + worker),
        directions=["maximize", "maximize"],
        load_if_exists=True,
    )
    existing = len(study.get_trials(deepcopy=False))
    if existing:
        study.sampler = sampler(spec.seed + worker + 7919 * existing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o.name for o in spec.objectives])
    interval = storage.get_heartbeat_interval() if isinstance(storage, optuna.storages.RDBStorage) else None
    return StudyHandle(study, storage, storage.get_study_id_from_name(spec.study_name), interval)


# The sweep's sampler. benchmarks/bench_search.py compares it with Optuna's GPSampler ("gp"), shorter start-ups and
# random search (docs/sweep.md, "Does the search pay?"): on the embedded world GP and TPE differ by less than their
# sampler-seed spread, so the default stays multivariate TPE (cheaper per trial, no model fit).
SAMPLER = "tpe"
STARTUP = "grid"  # the sweep's start-up: "grid" (queued, startup_settings) or "random" (the sampler's draws)
STARTUP_TRIALS = 10  # trials before the model (Optuna's default for both): the grid's (startup "grid") or random


def sampler(seed: int, kind: str = SAMPLER, startup: int = STARTUP_TRIALS) -> optuna.samplers.BaseSampler:
    """The sweep's sampler: after `startup` trials (its own random draws, or trials queued before it: the default
    config and the start-up grid, enqueue_startup), "gp" (a Gaussian process per objective and constraint,
    log constrained expected hypervolume improvement; batches of running trials for parallel workers) or "tpe"
    (multivariate TPE). Both read each trial's constraints (worker.constraints: collapsed utility, --min-utility)."""
    import optuna

    if kind == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=startup)
    raise ValueError(f"unknown sampler {kind!r}: gp or tpe")


def startup_points(space: SearchSpace, n: int, default: dict[str, Any]) -> list[dict[str, Any]]:
    """The sweep's start-up trials after the default config: the n-run lr x epochs grid (SearchSpace.grid), less
    the default's own setting."""
    same = (default.get("lr"), default.get("epochs"))
    return [p for p in space.grid(n) if (p["lr"], p["epochs"]) != same]


def startup_settings(spec: SweepSpec) -> list[dict[str, Any]]:
    """A new study's grid start-up (spec.startup "grid"): the lr x epochs grid of min(STARTUP_TRIALS, trials - 1)
    runs after the default config, so the sampler models from the spread a grid run by hand gives, not from random
    draws (benchmarks/bench_search.py measured both, docs/sweep.md). Method hyperparameters (--space) are drawn by
    the sampler as usual. None with --joint (each method has its own ranges) or --reuse-epochs (exploration runs
    all train the largest epoch count)."""
    if spec.startup != "grid" or spec.space.methods or spec.reuse_epochs:
        return []
    u = spec.cfg.unlearn
    return startup_points(spec.space, min(STARTUP_TRIALS, spec.trials - 1), {"lr": u.lr, "epochs": u.epochs})


def enqueue_startup(study: optuna.Study, spec: SweepSpec) -> int:
    """Queue the start-up grid (startup_settings) on a study that has no trials but the default's; returns how many."""
    points = startup_settings(spec)
    for point in points:
        study.enqueue_trial(point, user_attrs={"startup": "grid"})
    return len(points)


def enqueue_default(study: optuna.Study, spec: SweepSpec) -> None:
    """The experiment's own config is the first trial, so the sweep is compared with the default (and confirms it
    on seeds like its front). A default whose lr or epochs lie outside the searched ranges is run all the same:
    Optuna takes a queued value outside a numeric range (the samplers only draw inside it); a categorical value
    outside its choices (a method not in --methods) it cannot take, so that default is left out."""
    if study.trials:
        return
    u = spec.cfg.unlearn
    if spec.reuse_epochs and u.epochs != spec.space.epochs.high:
        return  # a checkpoint of a longer schedule is not the default config
    params: dict[str, Any] = {"method": u.method} if spec.space.methods else {}
    params.update({"lr": u.lr, "epochs": u.epochs})
    from unlearn_lab.methods import get_method, validate_hyperparams

    hp = validate_hyperparams(get_method(u.method), u.method_args)
    params.update({p.name: hp[p.name] for p in spec.space.method if p.name in hp})
    categorical = [p for p in spec.space.params if p.kind == "categorical" and p.name in params]
    if all(p.contains(params[p.name]) for p in categorical):
        study.enqueue_trial(params, user_attrs={"default_config": True})


def reap_dead_trials(handle: StudyHandle, tracker: Tracker | None = None) -> list[int]:
    """RUNNING trials started on this host by a process that no longer exists -> FAIL (MLflow run KILLED)."""
    from optuna.trial import TrialState

    study, reaped = handle.study, []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, pid = t.user_attrs.get("host"), t.user_attrs.get("pid")
        if host != socket.gethostname() or pid is None or _alive(pid):
            continue
        trial_id = handle.trial_id(t.number)  # another process's trial: through the storage, not study.tell
        handle.storage.set_trial_user_attr(trial_id, "failure", "worker process died mid-trial")
        handle.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        enqueue_retry(study, t)
        if tracker is not None and t.user_attrs.get("mlflow_run_id"):
            tracker.end_run(t.user_attrs["mlflow_run_id"], "KILLED")
        reaped.append(t.number)
    return reaped


def duplicate_of(trials: list[FrozenTrial], number: int, params: dict[str, Any]) -> int | None:
    """Another COMPLETE or RUNNING exploration trial with exactly these parameters (so trial `number` would repeat
    it), unless `number` is that trial's retry. Workers on several hosts with their own seeds rarely collide on a
    float lr, but integer and categorical spaces, and enqueued trials, can. Confirmation trials repeat parameters
    on purpose (another seed) and are never duplicates."""
    me = next((t for t in trials if t.number == number), None)
    if me is not None and is_confirmation(me):
        return None
    retried = retry_of(me) if me is not None else None
    for t in trials:
        if (
            t.number != number
            and t.number != retried
            and not is_confirmation(t)
            and t.state.name in ("COMPLETE", "RUNNING")
            and t.params == params
        ):
            return t.number
    return None


def retry_of(trial: FrozenTrial) -> int | None:
    """The trial this one re-runs, if any."""
    number = trial.user_attrs.get("retry_of")
    return None if number is None else int(number)


def enqueue_retry(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Re-queue a trial lost to its worker (killed, silent heartbeat, interrupted) with the same parameters, at
    most MAX_RETRIES times in a chain; the queued trial holds the lost one's place in the budget. Also what
    Optuna's heartbeat_stale_trial_callback does (RDB storages) when it fails a stale trial."""
    done = int(trial.user_attrs.get("retries", 0))
    if done >= MAX_RETRIES or not trial.params:
        return False
    # a confirmation run stays one (the trial it confirms, its seed)
    kept: dict[str, Any] = {k: trial.user_attrs[k] for k in ("confirms", "seed") if k in trial.user_attrs}
    study.enqueue_trial(dict(trial.params), user_attrs={**kept, "retry_of": trial.number, "retries": done + 1})
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exploration(study: optuna.Study, states: tuple[TrialState, ...]) -> list[FrozenTrial]:
    """The study's exploration trials (not confirmation runs) in these states: what the --trials budget counts."""
    return [t for t in study.get_trials(deepcopy=False, states=states) if not is_confirmation(t)]


def budget_left(study: optuna.Study, trials: int) -> int:
    from optuna.trial import TrialState

    return trials - len(exploration(study, (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)))


def explored(study: optuna.Study) -> int:
    """COMPLETE exploration trials: the sweep's budget is met when there are `trials` of them."""
    from optuna.trial import TrialState

    return len(exploration(study, (TrialState.COMPLETE,)))


def work_left(study: optuna.Study, trials: int) -> bool:
    """A free slot, or a queued (WAITING) trial: a re-queued trial already holds its slot, and a confirmation run
    is outside the budget, so both must be run even when the budget looks taken."""
    from optuna.trial import TrialState

    return budget_left(study, trials) > 0 or bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def within_budget(study: optuna.Study, trial_number: int, trials: int) -> bool:
    """A confirmation run always may run; an exploration trial iff it is among the first `trials`
    COMPLETE/RUNNING/WAITING exploration trials by number."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
    me = next((t for t in study.get_trials(deepcopy=False) if t.number == trial_number), None)
    if me is not None and is_confirmation(me):
        return True
    active = sorted(t.number for t in exploration(study, states))
    return trial_number in active[:trials]


SPEC_ATTR = "unlearn_lab_spec"


def save_spec(study: optuna.Study, spec: SweepSpec) -> None:
    """Store what a worker needs to join from another machine (`unlearn-lab worker --study --storage`)."""
    import json

    from unlearn_lab.config import to_dict
    from unlearn_lab.tracking.mlflow_tracker import resolve_uri

    if SPEC_ATTR in study.user_attrs:
        return
    study.set_user_attr(
        SPEC_ATTR,
        json.dumps(
            {
                "tracking_uri": resolve_uri(spec.tracking_uri),
                "config": to_dict(spec.cfg),
                "space": spec.space.to_dict(),
                "trials": spec.trials,
                "seed": spec.seed,
                "min_utility": spec.min_utility,
                "reuse_epochs": spec.reuse_epochs,
                "collapse_utility": spec.collapse_utility,
                "experiment_arg": spec.experiment_arg,
                "extra_sets": list(spec.extra_sets),
                "repeats": spec.repeats,
                "objectives": [o.to_dict() for o in spec.objectives],
                "startup": spec.startup,
            }
        ),
    )


def spec_from_study(study_name: str, storage: str, tracking_uri: str | None, heartbeat: int = 60) -> SweepSpec:
    """The SweepSpec a `sweep` command stored in the study; a study without one is an error. `tracking_uri` None:
    the store the sweep tracks to, as the study records it."""
    import json

    import optuna

    from unlearn_lab.config import ExperimentConfig, build
    from unlearn_lab.sweep.space import SearchSpace

    try:
        study = optuna.load_study(study_name=study_name, storage=make_storage(storage, heartbeat))
    except KeyError:
        raise StudyNotReady(
            f"no study '{study_name}' in {storage}; start it with unlearn-lab sweep --study "
            f"{study_name} --storage {storage}"
        ) from None
    raw = study.user_attrs.get(SPEC_ATTR)
    if raw is None:  # a foreign study, or one whose `sweep` has created it but not yet stored its spec
        raise StudyNotReady(f"study '{study_name}' was not created by unlearn-lab sweep (no stored spec)")
    data = json.loads(raw)
    space = SearchSpace.from_dict(data["space"])
    return SweepSpec(
        cfg=validate(build(ExperimentConfig, data["config"])),
        space=space,
        study_name=study_name,
        storage=storage,
        trials=data["trials"],
        seed=data["seed"],
        min_utility=data["min_utility"],
        tracking_uri=tracking_uri or data.get("tracking_uri"),
        experiment_arg=data["experiment_arg"],
        extra_sets=tuple(data["extra_sets"]),
        reuse_epochs=data["reuse_epochs"],
        collapse_utility=data["collapse_utility"],
        heartbeat=heartbeat,
        repeats=int(data.get("repeats", 1)),  # studies made before confirmation: single draws
        objectives=tuple(Objective.from_dict(o) for o in data.get("objectives", ())),  # older: the benchmark's
        startup=data.get("startup", "random"),  # studies made before the grid start-up
    )


def reap_stale_heartbeats(handle: StudyHandle, tracker: Tracker | None = None) -> list[int]:
    """RDB storages: trials whose heartbeat stopped (a dead worker on any host) -> FAIL, MLflow run KILLED.

    Optuna's own `ask` may already have failed such a trial (finished trials take no new attributes): any FAIL
    trial whose MLflow run is still RUNNING is one of those, and its run is marked KILLED here."""
    import optuna

    if handle.heartbeat_interval is None:  # journal files record no heartbeats
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(handle.study)
    return close_orphan_runs(handle.study, tracker)


def close_orphan_runs(study: optuna.Study, tracker: Tracker | None = None) -> list[int]:
    """FAIL trials whose MLflow run is still RUNNING (failed by a heartbeat check, or failed while the tracking
    server was unreachable) -> the run is marked KILLED."""
    from optuna.trial import TrialState

    reaped = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        run_id = t.user_attrs.get("mlflow_run_id")
        if run_id and tracker is not None and tracker.run_status(run_id) == "RUNNING":
            reason = t.user_attrs.get("failure") or "its worker stopped sending heartbeats (process or host died)"
            tracker.set_tags(run_id, {"trial_state": "FAIL", "failure": reason[:500]})
            tracker.end_run(run_id, "KILLED")
            reaped.append(t.number)
    return reaped


def reap(handle: StudyHandle, tracker: Tracker, log: Callable[[str], None] = print, *, orphans: bool = False) -> None:
    """Fail trials left RUNNING by dead workers: same-host pids, and silent heartbeats (RDB storages).
    With `orphans` (once per command), also close the MLflow runs of FAIL trials still marked RUNNING."""
    for number in reap_dead_trials(handle, tracker) + reap_stale_heartbeats(handle, tracker):
        log(f"trial {number} was left RUNNING by a dead process: marked FAIL, it will be replaced")
    if orphans:
        for number in close_orphan_runs(handle.study, tracker):
            log(f"trial {number} had failed while its MLflow run could not be closed: run marked KILLED")
