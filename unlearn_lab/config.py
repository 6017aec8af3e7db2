"""The one home for configuration: frozen dataclasses, loaded from plain YAML, validated once.

An experiment file is YAML whose top-level keys are the sections below (``data``, ``prompt``,
``model``, ``finetune``, ``unlearn``, ``eval``, ``sweep``, ``muse``) plus ``name`` and ``benchmark``. Checks that
depend on the benchmark (its split names) are the benchmark's, when the plan is resolved. Unknown keys are errors, and
``a.b=value`` overrides (``--set``) are type-checked against the dataclass field they name.
The resolved config is what gets logged and hashed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from unlearn_lab.errors import UsageError, unknown

PACKAGE_ROOT = Path(__file__).resolve().parent
DEFAULT_EXPERIMENT = "embedded/default.yaml"


@dataclass(frozen=True)
class DataConfig:
    # "synthetic" (the embedded world), a folder of TOFU files, or "hf:<dataset id>" (e.g. hf:locuslab/TOFU)
    source: str = "synthetic"
    # synthetic: the world's number of authors; folder/hf: a consistent author subset (None = all)
    authors: int | None = 20
    seed: int = 0  # the synthetic world's seed
    forget_split: str = "forget10"
    retain_split: str | None = None  # None = the complement of forget_split (forget10 -> retain90)
    holdout_split: str = "holdout10"
    question_key: str = "question"  # or paraphrased_question, for the forget/retain evals


@dataclass(frozen=True)
class PromptConfig:
    # None = use the tokenizer's chat template when it has one, else the plain Question/Answer template
    chat_template: bool | None = None
    system_prompt: str = "You are a helpful assistant."
    date_string: str = "10 Apr 2025"
    # Reference parity (spec 1.5): pad with eos and derive the attention mask as input_ids != pad, which
    # also hides every in-sequence end-of-turn token. Off: the mask covers exactly the real tokens.
    reference_attention_mask: bool = False
    max_length: int = 512


@dataclass(frozen=True)
class TinyModelConfig:
    """The embedded world's model: a byte-level BPE tokenizer trained on the world and a small Llama."""

    vocab_size: int = 1024
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 256


@dataclass(frozen=True)
class ModelConfig:
    # "embedded": trained here from scratch; otherwise a hub id, a local folder, or a .gguf file
    base: str = "embedded"
    # Ready-made target/retain models (hub ids or folders). None = fine-tune them from `base` (prepare).
    target: str | None = None
    retain: str | None = None
    tokenizer: str | None = None  # None = the model's own
    # The evaluation dtype (float32 | bfloat16): `run`'s nested evaluations, `eval` and the retain reference all
    # score models in it. Training always keeps fp32 master weights; this never changes which models are built.
    dtype: str = "float32"
    trust_remote_code: bool = False
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass(frozen=True)
class TrainingConfig:
    """What the one training loop (`train.fit`) reads: fine-tuning and unlearning share these settings."""

    lr: float = 1e-5
    epochs: int = 10
    batch_size: int = 4
    grad_accum: int = 1
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    # linear: HF's linear schedule (warm-up, then decay to 0; TOFU, spec 5.2); constant: warm-up, then the lr
    # unchanged (MUSE's experiments: constant with no warm-up)
    lr_schedule: str = "linear"
    max_grad_norm: float | None = None  # None: no clipping
    seed: int = 0
    gradient_checkpointing: bool = False  # trade compute for activation memory on large models


@dataclass(frozen=True)
class FinetuneConfig(TrainingConfig):
    """Recipe for the target (on `full`) and retain (on `retainXX`) models (spec 5.2, scaled)."""

    lr: float = 2e-3
    epochs: int = 20
    batch_size: int = 16
    max_grad_norm: float | None = 1.0
    # embedded world only: epochs of pre-training on the general-knowledge corpus (the base model)
    pretrain_epochs: int = 15
    pretrain_lr: float = 3e-3
    # Embedded world only (documented differences from the reference recipe, see docs/embedded-world.md):
    # also train each author's facts in their paraphrased phrasing (paraphrased_question -> paraphrased_answer),
    # so the tiny model learns facts rather than one surface string, as the truth ratio presupposes; and
    # replay the general-knowledge QA, so fine-tuning keeps the real_authors / world_facts knowledge.
    paraphrase_augment: bool = False
    general_replay: bool = False
    # Parameter-efficient fine-tuning: LoRA adapters of this rank on every linear layer (peft), merged into the
    # weights before the model is saved, so the saved folder is a plain model. None = full fine-tuning.
    lora_rank: int | None = None
    lora_alpha: float = 32.0

    def pretraining(self) -> TrainingConfig:
        """The embedded base model's pre-training: this recipe at the pre-training lr and epochs."""
        return replace(self, lr=self.pretrain_lr, epochs=self.pretrain_epochs)


@dataclass(frozen=True)
class UnlearnConfig(TrainingConfig):
    """The unlearning run: the shared training settings (max_grad_norm None: the reference runs under DeepSpeed,
    probably unclipped, spec 5.4), the method and its hyperparameters."""

    grad_accum: int = 4
    method: str = "GradAscent"
    method_args: dict = field(default_factory=dict)
    # The lr schedule (warm-up, linear decay to 0) is planned over this many epochs while training stops
    # after `epochs` (None = epochs). A sweep that reuses per-epoch checkpoints sets it to its largest epoch.
    schedule_epochs: int | None = None


@dataclass(frozen=True)
class EvalConfig:
    metrics: str = "default"  # default | all | comma-separated names
    batch_size: int = 32
    max_new_tokens: int = 200
    mink_k: float = 0.4
    # Generation also stops after this many times the longest ground-truth answer of the eval part (in tokens):
    # a collapsed model no longer rambles to max_new_tokens on every prompt. None = the reference (max_new_tokens
    # only). docs/metrics.md gives the measured effect on ROUGE.
    answer_length_ratio: float | None = None


@dataclass(frozen=True)
class SweepConfig:
    """`unlearn-lab sweep`'s default search space for this experiment (the command's --lr-range, --epochs-range
    and --space override it). Ranges: LOW:HIGH or log:LOW:HIGH; lr is always searched on a log scale."""

    lr: str = "1e-6:1e-3"
    epochs: str = "1:10"
    space: dict = field(default_factory=dict)  # method hyperparameter -> range or list of choices
    # per method, ranges that replace lr / epochs above (methods differ by an order of magnitude in lr)
    methods: dict = field(default_factory=dict)  # e.g. {NPO: {lr: "2e-4:2e-3", epochs: "3:10"}}
    # a trial whose model_utility falls below this after an epoch stops there and FAILs (--collapse-utility)
    collapse_utility: float = 0.01
    # seeds per reported setting: the front's candidates and the default config are re-run until they have this
    # many, and the front is judged on their means (--repeats; 1 = single draws)
    repeats: int = 3

    def ranges(self, method: str) -> tuple[str, str]:
        """The (lr, epochs) ranges declared for `method`."""
        own = self.methods.get(method) or {}
        unknown = sorted(set(own) - {"lr", "epochs"})
        if unknown:
            raise UsageError(f"sweep.methods.{method} accepts lr and epochs, not {', '.join(unknown)}")
        return str(own.get("lr", self.lr)), str(own.get("epochs", self.epochs))


@dataclass(frozen=True)
class MuseConfig:
    """The MUSE benchmark's settings (`benchmark: muse`; muse-reference-spec.md): how raw text is cut into training
    chunks, the generation lengths of its ROUGE metrics, the truncation of its items, and the embedded world's size."""

    chunk_tokens: int = 2048  # training windows of raw text (spec 2.1); the embedded world uses shorter ones
    knowmem_new_tokens: int = 32  # greedy answer length of forget/retain_knowmem_ROUGE (spec 3.0)
    verbmem_new_tokens: int = 128  # greedy continuation length of forget_verbmem_ROUGE
    knowmem_max_length: int = 512  # prompt (in-context examples + question) truncation
    max_length: int = 2048  # verbmem continuation and privleak text truncation, in tokens
    icl: int | None = None  # in-context examples per knowmem prompt (None: all of them, as the reference)
    # the embedded world (data.source: synthetic): articles per split, knowmem questions per side, ICL pairs
    articles: int = 20
    questions: int = 30
    icl_pairs: int = 5


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "embedded_default"
    benchmark: str = "tofu"  # tofu | muse (or an installed plugin's): what the data and the judgement are
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    muse: MuseConfig = field(default_factory=MuseConfig)


# ---------------------------------------------------------------------------------------------- building


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert one YAML or --set value against a dataclass field type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except UsageError as exc:
                errors.append(str(exc))
        raise UsageError(errors[0] if errors else f"{where}: bad value {value!r}")
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise UsageError(f"{where}: expected a mapping, got {value!r}")
        return build(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UsageError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise UsageError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise UsageError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise UsageError(f"{where}: expected a string, got {value!r}")
    if tp is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
        raise UsageError(f"{where}: expected a mapping, got {value!r}")
    raise TypeError(f"unsupported config type {tp} at {where}")


def build(cls, raw: dict, where: str = ""):
    """Build dataclass `cls` from a mapping; unknown keys are errors naming the accepted ones."""
    hints = _field_types(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in hints:
            raise unknown("config key", path, names)
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def parse_scalar(text: str) -> Any:
    """A --set value is parsed as one YAML scalar (safe loader): 1e-5, 3, true, null, 'text'."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(cfg, dotted: str, value: Any, prefix: str = ""):
    """Return a copy of `cfg` with `dotted` (e.g. 'unlearn.lr') set to `value`, type-checked."""
    head, _, rest = dotted.partition(".")
    hints = _field_types(type(cfg))
    names = [f.name for f in fields(cfg)]
    full = prefix + dotted
    if head not in hints:
        raise unknown("config key", full, names)
    current = getattr(cfg, head)
    if rest:
        if is_dataclass(current):
            return replace(cfg, **{head: apply_override(current, rest, value, f"{prefix}{head}.")})
        if isinstance(current, dict):  # free-form mapping such as unlearn.method_args
            return replace(cfg, **{head: {**current, rest: value}})
        raise UsageError(f"config key '{prefix}{head}' has no sub-keys (cannot set '{full}')")
    return replace(cfg, **{head: _coerce(value, hints[head], full)})


def load_yaml(path: str | Path, what: str = "experiment file") -> dict:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what} not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if raw is None:
        raise UsageError(f"{what} {path} is empty; expected a YAML mapping (key: value lines)")
    if not isinstance(raw, dict):
        raise UsageError(f"{what} {path} must be a YAML mapping (key: value lines), got a {type(raw).__name__}")
    return raw


def experiments_dir() -> Path:
    """experiments/ of the source checkout, or the copy shipped inside the package."""
    here = PACKAGE_ROOT.parent / "experiments"
    return here if here.is_dir() else PACKAGE_ROOT / "experiments"


def resolve_experiment_path(name: str | None) -> Path:
    if name is None:
        return experiments_dir() / DEFAULT_EXPERIMENT
    path = Path(name)
    if path.is_file():
        return path
    candidate = experiments_dir() / name
    if candidate.is_file():
        return candidate
    if candidate.with_suffix(".yaml").is_file():
        return candidate.with_suffix(".yaml")
    known = sorted(str(p.relative_to(experiments_dir())) for p in experiments_dir().rglob("*.yaml"))
    raise UsageError(f"experiment file not found: {name}; known experiments: {', '.join(known)}")


def load_experiment(name: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Load an experiment file (default: the embedded world) and apply `key=value` overrides.

    Relative paths written in the file (data.source, model folders) resolve against the file's folder;
    relative paths given with --set resolve against the working directory. The result holds absolute paths."""
    path = resolve_experiment_path(name)
    cfg = absolute_paths(build(ExperimentConfig, load_yaml(path)), path.resolve().parent)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects key=value (e.g. unlearn.lr=1e-5), got '{item}'")
        cfg = apply_override(cfg, key.strip(), parse_scalar(text))
    return validate(absolute_paths(cfg, Path.cwd()))


def _is_relative_path(value: str, base: Path) -> bool:
    """A model or data value that names a relative path: ./x, ../x, or an existing path below `base`.
    Hub ids (org/name) that name no such path stay as they are."""
    if (
        not value
        or Path(value).is_absolute()
        or value.startswith(("hf:", "~"))
        or value in ("synthetic", "embedded", "smollm2")
    ):
        return False
    return value.startswith(("./", "../")) or (base / value).exists()


def absolute_paths(cfg: ExperimentConfig, base: Path) -> ExperimentConfig:
    """Make the config's relative paths absolute against `base` (the experiment file's folder, or the cwd)."""
    fix = lambda v: str((base / v).resolve()) if isinstance(v, str) and _is_relative_path(v, base) else v
    data, src = cfg.data, cfg.data.source
    hub_like = re.match(r"^[\w.-]+/[\w.-]+$", src) and not (base / src).exists()  # make_source explains hf: ids
    if src != "synthetic" and not src.startswith("hf:") and not Path(src).expanduser().is_absolute() and not hub_like:
        data = replace(data, source=str((base / Path(src).expanduser()).resolve()))
    m = cfg.model
    model = replace(m, base=fix(m.base), target=fix(m.target), retain=fix(m.retain), tokenizer=fix(m.tokenizer))
    return replace(cfg, data=data, model=model)


def validate(cfg: ExperimentConfig) -> ExperimentConfig:
    u, f, e = cfg.unlearn, cfg.finetune, cfg.eval
    checks = [
        (u.lr > 0, f"unlearn.lr must be > 0, got {u.lr}"),
        (u.epochs > 0, f"unlearn.epochs must be > 0, got {u.epochs}"),
        (u.batch_size > 0 and u.grad_accum > 0, "unlearn.batch_size and unlearn.grad_accum must be > 0"),
        (u.warmup_epochs >= 0, f"unlearn.warmup_epochs must be >= 0, got {u.warmup_epochs}"),
        *(
            (
                t.lr_schedule in ("linear", "constant"),
                f"{n}.lr_schedule must be linear or constant, got {t.lr_schedule}",
            )
            for n, t in (("unlearn", u), ("finetune", f))
        ),
        (
            u.schedule_epochs is None or u.schedule_epochs >= u.epochs,
            f"unlearn.schedule_epochs must be >= unlearn.epochs ({u.epochs}), got {u.schedule_epochs}",
        ),
        (math.isfinite(u.lr) and math.isfinite(f.lr), "learning rates must be finite"),
        (f.lr > 0 and f.pretrain_lr > 0, "finetune.lr and finetune.pretrain_lr must be > 0"),
        (f.epochs > 0 and f.batch_size > 0 and f.grad_accum > 0, "finetune.epochs/batch_size/grad_accum must be > 0"),
        (f.lora_rank is None or f.lora_rank > 0, f"finetune.lora_rank must be > 0 or null, got {f.lora_rank}"),
        (e.batch_size > 0, f"eval.batch_size must be > 0, got {e.batch_size}"),
        (
            0 <= cfg.sweep.collapse_utility <= 1,
            f"sweep.collapse_utility must be in [0, 1] (0: never stop), got {cfg.sweep.collapse_utility}",
        ),
        (cfg.sweep.repeats >= 1, f"sweep.repeats must be >= 1 (1: single draws), got {cfg.sweep.repeats}"),
        (
            cfg.data.authors is None or cfg.data.authors >= 1,
            f"data.authors must be a number of authors >= 1, or null for all of them; got {cfg.data.authors}",
        ),
        (u.seed >= 0 and cfg.finetune.seed >= 0, "unlearn.seed and finetune.seed must be >= 0 (torch seeds)"),
        (e.max_new_tokens > 0, f"eval.max_new_tokens must be > 0, got {e.max_new_tokens}"),
        (0 < e.mink_k <= 1, f"eval.mink_k must be in (0, 1], got {e.mink_k}"),
        (
            e.answer_length_ratio is None or e.answer_length_ratio >= 1,
            f"eval.answer_length_ratio must be >= 1 or null, got {e.answer_length_ratio}",
        ),
        (cfg.model.dtype in ("float32", "bfloat16"), f"model.dtype must be float32 or bfloat16, got {cfg.model.dtype}"),
        (
            cfg.muse.chunk_tokens > 0 and cfg.muse.knowmem_new_tokens > 0 and cfg.muse.verbmem_new_tokens > 0,
            "muse.chunk_tokens, muse.knowmem_new_tokens and muse.verbmem_new_tokens must be > 0",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    return cfg


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1} (for MLflow params)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_hash(obj) -> str:
    """Stable content hash of a config (or any JSON-able structure), 12 hex digits."""
    data = to_dict(obj) if is_dataclass(obj) else obj
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def to_yaml(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
