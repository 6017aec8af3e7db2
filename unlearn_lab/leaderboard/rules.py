"""The leaderboard's selection rules, each a pure function of confirmed settings (docs/leaderboard.md).

Only *confirmed* settings compete: those run with at least `min_seeds` seeds, judged on their means. The two axes
are the benchmark's sweep objectives (TOFU: forget_quality on log10 up, model_utility up; MUSE:
forget_verbmem_ROUGE down, retain_knowmem_ROUGE up). Per method:

- (a) **forget most, keep 90 %**: the best mean forget metric (TOFU: the highest mean log10 forget_quality) among
  settings whose mean utility is at least `utility_ratio` (0.9) x the target model's;
- (b) **keep most, forget enough**: the highest mean utility among settings whose forget metric is at least as good
  as `forget_threshold` (TOFU: geometric-mean forget_quality >= 0.05; MUSE: mean forget_verbmem_ROUGE <= 0.25);
- (c) **the whole trade-off**: the hypervolume of the method's confirmed front in (forget, utility), both as
  maximised, against a fixed reference point: the target's forget value and utility 0 (the model before
  unlearning, at no utility): how much of that quadrant the front dominates.

A rule no setting of a method meets is reported as such, never filled with the nearest miss. Methods are ranked
per rule; two methods whose rule values differ by less than their seed noise allows (1.96 x Welch's standard error
of the difference of means) share a rank. Hypervolumes have no seed spread of their own: ranked plainly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from unlearn_lab.benchmarks.tofu_scores import OBJECTIVES
from unlearn_lab.leaderboard.collect import Axes, Setting
from unlearn_lab.seeds import Spread

Z95 = 1.96


@dataclass(frozen=True)
class Rules:
    min_seeds: int = 3
    utility_ratio: float = 0.9  # rule (a): mean utility >= this x the target's
    forget_threshold: float = 0.05  # rule (b): the forget metric at least this good (TOFU: forget_quality >= 0.05)
    reference_point: tuple[float, float] | None = None  # rule (c), as maximised; None: from the target
    axes: Axes = OBJECTIVES  # TOFU's, unless the benchmark says otherwise

    def describe(self, target: dict[str, float] | None) -> list[str]:
        forget, utility = self.axes
        ref = self.point(target)
        keep = f"{self.utility_ratio:g} x the target's {utility.metric}"
        if target and target.get(utility.metric) is not None:
            keep += f" ({self.utility_ratio * target[utility.metric]:.4f})"
        best = "highest" if forget.goal == "max" else "lowest"
        scale = " (log10)" if forget.log else ""
        enough = (">=" if forget.goal == "max" else "<=") + f" {self.forget_threshold:g}"
        mean = "geometric mean" if forget.log else "mean"
        return [
            f"confirmed settings only: run with >= {self.min_seeds} seeds, judged on their means",
            f"(a) {best} mean {forget.metric}{scale} with mean {utility.metric} >= {keep}",
            f"(b) highest mean {utility.metric} with {forget.metric} ({mean}) {enough}",
            f"(c) hypervolume of the confirmed front in ({forget.name}, {utility.name}) from the reference "
            f"point ({ref[0]:.3f}, {ref[1]:g})"
            + (f" (the target's {forget.name}, utility 0)" if self.reference_point is None and target else ""),
        ]

    def point(self, target: dict[str, float] | None) -> tuple[float, float]:
        if self.reference_point is not None:
            return self.reference_point
        forget = self.axes[0]
        if target and target.get(forget.metric) is not None:
            return (forget.value(target), 0.0)
        # no target in the store (stated in the output): a forget value no unlearned model is worse than
        worst = 1e-10 if forget.log else 1.0 if forget.goal == "min" else 0.0
        return (forget.value({forget.metric: worst}), 0.0)

    def forget_floor(self) -> float:
        """Rule (b)'s threshold as maximised on the forget axis."""
        forget = self.axes[0]
        return forget.value({forget.metric: self.forget_threshold})


def confirmed(items: Sequence[Setting], min_seeds: int) -> list[Setting]:
    return [s for s in items if s.n >= min_seeds and s.complete]


def rule_a(items: Sequence[Setting], rules: Rules, target_utility: float | None) -> Setting | None:
    """The setting with the best mean forget value (as maximised) among those keeping the utility; None if none
    does (or the target's utility is unknown)."""
    if target_utility is None:
        return None
    keep = [s for s in confirmed(items, rules.min_seeds) if s.point[1] >= rules.utility_ratio * target_utility]
    return max(keep, key=lambda s: (s.point[0], s.point[1]), default=None)


def rule_b(items: Sequence[Setting], rules: Rules) -> Setting | None:
    """The setting with the highest mean utility among those whose forget metric is good enough."""
    floor = rules.forget_floor()
    enough = [s for s in confirmed(items, rules.min_seeds) if s.point[0] >= floor]
    return max(enough, key=lambda s: (s.point[1], s.point[0]), default=None)


def front(items: Sequence[Setting], min_seeds: int) -> list[Setting]:
    """Confirmed settings no other confirmed setting dominates on means, ordered along the forget axis."""
    pool = confirmed(items, min_seeds)
    dominated = lambda a, b: b.point[0] >= a.point[0] and b.point[1] >= a.point[1] and b.point != a.point
    return sorted((s for s in pool if not any(dominated(s, o) for o in pool)), key=lambda s: s.point[0])


def hypervolume(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by `points` (both coordinates maximised) and bounded below by `reference`: the union of the
    rectangles [reference, point]. Points not above the reference on both axes add nothing."""
    inside = sorted({p for p in points if p[0] > reference[0] and p[1] > reference[1]}, key=lambda p: -p[0])
    area, best_y = 0.0, reference[1]
    for x, y in inside:  # from the largest x down: each point adds the strip above the best y so far
        if y > best_y:
            area += (x - reference[0]) * (y - best_y)
            best_y = y
    return area


def tied(a: Spread, b: Spread) -> bool:
    """Two means closer than 1.96 x Welch's standard error of their difference (a single seed: never tied)."""
    if a.sd is None or b.sd is None:
        return False
    se = math.sqrt(a.sd**2 / a.n + b.sd**2 / b.n)
    return abs(a.mean - b.mean) <= Z95 * se


def ranks(values: Sequence[tuple[str, Spread | float | None]]) -> dict[str, str]:
    """Rank methods by their rule value (higher is better); a method tied with the one above shares its rank
    ("2="); a method without a value is "-"."""
    present = [(m, v) for m, v in values if v is not None]
    key = lambda item: item[1].mean if isinstance(item[1], Spread) else item[1]
    ordered = sorted(present, key=key, reverse=True)
    out: dict[str, str] = {m: "-" for m, v in values if v is None}
    rank, previous = 0, None
    for i, (method, value) in enumerate(ordered):
        same = previous is not None and isinstance(value, Spread) and isinstance(previous, Spread)
        if not (same and tied(previous, value)):  # type: ignore[arg-type]
            rank = i + 1
        out[method] = str(rank)
        previous = value
    shared = [m for m in out if list(out.values()).count(out[m]) > 1 and out[m] != "-"]
    return {m: f"{r}=" if m in shared else r for m, r in out.items()}
