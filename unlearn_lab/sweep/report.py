"""Sweep reports: trials table, the confirmed Pareto front (table + plot + reproduce commands, each point a setting's
mean ± sd over its seeds), history and importance plots."""

from __future__ import annotations

import csv
import shlex
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearn_lab.metrics.report import fmt
from unlearn_lab.plots import FQ_FLOOR

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure
    from optuna.trial import FrozenTrial

    from unlearn_lab.sweep.confirm import Judgement, Setting
    from unlearn_lab.sweep.space import SearchSpace
    from unlearn_lab.sweep.study import SweepSpec

Row = dict[str, Any]  # one trial: number, state, parameters, scores, failure, MLflow run


def spread_columns(s: Setting | None) -> Row:
    """A setting's seeds and the mean ± sd of each objective (forget_quality: the geometric mean, sd on log10)."""
    if s is None:
        return {k: "" for k in SPREAD_KEYS}
    fq, mu = s.fq, s.mu
    return {
        "seeds": ",".join(map(str, s.seeds)),
        "n_seeds": s.n,
        "forget_quality_mean": 10**fq.mean,
        "log10_forget_quality_mean": fq.mean,
        "log10_forget_quality_sd": "" if fq.sd is None else fq.sd,
        "model_utility_mean": mu.mean,
        "model_utility_sd": "" if mu.sd is None else mu.sd,
    }


SPREAD_KEYS = (
    "seeds",
    "n_seeds",
    "forget_quality_mean",
    "log10_forget_quality_mean",
    "log10_forget_quality_sd",
    "model_utility_mean",
    "model_utility_sd",
)


def trial_rows(study: optuna.Study, space: SearchSpace, judged: Judgement | None = None) -> list[Row]:
    """Every trial with its own draw; an exploration trial also with its setting's seeds and mean ± sd, a
    confirmation run with the trial it confirms."""
    rows = []
    for t in study.trials:
        row: Row = {"trial": t.number, "state": t.state.name}
        row.update({p.name: t.params.get(p.name) for p in space.params})
        row["seed"] = t.user_attrs.get("seed", "")
        row["confirms"] = t.user_attrs.get("confirms", "")
        row["forget_quality"] = t.user_attrs.get("forget_quality")
        row["model_utility"] = t.user_attrs.get("model_utility")
        row.update(spread_columns(judged.of(t.number) if judged is not None and row["confirms"] == "" else None))
        row["default_config"] = bool(t.user_attrs.get("default_config"))
        row["checkpoint_of"] = t.user_attrs.get("checkpoint_of", "")
        row["stopped_at"] = t.user_attrs.get("stopped_at", "")
        # a trial Optuna failed for a silent heartbeat carries no reason of its own
        row["failure"] = t.user_attrs.get("failure") or (
            "worker lost (heartbeat stopped)" if t.state.name == "FAIL" else ""
        )
        row["retry_of"] = t.user_attrs.get("retry_of", "")
        row["mlflow_run_id"] = t.user_attrs.get("mlflow_run_id", "")
        rows.append(row)
    return rows


def epochs_saved(study: optuna.Study) -> int:
    """Training epochs not paid for (free checkpoint trials, runs stopped early), as each worker recorded."""
    return sum(t.user_attrs.get("epochs_saved", 0) for t in study.trials)


def pareto_rows(rows: list[Row], judged: Judgement) -> list[Row]:
    """The confirmed front, highest mean utility first: each setting's trial row with its rank (tied points share
    one) and the front points it is tied with."""
    by_trial = {r["trial"]: r for r in rows}
    return [
        {**by_trial[p.setting.trial], "rank": p.rank, "tied_with": ",".join(map(str, p.tied_with))}
        for p in judged.front
    ]


def write_csv(path: Path, rows: list[Row]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["trial"])
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def reproduce_command(row: Row, spec: SweepSpec) -> str:
    """The `run` that repeats a setting, with the seeds it was judged on (`--seeds`, when more than one)."""
    method = row.get("method") or spec.cfg.unlearn.method
    parts = ["unlearn-lab", "run", "--method", method, "--forget", spec.cfg.data.forget_split]
    if spec.experiment_arg:
        parts += ["--experiment", spec.experiment_arg]
    parts += ["--lr", f"{row['lr']:.6g}", "--epochs", str(row["epochs"])]
    if str(row.get("seeds", "")).count(","):
        parts += ["--seeds", str(row["seeds"])]
    if spec.reuse_epochs:  # the checkpoint's lr schedule was planned over the range's largest epoch count
        parts += ["--set", f"unlearn.schedule_epochs={spec.space.epochs.high}"]
    for item in spec.extra_sets:
        parts += ["--set", item]
    for p in spec.space.method:
        parts += ["--set", f"method.{p.name}={row[p.name]}"]
    return shlex.join(parts)


def pareto_table(rows: list[Row], spec: SweepSpec) -> str:
    """The front, one setting a line (from pareto_rows: highest mean utility first): rank, trial, forget_quality's
    geometric mean with log10 mean ± sd, model_utility mean ± sd, and the command that repeats it."""
    head = f"{'rank':>6}  {'trial':>5}  {'forget_quality':>14}  {'log10 fq mean ± sd':>18}  {'utility mean ± sd':>17}"
    lines = [f"{head}  command"]
    for r in rows:
        rank = f"{r['rank']}=" if r["tied_with"] else str(r["rank"])
        log_fq = _pm(r["log10_forget_quality_mean"], r["log10_forget_quality_sd"], 2)
        mu = _pm(r["model_utility_mean"], r["model_utility_sd"], 3)
        lines.append(
            f"{rank:>6}  {r['trial']:>5}  {fmt(r['forget_quality_mean']):>14}  {log_fq:>18}  {mu:>17}  "
            f"{reproduce_command(r, spec)}"
        )
    if any(r["tied_with"] for r in rows):
        lines.append("(rank k= : tied with a neighbour within the seed noise; see tied_with in pareto.csv)")
    return "\n".join(lines)


def _pm(mean: float, sd: float | str, digits: int) -> str:
    return f"{mean:.{digits}f}" if sd == "" else f"{mean:.{digits}f} ± {float(sd):.{digits}f}"


def pareto_figure(
    rows: list[Row], pareto: list[Row], title: str, references: dict[str, dict[str, Any]] | None = None
) -> Figure:
    """forget_quality (log axis: it spans 1e-239..1) against model_utility, one point per setting at its mean over
    seeds (forget_quality: the geometric mean), annotated with its trial number. The confirmed front is drawn in
    red with error bars of one seed sd on both axes (on the log axis: 10^(mean ± sd) of log10 forget_quality) and
    its seeds' single draws as small marks; other settings faded; the default config starred; the `references`
    (e.g. {"target": summary, "retain": summary}) as labelled reference points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [r for r in rows if r["state"] == "COMPLETE" and r["confirms"] == "" and r["n_seeds"] != ""]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    on_front = {r["trial"] for r in pareto}
    others = [r for r in settings if r["trial"] not in on_front]
    ax.scatter(
        [_clip(r["forget_quality_mean"]) for r in others],
        [r["model_utility_mean"] for r in others],
        c="#8a9a9a",
        alpha=0.35,
        label="other setting (mean)",
    )
    _draw_front(ax, rows, pareto)
    _annotate(ax, settings, pareto)
    _draw_references(ax, references or {})
    ax.set_xscale("log")
    ax.set_xlabel("forget_quality (log scale; higher = closer to the retain model)")
    ax.set_ylabel("model_utility (higher = more knowledge kept)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def _clip(fq: float) -> float:
    return max(fq, FQ_FLOOR)


def _draw_front(ax: Any, rows: list[Row], pareto: list[Row]) -> None:
    """The front at its means with one-sd error bars, and each front setting's single draws."""
    front = sorted(pareto, key=lambda r: r["log10_forget_quality_mean"])
    sd = lambda r, k: float(r[k]) if r[k] != "" else 0.0
    xs = [_clip(r["forget_quality_mean"]) for r in front]
    low = [
        x - _clip(10 ** (r["log10_forget_quality_mean"] - sd(r, "log10_forget_quality_sd")))
        for x, r in zip(xs, front, strict=True)
    ]
    high = [
        _clip(10 ** (r["log10_forget_quality_mean"] + sd(r, "log10_forget_quality_sd"))) - x
        for x, r in zip(xs, front, strict=True)
    ]
    ax.errorbar(
        xs,
        [r["model_utility_mean"] for r in front],
        xerr=[low, high],
        yerr=[sd(r, "model_utility_sd") for r in front],
        fmt="o-",
        c="#c33",
        capsize=3,
        label="confirmed front (mean ± sd)",
    )
    on_front = {r["trial"] for r in pareto}
    draws = [r for r in rows if r["state"] == "COMPLETE" and (r["trial"] in on_front or r["confirms"] in on_front)]
    xs, ys = [_clip(r["forget_quality"]) for r in draws], [r["model_utility"] for r in draws]
    ax.scatter(xs, ys, marker="x", s=14, c="#c33", alpha=0.45, label="front seeds' single draws")


def _annotate(ax: Any, settings: list[Row], pareto: list[Row]) -> None:
    """t<k> at each setting (front points with their method and the points they tie with); the default starred."""
    for r in settings:
        ranked = next((p for p in pareto if p["trial"] == r["trial"]), None)
        label = f"t{r['trial']}" + (f" {r['method']}" if ranked and r.get("method") else "")
        if ranked and ranked["tied_with"]:
            label += f" (= t{ranked['tied_with'].replace(',', ', t')})"
        point = (_clip(r["forget_quality_mean"]), r["model_utility_mean"])
        ax.annotate(label, point, textcoords="offset points", xytext=(4, 4), fontsize=8, alpha=1.0 if ranked else 0.5)
        if r["default_config"]:
            ax.scatter(*point, marker="*", s=180, c="#36c", label="default config (mean)", zorder=3)


def _draw_references(ax: Any, references: dict[str, dict[str, Any]]) -> None:
    for (name, summary), style in zip(references.items(), ("s", "D", "^"), strict=False):
        if summary.get("forget_quality") is None or summary.get("model_utility") is None:
            continue
        point = (_clip(summary["forget_quality"]), summary["model_utility"])
        ax.scatter(*point, marker=style, s=70, facecolors="none", edgecolors="k", zorder=4, label=f"{name} model")
        ax.annotate(name, point, textcoords="offset points", xytext=(5, -11), fontsize=8)


def plots(
    study: optuna.Study,
    rows: list[Row],
    pareto: list[Row],
    out_dir: Path,
    references: dict[str, dict[str, Any]] | None = None,
) -> list[Path]:
    """Pareto-front plot always; optimisation history and parameter importance with >= 3 complete trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["state"] == "COMPLETE" and r["confirms"] == ""]
    runs = sum(r["state"] == "COMPLETE" for r in rows)
    title = f"{study.study_name}: {len(done)} settings, {runs} runs"
    figures = {"pareto_front.png": pareto_figure(rows, pareto, title, references)}
    if len(done) >= 3:
        figures["optimization_history.png"] = history_figure(done)
        importance = importance_figure(study)
        if importance is not None:
            figures["param_importances.png"] = importance
    paths = []
    for name, fig in figures.items():
        paths.append(out_dir / name)
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def history_figure(done: list[Row]) -> Figure:
    """log10 forget_quality and model_utility of the complete trials, by trial number."""
    import math

    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    xs = [r["trial"] for r in done]
    axes[0].plot(xs, [math.log10(max(r["forget_quality"], FQ_FLOOR)) for r in done], "o-")
    axes[0].set_title("log10 forget_quality by trial")
    axes[1].plot(xs, [r["model_utility"] for r in done], "o-", c="#c63")
    axes[1].set_title("model_utility by trial")
    for a in axes:
        a.set_xlabel("trial")
    fig.tight_layout()
    return fig


def importance_figure(study: optuna.Study) -> Figure | None:
    """Each parameter's importance for each objective; None where Optuna cannot rank them (e.g. a parameter that
    never varied)."""
    import matplotlib.pyplot as plt
    import optuna

    names = ("log10_forget_quality", "model_utility")
    try:
        with warnings.catch_warnings():  # the evaluator warns when all trials tie
            warnings.simplefilter("ignore")
            # the default evaluator ranks parameters for LOW target values: negate our maximised objectives
            imps = [optuna.importance.get_param_importances(study, target=_negated(i)) for i in (0, 1)]
    except (RuntimeError, ValueError, ZeroDivisionError):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, imp, name in zip(axes, imps, names, strict=False):
        ax.barh(list(imp), list(imp.values()))
        ax.set_title(f"importance for {name}")
    fig.tight_layout()
    return fig


def _negated(objective: int) -> Callable[[FrozenTrial], float]:
    return lambda t: -t.values[objective]
