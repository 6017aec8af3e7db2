"""The leaderboard's outputs: Markdown (renders on GitHub), CSV (one row per method, a column group per rule), a
LaTeX table for papers, a self-contained HTML page (tables and the plot inline: MLflow's artifact viewer shows it
with no clicks) and one plot of every method's confirmed front."""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import shlex
from typing import TYPE_CHECKING, Any

from unlearn_lab.leaderboard import Leaderboard, MethodRow, setting_summary
from unlearn_lab.leaderboard.collect import Setting
from unlearn_lab.plots import FQ_FLOOR

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RULES = {
    "a": "(a) forget most, keeping the utility",
    "b": "(b) keep most, forgetting enough",
    "c": "(c) the whole trade-off: hypervolume of the confirmed front",
}


def cell(s: Setting, metric: str) -> str:
    """mean ± sd over the seeds (an axis on log10, forget_quality: geometric mean ×/÷ 10^sd of log10)."""
    name = next((a.scale for a in s.axes if a.log and a.metric == metric), metric)
    spread = s.spread(name)
    if spread is None:
        return "-"
    if name != metric:
        return f"{num(10**spread.mean)} ×/÷ {10 ** (spread.sd or 0):.2f}"
    if spread.sd is None:
        return num(spread.mean)
    sd = 0.0 if spread.sd <= 1e-12 * max(1.0, abs(spread.mean)) else spread.sd  # rounding of equal draws: 0
    return f"{num(spread.mean)} ± {num(sd)}"


def num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2e}" if value != 0 and abs(value) < 1e-3 else f"{value:.4f}"


def short_number(text: str | None) -> str:
    """A param as a table shows it: 0.0007931510787466361 -> 0.000793 (the reproduce command keeps every digit)."""
    try:
        return f"{float(text):.3g}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(text)


def command(s: Setting, forget: str) -> str:
    """The `run` that repeats a setting over its seeds (method hyperparameters as --set)."""
    parts = ["unlearn-lab", "run", "--method", s.method, "--forget", forget]
    parts += ["--lr", str(s.param("unlearn.lr")), "--epochs", str(s.param("unlearn.epochs"))]
    parts += ["--seeds", ",".join(map(str, s.seeds))]
    for key, value in s.params:
        if key.startswith("method.") and key != "method.layer":
            parts += ["--set", f"{key}={value}"]
    experiment = s.param("name")
    return shlex.join(parts) + (f"  # experiment {experiment}" if experiment else "")


def sections(lb: Leaderboard) -> list[tuple[str, list[list[str]]]]:
    """(title, table rows with a header first) of the leaderboard: references, rules (a), (b), (c)."""
    return [
        ("Target and retain models", reference_rows(lb)),
        (RULES["a"], setting_rows(lb, "a")),
        (RULES["b"], setting_rows(lb, "b")),
        (RULES["c"], front_rows(lb)),
    ]


def markdown(lb: Leaderboard) -> str:
    f = lb.filters
    lines = [f"# Leaderboard: {f.benchmark}, {f.forget_split}", "", f"Store: {lb.store}. Rules:", ""]
    lines += [f"- {line}" for line in lb.statement()]
    for title, rows in sections(lb):
        lines += ["", f"## {title}", ""]
        if len(rows) > 1:
            lines += [f"| {' | '.join(rows[0])} |", "|---" * len(rows[0]) + "|"]
            lines += [f"| {' | '.join(r)} |" for r in rows[1:]]
        else:
            lines.append("not in this store (a sweep logs the target's and retain model's scores on its run)")
    lines += ["", "## Reproduce", ""]
    for row in lb.rows:
        for rule in ("a", "b"):
            chosen: Setting | None = getattr(row, rule)
            if chosen is not None:
                lines.append(f"- {row.method} ({rule}): `{command(chosen, f.forget_split)}`")
    return "\n".join(lines) + "\n"


def reference_rows(lb: Leaderboard) -> list[list[str]]:
    out = [["model", *lb.headline]]
    for role in ("target", "retain"):
        values = lb.references.get(role)
        if values:
            out.append([role, *(num(values.get(m)) for m in lb.headline)])
    return out


def setting_rows(lb: Leaderboard, rule: str) -> list[list[str]]:
    """One row per method: its rank, the rule's setting and its mean ± sd, and what the method's search cost."""
    out = [["rank", "method", "lr", "epochs", *lb.headline, "seeds", "runs", "compute (s)"]]
    for row in sorted(lb.rows, key=lambda r: _order(lb.ranks[rule][r.method])):
        chosen: Setting | None = getattr(row, rule)
        cost = [str(row.compute.runs), f"{row.compute.seconds:.0f}"]
        if chosen is None:
            why = "rule not met by any confirmed setting" if row.confirmed else "no confirmed setting"
            out.append(["-", row.method, why, *([""] * (len(lb.headline) + 2)), *cost])
            continue
        values = [cell(chosen, m) for m in lb.headline]
        where = [short_number(chosen.param("unlearn.lr")), str(chosen.param("unlearn.epochs"))]
        seeds = ",".join(map(str, chosen.seeds))
        out.append([lb.ranks[rule][row.method], row.method, *where, *values, seeds, *cost])
    return out


def front_rows(lb: Leaderboard) -> list[list[str]]:
    out = [
        ["rank", "method", "hypervolume", "front (settings)", "confirmed settings", "settings", "runs", "compute (s)"]
    ]
    for row in sorted(lb.rows, key=lambda r: _order(lb.ranks["c"][r.method])):
        hv = "no confirmed setting" if row.hypervolume is None else f"{row.hypervolume:.4f}"
        counts = [str(len(row.front)), str(row.confirmed), str(row.settings), str(row.compute.runs)]
        out.append([lb.ranks["c"][row.method], row.method, hv, *counts, f"{row.compute.seconds:.0f}"])
    return out


def _order(rank: str) -> tuple[int, int]:
    return (1, 0) if rank == "-" else (0, int(rank.rstrip("=")))


def csv_text(lb: Leaderboard) -> str:
    """One row per method; columns grouped by rule (a_*, b_*), then the front's (c_*) and the search's cost."""
    rows: list[dict[str, Any]] = []
    for row in lb.rows:
        out: dict[str, Any] = {"method": row.method}
        for rule in ("a", "b"):
            chosen: Setting | None = getattr(row, rule)
            out[f"{rule}_rank"] = lb.ranks[rule][row.method]
            summary = setting_summary(chosen, lb.headline) if chosen else {}
            out.update({f"{rule}_{k}": v for k, v in summary.items()})
            out[f"{rule}_command"] = command(chosen, lb.filters.forget_split) if chosen else "not met"
        out.update(
            {
                "c_rank": lb.ranks["c"][row.method],
                "c_hypervolume": row.hypervolume,
                "c_front_settings": len(row.front),
                "confirmed_settings": row.confirmed,
                "settings": row.settings,
                "runs": row.compute.runs,
                "compute_seconds": round(row.compute.seconds, 1),
            }
        )
        rows.append(out)
    names = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names or ["method"])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def latex(lb: Leaderboard) -> str:
    """A booktabs table: per method, rule (a) and (b)'s forget and utility metrics (mean ± sd) and (c)."""
    pm = lambda s, m: cell(s, m).replace("±", r"$\pm$").replace("×/÷", r"$\times/\div$") if s else "--"
    forget, utility = (a.metric for a in lb.rules.axes)
    short = lambda m: m.replace("_", r"\_")
    lines = [
        r"\begin{tabular}{l cc cc c}",
        r"\toprule",
        r" & \multicolumn{2}{c}{(a) forget most, keep utility} & \multicolumn{2}{c}{(b) keep most, forget enough}"
        r" & (c) \\",
        f"method & {short(forget)} & {short(utility)} & {short(forget)} & {short(utility)} & HV \\\\",
        r"\midrule",
    ]
    for row in lb.rows:
        hv = "--" if row.hypervolume is None else f"{row.hypervolume:.3f}"
        cells = [pm(row.a, forget), pm(row.a, utility), pm(row.b, forget), pm(row.b, utility), hv]
        lines.append(f"{row.method} & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def page(lb: Leaderboard, png: bytes | None) -> str:
    """A self-contained HTML page: the rules, references, the three rule tables and the plot (inline PNG)."""
    body = [f"<h1>Leaderboard: {html.escape(lb.filters.benchmark)}, {html.escape(lb.filters.forget_split)}</h1>"]
    body.append(f"<p>Store: {html.escape(lb.store)}</p>")
    body.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lb.statement()) + "</ul>")
    for title, table in sections(lb):
        body.append(
            f"<h2>{html.escape(title)}</h2>" + (_html_table(table) if len(table) > 1 else "<p>not in this store</p>")
        )
    if png:
        body.append(f'<img alt="fronts" src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
    style += "padding:4px 8px}"
    head = f"<head><meta charset='utf-8'><title>leaderboard</title><style>{style}</style></head>"
    return f"<!doctype html><html>{head}<body>{''.join(body)}</body></html>\n"


def _html_table(rows: list[list[str]]) -> str:
    head, *rest = rows
    out = "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
    for r in rest:
        out += "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
    return out + "</table>"


STYLES = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*")


def figure(lb: Leaderboard) -> Figure:
    """Every method's confirmed front (mean ± sd error bars on both axes; a log axis, forget_quality, on a log
    scale), its own colour and marker; the target and retain models as reference points. A forget metric that
    should go down is drawn with its axis reversed, so better is to the right on every benchmark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    forget, utility = lb.rules.axes
    fig, ax = plt.subplots(figsize=(8, 5.5))
    colours = plt.get_cmap("tab10")
    for i, row in enumerate(r for r in lb.rows if r.front):
        _front(ax, row, colours(i % 10), STYLES[i % len(STYLES)])
    for role, marker in (("target", "s"), ("retain", "D")):
        values = lb.references.get(role) or {}
        if values.get(forget.metric) is not None and values.get(utility.metric) is not None:
            x = max(values[forget.metric], FQ_FLOOR) if forget.log else values[forget.metric]
            point = (x, values[utility.metric])
            ax.scatter(*point, marker=marker, s=80, facecolors="none", edgecolors="k", zorder=4, label=f"{role} model")
    if forget.log:
        ax.set_xscale("log")
    if forget.goal == "min":
        ax.invert_xaxis()
    how = "log scale; geometric mean over seeds" if forget.log else "mean over seeds"
    ax.set_xlabel(f"{forget.metric} ({how}{'; lower to the right' if forget.goal == 'min' else ''})")
    ax.set_ylabel(f"{utility.metric} (mean over seeds)")
    ax.set_title(f"{lb.filters.benchmark} {lb.filters.forget_split}: confirmed fronts (>= {lb.rules.min_seeds} seeds)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def _front(ax: Any, row: MethodRow, colour: Any, marker: str) -> None:
    """A method's front on the plot's axes: forget on its own scale (10^mean of log10 for a log axis)."""
    xs: list[float] = []
    ys: list[float] = []
    yerr: list[float] = []
    xerr: list[list[float]] = [[], []]
    for s in row.front:
        forget, utility = s.axes
        fq, mu = s.spread(forget.scale), s.spread(utility.scale)
        assert fq is not None and mu is not None  # confirmed settings have both
        sd = fq.sd or 0
        if forget.log:
            x = max(10**fq.mean, FQ_FLOOR)
            low, high = max(10 ** (fq.mean - sd), FQ_FLOOR), max(10 ** (fq.mean + sd), FQ_FLOOR)
        else:
            x, low, high = fq.mean, fq.mean - sd, fq.mean + sd
        xs.append(x)
        ys.append(mu.mean)
        xerr[0].append(x - low)
        xerr[1].append(high - x)
        yerr.append(mu.sd or 0)
    ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt=f"{marker}-", c=colour, capsize=3, label=row.method)
