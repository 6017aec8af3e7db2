"""What a run records besides its training curve: version tags, the nested evaluation runs (their own params,
every TOFU metric at the optimizer step their epoch ended) and the headline metrics copied onto the run."""

from __future__ import annotations

from collections.abc import Callable

from unlearn_lab.benchmarks import Benchmark
from unlearn_lab.evaluation import EvalResult, top_level_metrics
from unlearn_lab.metrics.functions import log10_forget_quality
from unlearn_lab.plan import Plan


def version_tags() -> dict[str, str]:
    """The software and platform a run ran on (fingerprint.software_tags, with the numerics fingerprint)."""
    from unlearn_lab.fingerprint import software_tags

    return software_tags(numerics=True)


def headline(summary: dict, benchmark: Benchmark) -> dict[str, float]:
    """The benchmark's headline metrics copied onto the unlearning run, so the runs table compares runs without
    opening children; an objective taken on log10 (forget_quality spans 1e-239..1) also as `log10_<metric>`, which
    shows its scale in a table or a chart."""
    out = {k: float(summary[k]) for k in benchmark.headline if summary.get(k) is not None}
    for objective in benchmark.objectives:
        if objective.log and objective.metric in out:
            out[objective.scale] = objective.scaled(out[objective.metric])
    return out


def eval_params(plan: Plan, model: str) -> dict[str, object]:
    """What an evaluation run evaluated, on what, and how: its own params, so it reads without its parent."""
    d, e, ref = plan.cfg.data, plan.cfg.eval, plan.reference
    if ref is None or ref.kind == "none":
        reference = "none (" + (", ".join(ref.skipped) + " skipped)" if ref and ref.skipped else "not needed)")
    elif ref.kind == "retain logs":
        reference = f"retain logs {ref.spec}"
    else:
        reference = f"retain model {ref.spec} ({'cached' if ref.cached else 'computed by this run'}, key {ref.key})"
    return {
        "model": model,
        "data.source": d.source,
        "data.authors": "all" if d.authors is None else d.authors,
        "data.forget_split": d.forget_split,
        "data.retain_split": d.retain_split,
        "data.holdout_split": d.holdout_split,
        "data.question_key": d.question_key,
        "eval.metrics": ",".join(top_level_metrics(plan)),
        "eval.batch_size": e.batch_size,
        "eval.max_new_tokens": e.max_new_tokens,
        "eval.mink_k": e.mink_k,
        "eval.answer_length_ratio": "off" if e.answer_length_ratio is None else e.answer_length_ratio,
        "eval.dtype": plan.eval_dtype,
        "device": plan.device,
        "reference": reference,
    }


def tracked_eval(
    tracker,
    parent_id: str,
    name: str,
    params: dict,
    *,
    step: int,
    epoch: int,
    evaluate: Callable[[], EvalResult],
    task: str,
    files: tuple[str, str] = ("TOFU_EVAL.json", "TOFU_SUMMARY.json"),
) -> EvalResult:
    """A nested run around one evaluation (so its start and end times are the evaluation's): its params, every
    TOFU metric (scalar entries and MIA AUCs) at the optimizer step its epoch ended, the epoch, the two JSON files.
    """
    run_id = tracker.start_run(name, parent_id=parent_id, tags={"kind": "eval", "task": task})
    try:
        tracker.log_params(run_id, params)
        result = evaluate()
        metrics = {**scalar_metrics(result.results), "epoch": float(epoch)}
        if result.summary.get("forget_quality") is not None:
            metrics["log10_forget_quality"] = log10_forget_quality(result.summary["forget_quality"])
        tracker.log_metrics(run_id, metrics, step=step)
        if result.out_dir is not None:
            for name in files:  # the benchmark's eval and summary files
                tracker.log_artifact(run_id, str(result.out_dir / name))
        tracker.end_run(run_id, "FINISHED")
    except KeyboardInterrupt:
        tracker.end_run(run_id, "KILLED")
        raise
    except BaseException:
        tracker.end_run(run_id, "FAILED")
        raise
    return result


def scalar_metrics(results: dict) -> dict[str, float]:
    """Every metric's agg_value (and MIA forget/holdout means) as flat MLflow metrics."""
    out: dict[str, float] = {}
    for name, entry in results.items():
        if not isinstance(entry, dict) or entry.get("agg_value") is None:
            continue
        out[name] = float(entry["agg_value"])
        for part in ("forget", "holdout"):
            if isinstance(entry.get(part), dict):
                out[f"{name}.{part}_mean"] = float(entry[part]["agg_value"])
    return out
