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
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from unlearn_lab.config import ExperimentConfig, config_hash
from unlearn_lab.data import prompts
from unlearn_lab.data.batching import chunks, epoch_order
from unlearn_lab.data.tofu import Source, check_pair, make_source
from unlearn_lab.errors import UsageError
from unlearn_lab.models import load, tiny
from unlearn_lab.train import Settings, fit

MANIFEST = "unlearn_lab.json"


@dataclass(frozen=True)
class Prepared:
    target: str
    retain: str
    tokenizer: str
    built: tuple[str, ...] = ()  # roles trained in this call (empty: everything came from the cache)


def source_for(cfg: ExperimentConfig) -> Source:
    return make_source(cfg.data.source, cfg.data.authors, cfg.data.seed)


def _keys(cfg: ExperimentConfig, retain_split: str) -> dict[str, str]:
    data = {"source": cfg.data.source, "authors": cfg.data.authors, "seed": cfg.data.seed}
    base = config_hash({"data": data, "model": asdict(cfg.model), "prompt": asdict(cfg.prompt),
                        "pretrain": [cfg.finetune.pretrain_epochs, cfg.finetune.pretrain_lr, cfg.finetune.seed]})
    tune = asdict(cfg.finetune)
    return {
        "base": f"base-{base}",
        "target": f"target-{config_hash({'base': base, 'finetune': tune, 'split': 'full'})}",
        "retain": f"retain-{config_hash({'base': base, 'finetune': tune, 'split': retain_split})}",
    }


def _done(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def _write_manifest(path: Path, info: dict) -> None:
    tmp = path / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True))
    tmp.replace(path / MANIFEST)


def qa_items(tokenizer, records: list[dict], pcfg) -> list[prompts.Encoded]:
    return [prompts.encode_qa(tokenizer, r["question"], r["answer"], pcfg) for r in records]


def text_items(tokenizer, texts: list[str]) -> list[prompts.Encoded]:
    """Plain language-modelling items (every token after BOS supervised), for pre-training."""
    out = []
    for text in texts:
        ids = [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        out.append(prompts.Encoded(ids, [prompts.IGNORE] + ids[1:], 1))
    return out


def finetune(model, tokenizer, items: list[prompts.Encoded], settings: Settings, pcfg, desc: str) -> dict:
    """Plain NLL fine-tuning (the HF model loss: token mean over the micro-batch) with the shared loop."""
    generator = torch.Generator().manual_seed(settings.seed)
    pad = prompts.pad_id(tokenizer, pcfg)

    def epoch_batches(epoch: int):
        for idx in chunks(epoch_order(len(items), generator), settings.batch_size):
            yield prompts.collate([items[i] for i in idx], pad, reference_mask=pcfg.reference_attention_mask)

    losses: list[float] = []

    def loss_fn(m, batch, epoch):
        return m(**batch)

    start = time.perf_counter()
    fit(model, settings=settings, n_items=len(items), epoch_batches=epoch_batches, loss_fn=loss_fn,
        on_step=lambda log: losses.append(log.loss), desc=desc)
    return {"seconds": round(time.perf_counter() - start, 1), "final_loss": losses[-1] if losses else None,
            "steps": len(losses), "items": len(items)}


def _settings(cfg: ExperimentConfig, *, pretrain: bool) -> Settings:
    f = cfg.finetune
    return Settings(lr=f.pretrain_lr if pretrain else f.lr, epochs=f.pretrain_epochs if pretrain else f.epochs,
                    batch_size=f.batch_size, grad_accum=f.grad_accum, weight_decay=f.weight_decay,
                    warmup_epochs=f.warmup_epochs, max_grad_norm=f.max_grad_norm, seed=f.seed)


def _build_base(cfg: ExperimentConfig, source, out: Path, log) -> None:
    world = source.world
    pcfg = cfg.prompt
    texts = [t for a in world["authors"] + world["holdout"] for qa in a
             for t in (qa["question"], qa["answer"], qa["paraphrased_question"], qa["paraphrased_answer"], *qa["perturbed_answer"])]
    texts += world["pretrain_text"] + tiny.template_corpus(pcfg.system_prompt, pcfg.date_string)
    tokenizer = tiny.train_tokenizer(texts, cfg.model.tiny.vocab_size)
    model = tiny.make_model(tokenizer, cfg.model.tiny, seed=cfg.finetune.seed)
    general = source.load("real_authors_perturbed") + source.load("world_facts_perturbed")
    items = qa_items(tokenizer, general, pcfg) + text_items(tokenizer, world["pretrain_text"])
    log(f"pre-training the base model on {len(items)} general-knowledge items")
    info = finetune(model, tokenizer, items, _settings(cfg, pretrain=True), pcfg, "pretrain base")
    load.save_model(model, tokenizer, out)
    _write_manifest(out, {"role": "base", "params": sum(p.numel() for p in model.parameters()), **info})


def extra_records(cfg: ExperimentConfig, source, n_rows: int) -> list[dict]:
    """The embedded recipe's additions: paraphrased phrasings of the same rows, general-knowledge replay."""
    f, extra = cfg.finetune, []
    if (f.paraphrase_augment or f.general_replay) and not hasattr(source, "world"):
        raise UsageError("finetune.paraphrase_augment / general_replay need the synthetic world (data.source: synthetic)")
    if f.paraphrase_augment:  # full and retainXX are prefixes of the author-ordered world
        rows = [qa for author in source.world["authors"] for qa in author][:n_rows]
        extra += [{"question": r["paraphrased_question"], "answer": r["paraphrased_answer"]} for r in rows]
    if f.general_replay:
        extra += source.load("real_authors_perturbed") + source.load("world_facts_perturbed")
    return extra


def prepare(cfg: ExperimentConfig, *, log=print) -> Prepared:
    """Build whatever is missing; a second call returns the cached paths at once."""
    retain_split = check_pair(cfg.data.forget_split, cfg.data.retain_split)
    m = cfg.model
    if m.target and m.retain:  # ready-made models (the reference experiment: released checkpoints)
        return Prepared(target=m.target, retain=m.retain, tokenizer=m.tokenizer or m.target)
    root = load.cache_root() / "models"
    keys = _keys(cfg, retain_split)
    paths = {role: root / key for role, key in keys.items()}
    source = source_for(cfg)
    source.load(retain_split)  # an author count the split cannot divide fails here, before any training
    built: list[str] = []
    if m.base == "embedded":
        if not hasattr(source, "world"):
            raise UsageError("model.base 'embedded' trains on the synthetic world; set data.source: synthetic "
                             "or give model.base (a hub id, folder, .gguf file or 'smollm2')")
        if not _done(paths["base"]):
            _build_base(cfg, source, paths["base"], log)
            built.append("base")
        base_spec = str(paths["base"])
    else:
        base_spec = m.base
    for role, split in (("target", "full"), ("retain", retain_split)):
        given = getattr(m, role)
        if given or _done(paths[role]):
            continue
        tokenizer = load.load_tokenizer(m.tokenizer or base_spec, trust_remote_code=m.trust_remote_code)
        model = load.load_model(base_spec, dtype="float32", trust_remote_code=m.trust_remote_code)
        records = source.load(split)
        items = qa_items(tokenizer, records + extra_records(cfg, source, len(records)), cfg.prompt)
        log(f"fine-tuning the {role} model on {split} ({len(records)} QAs; {len(items)} items with augmentation)")
        info = finetune(model, tokenizer, items, _settings(cfg, pretrain=False), cfg.prompt, f"{role} on {split}")
        load.save_model(model, tokenizer, paths[role])
        _write_manifest(paths[role], {"role": role, "split": split, "base": base_spec, **info})
        built.append(role)
        del model
    target = m.target or str(paths["target"])
    return Prepared(target=target, retain=m.retain or str(paths["retain"]),
                    tokenizer=m.tokenizer or (target if m.target else str(paths["target"])), built=tuple(built))
