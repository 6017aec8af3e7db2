"""Before a tracking run is opened or a weight is loaded: is every model, tokenizer and data source the plan
needs reachable? Every missing piece is reported at once, each with its remedy, as one usage error.

Local paths are checked on disk; hub ids in the local cache first, then with one short probe of the hub
(none at all under HF_HUB_OFFLINE=1), so an unreachable hub costs well under a second, not 30-55 s of
retries per piece. When the hub is unreachable but everything is cached, the process goes offline so the
libraries load from the cache without trying the network (returned as `offline`).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

from unlearn_lab.errors import UsageError
from unlearn_lab.models import hub, load
from unlearn_lab.plan import ModelPlan, Plan, origin_of

# which option names each role, for the remedy
OPTION = {
    "base": "--set model.base=",
    "target": "--set model.target=",
    "retain": "--set model.retain=",
    "tokenizer": "--set model.tokenizer=",
    "evaluated": "--model ",
    "reference": "--retain-model ",
}


@dataclass(frozen=True)
class Preflight:
    missing: tuple[str, ...]
    offline: bool  # the hub is unreachable but all that is needed is cached


def _model_problem(spec: str, probe, *, weights: bool = True) -> str | None:
    """None if the model (or tokenizer) `spec` can be loaded now, else why not."""
    origin = origin_of(spec)
    if origin in ("folder", "gguf"):
        try:
            if spec == load.SMOLLM2_SHORTCUT:
                load.smollm2_gguf()
            elif origin == "gguf":
                if not Path(spec).expanduser().is_file():
                    return f"GGUF file not found: {spec}"
                return unreadable_gguf(Path(spec).expanduser())
            else:
                load.check_folder(Path(spec).expanduser(), weights=weights)
        except UsageError as exc:
            return str(exc)
        return unreadable_weights(Path(spec).expanduser()) if weights and origin == "folder" else None
    if hub.cached_file(spec, "config.json") or hub.cached_file(spec, "tokenizer_config.json"):
        return None
    why = probe(spec, "model")
    return f"hub model {spec}: {why}" if why else None


def unreadable_weights(folder: Path) -> str | None:
    """A safetensors file whose header does not parse (a truncated download, another format renamed) is named
    here, not by a loader traceback after the run has started."""
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with path.open("rb") as fh:
                size = int.from_bytes(fh.read(8), "little")
                if not 0 < size <= path.stat().st_size - 8:
                    raise ValueError(size)
                json.loads(fh.read(size))
        except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return f"{path} is not a readable safetensors file (its header does not parse); re-download or re-save it"
    return None


def unreadable_gguf(path: Path) -> str | None:
    """A GGUF file cut short or not GGUF at all is named here, not by a 50-line traceback from the converter. Its
    header and tensor table are read (memory-mapped: no weights are loaded)."""
    try:
        from gguf import GGUFReader

        fields = GGUFReader(str(path)).fields
    except Exception:  # noqa: BLE001 - struct.error, ValueError, KeyError...: any of them means unreadable
        return f"{path} is not a readable GGUF file (cut short, or not GGUF: its tensor table does not parse)"
    if "general.architecture" not in fields:
        return f"{path} is not a GGUF model file (its metadata names no general.architecture)"
    return None


def _data_problem(source: str, probe, marker: str) -> str | None:
    """A hub data set that cannot be reached, a folder that is not there or lacks the benchmark's `marker` file."""
    if source == "synthetic":
        return None
    if source.startswith("hf:"):
        dataset = source[3:]
        if hub.dataset_cached(dataset):
            return None
        why = probe(dataset, "dataset")
        return f"hub data set {dataset}: {why}" if why else None
    folder = Path(source)
    if not folder.is_dir():
        return f"data folder not found: {folder}"
    if not any(folder.glob(marker)):
        return f"data folder {folder} has no {marker} file"
    return None


def needed_models(plan: Plan) -> list[tuple[str, str]]:
    """(role, spec) of every model and tokenizer this command loads that is not built here."""
    out: list[tuple[str, str]] = []
    roles: list[ModelPlan] = []
    if plan.command in ("prepare", "run", "sweep"):
        roles += [plan.target, plan.retain]
        if any(m.build for m in (plan.target, plan.retain)) and plan.base.origin != "built here":
            roles.append(plan.base)
    if plan.evaluated is not None:
        roles.append(plan.evaluated)
    ref = plan.reference
    built_here = {m.spec for m in (plan.target, plan.retain) if m.origin == "built here"}
    if ref is not None and ref.kind == "retain model" and ref.spec and not ref.cached and ref.spec not in built_here:
        roles.append(ModelPlan("reference", ref.spec, "", False))
    for mp in roles:
        if mp.origin != "built here" and mp.spec not in [spec for _, spec in out]:
            out.append((mp.role, mp.spec))
    tok = plan.tokenizer
    built_tok = any(tok == m.spec and m.origin == "built here" for m in (plan.target, plan.retain))
    if not built_tok and tok not in [s for _, s in out]:
        out.append(("tokenizer", tok))
    return out


def check(plan: Plan, *, extra_files: tuple[tuple[str, str], ...] = ()) -> Preflight:
    """Raise one UsageError naming every missing piece and its remedy; else say whether to go offline."""
    hub_down: dict = {}

    @functools.cache
    def probe(repo: str, repo_type: str) -> str | None:
        why = hub.probe(repo, repo_type)
        if (why and "reachable" in why) or hub.offline():
            hub_down["down"] = True
        return why

    problems: list[str] = []
    bench = plan.benchmark
    data_problem = _data_problem(plan.cfg.data.source, probe, bench.folder_marker)
    if data_problem:
        problems.append(
            f"{data_problem} -> give {bench.folder_kind}: --set data.source=PATH"
            f"{' or eval --data PATH' if plan.command == 'eval' else ''}; or data.source=synthetic"
        )
    for role, spec in needed_models(plan):
        why = _model_problem(spec, probe, weights=role != "tokenizer")
        if why:
            remedy = (
                f"download it where the hub is reachable (`hf download {spec}`) and copy the Hugging Face "
                f"cache here, or give a local folder: {OPTION[role]}PATH"
                if load.looks_like_hub_id(spec)
                else f"give an existing model folder, .gguf file or hub id: {OPTION[role]}..."
            )
            if role == "reference":
                remedy += ", --retain-logs TOFU_EVAL.json, or --no-reference"
            problems.append(f"{role if role == 'tokenizer' else role + ' model'}: {why} -> {remedy}")
    for what, path in extra_files:
        if not Path(path).is_file():
            problems.append(f"{what} file not found: {path} (expected a TOFU_EVAL.json)")
    if not problems:
        problem = _split_problem(plan) or _layer_problem(plan)
        if problem:
            raise UsageError(problem)
    if len(problems) == 1:
        raise UsageError(f"missing: {problems[0]}")
    if problems:
        raise UsageError(
            f"{len(problems)} pieces are missing (nothing was run):\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return Preflight((), bool(hub_down) and not hub.offline())


def _split_problem(plan: Plan) -> str | None:
    """The benchmark's word on whether its source serves the experiment's splits, before any model is built or
    loaded."""
    return plan.benchmark.check_data(plan.cfg, lambda: plan.source)


def _layer_problem(plan: Plan) -> str | None:
    """RMU's method.layer against the layers of the model it will unlearn, read from a local config.json alone (the
    target's when it is built or a folder, else the base's, else the embedded settings). Hub and GGUF models are
    not opened here (no network, no conversion): their layer is checked once the models are prepared, before the run
    opens (experiment.load_inputs)."""
    hp = plan.cfg.unlearn.method_args
    if plan.command not in ("run", "sweep") or not isinstance(hp.get("layer"), int):
        return None
    from unlearn_lab.unlearn import resolve_layer  # here: `eval` and every other run need not import the methods

    trust = plan.cfg.model.trust_remote_code
    layers = None
    for model in (plan.target, plan.base):
        if model.cached and model.origin in ("built here", "folder"):
            layers = load.model_config(model.spec, trust_remote_code=trust).num_hidden_layers
            break
    if layers is None and plan.cfg.model.base == "embedded":
        layers = plan.cfg.model.tiny.num_layers
    if layers is None:
        return None
    try:
        resolve_layer(dict(hp), layers)
    except UsageError as exc:
        return str(exc)
    return None


def unwritable(folder: Path) -> str | None:
    """Why `folder` (to be created, with what it holds) cannot be written, or None; creates nothing."""
    for existing in (folder, *folder.parents):
        if existing.exists():
            if not existing.is_dir():
                return f"{existing} is a file, not a folder"
            if not os.access(existing, os.W_OK | os.X_OK):
                return f"{existing} is not writable"
            return None
    return None


def check_outputs(plan: Plan, outputs: tuple[tuple[str, Path], ...]) -> None:
    """Every folder the command will write (its `outputs`, the model cache where it builds a model) can be
    written: one usage error naming the first that cannot, before anything is built, loaded or tracked."""
    if any(m.build for m in (plan.base, plan.target, plan.retain)):
        outputs = (*outputs, ("the model cache ($UNLEARN_LAB_CACHE)", load.cache_root()))
    for what, folder in outputs:
        why = unwritable(Path(folder).expanduser())
        if why:
            raise UsageError(f"cannot write {what} to {folder}: {why}; accepted: a folder that can be created there")


def tokenizer_notes(plan: Plan) -> tuple[str, ...]:
    """How prompts will look for this tokenizer (no chat template -> the plain format; no pad token -> eos),
    said once, before anything runs. A tokenizer that is not there yet (built by prepare) is the embedded one."""
    from unlearn_lab.data.prompts import uses_chat_template

    spec = plan.tokenizer
    built = [m for m in (plan.target, plan.retain) if m.spec == spec and m.origin == "built here"]
    if built and not built[0].cached:
        return ()
    try:
        tok = load.load_tokenizer(spec, trust_remote_code=plan.cfg.model.trust_remote_code, pad_fallback=False)
        chat = uses_chat_template(tok, plan.cfg.prompt)
    except Exception:  # noqa: BLE001 - reported by the preflight or the loader
        return ()
    notes = []
    if not chat:
        notes.append("prompt format: plain 'Question: ...\\nAnswer: ...' (the tokenizer has no chat template)")
    if tok.pad_token_id is None:
        notes.append(f"padding with eos {tok.eos_token!r} (the tokenizer has no pad token)")
    return tuple(notes)


def go_offline() -> None:
    """The hub is unreachable and everything needed is cached: let the libraries read the cache without asking
    the network first (set once, at the command's edge)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
