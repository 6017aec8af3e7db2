"""Sweep reports: trials table, Pareto front (table + plot + reproduce commands), history and importance plots."""

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

    from unlearn_lab.sweep.space import SearchSpace
    from unlearn_lab.sweep.study import SweepSpec

Row = dict[str, Any]  # one trial: number, state, parameters, scores, failure, MLflow run


def trial_rows(study: optuna.Study, space: SearchSpace) -> list[Row]:
    rows = []
    for t in study.trials:
        row: Row = {"trial": t.number, "state": t.state.name}
        row.update({p.name: t.params.get(p.name) for p in space.params})
        row["forget_quality"] = t.user_attrs.get("forget_quality")
        row["model_utility"] = t.user_attrs.get("model_utility")
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


def pareto_rows(study: optuna.Study, space: SearchSpace) -> list[Row]:
    numbers = {t.number for t in study.best_trials}
    return [r for r in trial_rows(study, space) if r["trial"] in numbers]


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
    method = row.get("method") or spec.cfg.unlearn.method
    parts = ["unlearn-lab", "run", "--method", method, "--forget", spec.cfg.data.forget_split]
    if spec.experiment_arg:
        parts += ["--experiment", spec.experiment_arg]
    parts += ["--lr", f"{row['lr']:.6g}", "--epochs", str(row["epochs"])]
    if spec.reuse_epochs:  # the checkpoint's lr schedule was planned over the range's largest epoch count
        parts += ["--set", f"unlearn.schedule_epochs={spec.space.epochs.high}"]
    for item in spec.extra_sets:
        parts += ["--set", item]
    for p in spec.space.method:
        parts += ["--set", f"method.{p.name}={row[p.name]}"]
    return shlex.join(parts)


def pareto_table(rows: list[Row], spec: SweepSpec) -> str:
    lines = [f"{'trial':>5}  {'forget_quality':>14}  {'model_utility':>13}  command"]
    for r in sorted(rows, key=lambda r: -(r["model_utility"] or 0)):
        lines.append(
            f"{r['trial']:>5}  {fmt(r['forget_quality']):>14}  {fmt(r['model_utility']):>13}  "
            f"{reproduce_command(r, spec)}"
        )
    return "\n".join(lines)


def pareto_figure(
    rows: list[Row], pareto: list[Row], title: str, references: dict[str, dict[str, Any]] | None = None
) -> Figure:
    """forget_quality (log axis: it spans 1e-239..1) against model_utility, one point per complete trial annotated
    with its number, the Pareto front drawn bold and dominated trials faded, the default config starred, and the
    `references` (e.g. {"target": summary, "retain": summary}) as labelled reference points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fq = lambda r: max(r["forget_quality"], FQ_FLOOR)
    done = [r for r in rows if r["state"] == "COMPLETE" and r["forget_quality"] is not None]
    on_front = {r["trial"] for r in pareto}
    fig, ax = plt.subplots(figsize=(7.5, 5))
    dominated = [r for r in done if r["trial"] not in on_front]
    ax.scatter(
        [fq(r) for r in dominated],
        [r["model_utility"] for r in dominated],
        c="#8a9a9a",
        alpha=0.35,
        label="dominated trial",
    )
    front = sorted((r for r in done if r["trial"] in on_front), key=fq)
    ax.plot([fq(r) for r in front], [r["model_utility"] for r in front], "o-", c="#c33", label="Pareto front")
    for r in done:
        searched = r.get("method") if r["trial"] in on_front else None  # --methods: the front says which method
        ax.annotate(
            f"t{r['trial']}" + (f" {searched}" if searched else ""),
            (fq(r), r["model_utility"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
            alpha=1.0 if r["trial"] in on_front else 0.5,
        )
        if r["default_config"]:
            ax.scatter([fq(r)], [r["model_utility"]], marker="*", s=180, c="#36c", label="default config", zorder=3)
    for (name, summary), style in zip((references or {}).items(), ("s", "D", "^"), strict=False):
        if summary.get("forget_quality") is None or summary.get("model_utility") is None:
            continue
        point = (max(summary["forget_quality"], FQ_FLOOR), summary["model_utility"])
        ax.scatter(*point, marker=style, s=70, facecolors="none", edgecolors="k", zorder=4, label=f"{name} model")
        ax.annotate(name, point, textcoords="offset points", xytext=(5, -11), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("forget_quality (log scale; higher = closer to the retain model)")
    ax.set_ylabel("model_utility (higher = more knowledge kept)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


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

    done = [r for r in rows if r["state"] == "COMPLETE"]
    figures = {
        "pareto_front.png": pareto_figure(rows, pareto, f"{study.study_name}: {len(done)} complete trials", references)
    }
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
