"""The docs' comparison tables, made from tracked runs: run the settings (repeated over seeds), then render Markdown
from what the tracking store holds, with mean ± sd over seeds and the commit, models and platform that produced it.

    .venv/bin/python scripts/doc_tables.py run methods [--repeats 3]     # every method at its defaults (results.md)
    .venv/bin/python scripts/doc_tables.py run muse [--repeats 3]        # the same on the embedded MUSE world (muse.md)
    .venv/bin/python scripts/doc_tables.py run spread [--repeats 5]      # the defaults' seed spread (seeds.md)
    .venv/bin/python scripts/doc_tables.py run sweeps [--trials 20]      # GradAscent and NPO sweeps (sweep.md)
    .venv/bin/python scripts/doc_tables.py render methods|muse|spread|sweeps  # the Markdown, from the store

`--tracking-uri` (default: the project's ./mlruns store) chooses the store; `--experiment` (default
unlearn-lab-docs) keeps these runs apart from yours. Rendering reads only the store, so a table can be remade, or
checked, from the runs of another machine. Each parent run is tagged `doc_table`; the newest of each row is used.
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from unlearn_lab.tracking import TrackedRun  # noqa: E402

METHOD_COLUMNS = ("forget_quality", "model_utility", "forget_Q_A_Prob", "forget_Q_A_ROUGE", "privleak")
MUSE_COLUMNS = (
    "forget_verbmem_ROUGE",
    "forget_knowmem_ROUGE",
    "retain_knowmem_ROUGE",
    "privleak",
    "extraction_strength",
)
MUSE_EXPERIMENT = str(REPO / "experiments" / "muse" / "embedded.yaml")
# the settings whose seed spread docs/seeds.md shows (embedded default: lr 2e-4, 10 epochs unless given)
SPREAD = (
    ("GradAscent (quick start)", "GradAscent", ()),
    ("NPO (method default)", "NPO", ()),
    ("NPO lr 5.4e-4", "NPO", ("unlearn.lr=5.4e-4",)),
    ("GradAscent 6 epochs", "GradAscent", ("unlearn.epochs=6",)),
)
SWEEPS = ("GradAscent", "NPO")


# ------------------------------------------------------------------------------------------------------- running


def run_settings(table: str, rows: list[tuple[str, str, tuple[str, ...]]], repeats: int, args) -> None:
    """Each row as a repeated run (seeds 0..repeats-1) tagged doc_table=<table>, doc_row=<label>."""
    from unlearn_lab.commands import make_plan, run_config
    from unlearn_lab.experiment import RunOptions
    from unlearn_lab.repeated import run_repeated
    from unlearn_lab.runtime import configure_threads

    tracker = tracker_for(args)
    for label, method, sets in rows:
        cfg = run_config(args.experiment_file, (*args.set, *sets), method=method, forget=args.forget)
        plan = make_plan("run", cfg, device=args.device, seeds=tuple(range(repeats)), task_name=f"docs_{label}")
        configure_threads(threads=plan.threads)
        opts = RunOptions(progress=False, extra_tags={"doc_table": table, "doc_row": label})
        result = run_repeated(plan, tracker, opts, log=lambda _: None)
        tracker.set_tags(result.run_id, {"doc_table": table, "doc_row": label})
        print(f"{table}: {label} done in {result.seconds:.0f} s", flush=True)


def run_references(args, table: str = "methods") -> None:
    """The target and retain models' default-suite scores as tracked runs (kind reference, doc_table `table`)."""
    from unlearn_lab.commands import make_plan
    from unlearn_lab.config import load_experiment
    from unlearn_lab.evaluation import eval_data, evaluate_model, load_for_eval, reference_entries
    from unlearn_lab.models.prepare import prepare
    from unlearn_lab.records import version_tags

    tracker = tracker_for(args)
    base = load_experiment(args.experiment_file, [*args.set, f"data.forget_split={args.forget}"])
    for label, role in (("Finetuned (target)", "target"), ("Retain", "retain")):
        plan = make_plan("eval", base, device=args.device, evaluated=role)
        prepare(plan)
        data = eval_data(plan)
        reference = reference_entries(plan, data, progress=False)
        model, tokenizer = load_for_eval(plan, plan.evaluated_model.spec)
        summary = evaluate_model(plan, model, tokenizer, reference=reference, data=data, progress=False).summary
        tags = {"kind": "reference", "doc_table": table, "doc_row": label, "model": plan.evaluated_model.spec}
        run_id = tracker.start_run(f"docs-{role}", tags={**tags, **version_tags()})
        tracker.log_metrics(run_id, summary)
        tracker.end_run(run_id)


def run_sweeps(args) -> None:
    """The CLI's own sweeps (as a user runs them), studies docs-<method>, into the same store."""
    for method in SWEEPS:
        argv = [str(REPO / ".venv" / "bin" / "unlearn-lab"), "sweep", "--method", method, "--forget", args.forget]
        argv += ["--trials", str(args.trials), "--workers", "2", "--repeats", str(args.repeats or 3)]
        argv += ["--study", f"docs-{method}", "--tracking-uri", uri_of(args)]
        if args.experiment_file:
            argv += ["--experiment", args.experiment_file]
        for item in args.set:
            argv += ["--set", item]
        print(f"running: {' '.join(argv)}", flush=True)
        subprocess.run(argv, check=True)


# ----------------------------------------------------------------------------------------------------- rendering


def cell(run: TrackedRun, metric: str) -> str:
    """'mean ± sd' of a repeated run's metric (forget_quality: geometric mean ×/÷ its spread); a single value for a
    reference run."""
    m = run.metrics
    if run.tags.get("kind") == "reference":
        return fmt(m.get(metric))
    if metric == "forget_quality":
        mean, sd = m.get("log10_forget_quality.mean"), m.get("log10_forget_quality.sd")
        return "-" if mean is None else f"{fmt(10**mean)} ×/÷ {10 ** (sd or 0):.2f}"
    mean, sd = m.get(f"{metric}.mean"), m.get(f"{metric}.sd")
    return "-" if mean is None else f"{fmt(mean)} ± {fmt(sd)}"


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2e}" if value != 0 and abs(value) < 1e-3 else f"{value:.4f}"


def newest_rows(runs: list[TrackedRun], table: str) -> list[TrackedRun]:
    """The newest parent (or reference) run of each row of `table`, in the order the rows were first made."""
    chosen: dict[str, TrackedRun] = {}
    for run in sorted(runs, key=lambda r: r.start_ms):
        if run.tags.get("doc_table") == table and run.tags.get("kind") in ("repeated", "reference"):
            chosen.pop(run.tags["doc_row"], None)
            chosen[run.tags["doc_row"]] = run
    order = {"Finetuned (target)": 0, "Retain": 1}
    return sorted(chosen.values(), key=lambda r: (order.get(r.tags["doc_row"], 2), r.start_ms))


def provenance(runs: list[TrackedRun]) -> str:
    """Which commit(s), models and platform produced the runs, and when."""
    pick = lambda key: ", ".join(sorted({r.tags.get(key, "?") for r in runs}))
    models = ", ".join(sorted({Path(r.tags.get("model", "?")).name for r in runs if r.tags.get("kind") != "reference"}))
    dates = sorted(r.start_ms for r in runs)
    from datetime import datetime, timezone

    day = lambda ms: datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")
    return (
        f"Made by `scripts/doc_tables.py` from tracked runs: commit {pick('git_commit')[:12]}, target model "
        f"{models or '?'}, torch {pick('torch')}, CPU kernels {pick('cpu_kernels')}, numerics {pick('numerics')}, "
        f"{day(dates[0])}" + (f" to {day(dates[-1])}" if day(dates[-1]) != day(dates[0]) else "") + "."
    )


def render_methods(runs: list[TrackedRun], table: str = "methods", columns: tuple[str, ...] = METHOD_COLUMNS) -> str:
    rows = newest_rows(runs, table)
    head = ["method", "seeds", *columns, "wall time per seed (s)"]
    lines = [f"| {' | '.join(head)} |", "|---" * len(head) + "|"]
    for r in rows:
        seeds = r.tags.get("seeds", "-")
        per_seed = (
            "-"
            if r.seconds is None or r.tags.get("kind") == "reference"
            else f"{r.seconds / len(seeds.split(',')):.1f}"
        )
        cells = " | ".join(cell(r, c) for c in columns)
        lines.append(f"| {r.tags['doc_row']} | {seeds} | {cells} | {per_seed} |")
    return "\n".join(lines) + "\n\n" + provenance(rows)


def render_spread(runs: list[TrackedRun]) -> str:
    rows = newest_rows(runs, "spread")
    head = ["setting", "seeds", "forget_quality (geo-mean ×/÷ sd)", "range", "model_utility (mean ± sd)", "range"]
    lines = [f"| {' | '.join(head)} |", "|---" * len(head) + "|"]
    for r in rows:
        m = r.metrics
        fq_range = f"{fmt(10 ** m['log10_forget_quality.min'])} .. {fmt(10 ** m['log10_forget_quality.max'])}"
        mu_range = f"{fmt(m['model_utility.min'])} .. {fmt(m['model_utility.max'])}"
        lines.append(
            f"| {r.tags['doc_row']} | {r.tags['seeds']} | {cell(r, 'forget_quality')} | {fq_range} | "
            f"{cell(r, 'model_utility')} | {mu_range} |"
        )
    return "\n".join(lines) + "\n\n" + provenance(rows)


def render_sweeps(runs: list[TrackedRun], tracker) -> str:
    """Per study docs-<method>: its figures, then its confirmed front (from its pareto.csv artifact)."""
    out = []
    parents = [r for r in runs if r.tags.get("kind") == "sweep" and r.tags.get("study", "").startswith("docs-")]
    for study in sorted({r.tags["study"] for r in parents}):
        run = max((r for r in parents if r.tags["study"] == study), key=lambda r: r.start_ms)
        m = run.metrics
        out.append(
            f"**{study}**: {int(m.get('complete_trials', 0))} trials + {int(m.get('confirmation_runs', 0))} "
            f"confirmation runs in {(run.seconds or 0) / 60:.1f} min (2 workers); "
            f"{int(m.get('survived_confirmation', 0))} of "
            f"{int(m.get('single_draw_front_size', 0))} single-draw front points survived confirmation; front "
            f"{int(m.get('pareto_size', 0))} settings; seed noise sd: log10 forget_quality "
            f"{fmt(m.get('noise_sd.log10_forget_quality'))}, model_utility {fmt(m.get('noise_sd.model_utility'))}. "
            f"{run.tags.get('default_verdict', '')}."
        )
        front = list(csv.DictReader(io.StringIO(tracker.read_text(run.run_id, "pareto.csv"))))
        head = "rank | trial | lr | epochs | forget_quality (geo-mean) | log10 fq mean ± sd | model_utility mean ± sd"
        out.append(f"\n| {head} | seeds | tied with |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for row in front:
            lr = f"{float(row['lr']):.3g}"
            log_fq = f"{float(row['log10_forget_quality_mean']):.2f} ± {float(row['log10_forget_quality_sd'] or 0):.2f}"
            mu = f"{float(row['model_utility_mean']):.3f} ± {float(row['model_utility_sd'] or 0):.3f}"
            out.append(
                f"| {row['rank']} | {row['trial']} | {lr} | {row['epochs']} | {fmt(float(row['forget_quality_mean']))} "
                f"| {log_fq} | {mu} | {row['seeds']} | {row['tied_with'] or '-'} |"
            )
        end = run.start_ms + 1000 * (run.seconds or 0)
        trials = [
            r
            for r in runs
            if r.tags.get("sweep") == study and "kind" not in r.tags and run.start_ms <= r.start_ms <= end
        ]
        out.append("\n" + provenance(trials or [run]) + "\n")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------------------- CLI


def uri_of(args) -> str:
    from unlearn_lab.tracking.mlflow_tracker import resolve_uri

    return resolve_uri(args.tracking_uri)


def tracker_for(args, experiment: str | None = None):
    from unlearn_lab.tracking.mlflow_tracker import MlflowTracker

    return MlflowTracker(args.tracking_uri, experiment=experiment or args.experiment)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "render"])
    parser.add_argument("table", choices=["methods", "muse", "spread", "sweeps"])
    parser.add_argument("--repeats", type=int, default=None, help="seeds per setting (methods 3, spread 5, sweeps 3)")
    parser.add_argument("--trials", type=int, default=20, help="sweeps: exploration trials per method")
    parser.add_argument("--forget", default="forget10")
    parser.add_argument("--experiment-file", default=None, help="experiment YAML (default: the embedded world)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--experiment", default="unlearn-lab-docs", help="MLflow experiment of the docs runs")
    args = parser.parse_args()
    muse_args = argparse.Namespace(**{**vars(args), "experiment_file": args.experiment_file or MUSE_EXPERIMENT})
    muse_args.forget = "forget" if args.forget == "forget10" else args.forget
    actions: dict[tuple[str, str], Callable[[], object]] = {
        ("run", "methods"): lambda: (
            run_references(args),
            run_settings("methods", method_rows(), args.repeats or 3, args),
        ),
        ("run", "muse"): lambda: (
            run_references(muse_args, "muse"),
            run_settings("muse", method_rows("muse"), args.repeats or 3, muse_args),
        ),
        ("render", "muse"): lambda: print(render_methods(tracker_for(args).search(), "muse", MUSE_COLUMNS)),
        ("run", "spread"): lambda: run_settings("spread", list(SPREAD), args.repeats or 5, args),
        ("run", "sweeps"): lambda: run_sweeps(args),
        ("render", "methods"): lambda: print(render_methods(tracker_for(args).search())),
        ("render", "spread"): lambda: print(render_spread(tracker_for(args).search())),
        ("render", "sweeps"): lambda: print(
            render_sweeps(tracker_for(args, "unlearn-lab").search(), tracker_for(args, "unlearn-lab"))
        ),
    }
    actions[(args.action, args.table)]()


def method_rows(benchmark: str = "tofu") -> list[tuple[str, str, tuple[str, ...]]]:
    """Every built-in method the benchmark can run (MUSE has no "I don't know" answers: not IdkDPO)."""
    from unlearn_lab.benchmarks import get_benchmark
    from unlearn_lab.methods import METHODS, get_method

    bench = get_benchmark(benchmark)
    return [(n, n, ()) for n in METHODS if bench.has_alternate or not get_method(n).needs_alternate]


if __name__ == "__main__":
    main()
