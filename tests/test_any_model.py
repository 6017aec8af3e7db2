"""Any causal LM: a tiny GPT-2-architecture model whose tokenizer has neither a chat template nor a pad token runs
through `eval` and `run`; the run's saved model, evaluated by `eval`, reproduces the run's nested metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import TINY, evaluate, make_plan
from unlearn_lab.config import load_experiment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory, synthetic):
    """A 2-layer GPT-2 with a byte-level BPE tokenizer trained on the world: eos only (no pad), no chat template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    texts = [qa["question"] + " " + qa["answer"] for a in synthetic.world["authors"] for qa in a]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    assert tok.pad_token is None and not getattr(tok, "chat_template", None)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=256,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    folder = tmp_path_factory.mktemp("gpt2")
    GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def run_cli(args, cwd):
    env = {**os.environ, "MLFLOW_TRACKING_URI": "", "UNLEARN_LAB_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "unlearn_lab.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_gpt2_without_template_or_pad_token_through_eval(gpt2_folder, tmp_path):
    sets = [x for item in TINY for x in ("--set", item)]
    done = run_cli(["eval", "--model", str(gpt2_folder), "--no-reference", *sets], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    err = done.stderr
    assert err.count("prompt format: plain") == 1 and err.count("padding with eos") == 1  # said once
    assert "skipping forget_quality, privleak" in err
    summary = json.loads(next((tmp_path / "saves" / "eval").glob("*/TOFU_SUMMARY.json")).read_text())
    assert set(summary) == {
        "forget_truth_ratio",
        "forget_Q_A_Prob",
        "forget_Q_A_ROUGE",
        "model_utility",
        "extraction_strength",
    }
    assert 0 < summary["forget_Q_A_Prob"] < 1


def test_gpt2_through_run(gpt2_folder, tmp_path):
    sets = [
        x
        for item in [*TINY, f"model.target={gpt2_folder}", f"model.retain={gpt2_folder}", "unlearn.epochs=1"]
        for x in ("--set", item)
    ]
    done = run_cli(["run", "--method", "GradDiff", *sets], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "prompt format: plain" in done.stderr
    saved = next((tmp_path / "saves" / "unlearn").iterdir())
    assert saved.name.startswith(f"{gpt2_folder.name}_GradDiff_forget10_")
    summary = json.loads((tmp_path / "saves" / "eval" / saved.name / "TOFU_SUMMARY.json").read_text())
    assert 0 < summary["forget_quality"] <= 1


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_eval_of_the_saved_model_reproduces_the_run(tiny_cfg, prepared, tmp_path, dtype):
    """`unlearn-lab eval --model saves/unlearn/<task>` gives exactly the run's nested forget_quality, model_utility
    and privleak: one evaluation dtype, one device, one reference for run, eval and the reference alike."""
    from unlearn_lab.experiment import RunOptions, run_experiment
    from unlearn_lab.tracking.memory import MemoryTracker

    cfg = load_experiment(None, [*TINY, "unlearn.lr=1e-3", "unlearn.epochs=1", f"model.dtype={dtype}"])
    plan = make_plan(cfg, "run", saves=tmp_path)
    tracker = MemoryTracker()
    result = run_experiment(plan, tracker, RunOptions(progress=False), log=lambda _: None)
    again = evaluate(cfg, str(result.model_dir))
    for name in ("forget_quality", "model_utility", "privleak", "forget_Q_A_Prob", "forget_truth_ratio"):
        assert again.summary[name] == result.summary[name], name
    nested = [r for r in tracker.runs.values() if r.tags.get("kind") == "eval"]
    assert nested and nested[-1].metrics["forget_quality"][-1][1] == again.summary["forget_quality"]
