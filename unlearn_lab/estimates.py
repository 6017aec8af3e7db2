"""Rough cost estimates of a plan (training time, peak memory) and the plan's few-line description (--dry-run).

Estimates are deliberately simple and documented in docs/real-models.md with the measurements they were
calibrated on; they are good to ~30-50 %.
"""

from __future__ import annotations

import math
from dataclasses import replace

from unlearn_lab.config import ExperimentConfig
from unlearn_lab.plan import ModelPlan, Plan, short_name

BYTES = {"float32": 4, "bfloat16": 2}
RUNTIME_GB = 0.6
# tokens of one TOFU QA with its prompt: ~70 measured with SmolLM2's chat template (the SmolLM2 preset's prepare
# was estimated at 22.4 min with 75 and took 22.1), more with Llama-3's longer system header; ~48 with the
# embedded tokenizer
TYPICAL_TOKENS = {"embedded": 48, "default": 75}


def typical_tokens(cfg: ExperimentConfig) -> int:
    return TYPICAL_TOKENS["embedded" if cfg.model.base == "embedded" else "default"]


def peak_memory_gb(plan: Plan, params: int | None, *, training: bool) -> float | None:
    """A rough peak estimate: weights (+ fp32 grads and AdamW moments when training; LoRA trains few) plus
    activations and fp32 logits for one micro-batch (~tokens x sqrt(parameters) x 200 bytes when training, x 15 when
    scoring: calibrated on SmolLM2-135M's measured 4.1 GB at batch 8), plus the runtime itself (torch and transformers
    take ~0.6 GB before any model). Good to a factor of ~1.5; docs/real-models.md lists measured peaks."""
    if not params:
        return None
    cfg = plan.cfg
    if training:
        lora = plan.command == "prepare" and cfg.finetune.lora_rank
        batch = cfg.finetune.batch_size if plan.command == "prepare" else cfg.unlearn.batch_size * 2
        state = params * (4 + (0.1 if lora else 12))
        if plan.command != "prepare":
            from unlearn_lab.methods import get_method, requires_reference

            spec = get_method(cfg.unlearn.method)
            if requires_reference(spec, {**spec.defaults, **cfg.unlearn.method_args}):
                state += params * 4
        activations = batch * typical_tokens(cfg) * math.sqrt(params) * 200
    else:
        state = params * BYTES.get(plan.eval_dtype, 4)
        batch = cfg.eval.batch_size
        activations = batch * typical_tokens(cfg) * math.sqrt(params) * 15
    return (state + activations) / 1e9 + RUNTIME_GB


# sustained training throughput (FLOP/s): CPU per torch thread, measured here (SmolLM2-135M full fine-tuning,
# batch 8: 5.5 s per step on 2 threads); GPUs: a conservative share of bf16 peak for small batches
FLOPS = {"cpu": 4e10, "mps": 2e12, "cuda": 2e14}
STEP_FLOOR_S = {"cpu": 0.1, "mps": 0.05, "cuda": 0.05}  # per-step overheads that dominate tiny models


def train_minutes(plan: Plan, params: int | None, steps: int, batch: int) -> float | None:
    """6 x params x tokens per optimizer step (forward + backward) over the device's throughput, with a per-step
    floor. Matches the measured CPU figures within ~30 % (docs/real-models.md)."""
    if not params:
        return None
    rate = FLOPS.get(plan.device, FLOPS["cpu"]) * (plan.threads if plan.device == "cpu" else 1)
    flops = 6 * params * batch * typical_tokens(plan.cfg) * steps
    return max(flops / rate, steps * STEP_FLOOR_S.get(plan.device, 0.1)) / 60


# ------------------------------------------------------------------------------------------- describing


def _fmt_gb(gb: float) -> str:
    return f"{gb:.1f} GB" if gb >= 0.1 else f"{gb * 1000:.0f} MB"


def _fmt_params(n: int | None) -> str:
    if not n:
        return "? params"
    return f"{n / 1e9:.2f} B params" if n >= 1e9 else f"{n / 1e6:.1f} M params" if n >= 1e5 else f"{n} params"


def _model_line(plan: Plan, mp: ModelPlan) -> str:
    state = (
        "to build now"
        if mp.build
        else "cached"
        if mp.cached
        else "not built (this command does not need it)"
        if mp.origin == "built here"
        else "converted on first use"
        if mp.origin == "gguf"
        else "not on this machine (download on first use)"
        if mp.origin == "hub"
        else "missing"
    )
    where = mp.spec if mp.origin != "built here" else f"cache {mp.key}"
    return f"  {mp.role:<9} {where}  [{mp.origin}; {state}; {_fmt_params(mp.params)}]"


def _processes_text() -> str:
    """' x N processes' under torchrun / accelerate launch (the effective batch and the step count follow it)."""
    from unlearn_lab.runtime import launched_processes

    n = launched_processes()
    return f" x {n} processes" if n > 1 else ""


def describe(plan: Plan) -> str:
    """The plan in a few lines: what will be trained, evaluated and cached, where, and roughly at what cost."""
    cfg = plan.cfg
    d = cfg.data
    lines = [
        f"plan for `{plan.command}` ({cfg.name}, config {plan.config_hash})",
        f"  device    {plan.device} ({plan.threads} torch thread{'s' if plan.threads != 1 else ''}); "
        f"training {plan.train_precision}; evaluation {plan.eval_dtype}",
        f"  data      {d.source} ({plan.benchmark.world_note(cfg)}); forget {d.forget_split}, retain "
        f"{d.retain_split}, holdout {d.holdout_split}",
        f"  tokenizer {plan.tokenizer}",
    ]
    shown = [plan.base] if plan.base.build or plan.command == "prepare" else []
    shown += [plan.target, plan.retain] if plan.command != "eval" else []
    if plan.evaluated is not None:
        shown.append(plan.evaluated)
    lines += [_model_line(plan, mp) for mp in shown]
    if plan.command in ("run", "sweep"):
        u = cfg.unlearn
        lines.append(
            f"  unlearn   {u.method} lr {u.lr:g}, {u.epochs} epochs, batch {u.batch_size} x accum "
            f"{u.grad_accum}{_processes_text()}: {plan.steps.get('unlearn', '?')} steps, "
            + (f"seeds {', '.join(map(str, plan.seeds))} ({len(plan.seeds)} runs)" if plan.seeds else f"seed {u.seed}")
        )
    lines += _reference_lines(plan) + _build_lines(plan) + _cost_lines(plan)
    lines += [f"  note      {n}" for n in plan.notes]
    return "\n".join(lines)


def _reference_lines(plan: Plan) -> list[str]:
    lines: list[str] = []
    ref = plan.reference
    if ref is not None and ref.kind == "retain model":
        lines.append(
            f"  reference retain model {short_name(ref.spec or '')} "
            f"({'cached' if ref.cached else 'computed now, then cached'}: {ref.key})"
        )
    elif ref is not None and ref.kind == "retain logs":
        lines.append(f"  reference {ref.spec}")
    elif ref is not None and ref.skipped:
        lines.append(f"  reference none: {', '.join(ref.skipped)} skipped")
    return lines


def _build_lines(plan: Plan) -> list[str]:
    """What prepare trains first, with step counts and rough time and memory."""
    cfg = plan.cfg
    lines: list[str] = []
    for mp in plan.to_build:
        steps = plan.steps.get(f"fine-tune {mp.role}")
        if mp.role == "base":
            what = "pre-train the embedded model (~0.5 min on 2 CPU cores)"
            if not plan.benchmark.pretrains_base:
                what = "the embedded tokenizer and a randomly initialised tiny model (seconds)"
            lines.append(f"  build     base: {what}")
            continue
        minutes = train_minutes(plan, mp.params, steps or 0, cfg.finetune.batch_size) if steps else None
        peak = peak_memory_gb(replace(plan, command="prepare"), mp.params, training=True)
        lines.append(
            f"  build     {mp.role}: fine-tune on {plan.benchmark.finetune_split(cfg, mp.role)}, "
            f"{steps or '?'} steps"
            + (f", ~{minutes:.0f} min" if minutes is not None else "")
            + (f", peak ~{_fmt_gb(peak)}" if peak else "")
        )
    return lines


def _cost_lines(plan: Plan) -> list[str]:
    """Peak memory estimates, where results are saved and how the run is tracked."""
    lines: list[str] = []
    if plan.command in ("run", "sweep"):
        peak = peak_memory_gb(plan, plan.target.params, training=True)
        if peak:
            lines.append(f"  memory    unlearning peak ~{_fmt_gb(peak)} (estimate)")
    evaluated = plan.evaluated or plan.target
    if plan.command in ("run", "eval", "sweep"):
        peak = peak_memory_gb(plan, evaluated.params, training=False)
        if peak:
            lines.append(f"  memory    evaluation peak ~{_fmt_gb(peak)} (estimate)")
    if plan.command in ("run", "eval"):
        lines.append(
            f"  saves     {plan.save_dir if plan.command == 'run' else plan.eval_dir}"
            + (f", {plan.eval_dir}" if plan.command == "run" else "")
        )
    if plan.command == "run":
        lines.append(
            f"  tracking  run '{plan.run_name}' with nested eval-final (eval-ep<k> per epoch with --eval-every epoch)"
        )
    return lines
