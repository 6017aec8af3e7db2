"""The leaderboard's selection rules, each a pure function of confirmed settings (docs/leaderboard.md).

Only *confirmed* settings compete: those run with at least `min_seeds` seeds, judged on their means. Per method:

- (a) **forget most, keep 90 %**: the highest mean forget_quality (on log10) among settings whose mean model_utility
  is at least `utility_ratio` (0.9) x the target model's;
- (b) **keep most, forget enough**: the highest mean model_utility among settings whose forget_quality (geometric
  mean over seeds) is at least `fq_threshold` (0.05);
- (c) **the whole trade-off**: the hypervolume of the method's confirmed front in (log10 forget_quality,
  model_utility), both maximised, against a fixed reference point: log10 of the target's forget_quality and
  utility 0 (the model before unlearning, at no utility): how much of that quadrant the front dominates.

A rule no setting of a method meets is reported as such, never filled with the nearest miss. Methods are ranked
per rule; two methods whose rule values differ by less than their seed noise allows (1.96 x Welch's standard error
of the difference of means) share a rank. Hypervolumes have no seed spread of their own: ranked plainly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from unlearn_lab.leaderboard.collect import Setting
from unlearn_lab.seeds import Spread

Z95 = 1.96


@dataclass(frozen=True)
class Rules:
    min_seeds: int = 3
    utility_ratio: float = 0.9  # rule (a): mean utility >= this x the target's
    fq_threshold: float = 0.05  # rule (b): geometric-mean forget_quality >= this
    reference_point: tuple[float, float] | None = None  # rule (c): (log10 fq, utility); None: from the target

    def describe(self, target: dict[str, float] | None) -> list[str]:
        ref = self.point(target)
        keep = f"{self.utility_ratio:g} x the target's model_utility"
        if target and target.get("model_utility") is not None:
            keep += f" ({self.utility_ratio * target['model_utility']:.4f})"
        return [
            f"confirmed settings only: run with >= {self.min_seeds} seeds, judged on their means",
            f"(a) highest mean forget_quality (log10) with mean model_utility >= {keep}",
            f"(b) highest mean model_utility with forget_quality (geometric mean) >= {self.fq_threshold:g}",
            f"(c) hypervolume of the confirmed front in (log10 forget_quality, model_utility) from the reference "
            f"point ({ref[0]:.3f}, {ref[1]:g})"
            + (" (the target's log10 forget_quality, utility 0)" if self.reference_point is None and target else ""),
        ]

    def point(self, target: dict[str, float] | None) -> tuple[float, float]:
        if self.reference_point is not None:
            return self.reference_point
        if target and target.get("forget_quality"):
            return (math.log10(max(target["forget_quality"], 1e-300)), 0.0)
        return (-10.0, 0.0)  # stated in the output; no target in the store


def confirmed(items: Sequence[Setting], min_seeds: int) -> list[Setting]:
    return [s for s in items if s.n >= min_seeds and s.spread("model_utility") and s.spread("log10_forget_quality")]


def rule_a(items: Sequence[Setting], rules: Rules, target_utility: float | None) -> Setting | None:
    """The setting with the highest mean log10 forget_quality among those keeping the utility; None if none does
    (or the target's utility is unknown)."""
    if target_utility is None:
        return None
    keep = [s for s in confirmed(items, rules.min_seeds) if s.point[1] >= rules.utility_ratio * target_utility]
    return max(keep, key=lambda s: (s.point[0], s.point[1]), default=None)


def rule_b(items: Sequence[Setting], rules: Rules) -> Setting | None:
    """The setting with the highest mean utility among those whose geometric-mean forget_quality is enough."""
    floor = math.log10(rules.fq_threshold)
    enough = [s for s in confirmed(items, rules.min_seeds) if s.point[0] >= floor]
    return max(enough, key=lambda s: (s.point[1], s.point[0]), default=None)


def front(items: Sequence[Setting], min_seeds: int) -> list[Setting]:
    """Confirmed settings no other confirmed setting dominates on means, by mean log10 forget_quality."""
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
