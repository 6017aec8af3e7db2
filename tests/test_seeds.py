"""Seeds: the spread of a setting over seeds and the sweep's confirmed front, against values derived by hand (and
scipy / numpy computed independently of the code under test)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from scipy import stats

from unlearn_lab import seeds as S
from unlearn_lab.benchmarks import Objective
from unlearn_lab.errors import UsageError
from unlearn_lab.sweep import confirm as C


def test_spread_by_hand():
    """[1, 2, 3]: mean 2, sample sd sqrt(((1-2)^2 + 0 + (3-2)^2) / 2) = 1; the 95 % t-interval is
    2 ± t(0.975, 2) / sqrt(3) with t(0.975, 2) = 4.302653 (the t table): 2 ± 2.484138."""
    s = S.spread([1.0, 2.0, 3.0])
    assert (s.n, s.mean, s.sd, s.min, s.max) == (3, 2.0, 1.0, 1.0, 3.0)
    assert s.ci_low == pytest.approx(2 - 4.302653 / math.sqrt(3), abs=1e-6)
    assert s.ci_high == pytest.approx(2 + 4.302653 / math.sqrt(3), abs=1e-6)
    # scipy's own interval of the mean (loc = mean, scale = standard error) agrees
    low, high = stats.t.interval(0.95, 2, loc=2.0, scale=1.0 / math.sqrt(3))
    assert (s.ci_low, s.ci_high) == pytest.approx((low, high))


def test_one_seed_has_no_spread():
    s = S.spread([0.25])
    assert (s.n, s.mean, s.sd, s.ci_low, s.ci_high, s.min, s.max) == (1, 0.25, None, None, None, 0.25, 0.25)
    assert s.text() == "0.2500" and S.spread([1.0, 3.0]).text(2) == "2.00 ± 1.41"


def test_summarise_takes_forget_quality_on_log10():
    """forget_quality 1e-1, 1e-2, 1e-3 -> log10 -1, -2, -3: mean -2, sd 1 (numpy, ddof=1); geometric mean 1e-2."""
    runs = [
        {"forget_quality": 1e-1, "model_utility": 0.5, "privleak": None},
        {"forget_quality": 1e-2, "model_utility": 0.7, "privleak": 3.0},
        {"forget_quality": 1e-3, "model_utility": 0.6, "privleak": 1.0},
    ]
    out = S.summarise(runs)
    assert "forget_quality" not in out and "privleak" not in out  # None in one seed: no spread of it
    fq = out["log10_forget_quality"]
    assert fq.mean == pytest.approx(-2.0) and fq.sd == pytest.approx(np.std([-1, -2, -3], ddof=1))
    mu = out["model_utility"]
    assert mu.mean == pytest.approx(0.6) and mu.sd == pytest.approx(np.std([0.5, 0.7, 0.6], ddof=1))
    tracked = S.tracked_metrics(out)
    assert tracked["forget_quality"] == pytest.approx(1e-2)  # the geometric mean under the plain name
    assert tracked["log10_forget_quality.sd"] == pytest.approx(1.0)
    assert tracked["model_utility"] == pytest.approx(0.6) and tracked["model_utility.n"] == 3
    assert {"model_utility.min", "model_utility.max", "model_utility.ci95_low", "model_utility.ci95_high"} <= set(
        tracked
    )


def test_pooled_sd_by_hand():
    """[1, 3]: sum of squares 2 on 1 dof; [2, 4, 6]: 8 on 2 dof; [5]: no dof. Pooled: sqrt(10 / 3)."""
    assert S.pooled_sd([[1, 3], [2, 4, 6], [5]]) == pytest.approx(math.sqrt(10 / 3))
    assert S.pooled_sd([[1], [2]]) is None


@pytest.mark.parametrize(
    "text, message",
    [("a,b", "comma-separated integers"), ("", "empty"), ("1,-2", ">= 0"), ("1,1", "twice")],
)
def test_bad_seed_lists_are_one_line(text, message):
    with pytest.raises(UsageError, match=message):
        S.parse_seeds(text)


def test_seed_lists():
    assert S.parse_seeds(" 3, 1,2 ") == (3, 1, 2)
    assert S.seeds_for(5, 3) == (5, 6, 7)


# ---------------------------------------------------------------------------------- the confirmed front


@dataclass
class FakeTrial:
    number: int
    params: dict[str, Any]
    user_attrs: dict[str, Any] = field(default_factory=dict)
    state_name: str = "COMPLETE"

    @property
    def state(self) -> Any:
        return SimpleNamespace(name=self.state_name)


TOFU = (Objective("forget_quality", "max", log=True), Objective("model_utility", "max"))


def study_of(draws: dict[int, list[tuple[float, float]]], *, default: int | None = None) -> list[FakeTrial]:
    """Exploration trial k with its draws (forget_quality, utility): the first is its own (seed 0), the others
    confirmation trials (seeds 1, 2, ...)."""
    trials: list[FakeTrial] = []
    for k, values in sorted(draws.items()):
        fq, mu = values[0]
        attrs = {"forget_quality": fq, "model_utility": mu, "seed": 0, "default_config": k == default}
        trials.append(FakeTrial(k, {"lr": 1e-4 * (k + 1), "epochs": 3}, attrs))
    number = max(draws) + 1
    for k, values in sorted(draws.items()):
        for seed, (fq, mu) in enumerate(values[1:], 1):
            attrs = {"forget_quality": fq, "model_utility": mu, "seed": seed, "confirms": k}
            trials.append(FakeTrial(number, dict(trials[k].params), attrs))
            number += 1
    return trials


def test_candidates_are_the_front_on_current_means_and_the_default():
    """Single draws (log10 fq, utility): t0 (-3, .9) default, t1 (-1, .8), t2 (-2, .5) dominated by t1, t3 (-0.5,
    0.001) collapsed (below the 0.01 floor). Candidates: t0, t1 (non-dominated feasible) plus the default (t0)."""
    trials = study_of({0: [(1e-3, 0.9)], 1: [(1e-1, 0.8)], 2: [(1e-2, 0.5)], 3: [(10**-0.5, 0.001)]}, default=0)
    found = C.settings(trials, 0, TOFU)
    assert [s.trial for s in C.candidates(found, floors=(0.01,))] == [0, 1]
    assert C.to_confirm(found, (0.01,), seeds=(0, 1, 2)) == [(0, 1), (0, 2), (1, 1), (1, 2)]


def test_a_lucky_draw_leaves_the_front_once_confirmed():
    """t1's first draw (fq 0.1, utility 0.8) dominates t2's (0.05, 0.7), but its other seeds give 0.001 / 0.3 and
    0.002 / 0.4: mean log10 fq (-1 - 3 - 2.699) / 3 = -2.233, utility 0.5, so confirmed t2 (means -1.336, 0.7)
    dominates it and t1 drops from the front; t2 was not on the single-draw front and is the one that survives."""
    lucky = {0: [(1e-4, 0.95), (1e-4, 0.95), (2e-4, 0.95)], 1: [(0.1, 0.8)], 2: [(0.05, 0.7)]}
    trials = study_of(lucky, default=0)
    found = C.settings(trials, 0, TOFU)
    assert C.single_draw_front(found, (0.01,)) == [0, 1]
    assert C.to_confirm(found, (0.01,), (0, 1, 2)) == [(1, 1), (1, 2)]  # t0 (default) has its seeds already
    confirmed = study_of({**lucky, 1: [(0.1, 0.8), (0.001, 0.3), (0.002, 0.4)]}, default=0)
    found = C.settings(confirmed, 0, TOFU)
    assert C.to_confirm(found, (0.01,), (0, 1, 2)) == [(2, 1), (2, 2)]  # t2 is a candidate now
    done = study_of({**lucky, 1: [(0.1, 0.8), (0.001, 0.3), (0.002, 0.4)], 2: [(0.05, 0.7), (0.04, 0.7), (0.05, 0.71)]})
    judged = C.judge(done, base_seed=0, repeats=3, floors=(0.01,), objectives=TOFU)
    assert [r.setting.trial for r in judged.front] == [0, 2]
    assert judged.single_front == [0, 1] and judged.survived == [0]
    t1 = judged.of(1)
    assert t1 is not None and t1.forget.mean == pytest.approx((-1 - 3 + math.log10(0.002)) / 3)


def test_front_points_within_the_noise_are_tied_and_share_a_rank():
    """Three confirmed settings: utility draws (0.80, 0.82, 0.84), (0.79, 0.81, 0.83), (0.50, 0.52, 0.54) have sd
    0.02 each; log10 fq draws (-1.1, -1.0, -0.9), (-0.95, -0.85, -0.75), (-0.1, 0, 0.1) sd 0.1 each (so the pooled
    noise floor is 0.1 / 0.02). Tie limits for two such settings of 3 seeds: 1.96 x sqrt(sd^2/3 + sd^2/3) = 0.1600
    (log10 fq) and 0.0320 (utility). t0 (means -1.0, 0.82) vs t1 (-0.85, 0.81): differences 0.15 and 0.01, both
    within: tied. t2 (0.0, 0.52) differs from both by far more: its own rank."""
    draws = {
        0: [(10**-1.1, 0.80), (10**-1.0, 0.82), (10**-0.9, 0.84)],
        1: [(10**-0.95, 0.79), (10**-0.85, 0.81), (10**-0.75, 0.83)],
        2: [(10**-0.1, 0.50), (10**0.0, 0.52), (10**0.1, 0.54)],
    }
    judged = C.judge(study_of(draws), base_seed=0, repeats=3, floors=(0.01,), objectives=TOFU)
    assert judged.noise.forget == pytest.approx(0.1) and judged.noise.utility == pytest.approx(0.02)
    ranked = {r.setting.trial: r for r in judged.front}
    assert set(ranked) == {0, 1, 2}
    assert ranked[0].rank == ranked[1].rank == 1 and ranked[0].tied_with == (1,) and ranked[1].tied_with == (0,)
    assert ranked[2].rank == 2 and ranked[2].tied_with == ()


def test_the_default_is_beaten_only_beyond_the_noise():
    """Default t0 (means log10 fq -2.0, utility 0.80) and t1 (-1.0, 0.85), sd 0.1 / 0.01 each: t1 dominates it by
    1.0 and 0.05, far beyond 1.96 x sqrt(2 sd^2 / 3) (0.16, 0.016): beaten. With t1 at (-1.95, 0.805) instead it
    dominates on means, but within the noise: not a measurable improvement."""
    base = [(10**-2.1, 0.79), (10**-2.0, 0.80), (10**-1.9, 0.81)]
    far = C.judge(
        study_of({0: base, 1: [(10**-1.1, 0.84), (0.1, 0.85), (10**-0.9, 0.86)]}, default=0),
        base_seed=0,
        repeats=3,
        floors=(0.01,),
        objectives=TOFU,
    )
    assert "beaten beyond the seed noise by trial(s) 1" in far.default
    near = C.judge(
        study_of({0: base, 1: [(10**-2.05, 0.795), (10**-1.95, 0.805), (10**-1.85, 0.815)]}, default=0),
        base_seed=0,
        repeats=3,
        floors=(0.01,),
        objectives=TOFU,
    )
    assert "within the seed noise" in near.default


def test_a_setting_whose_confirmation_failed_is_never_on_the_front():
    trials = study_of({0: [(0.5, 0.9), (0.5, 0.9), (0.5, 0.9)], 1: [(0.9, 0.95)]})
    trials.append(FakeTrial(9, dict(trials[1].params), {"confirms": 1, "seed": 1}, state_name="FAIL"))
    judged = C.judge(trials, base_seed=0, repeats=3, floors=(0.01,), objectives=TOFU)
    assert [r.setting.trial for r in judged.front] == [0]
    assert judged.of(1).failed_seeds == (1,)  # type: ignore[union-attr]
    # a failed run that was retried is not a failed seed: its retry decides
    trials.append(FakeTrial(10, dict(trials[1].params), {"confirms": 1, "seed": 1, "retry_of": 9}, "WAITING"))
    assert C.settings(trials, 0, TOFU)[1].failed_seeds == ()


def test_a_benchmark_whose_forget_metric_goes_down_is_judged_on_it():
    """MUSE's pair: forget_verbmem_ROUGE down, retain_knowmem_ROUGE up. Three settings of three seeds:
    t0 (verbmem 0.50, 0.52, 0.48; knowmem 0.80), t1 (0.20, 0.22, 0.18; 0.70), t2 (0.30, 0.31, 0.29; 0.60). t1 has the
    lower verbmem and t2 neither: t2 is dominated; the front is t0 (highest utility first), t1. Its report columns
    are on the metric's own scale (verbmem mean 0.2, not -0.2; sd 0.02), and |privleak| is what "towards 0" judges."""
    from unlearn_lab.benchmarks import get_benchmark
    from unlearn_lab.sweep.report import spread_columns

    assert get_benchmark("tofu").objectives == TOFU  # the pair the tests above judge by
    muse = get_benchmark("muse")
    verbmem, knowmem = muse.objectives
    trials = []
    draws = {0: (0.50, 0.52, 0.48), 1: (0.20, 0.22, 0.18), 2: (0.30, 0.31, 0.29)}
    utility = {0: 0.80, 1: 0.70, 2: 0.60}
    number = 3
    for k, values in draws.items():
        attrs = {"forget_verbmem_ROUGE": values[0], "retain_knowmem_ROUGE": utility[k], "seed": 0}
        trials.append(FakeTrial(k, {"lr": 1e-4 * (k + 1), "epochs": 3}, attrs))
    for k, values in draws.items():
        for seed, v in enumerate(values[1:], 1):
            attrs = {"forget_verbmem_ROUGE": v, "retain_knowmem_ROUGE": utility[k], "seed": seed, "confirms": k}
            trials.append(FakeTrial(number, {"lr": 1e-4 * (k + 1), "epochs": 3}, attrs))
            number += 1
    judged = C.judge(trials, base_seed=0, repeats=3, floors=(0.01,), objectives=muse.objectives)
    assert [r.setting.trial for r in judged.front] == [0, 1]
    t1 = judged.of(1)
    assert t1 is not None
    row = spread_columns(t1, muse.objectives)
    assert row["forget_verbmem_ROUGE_mean"] == pytest.approx(0.20)
    assert row["forget_verbmem_ROUGE_sd"] == pytest.approx(statistics.stdev([0.20, 0.22, 0.18]))
    assert row["retain_knowmem_ROUGE_mean"] == pytest.approx(0.70) and "forget_quality_mean" not in row
    privleak = muse.objective_choices["privleak"]
    assert privleak.value({"privleak": -30.0}) < privleak.value({"privleak": 10.0}) == -10.0
    names = (verbmem.name, knowmem.name, privleak.name)
    assert names == ("-forget_verbmem_ROUGE", "retain_knowmem_ROUGE", "-abs_privleak")
