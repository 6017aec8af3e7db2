"""From tracked runs to settings: the unlearning runs of a store, grouped by the setting they ran (pure functions).

A *setting* is everything a run was configured with except its seed: the runs of a sweep's trial and of its
confirmation trials, the seeds of a repeated run, and single runs of the same configuration all pool into one
setting, whatever command made them. The key is the run's params (the values used) without `unlearn.seed`, and
each seed counts once (the newest finished run of it). Only FINISHED unlearning runs count (a run stopped early for
a collapsed utility is FINISHED with the scores it ended with); evaluation runs, sweep and repeated parents and
reports are not unlearning runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from unlearn_lab.benchmarks import Objective
from unlearn_lab.benchmarks.tofu_scores import OBJECTIVES
from unlearn_lab.seeds import Spread, spread
from unlearn_lab.tracking import TrackedRun

Axes = tuple[Objective, Objective]  # (forget, utility): the trade-off a leaderboard judges, its benchmark's objectives

NOT_SETTINGS = ("unlearn.seed",)  # params that tell seeds apart, not settings
PARENT_KINDS = ("sweep", "repeated", "eval", "reference", "report")


@dataclass(frozen=True)
class Filters:
    """Which runs a report reads: one benchmark and forget split, optionally studies, methods, tags and dates."""

    benchmark: str = "tofu"
    forget_split: str = "forget10"
    studies: tuple[str, ...] = ()  # sweep study names (runs made by a sweep carry tag `sweep`)
    methods: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()  # (key, value): the run's tag must equal it
    since: datetime | None = None  # runs started at or after
    until: datetime | None = None  # runs started before

    def admits(self, run: TrackedRun) -> bool:
        t = run.tags
        started = datetime.fromtimestamp(run.start_ms / 1000, tz=timezone.utc)
        return (
            t.get("benchmark", "tofu") == self.benchmark
            and t.get("forget_split") == self.forget_split
            and (not self.studies or t.get("sweep") in self.studies)
            and (not self.methods or t.get("method") in self.methods)
            and all(t.get(k) == v for k, v in self.tags)
            and (self.since is None or started >= self.since)
            and (self.until is None or started < self.until)
        )


def is_unlearning_run(run: TrackedRun) -> bool:
    return "method" in run.tags and "config_hash" in run.tags and run.tags.get("kind") not in PARENT_KINDS


@dataclass(frozen=True)
class Setting:
    """One configuration and its seeds' runs (one per seed, in seed order), judged on `axes`."""

    method: str
    params: tuple[tuple[str, str], ...]  # the key: the run's params without its seed
    runs: tuple[TrackedRun, ...]
    studies: tuple[str, ...] = field(default_factory=tuple)
    axes: Axes = OBJECTIVES

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(int(r.params.get("unlearn.seed", "0")) for r in self.runs)

    @property
    def n(self) -> int:
        return len(self.runs)

    def param(self, name: str) -> str | None:
        return dict(self.params).get(name)

    def values(self, metric: str) -> list[float]:
        """Each seed's value of a metric, or of an axis on its scale (`log10_forget_quality`)."""
        scaled = next((o for o in self.axes if o.scale == metric and o.scale != o.metric), None)
        name = scaled.metric if scaled else metric
        found = [r.metrics[name] for r in self.runs if name in r.metrics]
        if scaled:
            return [scaled.scaled(v) for v in found]
        return [v for v in found if math.isfinite(v)]

    def spread(self, metric: str) -> Spread | None:
        """mean, sd, ... of a metric over the seeds that have it (None if none has it)."""
        values = self.values(metric)
        return spread(values) if values else None

    def judged(self, axis: Objective) -> Spread | None:
        """The spread of an axis as maximised (negated where lower is better): what the rules rank."""
        values = [axis.value(r.metrics) for r in self.runs if axis.metric in r.metrics]
        values = [v for v in values if math.isfinite(v)]
        return spread(values) if values else None

    @property
    def complete(self) -> bool:
        """At least one seed has each axis (a setting the rules can place)."""
        return all(self.judged(a) is not None for a in self.axes)

    @property
    def point(self) -> tuple[float, float]:
        """(forget, utility) means as maximised: TOFU's (mean log10 forget_quality, mean model_utility), MUSE's
        (-mean forget_verbmem_ROUGE, mean retain_knowmem_ROUGE)."""
        forget, utility = (self.judged(a) for a in self.axes)
        return (forget.mean if forget else -math.inf, utility.mean if utility else -math.inf)


def settings(runs: Iterable[TrackedRun], filters: Filters, axes: Axes = OBJECTIVES) -> list[Setting]:
    """The settings of the finished unlearning runs `filters` admits, each seed once (its newest run)."""
    groups: dict[tuple[tuple[str, str], ...], dict[int, TrackedRun]] = {}
    for run in sorted(runs, key=lambda r: r.start_ms):
        if run.status != "FINISHED" or not is_unlearning_run(run) or not filters.admits(run):
            continue
        key = tuple(sorted((k, v) for k, v in run.params.items() if k not in NOT_SETTINGS))
        groups.setdefault(key, {})[int(run.params.get("unlearn.seed", "0"))] = run
    out = []
    for key, by_seed in groups.items():
        chosen = tuple(by_seed[s] for s in sorted(by_seed))
        studies = tuple(sorted({r.tags["sweep"] for r in chosen if "sweep" in r.tags}))
        out.append(Setting(chosen[0].tags["method"], key, chosen, studies, axes))
    return sorted(out, key=lambda s: (s.method, s.runs[0].start_ms))


@dataclass(frozen=True)
class Compute:
    """What a method's search cost: its unlearning runs (every seed, every trial) and their wall time."""

    runs: int
    seconds: float


def compute(runs: Sequence[TrackedRun], filters: Filters, method: str) -> Compute:
    mine = [r for r in runs if is_unlearning_run(r) and filters.admits(r) and r.tags.get("method") == method]
    return Compute(len(mine), sum(r.seconds or 0.0 for r in mine))


def references(runs: Sequence[TrackedRun], filters: Filters) -> dict[str, dict[str, float]]:
    """The newest target and retain scores of this benchmark and split: a sweep logs them on its run as
    `reference.<role>.<metric>`."""
    found: dict[str, dict[str, float]] = {}
    for run in sorted(runs, key=lambda r: r.start_ms):
        if run.tags.get("kind") != "sweep" or run.tags.get("forget_split") != filters.forget_split:
            continue
        if run.tags.get("benchmark", "tofu") != filters.benchmark:
            continue
        for role in ("target", "retain"):
            values = {k.split(".", 2)[2]: v for k, v in run.metrics.items() if k.startswith(f"reference.{role}.")}
            if values:
                found[role] = values
    return found
