"""GPU check: a 1B-parameter Llama (random weights) through prepare -> run -> eval on the accelerator.

    .venv/bin/python benchmarks/gpu_check.py [--epochs 1] [--method NPO] [--dtype bfloat16]

Builds a Llama-3.2-1B-shaped model (16 layers, hidden 2048, GQA 32/8 heads) over the embedded world's tokenizer,
then runs the project's own stages in this process on the plan's device: prepare fine-tunes the target and retain
models from it, run_experiment unlearns and evaluates, and eval re-scores the saved model. Prints the time and the
peak GPU memory of each stage, and whether eval reproduced the run's numbers. Meant for the `device` tool's lent GPU
(docs/real-models.md, "GPU check"); on a CPU it refuses to start (a 1B model there takes hours).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def peak_gb() -> float:
    return torch.cuda.max_memory_allocated() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="fine-tune epochs for target and retain")
    parser.add_argument("--method", default="NPO")
    parser.add_argument("--dtype", default="bfloat16", help="evaluation dtype")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check is for a GPU machine")

    from transformers import LlamaConfig, LlamaForCausalLM

    from unlearn_lab.commands import make_plan
    from unlearn_lab.config import load_experiment
    from unlearn_lab.data.tofu import SyntheticSource
    from unlearn_lab.evaluation import eval_data, evaluate_model, load_for_eval, reference_entries
    from unlearn_lab.experiment import RunOptions, run_experiment
    from unlearn_lab.models import load, tiny
    from unlearn_lab.models.prepare import prepare
    from unlearn_lab.tracking.memory import MemoryTracker

    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    world = SyntheticSource(20).world
    texts = [t for a in world["authors"] + world["holdout"] for qa in a for t in (qa["question"], qa["answer"])]
    tok = tiny.train_tokenizer(texts + tiny.template_corpus("You are a helpful assistant.", "10 Apr 2025"), 1024)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    base = load.save_model(model, tok, work / "llama-1b-random")
    del model
    print(f"model: {params / 1e9:.2f} B parameters (random weights) at {base}", flush=True)

    sets = [
        f"model.base={base}",
        f"model.dtype={args.dtype}",
        f"finetune.epochs={args.epochs}",
        "finetune.lr=1e-5",
        "finetune.batch_size=8",
        "finetune.grad_accum=2",
        "finetune.paraphrase_augment=false",
        "finetune.general_replay=false",
        f"unlearn.method={args.method}",
        "unlearn.lr=1e-5",
        "unlearn.epochs=2",
        "eval.batch_size=32",
        "eval.max_new_tokens=64",
    ]
    cfg = load_experiment(None, sets)
    rows = []

    def stage(name, fn):
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        rows.append((name, time.perf_counter() - start, peak_gb()))
        print(f"{name}: {rows[-1][1]:.1f} s, peak {rows[-1][2]:.1f} GB", flush=True)
        return out

    plan = make_plan("prepare", cfg, device="cuda")
    print(plan.describe(), flush=True)
    stage("prepare (fine-tune target + retain)", lambda: prepare(plan, log=print))
    run_plan = make_plan("run", cfg, device="cuda", saves=work / "saves")
    result = stage(
        f"run ({args.method} + default eval)",
        lambda: run_experiment(run_plan, MemoryTracker(), RunOptions(progress=False), log=print),
    )
    eval_plan = make_plan("eval", cfg, device="cuda", evaluated=str(result.model_dir))

    def evaluate():
        data = eval_data(eval_plan)
        reference = reference_entries(eval_plan, data, progress=False)
        model, tokenizer = load_for_eval(eval_plan, eval_plan.evaluated.spec)
        return evaluate_model(eval_plan, model, tokenizer, reference=reference, data=data, progress=False)

    again = stage("eval (saved model)", evaluate)
    same = all(again.summary[k] == result.summary[k] for k in ("forget_quality", "model_utility", "privleak"))
    print(f"device {torch.cuda.get_device_name(0)}; eval reproduces the run's numbers: {same}")
    print("| stage | seconds | peak GPU memory (GB) |\n|---|---|---|")
    for name, seconds, peak in rows:
        print(f"| {name} | {seconds:.1f} | {peak:.1f} |")


if __name__ == "__main__":
    main()
