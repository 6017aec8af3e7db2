"""`unlearn-lab prepare`: build and cache the base, target and retain models, content-addressed.

Embedded world: train a BPE tokenizer on the world's text, pre-train a tiny Llama on the
general-knowledge corpus (the *base*, which knows the real_authors / world_facts analogues), then
fine-tune copies of it on `full` (the *target*) and on `retainXX` (the *retain* model) with the
reference recipe (spec 5.2) scaled for the tiny model. Other models: ready-made target/retain
(hub ids or folders, as in the reference experiment) are used as they are; otherwise they are
fine-tuned from `model.base` the same way.

Each artefact lives in <cache>/models/<role>-<hash>/, where the hash covers every setting it
depends on; a finished folder is never rebuilt, and folders are written atomically.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from unlearn_lab.config import TrainingConfig
from unlearn_lab.data import prompts
from unlearn_lab.data.batching import chunks, epoch_order
from unlearn_lab.models import load, tiny
from unlearn_lab.plan import MANIFEST, Plan
from unlearn_lab.train import fit


@dataclass(frozen=True)
class Prepared:
    built: tuple[str, ...] = ()  # roles trained in this call (empty: everything came from the cache)


def _write_manifest(path: Path, info: dict) -> None:
    tmp = path / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True))
    tmp.replace(path / MANIFEST)


def finetune(
    model, tokenizer, items: list[prompts.Encoded], settings: TrainingConfig, pcfg, desc: str, device: str = "cpu"
) -> dict:
    """Plain NLL fine-tuning (the HF model loss: token mean over the micro-batch) with the shared loop, on the
    plan's device (fp32 master weights, bf16 autocast on a GPU that has it), in this one process: `prepare`
    runs it on the main process only (see there)."""
    from unlearn_lab.runtime import autocast

    generator = torch.Generator().manual_seed(settings.seed)
    pad = prompts.pad_id(tokenizer, pcfg)

    def epoch_batches(epoch: int):
        for idx in chunks(epoch_order(len(items), generator), settings.batch_size):
            yield prompts.collate([items[i] for i in idx], pad, reference_mask=pcfg.reference_attention_mask)

    losses: list[float] = []

    def loss_fn(m, batch, epoch):
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device):
            return m(**batch)

    start = time.perf_counter()
    model.to(device)
    fit(
        model,
        settings=settings,
        n_items=len(items),
        epoch_batches=epoch_batches,
        loss_fn=loss_fn,
        on_step=lambda log: losses.append(log.loss),
        desc=desc,
    )
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "final_loss": losses[-1] if losses else None,
        "steps": len(losses),
        "items": len(items),
    }


def _build_base(plan: Plan, out: Path, log) -> None:
    """The embedded base model: a BPE tokenizer trained on the benchmark's texts, a tiny Llama from scratch,
    pre-trained on the benchmark's general items (TOFU: general knowledge; none for a benchmark without)."""
    cfg, bench, source = plan.cfg, plan.benchmark, plan.source
    tokenizer = bench.embedded_tokenizer(cfg, source)
    model = tiny.make_model(tokenizer, cfg.model.tiny, seed=cfg.finetune.seed)
    items = bench.pretrain_items(cfg, source, tokenizer)
    info: dict = {"items": 0, "steps": 0}
    if items:
        log(f"pre-training the base model on {len(items)} general-knowledge items")
        info = finetune(model, tokenizer, items, cfg.finetune.pretraining(), cfg.prompt, "pretrain base", plan.device)
    load.save_model(model.cpu(), tokenizer, out)
    _write_manifest(out, {"role": "base", "params": sum(p.numel() for p in model.parameters()), **info})


def with_lora(model, rank: int, alpha: float):
    """LoRA adapters of `rank` on every linear layer but the output head (peft); the base weights stay frozen."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,  # type: ignore[arg-type]  # peft annotates int; it only computes alpha / rank
        lora_dropout=0.0,
        target_modules="all-linear",
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def prepare(plan: Plan, *, log=print) -> Prepared:
    """Build the models the plan marks `build`; everything else is already cached or given ready-made.

    Under torchrun / accelerate launch the main process builds every model alone, as one process would (same
    steps, schedule and weights, so the same cache keys hold), and is the only one that writes the cache; the
    others wait for it at a barrier (`runtime.dist_timeout_s`). Multi-GPU training is the unlearning runs'.
    Every rank reaches that barrier, even one whose plan was made after the models were built (nothing to build)."""
    from unlearn_lab import distributed
    from unlearn_lab.runtime import launched_processes, make_accelerator

    if not plan.to_build and launched_processes() == 1:
        return Prepared()
    accelerator = make_accelerator(plan.device)  # under torchrun: joins the process group (long timeout)
    built = _build(plan, log) if accelerator.is_main_process else ()
    distributed.wait_for_main(accelerator)
    return Prepared(built=built)


def _build(plan: Plan, log) -> tuple[str, ...]:
    """The models the plan marks `build`, trained in this process, each saved atomically into the cache."""
    cfg, bench, source = plan.cfg, plan.benchmark, plan.source
    built: list[str] = []
    if plan.base.build:
        _build_base(plan, Path(plan.base.spec), log)
        built.append("base")
    base_spec = plan.base.spec
    f = cfg.finetune
    for mp in (plan.target, plan.retain):
        if not mp.build:
            continue
        tokenizer = load.load_tokenizer(cfg.model.tokenizer or base_spec, trust_remote_code=cfg.model.trust_remote_code)
        model = load.load_model(base_spec, dtype="float32", trust_remote_code=cfg.model.trust_remote_code)
        if f.lora_rank:
            model = with_lora(model, f.lora_rank, f.lora_alpha)
        items = bench.finetune_items(cfg, source, tokenizer, mp.role)
        split, size = bench.describe_finetune(cfg, source, mp.role)
        how = f"LoRA rank {f.lora_rank}" if f.lora_rank else "full fine-tuning"
        log(f"fine-tuning the {mp.role} model on {split} ({size}; {len(items)} items; {how}; {plan.device})")
        info = finetune(model, tokenizer, items, cfg.finetune, cfg.prompt, f"{mp.role} on {split}", plan.device)
        if f.lora_rank:
            model = model.merge_and_unload()  # a plain model folder: loads without peft
        load.save_model(model.cpu(), tokenizer, mp.spec)
        _write_manifest(
            Path(mp.spec),
            {
                "role": mp.role,
                "split": split,
                "base": base_spec,
                "key": mp.key,
                "lora_rank": f.lora_rank,
                "device": plan.device,
                **info,
            },
        )
        built.append(mp.role)
        del model
    return tuple(built)
