"""Sweep reports: trials table, the confirmed Pareto front (table + plot + reproduce commands, each point a setting's
mean ± sd over its seeds), history and importance plots."""

from __future__ import annotations

import csv
import functools
import shlex
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearn_lab.benchmarks import Objective
from unlearn_lab.metrics.report import fmt
from unlearn_lab.plots import FQ_FLOOR

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure
    from optuna.trial import FrozenTrial

    from unlearn_lab.sweep.confirm import Judgement, Setting
    from unlearn_lab.sweep.study import SweepSpec

Row = dict[str, Any]  # one trial: number, state, parameters, scores, failure, MLflow run


def spread_columns(s: Setting | None, objectives: Sequence[Objective]) -> Row:
    """A setting's seeds and the mean ± sd of each objective on its scale (TOFU: forget_quality's geometric mean,
    log10_forget_quality mean and sd, model_utility mean and sd; MUSE: forget_verbmem_ROUGE mean and sd, ...)."""
    if s is None:
        return {k: "" for k in spread_keys(objectives)}
    row: Row = {"seeds": ",".join(map(str, s.seeds)), "n_seeds": s.n}
    for o, spread in zip(objectives, (s.forget, s.utility), strict=True):
        row.update(o.columns(spread.mean, spread.sd))
    return row


def spread_keys(objectives: Sequence[Objective]) -> tuple[str, ...]:
    return ("seeds", "n_seeds", *(k for o in objectives for k in o.column_names()))


def trial_rows(study: optuna.Study, spec: SweepSpec, judged: Judgement | None = None) -> list[Row]:
    """Every trial with its own draw (each objective's metric as evaluated); an exploration trial also with its
    setting's seeds and mean ± sd, a confirmation run with the trial it confirms."""
    rows = []
    for t in study.trials:
        row: Row = {"trial": t.number, "state": t.state.name}
        row.update({p.name: t.params.get(p.name) for p in spec.space.params})
        row["seed"] = t.user_attrs.get("seed", "")
        row["confirms"] = t.user_attrs.get("confirms", "")
        row.update({o.metric: t.user_attrs.get(o.metric) for o in spec.objectives})
        setting = judged.of(t.number) if judged is not None and row["confirms"] == "" else None
        row.update(spread_columns(setting, spec.objectives))
        row["default_config"] = bool(t.user_attrs.get("default_config"))
        row["startup"] = t.user_attrs.get("startup", "")  # "grid": a queued start-up trial
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
    """The front, one setting a line (from pareto_rows: highest mean utility first): rank, trial, each objective's
    mean ± sd on its scale (a log10 objective also with the metric's geometric mean), and the command that repeats
    it. TOFU: forget_quality, log10 fq mean ± sd, utility mean ± sd."""
    columns: list[tuple[str, int, Callable[[Row], str]]] = []
    for o, digits in zip(spec.objectives, (2, 3), strict=True):
        if o.log:
            columns.append((o.metric, 14, functools.partial(_central_cell, o)))
        label = _short(o)
        columns.append((label, max(17, len(label)), functools.partial(_spread_cell, o, digits)))
    head = f"{'rank':>6}  {'trial':>5}  " + "  ".join(f"{name:>{width}}" for name, width, _ in columns)
    lines = [f"{head}  command"]
    for r in rows:
        rank = f"{r['rank']}=" if r["tied_with"] else str(r["rank"])
        cells = "  ".join(f"{cell(r):>{width}}" for _, width, cell in columns)
        lines.append(f"{rank:>6}  {r['trial']:>5}  {cells}  {reproduce_command(r, spec)}")
    if any(r["tied_with"] for r in rows):
        lines.append("(rank k= : tied with a neighbour within the seed noise; see tied_with in pareto.csv)")
    return "\n".join(lines)


def _central_cell(o: Objective, row: Row) -> str:
    return fmt(row[f"{o.metric}_mean"])


def _spread_cell(o: Objective, digits: int, row: Row) -> str:
    return _pm(row[f"{o.scale}_mean"], row[f"{o.scale}_sd"], digits)


def _short(o: Objective) -> str:
    """A column title: 'log10 fq mean ± sd' and 'utility mean ± sd' for TOFU's pair, '<scale> mean ± sd' else."""
    known = {"log10_forget_quality": "log10 fq", "model_utility": "utility"}
    return f"{known.get(o.scale, o.scale)} mean ± sd"


def _pm(mean: float, sd: float | str, digits: int) -> str:
    return f"{mean:.{digits}f}" if sd == "" else f"{mean:.{digits}f} ± {float(sd):.{digits}f}"


# the axis titles of TOFU's objectives; others get "<metric> (higher/lower is better)"
AXIS_LABELS = {
    "forget_quality": "forget_quality (log scale; higher = closer to the retain model)",
    "model_utility": "model_utility (higher = more knowledge kept)",
}


@dataclass(frozen=True)
class Axis:
    """How one objective is drawn: a log10 objective on a log axis at the metric's geometric mean (error bars
    10^(mean ± sd)); others on their scale (|privleak| for privleak towards 0) with symmetric error bars."""

    objective: Objective

    @property
    def label(self) -> str:
        o = self.objective
        if o.metric in AXIS_LABELS:
            return AXIS_LABELS[o.metric]
        better = "closer to 0" if o.absolute else "higher" if o.goal == "max" else "lower"
        return f"{o.scale} ({'log scale; ' if o.log else ''}{better} is better)"

    def mean(self, row: Row) -> float:
        o = self.objective
        return _clip(row[f"{o.metric}_mean"]) if o.log else float(row[f"{o.scale}_mean"])

    def raw(self, value: float) -> float:
        """A metric value as evaluated (a single draw, a reference model's summary), where it is drawn."""
        return _clip(value) if self.objective.log else self.objective.scaled(value)

    def errors(self, rows: list[Row]) -> list[list[float]]:
        """[below, above] one seed sd, for each row."""
        o = self.objective
        sd = lambda r: float(r[f"{o.scale}_sd"]) if r[f"{o.scale}_sd"] != "" else 0.0
        if not o.log:
            return [[sd(r) for r in rows], [sd(r) for r in rows]]
        means = [float(r[f"{o.scale}_mean"]) for r in rows]
        return [
            [self.mean(r) - _clip(10 ** (m - sd(r))) for r, m in zip(rows, means, strict=True)],
            [_clip(10 ** (m + sd(r))) - self.mean(r) for r, m in zip(rows, means, strict=True)],
        ]


def pareto_figure(
    rows: list[Row],
    pareto: list[Row],
    title: str,
    references: dict[str, dict[str, Any]] | None,
    objectives: Sequence[Objective],
) -> Figure:
    """The forget objective (TOFU: forget_quality on a log axis: it spans 1e-239..1) against the utility, one point
    per setting at its mean over seeds (a log10 objective: the geometric mean), annotated with its trial number.
    The confirmed front is drawn in red with error bars of one seed sd on both axes and its seeds' single draws as
    small marks; other settings faded; the default config starred; the `references` (e.g. {"target": summary,
    "retain": summary}) as labelled reference points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = (Axis(o) for o in objectives)
    settings = [r for r in rows if r["state"] == "COMPLETE" and r["confirms"] == "" and r["n_seeds"] != ""]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    on_front = {r["trial"] for r in pareto}
    others = [r for r in settings if r["trial"] not in on_front]
    ax.scatter(
        [x.mean(r) for r in others], [y.mean(r) for r in others], c="#8a9a9a", alpha=0.35, label="other setting (mean)"
    )
    _draw_front(ax, rows, pareto, x, y)
    _annotate(ax, settings, pareto, x, y)
    _draw_references(ax, references or {}, x, y)
    if x.objective.log:
        ax.set_xscale("log")
    ax.set_xlabel(x.label)
    ax.set_ylabel(y.label)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def _clip(fq: float) -> float:
    return max(fq, FQ_FLOOR)


def _draw_front(ax: Any, rows: list[Row], pareto: list[Row], x: Axis, y: Axis) -> None:
    """The front at its means with one-sd error bars, and each front setting's single draws."""
    front = sorted(pareto, key=lambda r: x.mean(r))
    ax.errorbar(
        [x.mean(r) for r in front],
        [y.mean(r) for r in front],
        xerr=x.errors(front),
        yerr=y.errors(front),
        fmt="o-",
        c="#c33",
        capsize=3,
        label="confirmed front (mean ± sd)",
    )
    on_front = {r["trial"] for r in pareto}
    draws = [r for r in rows if r["state"] == "COMPLETE" and (r["trial"] in on_front or r["confirms"] in on_front)]
    xs = [x.raw(r[x.objective.metric]) for r in draws]
    ys = [y.raw(r[y.objective.metric]) for r in draws]
    ax.scatter(xs, ys, marker="x", s=14, c="#c33", alpha=0.45, label="front seeds' single draws")


def _annotate(ax: Any, settings: list[Row], pareto: list[Row], x: Axis, y: Axis) -> None:
    """t<k> at each setting (front points with their method and the points they tie with); the default starred."""
    for r in settings:
        ranked = next((p for p in pareto if p["trial"] == r["trial"]), None)
        label = f"t{r['trial']}" + (f" {r['method']}" if ranked and r.get("method") else "")
        if ranked and ranked["tied_with"]:
            label += f" (= t{ranked['tied_with'].replace(',', ', t')})"
        point = (x.mean(r), y.mean(r))
        ax.annotate(label, point, textcoords="offset points", xytext=(4, 4), fontsize=8, alpha=1.0 if ranked else 0.5)
        if r["default_config"]:
            ax.scatter(*point, marker="*", s=180, c="#36c", label="default config (mean)", zorder=3)


def _draw_references(ax: Any, references: dict[str, dict[str, Any]], x: Axis, y: Axis) -> None:
    for (name, summary), style in zip(references.items(), ("s", "D", "^"), strict=False):
        values = summary.get(x.objective.metric), summary.get(y.objective.metric)
        if values[0] is None or values[1] is None:
            continue
        point = (x.raw(values[0]), y.raw(values[1]))
        ax.scatter(*point, marker=style, s=70, facecolors="none", edgecolors="k", zorder=4, label=f"{name} model")
        ax.annotate(name, point, textcoords="offset points", xytext=(5, -11), fontsize=8)


def plots(
    study: optuna.Study,
    spec: SweepSpec,
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
    figures = {"pareto_front.png": pareto_figure(rows, pareto, title, references, spec.objectives)}
    if len(done) >= 3:
        figures["optimization_history.png"] = history_figure(done, spec.objectives)
        importance = importance_figure(study, spec.objectives)
        if importance is not None:
            figures["param_importances.png"] = importance
    paths = []
    for name, fig in figures.items():
        paths.append(out_dir / name)
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def history_figure(done: list[Row], objectives: Sequence[Objective]) -> Figure:
    """Each objective on its scale (TOFU: log10 forget_quality, model_utility) of the complete trials, by trial."""
    import math

    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    xs = [r["trial"] for r in done]
    for ax, o, colour in zip(axes, objectives, ("C0", "#c63"), strict=True):
        on_scale = (lambda v: math.log10(max(v, FQ_FLOOR))) if o.log else o.scaled
        ax.plot(xs, [on_scale(r[o.metric]) for r in done], "o-", c=colour)
        ax.set_title(f"{o.scale.replace('log10_', 'log10 ')} by trial")
    for a in axes:
        a.set_xlabel("trial")
    fig.tight_layout()
    return fig


def importance_figure(study: optuna.Study, objectives: Sequence[Objective]) -> Figure | None:
    """Each parameter's importance for each objective; None where Optuna cannot rank them (e.g. a parameter that
    never varied)."""
    import matplotlib.pyplot as plt
    import optuna

    names = [o.name for o in objectives]
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
