"""Confirmed fronts: a sweep explores on one seed, then judges the settings that matter by their means over seeds.

Exploration trials run the experiment's own seed (unlearn.seed). A *setting* is an exploration trial's parameters;
its *draws* are that trial and the confirmation trials that re-run it with other seeds (user attributes
`confirms` = the trial, `seed`). Pure functions over the study's trials decide:

- the candidates: feasible settings that no other setting dominates on the current means (a single draw counts as
  its own mean until confirmed), and the default config always; each is run until it has `repeats` seeds;
- the front: settings with `repeats` seeds that no other confirmed setting dominates on means (both objectives
  maximised, as the study sees them: TOFU's log10 forget_quality and model_utility, MUSE's -forget_verbmem_ROUGE and
  retain_knowmem_ROUGE); a lucky single draw that does not hold up drops out;
- the noise floor: the seed standard deviation of each objective, pooled over the settings run with several seeds
  (what the sweep reports; the spread is not the same everywhere: it is widest at the edge of a collapse);
- ties: two front points whose means differ on both objectives by less than their own seed noise allows (a
  two-sided 95 % comparison of two means, Welch's standard error: 1.96 x sqrt(sd_a^2 / n_a + sd_b^2 / n_b)) are
  tied, and share a rank.

A setting whose confirmation run failed (a diverged loss) cannot be confirmed and never reaches the front.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from unlearn_lab.benchmarks import Objective
from unlearn_lab.seeds import Spread, pooled_sd, spread

Z95 = 1.96  # two-sided 95 % normal quantile for "within the noise"


class TrialLike(Protocol):
    """What these functions read of an Optuna FrozenTrial."""

    number: int
    params: dict[str, Any]
    user_attrs: dict[str, Any]

    @property
    def state(self) -> Any: ...


def is_confirmation(trial: TrialLike) -> bool:
    return "confirms" in trial.user_attrs


@dataclass(frozen=True)
class Draw:
    """One seed's run of a setting: its two objectives as the study maximises them (forget, then utility)."""

    trial: int
    seed: int
    forget: float
    utility: float


@dataclass(frozen=True)
class Setting:
    """An exploration trial's parameters and every seed's draw of them."""

    trial: int
    params: dict[str, Any]
    draws: tuple[Draw, ...]
    default_config: bool = False
    failed_seeds: tuple[int, ...] = ()  # confirmation runs that failed: the setting cannot be confirmed

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(d.seed for d in self.draws)

    @property
    def n(self) -> int:
        return len(self.draws)

    @property
    def forget(self) -> Spread:
        """The spread of the forget objective (maximised: TOFU's log10 forget_quality)."""
        return spread([d.forget for d in self.draws])

    @property
    def utility(self) -> Spread:
        """The spread of the utility objective (its metric as it is: model_utility, retain_knowmem_ROUGE)."""
        return spread([d.utility for d in self.draws])

    @property
    def point(self) -> tuple[float, float]:
        """(mean forget objective, mean utility): what the front compares."""
        return self.forget.mean, self.utility.mean


def settings(trials: Iterable[TrialLike], base_seed: int, objectives: Sequence[Objective]) -> list[Setting]:
    """The study's settings: each COMPLETE exploration trial with its own draw (seed `base_seed`, or the seed it
    records) and the draws of the COMPLETE trials that confirm it; FAIL confirmation trials (not retried: a
    retried one is still queued or done) count as failed seeds. A trial records each objective's metric as a user
    attribute of that name (`objectives` says how it is maximised)."""
    trials = list(trials)
    own: dict[int, TrialLike] = {}
    extra: dict[int, list[Draw]] = {}
    failed: dict[int, list[int]] = {}
    retried = {int(t.user_attrs["retry_of"]) for t in trials if "retry_of" in t.user_attrs}
    for t in trials:
        state = t.state.name
        if is_confirmation(t):
            target = int(t.user_attrs["confirms"])
            if state == "COMPLETE":
                extra.setdefault(target, []).append(_draw(t, int(t.user_attrs["seed"]), objectives))
            elif state == "FAIL" and t.number not in retried:
                failed.setdefault(target, []).append(int(t.user_attrs["seed"]))
        elif state == "COMPLETE":
            own[t.number] = t
    out = []
    for number, t in sorted(own.items()):
        draws = [_draw(t, int(t.user_attrs.get("seed", base_seed)), objectives), *extra.get(number, [])]
        draws = sorted({d.seed: d for d in draws}.values(), key=lambda d: d.seed)  # one draw per seed
        out.append(
            Setting(
                number,
                {k: v for k, v in t.params.items()},
                tuple(draws),
                bool(t.user_attrs.get("default_config")),
                tuple(sorted(set(failed.get(number, [])))),
            )
        )
    return out


def _draw(t: TrialLike, seed: int, objectives: Sequence[Objective]) -> Draw:
    missing = [o.metric for o in objectives if t.user_attrs.get(o.metric) is None]
    if missing:
        raise ValueError(f"trial {t.number} is COMPLETE but records no {' / '.join(missing)}")
    first, second = (o.value(t.user_attrs) for o in objectives)
    return Draw(t.number, seed, first, second)


def feasible(s: Setting, floors: Sequence[float]) -> bool:
    """Mean utility at or above every floor (the collapse floor, --min-utility), and no failed seed."""
    return not s.failed_seeds and all(s.utility.mean >= f for f in floors)


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """a is at least as good as b on both objectives (maximised) and better on one."""
    return a[0] >= b[0] and a[1] >= b[1] and a != b


def non_dominated(items: Sequence[Setting]) -> list[Setting]:
    """The settings no other one of `items` dominates on means (duplicates of a point all stay)."""
    points = [s.point for s in items]
    return [s for s in items if not any(dominates(p, s.point) for p in points)]


def candidates(all_settings: Sequence[Setting], floors: Sequence[float]) -> list[Setting]:
    """Settings to run to `repeats` seeds: the feasible non-dominated ones on current means, and the default config
    (so the comparison with it is evidence)."""
    chosen = non_dominated([s for s in all_settings if feasible(s, floors)])
    default = [s for s in all_settings if s.default_config and s not in chosen and not s.failed_seeds]
    return sorted(chosen + default, key=lambda s: s.trial)


def to_confirm(all_settings: Sequence[Setting], floors: Sequence[float], seeds: Sequence[int]) -> list[tuple[int, int]]:
    """(trial, seed) runs still missing for the candidates to have every seed of `seeds`."""
    return [
        (s.trial, seed)
        for s in candidates(all_settings, floors)
        for seed in seeds
        if seed not in s.seeds and seed not in s.failed_seeds
    ]


def front(all_settings: Sequence[Setting], floors: Sequence[float], repeats: int) -> list[Setting]:
    """The confirmed front: feasible settings with `repeats` seeds that no such setting dominates on means, by
    mean utility, highest first."""
    confirmed = [s for s in all_settings if s.n >= repeats and feasible(s, floors)]
    return sorted(non_dominated(confirmed), key=lambda s: (-s.utility.mean, -s.forget.mean, s.trial))


def single_draw_front(all_settings: Sequence[Setting], floors: Sequence[float]) -> list[int]:
    """The trials a single-seed sweep would have reported: non-dominated feasible exploration draws."""
    own = [
        Setting(s.trial, s.params, (next(d for d in s.draws if d.trial == s.trial),), s.default_config)
        for s in all_settings
    ]
    return [s.trial for s in non_dominated([s for s in own if feasible(s, floors)])]


@dataclass(frozen=True)
class Noise:
    """The seed standard deviation of each objective, pooled over the settings with at least two seeds."""

    forget: float | None
    utility: float | None
    settings: int = 0  # how many settings it was measured on


def threshold(a: Setting, b: Setting) -> tuple[float, float] | None:
    """How far apart two settings' means may be, per objective, and still be within their seed noise: 1.96 x
    Welch's standard error of the difference. None when either was run on a single seed (no noise measured)."""
    if a.n < 2 or b.n < 2:
        return None
    pairs = ((a.forget, b.forget), (a.utility, b.utility))
    se = [math.sqrt((x.sd or 0.0) ** 2 / x.n + (y.sd or 0.0) ** 2 / y.n) for x, y in pairs]
    return Z95 * se[0], Z95 * se[1]


def noise(all_settings: Sequence[Setting]) -> Noise:
    repeated = [s for s in all_settings if s.n >= 2]
    return Noise(
        pooled_sd([d.forget for d in s.draws] for s in repeated),
        pooled_sd([d.utility for d in s.draws] for s in repeated),
        len(repeated),
    )


def tied(a: Setting, b: Setting) -> bool:
    """Both objectives' means closer than the two settings' seed noise allows (single draws: never tied)."""
    limit = threshold(a, b)
    if limit is None:
        return False
    return abs(a.forget.mean - b.forget.mean) <= limit[0] and abs(a.utility.mean - b.utility.mean) <= limit[1]


@dataclass(frozen=True)
class Ranked:
    """A front point with its rank (by mean utility; tied points share the better rank) and the points it ties."""

    setting: Setting
    rank: int
    tied_with: tuple[int, ...] = field(default_factory=tuple)


def rank(front_settings: Sequence[Setting]) -> list[Ranked]:
    """Ranks 1, 2, ... down the front (highest mean utility first); a point tied with the one above takes its rank."""
    out: list[Ranked] = []
    for i, s in enumerate(front_settings):
        ties = tuple(o.trial for o in front_settings if o is not s and tied(s, o))
        if out and tied(s, front_settings[i - 1]):
            position = out[-1].rank
        else:
            position = (out[-1].rank + 1) if out else 1
        out.append(Ranked(s, position, ties))
    return out


def beats(a: Setting, b: Setting) -> bool:
    """a dominates b on means and is not tied with it: better beyond the seed noise on at least one objective."""
    return dominates(a.point, b.point) and not tied(a, b)


def default_verdict(all_settings: Sequence[Setting], front_settings: Sequence[Setting]) -> str:
    """One sentence: whether confirmed settings beat the default config beyond the noise."""
    default = next((s for s in all_settings if s.default_config), None)
    if default is None:
        return "the default config is outside the search space (not compared)"
    text = f"default config (trial {default.trial}, {default.n} seed{'s' * (default.n != 1)})"
    if default.failed_seeds:
        return f"{text} failed on seed(s) {', '.join(map(str, default.failed_seeds))}"
    winners = [s.trial for s in front_settings if beats(s, default)]
    if winners:
        return f"{text} is beaten beyond the seed noise by trial(s) {', '.join(map(str, winners))}"
    dominating = [s.trial for s in front_settings if dominates(s.point, default.point)]
    if dominating:
        return (
            f"{text} is dominated on means by trial(s) {', '.join(map(str, dominating))}, "
            "but within the seed noise: not a measurable improvement"
        )
    if default in front_settings:
        return f"{text} is on the confirmed front"
    return f"{text}: no confirmed setting dominates it"


@dataclass(frozen=True)
class Judgement:
    """What a sweep reports, judged on seeds: its settings, the ranked confirmed front, the measured noise, which
    single-draw front points it started from, and how the default config fared."""

    settings: list[Setting]
    front: list[Ranked]
    noise: Noise
    repeats: int
    single_front: list[int]  # trials a single-seed sweep would have reported
    default: str  # default_verdict's sentence
    unconfirmed: list[int]  # candidates still short of seeds (the confirmation did not finish): not on the front

    @property
    def survived(self) -> list[int]:
        """Single-draw front points that are still on the confirmed front."""
        on_front = {r.setting.trial for r in self.front}
        return [t for t in self.single_front if t in on_front]

    def of(self, trial: int) -> Setting | None:
        return next((s for s in self.settings if s.trial == trial), None)


def judge(
    trials: Iterable[TrialLike],
    *,
    base_seed: int,
    repeats: int,
    floors: Sequence[float],
    objectives: Sequence[Objective],
) -> Judgement:
    found = settings(trials, base_seed, objectives)
    confirmed = front(found, floors, repeats)
    pending = sorted({t for t, _ in to_confirm(found, floors, range(base_seed, base_seed + repeats))})
    return Judgement(
        found,
        rank(confirmed),
        noise(found),
        repeats,
        single_draw_front(found, floors),
        default_verdict(found, confirmed),
        pending,
    )
