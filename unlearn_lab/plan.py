"""The resolved plan: every command turns its experiment file, --set overrides and CLI options into one frozen
`Plan`, once, at the edge. Every stage (prepare, train, evaluate, reference, tracking) reads the plan; none
re-resolves the config.

The plan says which model plays which role and where it comes from (built here and cached, a folder, a hub
id, a GGUF file), what is cached and what must be built, the device and dtypes, the data source (absolute),
the splits, the run and save names, the cache keys, step counts and rough cost estimates. Making a plan loads
no weights: parameter counts come from safetensors / GGUF headers or a config built on the meta device.
`describe()` is what `--dry-run` prints.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from unlearn_lab.config import ExperimentConfig, config_hash
from unlearn_lab.data.tofu import check_pair
from unlearn_lab.models import load

MANIFEST = "unlearn_lab.json"  # written last into a finished prepared-model folder


@dataclass(frozen=True)
class ModelPlan:
    """One model role. `spec` is what the loader gets (a folder, hub id, .gguf file or 'smollm2')."""

    role: str  # base | target | retain | evaluated
    spec: str
    origin: str  # built here (cache) | folder | hub | gguf | embedded
    cached: bool  # usable now without training or downloading
    build: bool = False  # `prepare` trains it in this command
    key: str | None = None  # content address of a model built here
    params: int | None = None  # parameter count, when known without loading weights

    @property
    def short(self) -> str:
        return short_name(self.spec)


@dataclass(frozen=True)
class ReferencePlan:
    """Where forget_quality / privleak get the retain model's statistics from."""

    kind: str  # "retain model" | "retain logs" | "none"
    spec: str | None = None  # the retain model, or the TOFU_EVAL.json
    identity: str | None = None  # what the cache key calls the retain model
    key: str | None = None  # cache key of the computed reference
    cached: bool = False
    skipped: tuple[str, ...] = ()  # kind "none": the metrics not computed

    @property
    def path(self) -> Path | None:
        return load.cache_root() / "references" / f"retain-{self.key}.json" if self.key else None


@dataclass(frozen=True)
class Plan:
    command: str  # prepare | run | eval | sweep
    cfg: ExperimentConfig  # resolved: absolute data source, retain split filled in
    device: str  # cpu | cuda | mps
    train_precision: str
    eval_dtype: str
    threads: int
    base: ModelPlan
    target: ModelPlan
    retain: ModelPlan
    tokenizer: str
    task_name: str
    save_dir: Path
    eval_dir: Path
    evaluated: ModelPlan | None = None  # `eval`: the model under evaluation
    reference: ReferencePlan | None = None
    steps: dict[str, int] = field(default_factory=dict)  # optimizer steps per training stage
    notes: tuple[str, ...] = ()  # what the user should know before anything runs

    @property
    def config_hash(self) -> str:
        return config_hash(self.cfg)

    @property
    def to_build(self) -> tuple[ModelPlan, ...]:
        return tuple(m for m in (self.base, self.target, self.retain) if m.build)

    def describe(self) -> str:
        return describe(self)


# ------------------------------------------------------------------------------------------------- names


def short_name(spec: str) -> str:
    """A readable name for a model spec: the hub id's name, a folder's or file's name."""
    if spec in ("embedded", load.SMOLLM2_SHORTCUT):
        return spec
    name = Path(spec.rstrip("/")).name
    return Path(name).stem if name.endswith(".gguf") else name


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "model"


# -------------------------------------------------------------------------------------------- cache keys


def model_keys(cfg: ExperimentConfig, retain_split: str) -> dict[str, str]:
    """Content addresses of the models `prepare` builds. They hold what shapes the weights (base model,
    tokenizer, data, prompt format, recipe), never how the models are later scored (model.dtype) nor which
    ready-made models the experiment names (model.target / model.retain)."""
    m, d = cfg.model, cfg.data
    embedded = m.base == "embedded"
    base = config_hash({
        "data": {"source": d.source, "authors": d.authors, "seed": d.seed},
        "model": {"base": m.base, "tokenizer": m.tokenizer, "tiny": asdict(m.tiny) if embedded else None},
        "prompt": asdict(cfg.prompt),
        "pretrain": [cfg.finetune.pretrain_epochs, cfg.finetune.pretrain_lr, cfg.finetune.seed] if embedded else None,
    })
    tune = asdict(cfg.finetune)
    tune.pop("gradient_checkpointing")  # memory, not weights
    return {
        "base": f"base-{base}",
        "target": f"target-{config_hash({'base': base, 'finetune': tune, 'split': 'full'})}",
        "retain": f"retain-{config_hash({'base': base, 'finetune': tune, 'split': retain_split})}",
    }


def is_prepared(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def model_identity(spec: str, key: str | None = None) -> str:
    """What a reference cache key calls a model: a built model's content address; a local folder's path and
    weight files (names, sizes, mtimes); anything else (hub id) the spec itself."""
    if key:
        return key
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        return f"{path.resolve()}|" + "|".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    return spec


def reference_key(cfg: ExperimentConfig, identity: str, device: str) -> str:
    """The retain reference's cache key: the retain model, data and splits, prompt, Min-K's k, and how it is
    scored (the evaluation dtype and device type)."""
    d = cfg.data
    data = {"source": d.source, "authors": d.authors, "seed": d.seed, "forget": d.forget_split,
            "holdout": d.holdout_split, "question_key": d.question_key}
    return config_hash({"model": identity, "data": data, "prompt": asdict(cfg.prompt), "mink_k": cfg.eval.mink_k,
                        "dtype": cfg.model.dtype, "device": device, "tokenizer": cfg.model.tokenizer})


# ---------------------------------------------------------------------------------------- model sources


def origin_of(spec: str) -> str:
    if spec == load.SMOLLM2_SHORTCUT or spec.endswith(".gguf"):
        return "gguf"
    if spec == "embedded":
        return "embedded"
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        return "folder"
    return "hub"


def safetensors_params(folder: Path) -> int | None:
    """Parameter count from the safetensors headers (8-byte length + JSON), without reading any weight."""
    total, files = 0, sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    for f in files:
        with f.open("rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return total


def gguf_params(path: Path) -> int | None:
    try:
        from gguf import GGUFReader

        return int(sum(int(t.n_elements) for t in GGUFReader(str(path)).tensors))
    except Exception:  # an unreadable file is reported by the loader, not here
        return None


def config_params(config_json: Path) -> int | None:
    """Parameter count of a config.json, built on the meta device (no memory, no weights)."""
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(config_json.parent)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        return sum(p.numel() for p in model.parameters())
    except Exception:
        return None


def tiny_params(cfg: ExperimentConfig) -> int:
    """The embedded Llama's parameter count from its settings (tied embeddings; vocab = the BPE size)."""
    t = cfg.model.tiny
    h, i, n = t.hidden_size, t.intermediate_size, t.num_layers
    kv = h  # as many key/value heads as heads
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i + 2 * h
    return t.vocab_size * h + n * per_layer + h


def count_params(spec: str) -> int | None:
    from unlearn_lab.models.hub import cached_file

    path = Path(spec).expanduser()
    if spec == load.SMOLLM2_SHORTCUT:
        try:
            return gguf_params(load.smollm2_gguf())
        except Exception:
            return None
    if spec.endswith(".gguf"):
        return gguf_params(path) if path.is_file() else None
    if path.is_dir():
        return safetensors_params(path) or (config_params(path / "config.json")
                                            if (path / "config.json").is_file() else None)
    config = cached_file(spec, "config.json")
    return config_params(config) if config else None


# -------------------------------------------------------------------------------------------- resolving


def resolve(
    command: str,
    cfg: ExperimentConfig,
    *,
    device: str = "cpu",
    threads: int = 1,
    task_name: str | None = None,
    evaluated: str | None = None,
    retain_model: str | None = None,
    retain_logs: str | None = None,
    no_reference: bool = False,
    saves: Path | str = "saves",
    count: bool = True,
) -> Plan:
    """The plan of one command. `evaluated` / `retain_model` (eval) may be 'target' or 'retain': the
    experiment's models. `count=False` skips parameter counts (sweep trials, which need no estimates)."""
    from unlearn_lab.runtime import bf16_autocast

    retain_split = check_pair(cfg.data.forget_split, cfg.data.retain_split)
    cfg = replace(cfg, data=replace(cfg.data, retain_split=retain_split))
    m = cfg.model
    keys = model_keys(cfg, retain_split)
    root = load.cache_root() / "models"
    embedded = m.base == "embedded"
    ready = bool(m.target and m.retain)
    needed = _roles_needed(command, evaluated, retain_model, retain_logs, no_reference, ready)

    def built_here(role: str) -> ModelPlan:
        path = root / keys[role]
        cached = is_prepared(path)
        return ModelPlan(role, str(path), "built here", cached, build=not cached and role in needed, key=keys[role])

    def given(role: str, spec: str) -> ModelPlan:
        return ModelPlan(role, spec, origin_of(spec), _available_now(spec))

    if embedded:
        base = built_here("base")
        # the base is needed whenever a fine-tuned model must be built from it
        need_base = any(not is_prepared(root / keys[r]) and not getattr(m, r) for r in ("target", "retain")
                        if r in needed)
        base = replace(base, build=not base.cached and need_base)
    else:
        base = given("base", m.base)
    target = given("target", m.target) if m.target else built_here("target")
    retain = given("retain", m.retain) if m.retain else built_here("retain")
    if count:
        n_base = tiny_params(cfg) if embedded else count_params(m.base)
        base = replace(base, params=n_base)
        target = replace(target, params=n_base if target.origin == "built here" else count_params(target.spec))
        retain = replace(retain, params=n_base if retain.origin == "built here" else count_params(retain.spec))
    roles = {"target": target, "retain": retain}

    tokenizer = m.tokenizer or (m.target if m.target else target.spec)
    notes: list[str] = []
    evaluated_plan = None
    if evaluated is not None:
        if evaluated in roles:
            evaluated_plan = replace(roles[evaluated], role="evaluated")
        else:
            evaluated_plan = ModelPlan("evaluated", evaluated, origin_of(evaluated), _available_now(evaluated),
                                       params=count_params(evaluated) if count else None)
            tokenizer = m.tokenizer or evaluated

    reference = None
    if command in ("run", "eval", "sweep"):
        reference = _reference(cfg, command, roles, retain_model, retain_logs, no_reference, device, notes)

    name = task_name or default_task_name(command, cfg, target, evaluated_plan)
    saves = Path(saves)
    precision = ("fp32 master weights + bf16 autocast" if bf16_autocast(device) else "fp32")
    return Plan(command=command, cfg=cfg, device=device, train_precision=precision, eval_dtype=m.dtype,
                threads=threads, base=base, target=target, retain=retain, tokenizer=tokenizer, task_name=name,
                save_dir=saves / "unlearn" / name, eval_dir=saves / "eval" / name, evaluated=evaluated_plan,
                reference=reference, steps=_steps(command, cfg, target, retain, base), notes=tuple(notes))


def _roles_needed(command, evaluated, retain_model, retain_logs, no_reference, ready) -> set[str]:
    """Which of the experiment's target / retain models this command uses."""
    if command == "prepare":
        return {"target", "retain"}
    if command in ("run", "sweep"):
        return {"target", "retain"}
    needed = {evaluated} & {"target", "retain"}
    if not (retain_logs or no_reference):
        needed |= {retain_model} & {"target", "retain"} if retain_model else {"retain"}
    return needed


def _available_now(spec: str) -> bool:
    from unlearn_lab.models.hub import cached_file

    origin = origin_of(spec)
    if origin == "folder":
        return Path(spec).expanduser().is_dir()
    if origin == "gguf":
        return True  # converted on first use, locally
    return cached_file(spec, "config.json") is not None


def _reference(cfg, command, roles, retain_model, retain_logs, no_reference, device, notes) -> ReferencePlan:
    from unlearn_lab.metrics import suite

    top = suite.parse_metrics(cfg.eval.metrics)
    needing = tuple(m for m in top if m in suite.NEEDS_REFERENCE)
    if no_reference:
        if needing:
            notes.append(f"--no-reference: skipping {', '.join(needing)} (they need the retain model's reference)")
        return ReferencePlan("none", skipped=needing)
    if not needing:
        return ReferencePlan("none")
    if retain_logs:
        return ReferencePlan("retain logs", spec=str(Path(retain_logs).resolve()), cached=True)
    chosen = roles.get(retain_model or "retain") if (retain_model or "retain") in roles else None
    if chosen is not None:
        identity = model_identity(chosen.spec, chosen.key if chosen.origin == "built here" else None)
        spec = chosen.spec
    else:
        spec, identity = retain_model, model_identity(retain_model)
    key = reference_key(cfg, identity, device)
    cached = (load.cache_root() / "references" / f"retain-{key}.json").is_file()
    return ReferencePlan("retain model", spec=spec, identity=identity, key=key, cached=cached)


def default_task_name(command: str, cfg: ExperimentConfig, target: ModelPlan, evaluated: ModelPlan | None) -> str:
    """<model>_<method>_<forget>_<config hash> for runs, <model>_<forget>_<hash> for evaluations: two models,
    methods or settings never share a save folder unless the user names it with --task-name."""
    digest = config_hash(cfg)[:8]
    if command == "eval" and evaluated is not None:
        model = evaluated.short if evaluated.origin != "built here" else \
            f"{short_name(cfg.model.base)}-{(evaluated.key or 'model').split('-')[0]}"
        return _slug(f"{model}_{cfg.data.forget_split}_{config_hash([evaluated.spec, digest])[:8]}")
    model = target.short if target.origin != "built here" else short_name(cfg.model.base)
    return _slug(f"{model}_{cfg.unlearn.method}_{cfg.data.forget_split}_{digest}")


def _steps(command, cfg, target, retain, base) -> dict[str, int]:
    """Optimizer steps of each training stage this command runs (from the split sizes; no model needed)."""
    from unlearn_lab.train import Schedule
    from unlearn_lab.data.tofu import FORGET_PCTS

    out: dict[str, int] = {}
    f, d = cfg.finetune, cfg.data
    n_authors = d.authors
    if n_authors:
        rows_full = n_authors * 20
        aug = 2 if f.paraphrase_augment else 1
        for plan, rows in ((target, rows_full), (retain, rows_full - rows_full * FORGET_PCTS[d.forget_split] // 100)):
            if plan.build:
                items = rows * aug
                out[f"fine-tune {plan.role}"] = Schedule.of(items, _ft_settings(cfg)).total_steps
        if command in ("run", "sweep"):
            forget_rows = rows_full * FORGET_PCTS[d.forget_split] // 100
            out["unlearn"] = Schedule.of(forget_rows, _unlearn_settings(cfg)).total_steps
    return out


def _ft_settings(cfg):
    from unlearn_lab.train import Settings

    f = cfg.finetune
    return Settings(lr=f.lr, epochs=f.epochs, batch_size=f.batch_size, grad_accum=f.grad_accum,
                    weight_decay=f.weight_decay, warmup_epochs=f.warmup_epochs, max_grad_norm=f.max_grad_norm,
                    seed=f.seed)


def _unlearn_settings(cfg):
    from unlearn_lab.train import Settings

    u = cfg.unlearn
    return Settings(lr=u.lr, epochs=u.epochs, batch_size=u.batch_size, grad_accum=u.grad_accum,
                    weight_decay=u.weight_decay, warmup_epochs=u.warmup_epochs, max_grad_norm=u.max_grad_norm,
                    seed=u.seed, schedule_epochs=u.schedule_epochs)


# ------------------------------------------------------------------------------------------- estimates

BYTES = {"float32": 4, "bfloat16": 2}
TYPICAL_TOKENS = 160  # a TOFU QA with a chat template; without one, about half


def peak_memory_gb(plan: Plan, params: int | None, *, training: bool) -> float | None:
    """A rough peak estimate: weights (+ fp32 grads and AdamW moments when training; LoRA trains few) plus
    activations and fp32 logits for one micro-batch. Good to a factor of ~1.5; the docs list measured peaks."""
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
        activations = batch * TYPICAL_TOKENS * math.sqrt(params) * 60
    else:
        state = params * BYTES.get(plan.eval_dtype, 4)
        batch = cfg.eval.batch_size
        activations = batch * TYPICAL_TOKENS * math.sqrt(params) * 8
    return (state + activations) / 1e9


# rough sustained training throughput (FLOP/s) per device: calibrated on this project's measurements
FLOPS = {"cpu": 1.5e10, "mps": 2e12, "cuda": 1e14}


def train_minutes(plan: Plan, params: int | None, steps: int, batch: int) -> float | None:
    """6 x params x tokens per optimizer step (forward + backward), over a device throughput; a floor of 0.2 s
    per step for small models on the CPU, where overheads dominate."""
    if not params:
        return None
    flops = 6 * params * batch * TYPICAL_TOKENS * steps
    return max(flops / FLOPS.get(plan.device, FLOPS["cpu"]), steps * (0.2 if plan.device == "cpu" else 0.02)) / 60


# ------------------------------------------------------------------------------------------- describing


def _fmt_gb(gb: float) -> str:
    return f"{gb:.1f} GB" if gb >= 0.1 else f"{gb * 1000:.0f} MB"


def _fmt_params(n: int | None) -> str:
    if not n:
        return "? params"
    return f"{n / 1e9:.2f} B params" if n >= 1e9 else f"{n / 1e6:.1f} M params" if n >= 1e5 else f"{n} params"


def _model_line(plan: Plan, mp: ModelPlan) -> str:
    state = ("to build now" if mp.build else "cached" if mp.cached else
             "not built (this command does not need it)" if mp.origin == "built here" else
             "converted on first use" if mp.origin == "gguf" else
             "not on this machine (download on first use)" if mp.origin == "hub" else "missing")
    where = mp.spec if mp.origin != "built here" else f"cache {mp.key}"
    return f"  {mp.role:<9} {where}  [{mp.origin}; {state}; {_fmt_params(mp.params)}]"


def describe(plan: Plan) -> str:
    """The plan in a few lines: what will be trained, evaluated and cached, where, and roughly at what cost."""
    cfg = plan.cfg
    d = cfg.data
    lines = [f"plan for `{plan.command}` ({cfg.name}, config {plan.config_hash})",
             f"  device    {plan.device} ({plan.threads} torch threads); training {plan.train_precision}; "
             f"evaluation {plan.eval_dtype}",
             f"  data      {d.source} (authors: {d.authors or 'all'}); forget {d.forget_split}, retain "
             f"{d.retain_split}, holdout {d.holdout_split}",
             f"  tokenizer {plan.tokenizer}"]
    shown = [plan.base] if plan.base.build or plan.command == "prepare" else []
    shown += [plan.target, plan.retain] if plan.command != "eval" else []
    if plan.evaluated is not None:
        shown.append(plan.evaluated)
    lines += [_model_line(plan, mp) for mp in shown]
    if plan.command in ("run", "sweep"):
        u = cfg.unlearn
        lines.append(f"  unlearn   {u.method} lr {u.lr:g}, {u.epochs} epochs, batch {u.batch_size} x accum "
                     f"{u.grad_accum}: {plan.steps.get('unlearn', '?')} steps")
    ref = plan.reference
    if ref is not None and ref.kind == "retain model":
        lines.append(f"  reference retain model {short_name(ref.spec or '')} "
                     f"({'cached' if ref.cached else 'computed now, then cached'}: {ref.key})")
    elif ref is not None and ref.kind == "retain logs":
        lines.append(f"  reference {ref.spec}")
    elif ref is not None and ref.skipped:
        lines.append(f"  reference none: {', '.join(ref.skipped)} skipped")
    for mp in plan.to_build:
        steps = plan.steps.get(f"fine-tune {mp.role}")
        if mp.role == "base":
            lines.append("  build     base: pre-train the embedded model (~0.5 min on 2 CPU cores)")
            continue
        minutes = train_minutes(plan, mp.params, steps or 0, cfg.finetune.batch_size) if steps else None
        peak = peak_memory_gb(replace(plan, command="prepare"), mp.params, training=True)
        lines.append(f"  build     {mp.role}: fine-tune on {'full' if mp.role == 'target' else d.retain_split}, "
                     f"{steps or '?'} steps" + (f", ~{minutes:.0f} min" if minutes is not None else "")
                     + (f", peak ~{_fmt_gb(peak)}" if peak else ""))
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
        lines.append(f"  saves     {plan.save_dir if plan.command == 'run' else plan.eval_dir}"
                     + (f", {plan.eval_dir}" if plan.command == "run" else ""))
    lines += [f"  note      {n}" for n in plan.notes]
    return "\n".join(lines)
