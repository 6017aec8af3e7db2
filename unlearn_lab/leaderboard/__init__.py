"""`unlearn-lab report`: a leaderboard of methods from a tracking store (docs/leaderboard.md).

Reads every run of a store (the project's, a server), pools the unlearning runs into settings (collect.py: a
setting is a configuration, its runs are seeds), applies the declared selection rules per method (rules.py) and
renders the result (render.py) as Markdown, CSV, LaTeX, a self-contained HTML page and one plot of every method's
confirmed front. Nothing here trains or evaluates: the numbers are the tracked runs' own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from unlearn_lab.benchmarks.tofu_scores import HEADLINE
from unlearn_lab.leaderboard import rules as R
from unlearn_lab.leaderboard.collect import Compute, Filters, Setting, compute, references, settings
from unlearn_lab.tracking import TrackedRun


@dataclass(frozen=True)
class MethodRow:
    method: str
    a: Setting | None  # rule (a)'s setting, None when no confirmed setting meets it
    b: Setting | None
    front: list[Setting]
    hypervolume: float | None  # None: no confirmed setting at all
    compute: Compute
    settings: int  # distinct settings tracked (any number of seeds)
    confirmed: int  # of them run with >= min_seeds seeds


@dataclass(frozen=True)
class Leaderboard:
    filters: Filters
    rules: R.Rules
    references: dict[str, dict[str, float]]  # target / retain scores (from the store), possibly empty
    rows: list[MethodRow]
    ranks: dict[str, dict[str, str]] = field(default_factory=dict)  # rule -> method -> rank text
    store: str = ""
    headline: tuple[str, ...] = HEADLINE  # the benchmark's headline metrics, each shown as mean ± sd

    @property
    def target(self) -> dict[str, float] | None:
        return self.references.get("target")

    def statement(self) -> list[str]:
        """The rules as the output states them."""
        return self.rules.describe(self.target)


def build(
    runs: Sequence[TrackedRun],
    filters: Filters,
    rules: R.Rules,
    store: str = "",
    headline: tuple[str, ...] = HEADLINE,
) -> Leaderboard:
    """The leaderboard of the runs `filters` admits: one row per method, ranked per rule on the rules' axes."""
    forget, utility = rules.axes
    found = settings(runs, filters, rules.axes)
    refs = references(runs, filters)
    target_utility = (refs.get("target") or {}).get(utility.metric)
    point = rules.point(refs.get("target"))
    rows = []
    for method in sorted({s.method for s in found}):
        mine = [s for s in found if s.method == method]
        front = R.front(mine, rules.min_seeds)
        hv = R.hypervolume([s.point for s in front], point) if R.confirmed(mine, rules.min_seeds) else None
        rows.append(
            MethodRow(
                method,
                R.rule_a(mine, rules, target_utility),
                R.rule_b(mine, rules),
                front,
                hv,
                compute(runs, filters, method),
                len(mine),
                len(R.confirmed(mine, rules.min_seeds)),
            )
        )
    ranks = {
        "a": R.ranks([(r.method, r.a.judged(forget) if r.a else None) for r in rows]),
        "b": R.ranks([(r.method, r.b.judged(utility) if r.b else None) for r in rows]),
        "c": R.ranks([(r.method, r.hypervolume) for r in rows]),
    }
    return Leaderboard(filters, rules, refs, rows, ranks, store, headline)


def setting_summary(s: Setting, headline: Sequence[str] = HEADLINE) -> dict[str, Any]:
    """A setting's defining values and each headline metric's mean and sd (an axis on log10, forget_quality: the
    geometric mean, sd of log10) for tables and CSV."""
    out: dict[str, Any] = {"lr": s.param("unlearn.lr"), "epochs": s.param("unlearn.epochs")}
    out["hyperparameters"] = ", ".join(f"{k[len('method.') :]}={v}" for k, v in s.params if k.startswith("method."))
    logs = {a.metric: a.scale for a in s.axes if a.log}
    for metric in headline:
        name = logs.get(metric, metric)
        spread = s.spread(name)
        out[f"{metric}_mean"] = None if spread is None else (10**spread.mean if name != metric else spread.mean)
        out[f"{metric}_sd"] = None if spread is None else spread.sd  # on log10 for a log axis
    out["seeds"] = ",".join(map(str, s.seeds))
    out["studies"] = ",".join(s.studies)
    return out
