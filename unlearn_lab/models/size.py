"""Parameter counts without loading weights: safetensors headers, GGUF tensor tables, or a config built on the
meta device. The plan reports them and the estimates use them."""

from __future__ import annotations

import json
import math
from pathlib import Path

from unlearn_lab.models import load


def safetensors_params(folder: Path) -> int | None:
    """Parameter count from the safetensors headers (8-byte length + JSON), without reading any weight."""
    total, files = 0, sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    for f in files:
        try:
            with f.open("rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                if not 0 < n <= f.stat().st_size - 8:  # not a safetensors header length
                    return None
                header = json.loads(fh.read(n))
        except (OSError, ValueError):  # a corrupt file: the preflight reports it in one line
            return None
        total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return total


def gguf_params(path: Path) -> int | None:
    try:
        from gguf import GGUFReader

        return int(sum(int(t.n_elements) for t in GGUFReader(str(path)).tensors))
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the loader, not here
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
    except Exception:  # noqa: BLE001 - a size is an estimate: unknown architectures just have none
        return None


def tiny_params(cfg) -> int:
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
        except Exception:  # noqa: BLE001 - the wheel is not installed: the preflight says so
            return None
    if spec.endswith(".gguf"):
        return gguf_params(path) if path.is_file() else None
    if path.is_dir():
        return safetensors_params(path) or (
            config_params(path / "config.json") if (path / "config.json").is_file() else None
        )
    config = cached_file(spec, "config.json")
    return config_params(config) if config else None
