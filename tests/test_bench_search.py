"""benchmarks/bench_search.py's judgement, on a scripted oracle (no training): the grids it compares against and
the hypervolume of the front a sweep would report after its confirmation rounds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_search.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_search", PATH)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


class Scripted:
    """(method, lr, epochs, seed) -> (forget_quality, model_utility) from a table; records what was asked."""

    def __init__(self, table):
        self.table, self.asked = table, []

    def many(self, keys):
        self.asked += keys
        return [self.table(lr, epochs, seed) for _, lr, epochs, seed in keys]

    def one(self, key):
        return self.many([key])[0]


def test_grids_span_the_method_range_at_each_budget(bench):
    """5 = 5 lr x 1 epoch count (the middle), 10 = 5 x 2, 20 = 5 x 4, 40 = 8 x 5; both lr ends included."""
    (lo, hi), (e_lo, e_hi), _, _ = bench.space_of("GradAscent")
    for n in (5, 10, 20, 40):
        points = bench.grid("GradAscent", n)
        assert len(points) == n == len(set(points))
        lrs = sorted({lr for lr, _ in points})
        assert lrs[0] == pytest.approx(lo) and lrs[-1] == pytest.approx(hi)
        assert all(e_lo <= e <= e_hi for _, e in points)


def test_a_lucky_draw_leaves_the_front_before_the_hypervolume(bench, monkeypatch):
    """Settings A (fq 0.1, mu 0.8) and B (0.01, 0.9) on every seed; C is drawn at (0.5, 0.95) on seed 0, dominating
    both, but gives (0.001, 0.5) on seeds 1 and 2: its means (log10 fq -2.10, mu 0.65) are dominated by B once
    confirmed. Front A, B from the target's log10 fq -6 and utility 0: 5 x 0.8 + 4 x (0.9 - 0.8) = 4.4; C's single
    draw alone would have given 5.5 x 0.95 = 5.225."""
    monkeypatch.setattr(bench, "target_forget_quality", lambda method: 1e-6)

    def table(lr, epochs, seed):
        if lr == 3e-4:
            return (0.5, 0.95) if seed == 0 else (0.001, 0.5)
        return (0.1, 0.8) if lr == 1e-4 else (0.01, 0.9)

    oracle = Scripted(table)
    settings = [(1e-4, 5), (2e-4, 5), (3e-4, 5)]
    hv, runs = bench.confirmed_hypervolume("GradAscent", settings, 3, oracle, default_first=False)
    assert hv == pytest.approx(4.4)
    assert runs == 9  # 3 settings x 3 seeds: every setting ended up confirmed
    assert {(lr, seed) for _, lr, _, seed in oracle.asked} >= {(3e-4, 1), (3e-4, 2)}  # C was confirmed


def test_best_known_pools_every_setting_measured_on_all_seeds(bench, monkeypatch):
    """The ceiling line: the confirmed front over all cached settings of the method, whatever strategy ran them;
    a setting missing a seed is left out however good its draw, another method's runs are not read."""
    monkeypatch.setattr(bench, "target_forget_quality", lambda method: 1e-3)  # reference point (-3, 0)
    known = {}
    for seed in (0, 1, 2):
        known[bench.cache_key(("GradAscent", 1e-4, 4, seed))] = (0.1, 0.9)  # A: (-1, 0.9)
        known[bench.cache_key(("GradAscent", 2e-4, 5, seed))] = (0.5, (0.4, 0.5, 0.6)[seed])  # B: (-0.301, 0.5)
        known[bench.cache_key(("GradAscent", 1e-4, 5, seed))] = (0.05, 0.8)  # dominated by A
        known[bench.cache_key(("NPO", 1e-4, 4, seed))] = (1.0, 0.99)  # another method
    known[bench.cache_key(("GradAscent", 3e-4, 6, 0))] = (1.0, 0.95)  # one seed only: not confirmed

    class Known:
        pass

    oracle = Known()
    oracle.known = known
    hv, settings = bench.best_known("GradAscent", 3, oracle)
    # by hand: A covers (-1 - -3) x 0.9 = 1.8; B adds (log10(0.5) - -1) x 0.5
    assert hv == pytest.approx(1.8 + (-0.30103 + 1) * 0.5, abs=1e-5)
    assert settings == 3


def test_strategies_name_their_samplers(bench):
    import optuna

    from unlearn_lab.sweep.study import STARTUP_TRIALS

    assert isinstance(bench.make_sampler("random", 0), optuna.samplers.RandomSampler)
    tpe, short = bench.make_sampler("tpe", 0), bench.make_sampler("tpe-s5", 0)
    assert isinstance(tpe, optuna.samplers.TPESampler) and isinstance(short, optuna.samplers.TPESampler)
    assert (tpe._n_startup_trials, short._n_startup_trials) == (STARTUP_TRIALS, 5)
    gp = bench.make_sampler("gp-s5", 0)
    assert isinstance(gp, optuna.samplers.GPSampler) and gp._n_startup_trials == 5
    with pytest.raises(SystemExit, match="unknown strategy 'cmaes'"):
        bench.make_sampler("cmaes", 0)
    assert bench.parse_strategy("tpe-grid") == ("tpe", STARTUP_TRIALS, True)
    assert bench.parse_strategy("gp-grid")[2] and not bench.parse_strategy("tpe-s5")[2]
    for bad in ("tpe-x", "random-grid", "tpe-s"):
        with pytest.raises(SystemExit, match="unknown strategy"):
            bench.parse_strategy(bad)


def test_a_grid_start_within_the_budget_is_the_sweep_of_that_budget(bench):
    """At --trials 5 a grid-start sweep runs the default config and the grid of 4 runs (4 lrs at the middle epoch
    count), not the first 4 points of the 10-run grid; past the start-up it runs the first N trials it drew."""
    (lo, hi), (e_lo, e_hi), cfg, _ = bench.space_of("GradAscent")
    drawn = [(float(k), k) for k in range(40)]  # stand-ins for the trials a sampler drew
    five = bench.first_trials("GradAscent", "tpe-grid", drawn, 5)
    by_hand = [float(f"{lo * (hi / lo) ** (i / 3):.4g}") for i in range(4)]
    assert five == [(cfg.unlearn.lr, cfg.unlearn.epochs)] + [(lr, (e_lo + e_hi) // 2) for lr in by_hand]
    assert bench.first_trials("GradAscent", "tpe-grid", drawn, 20) == drawn[:20]
    assert bench.first_trials("GradAscent", "tpe", drawn, 5) == drawn[:5]
