"""Does the search pay? The hypervolume of the confirmed front after 5, 10, 20 and 40 trials for the sweep's own
strategy (the default config, the 10-run lr x epochs grid, then multivariate TPE with the collapse constraint:
`tpe-grid`), TPE after random start-up trials (`tpe`, Optuna's way), random search, and the lr x epochs grids
people run by hand at the same run counts, on the embedded world, for each method asked (default GradAscent and
NPO).

    .venv/bin/python benchmarks/bench_search.py [--methods GradAscent,NPO] [--seeds 3] [--budgets 5,10,20,40]
        [--strategies random,tpe,tpe-grid] [--repeats 3] [--processes 2] [--out saves/bench_search]

--strategies adds other samplers (tpe-sN: TPE after N random start-up trials; gp, gp-sN, gp-grid: Optuna's
GPSampler after 10 or N random trials, or after the grid) to compare before changing the sweep's default.

Every strategy is judged as a sweep judges itself: its first N trials are single draws on the experiment's seed,
then sweep/confirm.py decides which settings are confirmed over `--repeats` seeds (rounds until the front on means
is confirmed) and the hypervolume (leaderboard/rules.py) is that of the confirmed front in (log10 forget_quality,
model_utility) from the target's log10 forget_quality and utility 0. The samplers and random search all start from
the experiment's default config (trial 0, as `sweep` does) and run `--seeds` sampler seeds; a grid has no sampler
seed: N = a lr values (log-spaced over the method's range, both ends) x b epoch counts (evenly over its range):
5 = 5 x 1 (the middle epoch count), 10 = 5 x 2, 20 = 5 x 4, 40 = 8 x 5 (sweep/space.py::SearchSpace.grid). A -grid
strategy at a budget of up to 11 trials is the default config plus the grid of N - 1 runs, as such a sweep runs.

A run is `run_experiment` on the embedded world exactly as a sweep trial (collapse check at sweep.collapse_utility,
the experiment's evaluation limited to the two objectives' metrics), one torch thread per process. Runs are cached by
(method, lr, epochs, seed) in a JSON-lines file shared by the processes, so strategies that meet the same setting
(the default config, grid points, confirmations) pay for it once, and the benchmark resumes where it stopped.
Prints each strategy's hypervolume (mean ± sd over sampler seeds) per budget with the runs it paid (exploration
plus confirmation), the ratios of the sweep's strategy against the grid at the same budget and each sampler at 20
trials against the 40-run grid (the goal: >= 1), the best known hypervolume (the confirmed front over every
setting measured on all seeds, by any strategy: how much was left to find) and each strategy's share of it, and
writes hypervolume.png and results.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

Key = tuple[str, float, int, int]  # method, lr, epochs, seed
Point = tuple[float, float]  # forget_quality, model_utility


# ----------------------------------------------------------------------------------------------------- the runs


def cache_key(key: Key) -> str:
    method, lr, epochs, seed = key
    return f"{method}|{lr!r}|{epochs}|{seed}"


def read_cache(path: Path) -> dict[str, Point]:
    out: dict[str, Point] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                item = json.loads(line)
                out[item["key"]] = (item["forget_quality"], item["model_utility"])
    return out


def one_run(key: Key, cache: str) -> tuple[str, Point]:
    """A sweep trial's run of (method, lr, epochs, seed) on the embedded world, appended to the cache."""
    os.environ.setdefault("UNLEARN_LAB_THREADS", "1")
    from unlearn_lab.commands import make_plan
    from unlearn_lab.config import load_experiment
    from unlearn_lab.experiment import RunOptions, run_experiment
    from unlearn_lab.runtime import configure_threads
    from unlearn_lab.tracking.memory import MemoryTracker

    method, lr, epochs, seed = key
    sets = [f"unlearn.method={method}", f"unlearn.lr={lr!r}", f"unlearn.epochs={epochs}", f"unlearn.seed={seed}"]
    cfg = load_experiment(None, [*sets, "eval.metrics=forget_quality,model_utility"])
    saves = Path(cache).parent / "saves"
    import hashlib

    name = "b-" + hashlib.sha256(cache_key(key).encode()).hexdigest()[:12]
    plan = make_plan("run", cfg, device="cpu", task_name=name, saves=saves)
    configure_threads(threads=1)
    opts = RunOptions(progress=False, collapse_utility=cfg.sweep.collapse_utility)
    result = run_experiment(plan, MemoryTracker(), opts, log=lambda _: None)
    point = (float(result.summary["forget_quality"]), float(result.summary["model_utility"]))
    for folder in (result.model_dir, result.eval_dir):  # only the numbers are kept
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    with open(cache, "a") as fh:  # one short line per append: atomic on a local file system
        fh.write(json.dumps({"key": cache_key(key), "forget_quality": point[0], "model_utility": point[1]}) + "\n")
    return cache_key(key), point


class Oracle:
    """(method, lr, epochs, seed) -> (forget_quality, model_utility), from the cache or a run (in the pool)."""

    def __init__(self, cache: Path, pool: ProcessPoolExecutor):
        self.path, self.pool, self.known = cache, pool, read_cache(cache)

    def many(self, keys: list[Key]) -> list[Point]:
        todo = list(dict.fromkeys(k for k in keys if cache_key(k) not in self.known))
        for name, point in self.pool.map(one_run, todo, [str(self.path)] * len(todo)):
            self.known[name] = point
        return [self.known[cache_key(k)] for k in keys]

    def one(self, key: Key) -> Point:
        return self.many([key])[0]


# ------------------------------------------------------------------------------------------------- strategies


@functools.cache
def space_of(method: str) -> tuple[tuple[float, float], tuple[int, int], Any, Any]:
    """The method's searched lr and epochs ranges (the experiment's sweep.methods, else sweep.lr/epochs), the
    experiment config and the sweep's SearchSpace."""
    from unlearn_lab.config import load_experiment
    from unlearn_lab.sweep.space import build_space

    cfg = load_experiment(None, [f"unlearn.method={method}"])
    lr, epochs = cfg.sweep.ranges(method)
    space = build_space(lr, epochs, None, {})
    return space.lr.bounds(), tuple(int(e) for e in space.epochs.bounds()), cfg, space  # type: ignore[return-value]


def grid(method: str, n: int) -> list[tuple[float, int]]:
    """The n-run grid people run by hand (sweep/space.py::SearchSpace.grid, the one the sweep starts from)."""
    _, _, _, space = space_of(method)
    return [(point["lr"], point["epochs"]) for point in space.grid(n)]


def make_sampler(strategy: str, seed: int) -> Any:
    """A strategy's sampler: "random"; "tpe" / "gp", the sweep's samplers (sweep/study.py::sampler) after Optuna's
    10 random start-up trials; "tpe-s5" / "gp-s5", the same after 5; "tpe-grid" / "gp-grid", the same after the
    10-run grid (the start-up trials are the grid's, queued: `sampled` queues them)."""
    import optuna

    from unlearn_lab.sweep import study as sweep_study

    kind, startup, _ = parse_strategy(strategy)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return sweep_study.sampler(seed, kind, startup)


def parse_strategy(strategy: str) -> tuple[str, int, bool]:
    """strategy name -> (sampler kind, start-up trials, whether the start-up trials are the grid's)."""
    from unlearn_lab.sweep.study import STARTUP_TRIALS

    kind, _, rest = strategy.partition("-")
    if kind == "random" and not rest:
        return kind, 0, False
    if kind in ("tpe", "gp"):
        if not rest:
            return kind, STARTUP_TRIALS, False
        if rest == "grid":
            return kind, STARTUP_TRIALS, True
        if rest[:1] == "s" and rest[1:].isdigit():
            return kind, int(rest[1:]), False
    raise SystemExit(f"unknown strategy '{strategy}': random, tpe, tpe-sN, tpe-grid, gp, gp-sN or gp-grid")


def sampled(method: str, sampler_name: str, seed: int, n: int, oracle: Oracle) -> list[tuple[float, int]]:
    """n trials of the sweep's own loop in memory: the default config first (then, for a -grid strategy, the
    10-run grid, queued as sweep/study.py::enqueue_startup queues it), then the sampler's draws, each told its
    seed-0 draw and the collapse constraint, as worker.py does."""
    import warnings

    import optuna

    from unlearn_lab.metrics.functions import log10_forget_quality
    from unlearn_lab.sweep.study import startup_points

    _, _, cfg, space = space_of(method)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=make_sampler(sampler_name, seed))
    default = {"lr": cfg.unlearn.lr, "epochs": cfg.unlearn.epochs}
    study.enqueue_trial(default)
    _, startup, from_grid = parse_strategy(sampler_name)
    for point in startup_points(space, startup, default) if from_grid else []:
        study.enqueue_trial(point)
    floor = cfg.sweep.collapse_utility
    settings = []
    for _ in range(n):
        trial = study.ask()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Fixed parameter")
            params = space.draw(trial)
        fq, mu = oracle.one((method, params["lr"], params["epochs"], cfg.unlearn.seed))
        trial.set_constraint("collapse_utility", floor - mu)  # as worker.constraints: collapsed -> infeasible
        study.tell(trial, (log10_forget_quality(fq), mu))
        settings.append((params["lr"], params["epochs"]))
    return settings


def first_trials(method: str, strategy: str, trials: list[tuple[float, int]], n: int) -> list[tuple[float, int]]:
    """The exploration settings of a sweep with `--trials n`: the first n of its trials, except for a grid start-up
    within the budget, which is the default config and the grid of n - 1 runs (sweep/study.py::enqueue_startup),
    not the first n - 1 points of the larger grid."""
    _, startup, from_grid = parse_strategy(strategy)
    if not from_grid or n > startup:
        return trials[:n]
    from unlearn_lab.sweep.study import startup_points

    _, _, cfg, space = space_of(method)
    default = {"lr": cfg.unlearn.lr, "epochs": cfg.unlearn.epochs}
    return [(default["lr"], default["epochs"])] + [
        (p["lr"], p["epochs"]) for p in startup_points(space, n - 1, default)
    ]


# -------------------------------------------------------------------------------------------------- judgement


def confirmed_hypervolume(
    method: str, settings: list[tuple[float, int]], repeats: int, oracle: Oracle, *, default_first: bool
) -> tuple[float, int]:
    """(hypervolume, runs) of the front a sweep with these exploration settings would report: confirm.py's rounds
    over `repeats` seeds (the first setting is the default config when `default_first`), then
    leaderboard.rules.hypervolume from (log10 target forget_quality, 0); runs = the distinct exploration settings
    plus the confirmation runs it took (what the strategy paid)."""
    from unlearn_lab.benchmarks.tofu_scores import OBJECTIVES as objectives  # the embedded world is TOFU's
    from unlearn_lab.sweep import confirm

    _, _, cfg, _ = space_of(method)
    base, floors = cfg.unlearn.seed, (cfg.sweep.collapse_utility,)
    seeds = list(range(base, base + repeats))
    draws: dict[int, dict[int, Point]] = {}
    for i, (lr, epochs) in enumerate(dict.fromkeys(settings)):
        draws[i] = {base: oracle.one((method, lr, epochs, base))}
    unique = list(dict.fromkeys(settings))
    for _ in range(6):  # rounds, as the sweep's confirm_front
        trials = _trials(unique, draws, base, default_first)
        todo = confirm.to_confirm(confirm.settings(trials, base, objectives), floors, seeds)
        if not todo:
            break
        points = oracle.many([(method, unique[t][0], unique[t][1], s) for t, s in todo])
        for (t, s), point in zip(todo, points, strict=True):
            draws[t][s] = point
    runs = sum(len(by_seed) for by_seed in draws.values())
    return front_hypervolume(method, unique, draws, repeats, default_first), runs


def best_known(method: str, repeats: int, oracle: Oracle) -> tuple[float, int]:
    """(hypervolume, settings) of the confirmed front over every setting of `method` the cache holds on all
    `repeats` seeds, whichever strategy ran it: the most any strategy could have reported from what was measured
    (no new runs), so how close a strategy comes to it says how much was left to find."""
    _, _, cfg, _ = space_of(method)
    base = cfg.unlearn.seed
    seeds = range(base, base + repeats)
    by_setting: dict[tuple[float, int], dict[int, Point]] = {}
    for key, point in oracle.known.items():
        name, lr, epochs, seed = key.split("|")
        if name == method and int(seed) in seeds:
            by_setting.setdefault((float(lr), int(epochs)), {})[int(seed)] = point
    complete = {k: v for k, v in by_setting.items() if len(v) == repeats}
    unique = list(complete)
    draws = {i: complete[k] for i, k in enumerate(unique)}
    return front_hypervolume(method, unique, draws, repeats, False), len(complete)


def front_hypervolume(
    method: str, unique: list[tuple[float, int]], draws: dict[int, dict[int, Point]], repeats: int, default: bool
) -> float:
    """The hypervolume of the confirmed front these draws make (confirm.py's front, leaderboard.rules'
    hypervolume from (log10 target forget_quality, 0))."""
    from unlearn_lab.benchmarks.tofu_scores import OBJECTIVES
    from unlearn_lab.leaderboard.rules import hypervolume
    from unlearn_lab.sweep import confirm

    _, _, cfg, _ = space_of(method)
    base = cfg.unlearn.seed
    explored = confirm.settings(_trials(unique, draws, base, default), base, OBJECTIVES)
    front = confirm.front(explored, (cfg.sweep.collapse_utility,), repeats)
    return hypervolume([s.point for s in front], (math.log10(target_forget_quality(method)), 0.0))


def _trials(unique: list[tuple[float, int]], draws: dict[int, dict[int, Point]], base: int, default: bool) -> list[Any]:
    """The draws as confirm.settings reads trials: exploration trial i (seed base), confirmation trials."""
    from types import SimpleNamespace

    state = SimpleNamespace(name="COMPLETE")
    out: list[Any] = []
    number = len(unique)
    for i, (lr, epochs) in enumerate(unique):
        fq, mu = draws[i][base]
        attrs = {"forget_quality": fq, "model_utility": mu, "seed": base, "default_config": default and i == 0}
        out.append(SimpleNamespace(number=i, params={"lr": lr, "epochs": epochs}, user_attrs=attrs, state=state))
    for i, by_seed in draws.items():
        for seed, (fq, mu) in by_seed.items():
            if seed != base:
                attrs = {"forget_quality": fq, "model_utility": mu, "seed": seed, "confirms": i}
                out.append(SimpleNamespace(number=number, params={}, user_attrs=attrs, state=state))
                number += 1
    return out


@functools.cache
def target_forget_quality(method: str) -> float:
    """The target model's forget_quality (the hypervolume's reference point), from the evaluation cache."""
    from unlearn_lab.evaluation import reference_points
    from unlearn_lab.plan import resolve

    _, _, cfg, _ = space_of(method)
    plan = resolve("eval", cfg, device="cpu", threads=1, evaluated="target", count=False)
    return float(reference_points(plan)["target"]["forget_quality"])


# ------------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="GradAscent,NPO")
    parser.add_argument("--seeds", type=int, default=3, help="sampler seeds of TPE and random search")
    parser.add_argument("--budgets", default="5,10,20,40")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--strategies",
        default="random,tpe,tpe-grid",
        help="samplers next to the grids: random, tpe, tpe-sN (N random start-up trials), tpe-grid (the 10-run grid "
        "as start-up), gp, gp-sN, gp-grid",
    )
    parser.add_argument("--out", default=str(REPO / "saves" / "bench_search"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budgets = [int(b) for b in args.budgets.split(",")]
    results: dict[str, Any] = {"budgets": budgets, "methods": {}}
    import multiprocessing

    with ProcessPoolExecutor(args.processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        oracle = Oracle(out / "runs.jsonl", pool)
        for method in args.methods.split(","):
            results["methods"][method] = measure(method, budgets, args, oracle)
            (out / "results.json").write_text(json.dumps(results, indent=2))
    report(results, out)


def measure(method: str, budgets: list[int], args, oracle: Oracle) -> dict[str, Any]:
    top = max(budgets)
    grid_points = {n: grid(method, n) for n in budgets}
    oracle.many([(method, lr, e, 0) for n in budgets for lr, e in grid_points[n]])  # the grid's runs, in parallel
    by: dict[str, dict[int, list[float]]] = {"grid": {n: [] for n in budgets}}
    paid: dict[str, dict[int, list[int]]] = {"grid": {n: [] for n in budgets}}
    for n in budgets:
        hv, runs = confirmed_hypervolume(method, grid_points[n], args.repeats, oracle, default_first=False)
        by["grid"][n].append(hv)
        paid["grid"][n].append(runs)
    print(f"{method} grid: " + ", ".join(f"{n}: {by['grid'][n][-1]:.3f}" for n in budgets), flush=True)
    from concurrent.futures import ThreadPoolExecutor

    from unlearn_lab.sweep.study import SAMPLER, STARTUP, STARTUP_TRIALS

    names = [n for n in args.strategies.split(",") if n]
    jobs = [(name, seed) for name in names for seed in range(args.seeds)]
    with ThreadPoolExecutor(len(jobs)) as threads:  # every sampler seed in flight; the process pool runs 2 at a time
        explored = list(threads.map(lambda job: sampled(method, job[0], job[1], top, oracle), jobs))
    for (name, seed), trials in zip(jobs, explored, strict=True):
        by.setdefault(name, {n: [] for n in budgets})
        paid.setdefault(name, {n: [] for n in budgets})
        for n in budgets:
            hv, runs = confirmed_hypervolume(
                method, first_trials(method, name, trials, n), args.repeats, oracle, default_first=True
            )
            by[name][n].append(hv)
            paid[name][n].append(runs)
        print(f"{method} {name} seed {seed}: " + ", ".join(f"{n}: {by[name][n][-1]:.3f}" for n in budgets), flush=True)
    ceiling, pooled = best_known(method, args.repeats, oracle)
    return {
        "best_known": {"hypervolume": ceiling, "settings": pooled},
        "hypervolume": by,
        "runs": paid,
        "target_forget_quality": target_forget_quality(method),
        "grids": grid_points,
        "startup": STARTUP_TRIALS,
        "sweep_sampler": f"{SAMPLER}-grid" if STARTUP == "grid" else SAMPLER,  # the strategy the sweep runs
    }


def report(results: dict[str, Any], out: Path) -> None:
    budgets = results["budgets"]
    for method, data in results["methods"].items():
        hv = data["hypervolume"]
        runs = data.get("runs", {})
        names = list(hv)  # grid, random, then the samplers asked for
        own = data.get("sweep_sampler", "tpe")  # the sweep's default sampler when this ran
        print(f"\n{method}: hypervolume of the confirmed front (mean ± sd over sampler seeds) [runs paid, with")
        print(f"the confirmation runs, mean over sampler seeds]; samplers start with {data.get('startup', 10)} random")
        print("trials (-grid: the default config and the grid of up to 10 runs); the sweep runs " + own)
        print(f"{'trials':>7}  " + "  ".join(f"{name:>22}" for name in names) + f"  {own + ' / grid':>10}")
        for n in budgets:
            cells = []
            for name in names:
                cost = f" [{statistics.mean(_at(runs[name], n)):.0f}]" if name in runs else ""
                cells.append(f"{_pm(_at(hv[name], n)):>16}{cost:>6}")
            grid_n = _at(hv["grid"], n)[0]
            mine = _at(hv[own], n) if own in hv else [math.nan]
            ratio = statistics.mean(mine) / grid_n if grid_n else math.inf
            print(f"{n:>7}  " + "  ".join(cells) + f"  {ratio:10.2f}")
        if "best_known" in data:
            best = data["best_known"]
            print(
                f"best known: {best['hypervolume']:.3f}, the confirmed front over all {best['settings']} settings "
                "measured on every seed (any strategy); each budget's share of it:"
            )
            print(
                "  "
                + "; ".join(
                    f"{name} at {n}: {statistics.mean(_at(hv[name], n)) / best['hypervolume']:.2f}"
                    for name in names
                    for n in budgets
                    if n >= 20
                )
            )
        if 20 in budgets and 40 in budgets:
            for name in [n for n in names if n not in ("grid", "random")]:
                goal = statistics.mean(_at(hv[name], 20)) / _at(hv["grid"], 40)[0]
                print(f"{name} at 20 trials / grid at 40 runs: {goal:.3f} (goal >= 1)")
    plot(results, out / "hypervolume.png")


def _at(table: dict, n: int) -> list[float]:
    return table[n] if n in table else table[str(n)]


def _pm(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0:.3f}"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results["methods"])
    fig, axes = plt.subplots(1, len(methods), figsize=(5.5 * len(methods), 4.2), squeeze=False)
    budgets = results["budgets"]
    for ax, method in zip(axes[0], methods, strict=True):
        hv = results["methods"][method]["hypervolume"]
        styles = {"grid": "s--", "random": "^-", "tpe": "o:", "tpe-grid": "o-", "gp": "D-"}
        for name in hv:
            style = styles.get(name, "x:")
            means = [statistics.mean(_at(hv[name], n)) for n in budgets]
            sds = [statistics.stdev(_at(hv[name], n)) if len(_at(hv[name], n)) > 1 else 0 for n in budgets]
            ax.errorbar(budgets, means, yerr=sds, fmt=style, capsize=3, label=name)
        best = results["methods"][method].get("best_known")
        if best:
            ax.axhline(best["hypervolume"], color="grey", linestyle=":", label="best known (all measured)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.set_xlabel("trials (runs of exploration)")
        ax.set_ylabel("hypervolume of the confirmed front")
        ax.set_title(method)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
