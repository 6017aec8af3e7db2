"""The resolved plan: every command turns its experiment file, --set overrides and CLI options into one frozen
`Plan`, once, at the edge. Every stage (prepare, train, evaluate, reference, tracking) reads the plan; none
re-resolves the config.

The plan says which model plays which role and where it comes from (built here and cached, a folder, a hub
id, a GGUF file), what is cached and what must be built, the device and dtypes, the data source (absolute),
the splits, the run and save names, the cache keys, step counts and rough cost estimates. Making a plan loads
no weights: parameter counts come from safetensors / GGUF headers or a config built on the meta device.
`estimates.describe(plan)` is what `--dry-run` prints.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from unlearn_lab.benchmarks import Benchmark, get_benchmark
from unlearn_lab.config import ExperimentConfig, config_hash
from unlearn_lab.errors import UsageError
from unlearn_lab.models import load
from unlearn_lab.models.size import count_params, tiny_params

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

    @property
    def identity(self) -> str:
        """What a reference cache key calls this model (a built model's content address, else its spec's)."""
        return model_identity(self.spec, self.key if self.origin == "built here" else None)


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
    task_name: str  # names the save folders
    save_dir: Path
    eval_dir: Path
    evaluated: ModelPlan | None = None  # `eval`: the model under evaluation
    reference: ReferencePlan | None = None
    steps: dict[str, int] = field(default_factory=dict)  # optimizer steps per training stage
    notes: tuple[str, ...] = ()  # what the user should know before anything runs
    run_name: str = ""  # the tracking run's name (short, readable; the tracker makes it unique)
    seeds: tuple[int, ...] = ()  # `run --seeds/--repeats`: the setting runs once per seed (empty: once, unlearn.seed)

    @property
    def config_hash(self) -> str:
        return config_hash(self.cfg)

    @property
    def benchmark(self) -> Benchmark:
        """The experiment's benchmark (tofu, muse, a plugin's): every stage asks it for what is its own."""
        return get_benchmark(self.cfg.benchmark)

    @functools.cached_property
    def source(self) -> Any:
        """The experiment's data source, built once per plan (an embedded world is generated once)."""
        return self.benchmark.source(self.cfg)

    def with_notes(self, notes: tuple[str, ...]) -> Plan:
        """This plan with more notes, keeping the data source it has already read (a folder is parsed once)."""
        noted = replace(self, notes=self.notes + notes)
        if "source" in self.__dict__:  # functools.cached_property's slot: filled when the source was read
            noted.__dict__["source"] = self.__dict__["source"]
        return noted

    def with_seed(self, seed: int) -> Plan:
        """This run plan with unlearn.seed = `seed`: the same models, data (the source already read), reference
        and step counts, its own names: the default task name carries the new config hash, a name the user gave
        gets `_seed<k>`; the run name `-seed<k>`."""
        cfg = replace(self.cfg, unlearn=replace(self.cfg.unlearn, seed=seed))
        default = default_task_name(self.command, self.cfg, self.target, self.evaluated)
        task = default_task_name(self.command, cfg, self.target, self.evaluated)
        task = task if self.task_name == default else f"{self.task_name}_seed{seed}"
        seeded = replace(
            self,
            cfg=cfg,
            task_name=task,
            save_dir=self.save_dir.parent / task,
            eval_dir=self.eval_dir.parent / task,
            run_name=f"{self.run_name}-seed{seed}",
            seeds=(),
        )
        if "source" in self.__dict__:
            seeded.__dict__["source"] = self.__dict__["source"]
        return seeded

    @property
    def retain_split(self) -> str:
        """The retain split, resolved (the complement of the forget split unless the experiment names one)."""
        split = self.cfg.data.retain_split
        if split is None:
            raise AssertionError("resolve() fills in data.retain_split")
        return split

    @property
    def evaluated_model(self) -> ModelPlan:
        """The model an `eval` plan evaluates (other commands' plans have none)."""
        if self.evaluated is None:
            raise AssertionError(f"a {self.command} plan evaluates no model of its own")
        return self.evaluated

    @property
    def to_build(self) -> tuple[ModelPlan, ...]:
        return tuple(m for m in (self.base, self.target, self.retain) if m.build)


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
    base = config_hash(
        {
            "data": {"source": d.source, "authors": d.authors, "seed": d.seed},
            "model": {"base": m.base, "tokenizer": m.tokenizer, "tiny": asdict(m.tiny) if embedded else None},
            "prompt": asdict(cfg.prompt),
            "pretrain": [cfg.finetune.pretrain_epochs, cfg.finetune.pretrain_lr, cfg.finetune.seed]
            if embedded
            else None,
        }
    )
    extra = get_benchmark(cfg.benchmark).key_content(cfg)
    if extra is not None:  # a benchmark other than TOFU: its name and settings shape the models too
        base = config_hash({"base": base, "benchmark": cfg.benchmark, **extra})
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
        return f"{path.resolve()}|{weights_signature(spec)}"
    return spec


def weights_signature(spec: str) -> str | None:
    """A model folder's weight files (names, sizes, mtimes); None for anything else. A cached reference records its
    model's, so a model rebuilt under the same content address (deleted, then prepared again) is scored anew."""
    path = Path(spec).expanduser()
    if not path.is_dir():
        return None
    files = sorted(path.glob("*.safetensors"))
    return "|".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)


def reference_key(cfg: ExperimentConfig, identity: str, device: str) -> str:
    """The retain reference's cache key: the retain model, data and splits, prompt, Min-K's k, and how it is
    scored (the evaluation dtype, device type and batch size), so a model scored like its reference matches it
    bit for bit."""
    d = cfg.data
    data = {
        "source": d.source,
        "authors": d.authors,
        "seed": d.seed,
        "forget": d.forget_split,
        "holdout": d.holdout_split,
        "question_key": d.question_key,
    }
    content = {
        "model": identity,
        "data": data,
        "prompt": asdict(cfg.prompt),
        "mink_k": cfg.eval.mink_k,
        "dtype": cfg.model.dtype,
        "device": device,
        "tokenizer": cfg.model.tokenizer,
        "batch_size": cfg.eval.batch_size,
    }
    extra = get_benchmark(cfg.benchmark).key_content(cfg)
    if extra is not None:
        content |= {"benchmark": cfg.benchmark, **extra}
    return config_hash(content)


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


# -------------------------------------------------------------------------------------------- resolving


def resolve(
    command: str,
    cfg: ExperimentConfig,
    *,
    device: str = "cpu",
    threads: int = 1,
    task_name: str | None = None,
    run_name: str | None = None,
    evaluated: str | None = None,
    retain_model: str | None = None,
    retain_logs: str | None = None,
    no_reference: bool = False,
    saves: Path | str = "saves",
    count: bool = True,
    seeds: tuple[int, ...] = (),
) -> Plan:
    """The plan of one command. `evaluated` / `retain_model` (eval) may be 'target' or 'retain': the
    experiment's models. `count=False` skips parameter counts (sweep trials, which need no estimates)."""
    from unlearn_lab.runtime import bf16_autocast

    cfg = get_benchmark(cfg.benchmark).resolve(cfg)  # its splits checked, the retain split filled in
    local = lambda spec: str(Path(spec).expanduser().resolve()) if spec and Path(spec).expanduser().exists() else spec
    evaluated = evaluated if evaluated in ("target", "retain") else local(evaluated)
    retain_model = retain_model if retain_model in ("target", "retain") else local(retain_model)
    needed = _roles_needed(command, cfg, evaluated, retain_model, retain_logs, no_reference)
    base, target, retain = _model_plans(cfg, needed, count)
    roles = {"target": target, "retain": retain}
    evaluated_plan = _evaluated_plan(evaluated, roles, count)
    m = cfg.model
    own_model = evaluated_plan is not None and evaluated not in roles
    tokenizer = m.tokenizer or (evaluated_plan.spec if own_model and evaluated_plan else m.target or target.spec)
    notes: list[str] = []
    reference = None
    if command in ("run", "eval", "sweep"):
        reference = _reference(cfg, command, roles, retain_model, retain_logs, no_reference, device, notes)
    if command == "eval" and reference is not None:
        notes += _reference_notes(reference, (base, target, retain))
    name, saves = task_name or default_task_name(command, cfg, target, evaluated_plan), Path(saves)
    return Plan(
        command=command,
        cfg=cfg,
        device=device,
        train_precision="fp32 master weights + bf16 autocast" if bf16_autocast(device) else "fp32",
        eval_dtype=m.dtype,
        threads=threads,
        base=base,
        target=target,
        retain=retain,
        tokenizer=tokenizer,
        task_name=name,
        save_dir=saves / "unlearn" / name,
        eval_dir=saves / "eval" / name,
        evaluated=evaluated_plan,
        reference=reference,
        steps=_steps(command, cfg, target, retain, base),
        notes=tuple(notes),
        run_name=run_name or task_name or default_run_name(cfg),
        seeds=seeds,
    )


def _reference_notes(reference: ReferencePlan, models: tuple[ModelPlan, ...]) -> list[str]:
    """`eval` with a reference that needs the experiment's retain model, which must be built first."""
    computed = reference.kind == "retain model" and not reference.cached
    if not (computed and any(mp.build for mp in models)):
        return []
    return [
        "the forget_quality / privleak reference needs the experiment's retain model, which is built "
        "first (see 'build'); --retain-model, --retain-logs or --no-reference avoid that"
    ]


def _model_plans(cfg: ExperimentConfig, needed: set[str], count: bool) -> tuple[ModelPlan, ModelPlan, ModelPlan]:
    """The base, target and retain models: given (hub id, folder, GGUF) or built here into the cache, which of
    those must be built for the roles this command needs, and their parameter counts."""
    m = cfg.model
    keys = model_keys(cfg, cfg.data.retain_split or "")
    root = load.cache_root() / "models"

    def built_here(role: str) -> ModelPlan:
        path = root / keys[role]
        cached = is_prepared(path)
        return ModelPlan(role, str(path), "built here", cached, build=not cached and role in needed, key=keys[role])

    def given(role: str, spec: str) -> ModelPlan:
        return ModelPlan(role, spec, origin_of(spec), _available_now(spec))

    embedded = m.base == "embedded"
    if embedded:
        base = built_here("base")
        # the base is needed whenever a fine-tuned model must be built from it
        roles = [r for r in ("target", "retain") if r in needed and not getattr(m, r)]
        need_base = any(not is_prepared(root / keys[r]) for r in roles)
        base = replace(base, build=not base.cached and need_base)
    else:
        base = given("base", m.base)
    target = given("target", m.target) if m.target else built_here("target")
    retain = given("retain", m.retain) if m.retain else built_here("retain")
    if not count:
        return base, target, retain
    n_base = tiny_params(cfg) if embedded else count_params(m.base)
    counted = [
        replace(mp, params=n_base if mp.origin == "built here" or mp.role == "base" else count_params(mp.spec))
        for mp in (base, target, retain)
    ]
    return counted[0], counted[1], counted[2]


def _evaluated_plan(evaluated: str | None, roles: dict[str, ModelPlan], count: bool) -> ModelPlan | None:
    """`eval`'s model: one of the experiment's own (target / retain) or any other model spec."""
    if evaluated is None:
        return None
    if evaluated in roles:
        return replace(roles[evaluated], role="evaluated")
    params = count_params(evaluated) if count else None
    return ModelPlan("evaluated", evaluated, origin_of(evaluated), _available_now(evaluated), params=params)


def _roles_needed(command, cfg, evaluated, retain_model, retain_logs, no_reference) -> set[str]:
    """Which of the experiment's target / retain models this command uses (and so may have to build)."""
    if command in ("prepare", "run", "sweep"):
        return {"target", "retain"}
    needed = {evaluated} & {"target", "retain"}
    bench = get_benchmark(cfg.benchmark)
    wants_reference = bool(bench.reference_metrics(bench.metrics(cfg.eval.metrics)))
    if wants_reference and not (retain_logs or no_reference):
        needed |= ({retain_model} & {"target", "retain"}) if retain_model else {"retain"}
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
    bench = get_benchmark(cfg.benchmark)
    top = bench.metrics(cfg.eval.metrics)
    needing = bench.reference_metrics(top)
    if no_reference:
        if needing and len(needing) == len(top):
            raise UsageError(
                f"--no-reference leaves nothing to compute: {', '.join(needing)} "
                f"{'needs' if len(needing) == 1 else 'need'} the retain model's reference; "
                "give --retain-model or --retain-logs instead, or ask for other metrics with --metrics"
            )
        if needing:
            notes.append(f"--no-reference: skipping {', '.join(needing)} (they need the retain model's reference)")
        return ReferencePlan("none", skipped=needing)
    if not needing:
        return ReferencePlan("none")
    if retain_logs:
        return ReferencePlan("retain logs", spec=str(Path(retain_logs).resolve()), cached=True)
    chosen = roles.get(retain_model or "retain") if (retain_model or "retain") in roles else None
    if chosen is not None:
        identity = chosen.identity
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
        model = (
            evaluated.short
            if evaluated.origin != "built here"
            else f"{short_name(cfg.model.base)}-{(evaluated.key or 'model').split('-')[0]}"
        )
        return _slug(f"{model}_{cfg.data.forget_split}_{config_hash([evaluated.spec, digest])[:8]}")
    model = target.short if target.origin != "built here" else short_name(cfg.model.base)
    return _slug(f"{model}_{cfg.unlearn.method}_{cfg.data.forget_split}_{digest}")


# what a None in the config means, as the value used (tracked params never say "None")
NONE_MEANS = {
    "data.authors": "all",
    "finetune.lora_rank": "off (full fine-tuning)",
    "finetune.max_grad_norm": "off (no clipping)",
    "unlearn.max_grad_norm": "off (no clipping)",
    "eval.answer_length_ratio": "off (max_new_tokens only)",
}


def tracked_params(plan: Plan, method_args: dict, *, chat_template: bool) -> dict[str, object]:
    """Every config value as used by this run: the roles' models, the retain split, the prompt format and the
    schedule filled in from the plan, the method's resolved hyperparameters (e.g. RMU's layer), and what a None
    stands for. `chat_template`: whether the tokenizer's chat template formats the prompts."""
    from unlearn_lab.config import flatten, to_dict

    params = flatten(to_dict(plan.cfg))
    params.update(
        {
            "model.target": plan.target.spec,
            "model.retain": plan.retain.spec,
            "model.tokenizer": plan.tokenizer,
            "data.retain_split": plan.cfg.data.retain_split,
            "prompt.chat_template": chat_template,
            "unlearn.schedule_epochs": plan.cfg.unlearn.schedule_epochs or plan.cfg.unlearn.epochs,
            "device": plan.device,
            "train.precision": plan.train_precision,
        }
    )
    params.update({f"method.{k}": v for k, v in method_args.items()})
    from unlearn_lab.methods import method_origin

    params["unlearn.method_origin"] = method_origin(plan.cfg.unlearn.method)  # built-in, or a plugin's version
    return {k: NONE_MEANS.get(k, "none") if v is None else v for k, v in params.items()}


def lr_text(lr: float) -> str:
    """1e-05 -> '1e-5', 0.00025 -> '2.5e-4': short and exact to three digits."""
    mantissa, exponent = f"{lr:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def default_run_name(cfg: ExperimentConfig, prefix: str = "") -> str:
    """`<method>-<forget>-lr<x>-ep<n>` (a sweep trial: `t<k>-<method>-lr<x>-ep<n>`): readable at a glance in
    the runs table; the save folders keep the longer task name with the config hash."""
    u = cfg.unlearn
    # TOFU's split names say the benchmark (forget10); another benchmark's run says it: muse_forget
    split = cfg.data.forget_split if cfg.benchmark == "tofu" else f"{cfg.benchmark}_{cfg.data.forget_split}"
    middle = (
        f"{u.method}-lr{lr_text(u.lr)}-ep{u.epochs}" if prefix else f"{u.method}-{split}-lr{lr_text(u.lr)}-ep{u.epochs}"
    )
    return f"{prefix}{middle}"


def _steps(command, cfg, target, retain, base) -> dict[str, int]:
    """Optimizer steps of each training stage this command runs, from the items each stage trains on (no model
    needed; a source that cannot be read now leaves them out, and the preflight says why)."""
    from unlearn_lab.runtime import launched_processes
    from unlearn_lab.train import Schedule

    counts = _item_counts(cfg)
    if counts is None:
        return {}
    out: dict[str, int] = {}
    for plan in (target, retain):
        if plan.build and plan.role in counts:  # one process trains them, whatever the launch (models/prepare.py)
            out[f"fine-tune {plan.role}"] = Schedule.of(counts[plan.role], cfg.finetune).total_steps
    if command in ("run", "sweep") and "forget" in counts:  # under a launcher each rank runs its share of the rows
        u, processes = cfg.unlearn, launched_processes()
        out["unlearn"] = Schedule.of(counts["forget"], u, processes, u.schedule_epochs).total_steps
    return out


def _item_counts(cfg) -> dict[str, int] | None:
    """Training items of each stage (the benchmark's count: target, retain, forget) for sources readable now."""
    bench = get_benchmark(cfg.benchmark)
    try:
        return bench.stage_items(cfg, bench.source(cfg))
    except UsageError:
        return None
