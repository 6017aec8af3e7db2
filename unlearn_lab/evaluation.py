"""Evaluate a model on the TOFU suite, with the retain model's reference computed once and cached.

Everything is read from the plan: the device and the evaluation dtype (the same for `run`'s nested
evaluations, `eval` and the reference, so `eval` of a run's saved model reproduces the run's numbers),
where the reference comes from (`plan.reference`) and its cache key. Evaluation never prepares (trains)
models: the command's prepare stage has built what the plan needs before this runs.

The retain reference (the retain model's per-sample forget truth ratios, its Min-K AUC and its LOSS scores) is
stored under <cache>/references/. A reference-format TOFU_EVAL.json (e.g. the released retain logs) is
accepted instead; a reference from another split or size is an error.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

from unlearn_lab.errors import UsageError
from unlearn_lab.metrics import functions as F
from unlearn_lab.metrics import report, suite
from unlearn_lab.metrics.registry import REGISTRY
from unlearn_lab.metrics.scoring import Scorer
from unlearn_lab.models import load
from unlearn_lab.plan import Plan

REFERENCE_METRICS = tuple(dict.fromkeys(suite.NEEDS_REFERENCE.values()))  # what forget_quality, privleak... read
REFERENCE_META = "_unlearn_lab_reference"


@dataclass(frozen=True)
class EvalResult:
    results: dict
    summary: dict
    out_dir: Path | None
    seconds: float


def eval_data(plan: Plan) -> suite.EvalData:
    d = plan.cfg.data
    return suite.EvalData.load(plan.source, d.forget_split, d.holdout_split, d.question_key)


def load_for_eval(plan: Plan, spec: str):
    """A model on the plan's device in the plan's evaluation dtype, and its tokenizer."""
    m = plan.cfg.model
    model = load.load_model(spec, dtype=plan.eval_dtype, trust_remote_code=m.trust_remote_code)
    tokenizer = load.load_tokenizer(m.tokenizer or spec, trust_remote_code=m.trust_remote_code)
    return model.to(plan.device).eval(), tokenizer


def eval_view(model, plan: Plan):
    """The in-memory model as `eval` would load it: same device, the evaluation dtype. Training keeps fp32 master
    weights, so a bf16 evaluation scores a copy whose parameters are cast to bf16 while buffers (RoPE's inv_freq)
    stay fp32, exactly as from_pretrained(dtype=bf16) loads the saved folder (a plain `.to(bf16)` would also round
    inv_freq and shift every probability by ~1e-6)."""
    dtype = load.DTYPES[plan.eval_dtype]
    if next(model.parameters()).dtype == dtype:
        return model
    view = copy.deepcopy(model)
    for param in view.parameters():
        param.data = param.data.to(dtype)
    view.config.dtype = dtype
    return view.eval()


def check_reference(reference: dict, plan: Plan, origin: str) -> dict:
    d = plan.cfg.data
    meta = reference.get(REFERENCE_META)
    if meta and (meta.get("forget") != d.forget_split or meta.get("holdout") != d.holdout_split):
        raise UsageError(
            f"retain reference {origin} was computed on {meta.get('forget')}/{meta.get('holdout')}, "
            f"not {d.forget_split}/{d.holdout_split}"
        )
    return reference


def reference_entries(plan: Plan, data: suite.EvalData, *, log=print, progress: bool = True) -> dict | None:
    """The reference the plan names: read from the retain logs, from the cache, or computed now (then cached)."""
    ref = plan.reference
    if ref is None or ref.kind == "none":
        return None
    path, spec = ref.path, ref.spec
    if spec is None:
        raise AssertionError(f"a reference of kind {ref.kind!r} names its retain model or logs")
    if ref.kind == "retain logs":
        return check_reference(report.read_json(spec), plan, spec)
    if path is None:
        raise AssertionError("a computed retain reference has a cache key")
    if path.is_file():
        return check_reference(report.read_json(path), plan, str(path))
    log(f"computing the retain reference with {ref.spec} on {plan.device} in {plan.eval_dtype} (cached for later)")
    start = time.perf_counter()
    model, tokenizer = load_for_eval(plan, spec)
    results = score(plan, model, tokenizer, data, REFERENCE_METRICS, reference=None, progress=progress, log=log)
    d = plan.cfg.data
    results[REFERENCE_META] = {
        "model": spec,
        "identity": ref.identity,
        "forget": d.forget_split,
        "holdout": d.holdout_split,
        "source": d.source,
        "dtype": plan.eval_dtype,
        "device": plan.device,
        "n_forget": len(data.forget),
    }
    report.write_json(path, results)
    log(f"retain reference ready ({time.perf_counter() - start:.1f} s)")
    return results


def top_level_metrics(plan: Plan) -> tuple[str, ...]:
    """The experiment's metrics, less those `--no-reference` skips."""
    skipped = plan.reference.skipped if plan.reference is not None else ()
    return tuple(m for m in suite.parse_metrics(plan.cfg.eval.metrics) if m not in skipped)


def score(
    plan: Plan,
    model,
    tokenizer,
    data: suite.EvalData,
    metrics: tuple[str, ...],
    *,
    reference: dict | None,
    progress: bool,
    log=None,
) -> dict:
    """The one scoring path: the retain reference and every evaluation run exactly this."""
    e = plan.cfg.eval
    scorer = Scorer(
        model,
        tokenizer,
        plan.cfg.prompt,
        e.batch_size,
        min_k_plus_plus="mia_min_k_plus_plus" in suite.closure(metrics),
        log=log,
    )
    return suite.evaluate(
        scorer,
        data,
        metrics,
        max_new_tokens=e.max_new_tokens,
        mink_k=e.mink_k,
        reference=reference,
        progress=progress,
        log=log,
        answer_length_ratio=e.answer_length_ratio,
    )


def evaluate_model(
    plan: Plan,
    model,
    tokenizer,
    *,
    reference: dict | None,
    data: suite.EvalData,
    out_dir: str | Path | None = None,
    progress: bool = True,
    log=None,
) -> EvalResult:
    """Run the suite on an in-memory model; writes TOFU_EVAL/TOFU_SUMMARY when `out_dir` is given."""
    start = time.perf_counter()
    metrics = top_level_metrics(plan)
    results = score(
        plan, eval_view(model, plan), tokenizer, data, metrics, reference=reference, progress=progress, log=log
    )
    summary = suite.summary(results, metrics)
    if out_dir is not None:
        report.write_reports(out_dir, results, summary)
    return EvalResult(results, summary, Path(out_dir) if out_dir else None, time.perf_counter() - start)


def utility_bound(known: dict[str, float]) -> float:
    """An upper bound on model_utility (the harmonic mean of F.MODEL_UTILITY_COMPONENTS) from some of its
    components: each missing one is at most 1 (probabilities, ROUGE recall and these truth ratios lie in [0, 1]),
    so the harmonic mean is at most n / (sum of 1/x over the known + the number missing). Any zero gives 0."""
    n = len(F.MODEL_UTILITY_COMPONENTS)
    if any(v <= 0 for v in known.values()):
        return 0.0
    return n / (sum(1.0 / v for v in known.values()) + (n - len(known)))


def utility_upper_bound(plan: Plan, model, tokenizer, data: suite.EvalData) -> float:
    """`utility_bound` of model_utility's six scoring-only components (no generation: about a third of an
    evaluation's cost); a collapsed model is recognised without generating a word."""
    parts = tuple(c for c in F.MODEL_UTILITY_COMPONENTS if REGISTRY[c].generations is None)
    results = score(plan, eval_view(model, plan), tokenizer, data, parts, reference=None, progress=False)
    return utility_bound({c: float(results[c]["agg_value"]) for c in parts})


def reference_points(plan: Plan, roles: tuple[str, ...] = ("target", "retain"), log=None) -> dict[str, dict]:
    """The default-suite summaries of the experiment's own models (the `eval` plan's device, dtype and reference):
    where a sweep's trials stand relative to the model before unlearning and the model never trained on the
    forget set. Cached beside the retain reference, keyed by it, the models and the evaluation settings."""
    from unlearn_lab.config import config_hash, to_dict
    from unlearn_lab.plan import resolve

    roles_plans = {
        role: resolve("eval", plan.cfg, device=plan.device, threads=plan.threads, evaluated=role, count=False)
        for role in roles
    }
    identities = [p.evaluated_model.identity for p in roles_plans.values()]
    ref_key = plan.reference.key if plan.reference is not None else None
    path = (
        load.cache_root() / "references" / f"points-{config_hash([ref_key, identities, to_dict(plan.cfg.eval)])}.json"
    )
    if path.is_file():
        return report.read_json(path)
    data = eval_data(plan)
    reference = reference_entries(plan, data, log=log or (lambda _: None), progress=False)
    points = {}
    for role, role_plan in roles_plans.items():
        model, tokenizer = load_for_eval(role_plan, role_plan.evaluated_model.spec)
        points[role] = evaluate_model(
            role_plan, model, tokenizer, reference=reference, data=data, progress=False
        ).summary
    report.write_json(path, points)
    return points
