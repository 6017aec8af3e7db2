"""GPU check: a Llama-3.2-1B-shaped model (random weights) through prepare -> run -> eval, in fp32 and in bf16.

    python3 benchmarks/gpu_check.py [--out FILE]       # on a GPU machine, from the repository root
    python3 benchmarks/gpu_check.py --dry-run          # the same code path on the CPU with tiny shapes (CI)

Meant for the `device` tool's lent GPU machine as it is (docs/real-models.md, "GPU check"): it needs torch,
transformers and accelerate, which that image has, plus rouge-score and nltk, which it lacks and which
scripts/device_wheels.sh packs as pure-Python wheels. Run as a file, it imports the checkout's unlearn_lab (the
repository root is put first on sys.path below; nothing is installed); it tracks in memory (no MLflow), never
reaches the hub, and writes everything (the random base model, the model cache, the saves) into one temporary
folder that it deletes at the end, also after a failure.

The model: Llama-3.2-1B's shapes (16 layers, hidden 2048, MLP 8192, GQA 32/8 heads, tied embeddings) and its
128256-token vocabulary, so every forward, loss and generation step handles full-vocabulary logits as the real
model does; its inputs come from the embedded world's small BPE tokenizer (token ids below 1024; the model may
generate any id, decoded as nothing). Stages: prepare fine-tunes the target (full) and retain models from it; then
for each evaluation dtype (float32, bfloat16): the retain reference, run (NPO + the default evaluation) and eval of
the saved model, which must reproduce the run's numbers exactly. Per stage: wall time, and on a GPU the peak
allocated and reserved memory (both reset between stages, after the previous stage's memory is released) and what
is still allocated once the stage has returned (a stage that frees everything leaves ~0 behind).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `python3 benchmarks/gpu_check.py` imports this checkout's unlearn_lab

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

SHAPES = {  # Llama-3.2-1B's config.json, and a tiny model for --dry-run (its vocabulary too exceeds the tokenizer's)
    "llama-3.2-1b": {
        "vocab_size": 128256,
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "rope_theta": 500000.0,
    },
    "tiny": {
        "vocab_size": 4096,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
}
COMMON = [  # the embedded world (20 authors; forget10 = 40 QAs), the reference recipe's lr, a few steps each
    "finetune.epochs=1",
    "finetune.lr=1e-5",
    "finetune.grad_accum=2",
    "finetune.paraphrase_augment=false",
    "finetune.general_replay=false",
    "unlearn.method=NPO",
    "unlearn.lr=1e-5",
]
SETTINGS = {
    "llama-3.2-1b": [
        *COMMON,
        "finetune.batch_size=8",
        "unlearn.epochs=2",
        "eval.batch_size=32",
        "eval.max_new_tokens=32",  # a random model never stops early: every generation runs to this budget
    ],
    "tiny": [*COMMON, "data.authors=10", "finetune.batch_size=16", "unlearn.epochs=1", "eval.max_new_tokens=4"],
}
DTYPES = ("float32", "bfloat16")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU: the same code path, seconds")
    parser.add_argument("--device", default=None, help="cuda (default) or cpu (--dry-run's default)")
    parser.add_argument("--out", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (debugging)")
    args = parser.parse_args()
    device = args.device or ("cpu" if args.dry_run else "cuda")
    shape = "tiny" if args.dry_run else "llama-3.2-1b"
    if device != "cuda" and not args.dry_run:
        raise SystemExit("a 1B model on the CPU takes hours: use --dry-run there, or a GPU (--device cuda)")
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    os.environ["UNLEARN_LAB_CACHE"] = str(work / "cache")  # a private model cache: nothing outside `work`
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only: the lent machines reach no hub
    try:
        report = check(shape, device, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(table(report), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    if not all(report["parity"].values()):
        raise SystemExit("eval did not reproduce the run's numbers (see the parity lines)")


def check(shape: str, device: str, work: Path) -> dict[str, Any]:
    """The stages, in order; returns every figure (also printed as each stage ends)."""
    import torch

    import unlearn_lab
    from unlearn_lab.config import load_experiment
    from unlearn_lab.runtime import configure_threads

    configure_threads()
    stages: list[dict[str, Any]] = []
    measure = lambda name, fn: measured(stages, name, fn, device)
    base = measure("random base model", lambda: random_base(shape, device, work / "base"))
    cfg = load_experiment(None, [*SETTINGS[shape], f"model.base={base}"])
    plan = resolve_plan("prepare", cfg, device, work)
    measure("prepare (fine-tune target + retain)", lambda: prepare_models(plan))
    parity = {}
    for dtype in DTYPES:
        typed = load_experiment(None, [*SETTINGS[shape], f"model.base={base}", f"model.dtype={dtype}"])
        run_plan = resolve_plan("run", typed, device, work)
        measure(f"retain reference ({dtype})", lambda p=run_plan: reference(p))
        result = measure(f"run: NPO + evaluation ({dtype})", lambda p=run_plan: run(p))
        eval_plan = resolve_plan("eval", typed, device, work, evaluated=str(result.model_dir))
        again = measure(f"eval of the saved model ({dtype})", lambda p=eval_plan: evaluate(p))
        parity[dtype] = same_numbers(result.summary, again.summary)
        print(f"eval reproduces the run ({dtype}): {parity[dtype]}", flush=True)
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "none (CPU)"
    package = str(Path(unlearn_lab.__file__).resolve().parent)
    return {"shape": shape, "device": device, "gpu": gpu, "torch": torch.__version__, "unlearn_lab": package} | {
        "stages": stages,
        "parity": parity,
    }


def measured(stages: list[dict[str, Any]], name: str, fn: Callable[[], Any], device: str) -> Any:
    """Run one stage: memory released and peaks reset first; wall time, peaks and what it left allocated after."""
    import torch

    from unlearn_lab.runtime import release_memory

    cuda = device == "cuda"
    release_memory()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    gb = lambda n: round(n / 2**30, 2)
    row: dict[str, Any] = {"stage": name, "seconds": round(seconds, 1)}
    if cuda:
        row.update(peak_allocated_gib=gb(torch.cuda.max_memory_allocated()))
        row.update(peak_reserved_gib=gb(torch.cuda.max_memory_reserved()))
        release_memory()  # the stage's result object may hold tensors only until here (a RunResult holds none)
        row.update(allocated_after_gib=gb(torch.cuda.memory_allocated()))
    stages.append(row)
    print(" | ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    return out


def random_base(shape: str, device: str, out: Path) -> str:
    """The embedded world's tokenizer and a randomly initialised Llama of `shape` (made on the device: a 1B model's
    initialisation on the CPU alone takes tens of seconds), saved as a model folder."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from unlearn_lab.data.tofu import SyntheticSource
    from unlearn_lab.models import load, tiny

    world = SyntheticSource(20).world
    texts = [t for a in world["authors"] + world["holdout"] for qa in a for t in (qa["question"], qa["answer"])]
    tok = tiny.train_tokenizer(texts + tiny.template_corpus("You are a helpful assistant.", "10 Apr 2025"), 1024)
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=2048, tie_word_embeddings=True, **ids)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(do_sample=False, **ids)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, vocabulary {config.vocab_size}")
    # saved in bf16 (random weights lose nothing; half the bytes to write and read); prepare loads it in fp32
    return str(load.save_model(model.to(torch.bfloat16), tok, out))


def resolve_plan(command: str, cfg, device: str, work: Path, **kw):
    from unlearn_lab.plan import resolve

    return resolve(command, cfg, device=device, threads=1, saves=work / "saves", **kw)


def prepare_models(plan) -> None:
    from unlearn_lab.models.prepare import prepare

    built = prepare(plan, log=print).built
    assert set(built) == {"target", "retain"}, built


def reference(plan) -> None:
    from unlearn_lab.evaluation import eval_data, reference_entries

    reference_entries(plan, eval_data(plan), log=print, progress=False)


def run(plan):
    from unlearn_lab.experiment import RunOptions, run_experiment
    from unlearn_lab.tracking.memory import MemoryTracker

    return run_experiment(plan, MemoryTracker(), RunOptions(progress=False), log=print)


def evaluate(plan):
    """`unlearn-lab eval --model saves/unlearn/<task>` in this process: plan, reference (cached), load, score."""
    from unlearn_lab.evaluation import eval_data, evaluate_model, load_for_eval, reference_entries

    data = eval_data(plan)
    ref = reference_entries(plan, data, log=print, progress=False)
    model, tokenizer = load_for_eval(plan, plan.evaluated_model.spec)
    return evaluate_model(plan, model, tokenizer, reference=ref, data=data, progress=False)


def same_numbers(a: dict, b: dict) -> bool:
    """Every metric equal, exactly (NaN equals NaN)."""
    both_nan = lambda x, y: isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)
    return a.keys() == b.keys() and all(a[k] == b[k] or both_nan(a[k], b[k]) for k in a)


def table(report: dict[str, Any]) -> str:
    """The figures as the markdown table docs/real-models.md shows."""
    gpu = report["device"] == "cuda"
    memory = " peak allocated (GiB) | peak reserved (GiB) | allocated after (GiB) |"
    head = "| stage | seconds |" + (memory if gpu else "")
    lines = [f"device: {report['gpu']}; torch {report['torch']}; shapes: {report['shape']}", head]
    lines.append("|---|---|" + ("---|---|---|" if gpu else ""))
    for s in report["stages"]:
        cells = [s["stage"], s["seconds"]]
        if gpu:
            cells += [s["peak_allocated_gib"], s["peak_reserved_gib"], s["allocated_after_gib"]]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += [f"eval reproduces the run ({dtype}): {ok}" for dtype, ok in report["parity"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
