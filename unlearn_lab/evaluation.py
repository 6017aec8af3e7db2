"""Evaluate a model on its benchmark's suite (TOFU, MUSE), with the retain model's reference computed once and cached.

Everything is read from the plan: the device and the evaluation dtype (the same for `run`'s nested
evaluations, `eval` and the reference, so `eval` of a run's saved model reproduces the run's numbers),
where the reference comes from (`plan.reference`) and its cache key. Evaluation never prepares (trains)
models: the command's prepare stage has built what the plan needs before this runs.

The retain reference (what the benchmark's forget_quality / privleak read: TOFU the retain model's per-sample forget
truth ratios, its Min-K AUC and its LOSS scores; MUSE its Min-K AUC) is stored under <cache>/references/. A
reference-format eval file (e.g. the released retain logs) is accepted instead; a reference from another split or
size is an error.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearn_lab.errors import UsageError
from unlearn_lab.metrics import report
from unlearn_lab.models import load
from unlearn_lab.plan import Plan, weights_signature

REFERENCE_META = "_unlearn_lab_reference"


@dataclass(frozen=True)
class EvalResult:
    results: dict
    summary: dict
    out_dir: Path | None
    seconds: float


def eval_data(plan: Plan) -> Any:
    """The benchmark's evaluation records for this plan's data and splits."""
    return plan.benchmark.eval_data(plan.cfg, plan.source)


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
    inv_freq and shift every probability by ~1e-6).

    The parameters are cast straight into the copy: deepcopy's memo maps each fp32 parameter to its bf16 cast
    (tied weights stay tied, requires_grad is kept for gradnorm), so no second fp32 model is ever held; everything
    else (buffers, config, modules) is deep-copied as it is."""
    import torch

    dtype = load.DTYPES[plan.eval_dtype]
    if next(model.parameters()).dtype == dtype:
        return model
    memo: dict[int, Any] = {
        id(p): torch.nn.Parameter(p.detach().to(dtype), requires_grad=p.requires_grad) for p in model.parameters()
    }
    view = copy.deepcopy(model, memo)
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


def reference_entries(plan: Plan, data: Any, *, log=print, progress: bool = True) -> dict | None:
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
        cached = report.read_json(path)
        recorded = cached.get(REFERENCE_META, {}).get("weights")
        if recorded is None or recorded == weights_signature(spec):
            return check_reference(cached, plan, str(path))
        log(f"the retain model {spec} was rebuilt after its reference was cached: computing it again")
    log(f"computing the retain reference with {ref.spec} on {plan.device} in {plan.eval_dtype} (cached for later)")
    start = time.perf_counter()
    model, tokenizer = load_for_eval(plan, spec)
    bench = plan.benchmark
    results = bench.evaluate(
        plan.cfg, model, tokenizer, data, bench.reference_entries(), reference=None, progress=progress, log=log
    )
    d = plan.cfg.data
    results[REFERENCE_META] = {
        "model": spec,
        "identity": ref.identity,
        "weights": weights_signature(spec),
        "forget": d.forget_split,
        "holdout": d.holdout_split,
        "source": d.source,
        "dtype": plan.eval_dtype,
        "device": plan.device,
        "benchmark": plan.cfg.benchmark,
    }
    if hasattr(data, "forget"):  # TOFU: how many forget samples its per-sample entries hold
        results[REFERENCE_META]["n_forget"] = len(data.forget)
    report.write_json(path, results)
    log(f"retain reference ready ({time.perf_counter() - start:.1f} s)")
    return results


def top_level_metrics(plan: Plan) -> tuple[str, ...]:
    """The experiment's metrics (the benchmark reads `eval.metrics`), less those `--no-reference` skips."""
    skipped = plan.reference.skipped if plan.reference is not None else ()
    return tuple(m for m in plan.benchmark.metrics(plan.cfg.eval.metrics) if m not in skipped)


def evaluate_model(
    plan: Plan,
    model,
    tokenizer,
    *,
    reference: dict | None,
    data: Any,
    out_dir: str | Path | None = None,
    progress: bool = True,
    log=None,
) -> EvalResult:
    """The benchmark's suite on an in-memory model (in the plan's evaluation dtype: `eval_view`); writes the
    benchmark's eval and summary files (TOFU_EVAL.json / TOFU_SUMMARY.json, MUSE_...) when `out_dir` is given."""
    start = time.perf_counter()
    bench, metrics = plan.benchmark, top_level_metrics(plan)
    view = eval_view(model, plan)
    results = bench.evaluate(plan.cfg, view, tokenizer, data, metrics, reference=reference, progress=progress, log=log)
    summary = bench.summary(results, metrics)
    if out_dir is not None:
        report.write_reports(out_dir, results, summary, names=(bench.eval_file, bench.summary_file))
    return EvalResult(results, summary, Path(out_dir) if out_dir else None, time.perf_counter() - start)


def utility_upper_bound(plan: Plan, model, tokenizer, data: Any) -> float | None:
    """The benchmark's cheap upper bound on its utility metric (TOFU: model_utility from its six scoring-only
    parts), on the model as evaluated; None where the benchmark has none (then nothing stops early)."""
    return plan.benchmark.utility_bound(plan.cfg, eval_view(model, plan), tokenizer, data)


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
