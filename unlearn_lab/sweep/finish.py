"""The end of a sweep, written once by the `sweep` process: the study judged on seeds (sweep/confirm.py), the
trials and Pareto tables, plots, the noise floor and the default's verdict on the sweep's run, and the front's
models in the registry."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearn_lab.sweep import confirm

if TYPE_CHECKING:
    import optuna

    from unlearn_lab.benchmarks import Objective
    from unlearn_lab.seeds import Spread
    from unlearn_lab.sweep.study import SweepSpec
    from unlearn_lab.tracking import Tracker

REFERENCE_POINTS = "reference_points"  # study attribute: the target's and retain model's scores, for the plot


@dataclass(frozen=True)
class SweepResult:
    parent_run_id: str
    complete: int  # COMPLETE exploration trials
    failed: int
    pareto: list[dict[str, Any]]  # the confirmed front's rows (pareto.csv)
    table: str  # the printed front
    out_dir: Path
    epochs_saved: int = 0
    stopped_early: int = 0  # trials that ended at the epoch their utility collapsed (not counted as failed)
    confirmations: int = 0  # COMPLETE confirmation runs (other seeds of front candidates and the default)
    summary: str = ""  # noise floor, survivors of confirmation, the default config's verdict


def finish_sweep(study: optuna.Study, spec: SweepSpec, tracker: Tracker, parent: str) -> SweepResult:
    """Reports on the sweep's run: trials and Pareto tables, plots, registry versions with their aliases, the
    noise floor, and the run's end. Only the `sweep` process calls it (the single writer of a study's reports)."""
    from unlearn_lab.sweep import report
    from unlearn_lab.sweep.study import explored

    trials = study.get_trials(deepcopy=False)
    judged = confirm.judge(
        trials, base_seed=spec.cfg.unlearn.seed, repeats=spec.repeats, floors=spec.floors, objectives=spec.objectives
    )
    rows = report.trial_rows(study, spec, judged)
    pareto = report.pareto_rows(rows, judged)
    out_dir = spec.saves / "sweep" / spec.study_name
    report.write_csv(out_dir / "trials.csv", rows)
    report.write_csv(out_dir / "pareto.csv", pareto)
    artifacts = [out_dir / "trials.csv", out_dir / "pareto.csv"]
    if judged.settings:
        artifacts += report.plots(study, spec, rows, pareto, out_dir, study.user_attrs.get(REFERENCE_POINTS))
    for path in artifacts:
        tracker.log_artifact(parent, str(path))
    register_front(spec, tracker, pareto)
    log_settings(tracker, judged, rows, spec)
    counts = _counts(rows)
    summary = summary_lines(judged, spec)
    references = {
        f"reference.{role}.{metric}": float(value)
        for role, scores in (study.user_attrs.get(REFERENCE_POINTS) or {}).items()
        for metric, value in scores.items()
        if value is not None
    }  # the target's and retain model's scores: `unlearn-lab report` reads them from here
    metrics = {**counts, **_noise_metrics(judged, spec), "epochs_saved": report.epochs_saved(study), **references}
    tracker.log_metrics(parent, metrics)
    table = report.pareto_table(pareto, spec)
    tracker.log_text(parent, table + "\n\n" + summary + "\n", "pareto_front.txt")
    objectives = ",".join(o.metric for o in spec.objectives)
    tags = {"default_verdict": judged.default[:500], "repeats": spec.repeats, "objectives": objectives}
    tracker.set_tags(parent, tags)
    tracker.end_run(parent, "FINISHED" if explored(study) >= spec.trials else "FAILED")
    return SweepResult(
        parent,
        int(counts["complete_trials"]),
        int(counts["failed_trials"]),
        pareto,
        table,
        out_dir,
        report.epochs_saved(study),
        int(counts["stopped_early_trials"]),
        int(counts["confirmation_runs"]),
        summary,
    )


def _counts(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Trials by kind and outcome. Stopped early: COMPLETE at their collapse epoch, or (--reuse-epochs) FAILed runs
    whose checkpoints are trials."""
    explore = [r for r in rows if r["confirms"] == ""]
    return {
        "complete_trials": sum(r["state"] == "COMPLETE" for r in explore),
        "failed_trials": sum(r["state"] == "FAIL" and r["stopped_at"] == "" for r in rows),
        "stopped_early_trials": sum(r["stopped_at"] != "" for r in rows),
        "confirmation_runs": sum(r["state"] == "COMPLETE" and r["confirms"] != "" for r in rows),
    }


def _noise_metrics(judged: confirm.Judgement, spec: SweepSpec) -> dict[str, float]:
    out = {
        "pareto_size": float(len(judged.front)),
        "single_draw_front_size": float(len(judged.single_front)),
        "survived_confirmation": float(len(judged.survived)),
    }
    first, second = spec.objectives
    if judged.noise.forget is not None and judged.noise.utility is not None:
        out[f"noise_sd.{first.scale}"] = judged.noise.forget
        out[f"noise_sd.{second.scale}"] = judged.noise.utility
    return out


def summary_lines(judged: confirm.Judgement, spec: SweepSpec) -> str:
    """What the sweep prints after its front: the noise floor, how the single-draw front fared, the default."""
    n, (first, second) = judged.noise, spec.objectives
    if n.forget is None or n.utility is None:
        noise = (
            f"seed noise: not measured (--repeats {judged.repeats}: every setting is one draw; a re-run moves "
            "them, see docs/sweep.md)"
        )
    else:
        factor = f" (a factor of {10**n.forget:.2f})" if first.log else ""
        noise = (
            f"seed noise (sd over seeds, pooled over {n.settings} settings): {first.scale.replace('log10_', 'log10 ')} "
            f"{n.forget:.3f}{factor}, {second.scale} {n.utility:.4f}"
        )
    lines = [noise]
    if judged.repeats > 1:
        lines.append(
            f"confirmation: {len(judged.survived)} of the {len(judged.single_front)} single-draw front points "
            f"survived on {judged.repeats}-seed means (trials {', '.join(map(str, judged.survived)) or 'none'})"
        )
    if judged.unconfirmed:
        lines.append(
            "candidates not confirmed yet (rerun the sweep to finish), so not on the front: trial(s) "
            + ", ".join(map(str, judged.unconfirmed))
        )
    lines.append(judged.default)
    return "\n".join(lines)


def log_settings(tracker: Tracker, judged: confirm.Judgement, rows: list[dict[str, Any]], spec: SweepSpec) -> None:
    """Each setting run with several seeds: its spread on its exploration trial's run (so the runs table shows a
    confirmed setting's mean ± sd next to its first draw)."""
    from unlearn_lab.seeds import tracked_metrics

    runs = {r["trial"]: r["mlflow_run_id"] for r in rows}
    for s in judged.settings:
        if s.n < 2 or not runs.get(s.trial):
            continue
        first, second = spec.objectives
        spreads = {first.scale: _shown(first, s.forget), second.scale: _shown(second, s.utility)}
        metrics = {k: v for k, v in tracked_metrics(spreads).items() if "." in k}
        tracker.log_metrics(runs[s.trial], metrics)
        tracker.set_tags(runs[s.trial], {"seeds": ",".join(map(str, s.seeds))})


def register_front(spec: SweepSpec, tracker: Tracker, pareto: list[dict[str, Any]]) -> None:
    """Each front setting's model (its exploration trial's run) as a version of the registered model named after
    the study, aliased `pareto-<k>` down the front (k = 1: the highest mean utility), its tags saying what it is,
    its seeds, its mean ± sd and its rank (tied points share a rank and name each other in `tied_with`)."""
    for k, row in enumerate(pareto, 1):
        tags = {
            "method": row.get("method") or spec.cfg.unlearn.method,
            "study": spec.study_name,
            "trial": row["trial"],
            "forget_split": spec.cfg.data.forget_split,
            "pareto_rank": row["rank"],
            **{p.name: row[p.name] for p in spec.space.params},
            "seeds": row["seeds"],
            "benchmark": spec.cfg.benchmark,
            "objectives": ",".join(o.metric for o in spec.objectives),
        }
        for o in spec.objectives:
            if o.log:
                tags[o.metric] = f"{row[f'{o.metric}_mean']:.6g}"
            tags[o.scale] = _pm(row[f"{o.scale}_mean"], row[f"{o.scale}_sd"])
        if row.get("tied_with"):
            tags["tied_with"] = row["tied_with"]
        if row.get("checkpoint_of") != "":
            tags["checkpoint_of"] = row["checkpoint_of"]
        tracker.register_model(spec.study_name, row["mlflow_run_id"], "model", alias=f"pareto-{k}", tags=tags)


def _shown(objective: Objective, maximised: Spread) -> Spread:
    """A spread of maximised values on the objective's own scale (a "min" objective's were negated)."""
    if objective.goal == "max":
        return maximised
    low, high = maximised.ci_low, maximised.ci_high
    return replace(
        maximised,
        mean=-maximised.mean,
        min=-maximised.max,
        max=-maximised.min,
        ci_low=None if high is None else -high,
        ci_high=None if low is None else -low,
    )


def _pm(mean: float, sd: float | str) -> str:
    return f"{mean:.6g}" if sd == "" else f"{mean:.6g} ± {float(sd):.3g}"
