"""A setting judged over seeds: which seeds a repeated run uses and the spread of its scores (pure functions).

One unlearning run is one seed's draw (`unlearn.seed` decides the data order, the retain partners, the
"I don't know" answers, RMU's random direction and anything drawn from torch's global generator, such as
dropout; docs/seeds.md). A *setting* (method, hyperparameters, lr, epochs) is judged by runs that differ only in
that seed, summarised per metric as mean, sample standard deviation, minimum, maximum and a 95 % interval of the
mean (Student's t). forget_quality is summarised on log10, as the sweep optimises it (it spans 1e-239..1): its
spread is that of `log10_forget_quality`, and its central value is 10 ** mean, the geometric mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from unlearn_lab.errors import UsageError
from unlearn_lab.metrics.functions import log10_forget_quality

LEVEL = 0.95  # the interval's confidence


@dataclass(frozen=True)
class Spread:
    """One metric over n seeds. sd and the interval are None for a single seed (no spread can be measured)."""

    n: int
    mean: float
    sd: float | None
    min: float
    max: float
    ci_low: float | None
    ci_high: float | None

    def text(self, digits: int = 4) -> str:
        """'0.4100 ± 0.0500' (or the value alone for one seed)."""
        value = f"{self.mean:.{digits}f}"
        return value if self.sd is None else f"{value} ± {self.sd:.{digits}f}"

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def spread(values: Sequence[float], level: float = LEVEL) -> Spread:
    """Mean, sample sd (n - 1), min, max and the `level` t-interval of the mean of `values` (at least one)."""
    from scipy import stats

    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("spread of no values")
    n = len(xs)
    mean = math.fsum(xs) / n
    if n == 1:
        return Spread(1, mean, None, xs[0], xs[0], None, None)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Spread(n, mean, sd, min(xs), max(xs), mean - half, mean + half)


def summarise(
    summaries: Sequence[Mapping[str, float | None]], log_metrics: Sequence[str] = ("forget_quality",)
) -> dict[str, Spread]:
    """The spread of every metric that each per-seed summary holds (an evaluation summary each). A metric of
    `log_metrics` (TOFU: forget_quality) is summarised on log10 as `log10_<metric>` (and not on its own scale: see
    the module docstring)."""
    if not summaries:
        return {}
    names = [k for k in summaries[0] if all(s.get(k) is not None for s in summaries)]
    out: dict[str, Spread] = {}
    for name in names:
        values = [float(s[name]) for s in summaries]  # type: ignore[arg-type]
        if name in log_metrics:
            out[f"log10_{name}"] = spread([log10_forget_quality(v) for v in values])
        else:
            out[name] = spread(values)
    return out


def central(name: str, s: Spread) -> tuple[str, float]:
    """The metric name and value a setting is shown with: the mean, or for a log10_<metric> spread the geometric
    mean of the metric."""
    if name.startswith("log10_"):
        return name.removeprefix("log10_"), 10.0**s.mean
    return name, s.mean


def tracked_metrics(spreads: Mapping[str, Spread]) -> dict[str, float]:
    """What a repeated run logs: `<metric>.mean/.sd/.min/.max/.ci95_low/.ci95_high` for each metric, and the
    central values under the plain names (forget_quality = the geometric mean), so the runs table compares a
    setting with single runs in the same columns."""
    out: dict[str, float] = {}
    for name, s in spreads.items():
        plain, value = central(name, s)
        out[plain] = value
        if name.startswith("log10_"):
            out[name] = s.mean
        parts = {"mean": s.mean, "sd": s.sd, "min": s.min, "max": s.max, "ci95_low": s.ci_low, "ci95_high": s.ci_high}
        out.update({f"{name}.{k}": float(v) for k, v in parts.items() if v is not None})
        out[f"{name}.n"] = float(s.n)
    return out


def pooled_sd(groups: Iterable[Sequence[float]]) -> float | None:
    """The seed noise of a measurement, pooled over settings: sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1)) over the
    groups with at least two values; None when no group has two."""
    num = den = 0.0
    for group in groups:
        xs = [float(v) for v in group]
        if len(xs) < 2:
            continue
        mean = math.fsum(xs) / len(xs)
        num += math.fsum((x - mean) ** 2 for x in xs)
        den += len(xs) - 1
    return math.sqrt(num / den) if den else None


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2): distinct non-negative integers, in the order given."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        seeds = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"--seeds takes comma-separated integers such as 0,1,2, got '{text}'") from None
    if not seeds:
        raise UsageError("--seeds is empty; give comma-separated integers such as 0,1,2")
    if any(s < 0 for s in seeds):
        raise UsageError(f"--seeds must be >= 0 (torch seeds), got '{text}'")
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds lists a seed twice ('{text}'); each repeat needs its own seed")
    return seeds


def seeds_for(base: int, repeats: int) -> tuple[int, ...]:
    """`repeats` consecutive seeds from the experiment's own unlearn.seed."""
    if repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {repeats}")
    return tuple(range(base, base + repeats))
