"""Training-loop overhead: unlearn-lab's loop vs a bare PyTorch loop on the same batches, in one process.

Both run gradient ascent on the embedded default's target model with the same micro-batches, AdamW and
gradient accumulation. Ours adds what a tracked run needs: the method registry and features step,
accelerate, the linear schedule, the grad-norm computation, finiteness checks and per-step logging.
Rounds alternate between the two to spread machine noise; the medians' ratio is printed.

    .venv/bin/python benchmarks/bench_train.py [--steps 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from unlearn_lab.commands import make_plan
from unlearn_lab.config import TrainingConfig, load_experiment
from unlearn_lab.methods import get_method
from unlearn_lab.models import load
from unlearn_lab.models.prepare import prepare
from unlearn_lab.runtime import configure_threads, make_accelerator
from unlearn_lab.train import fit
from unlearn_lab.unlearn import FeatureMaker


def bare_loop(model, batches, accum, lr):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    for i, batch in enumerate(batches):
        f = batch["forget"]
        loss = -model(input_ids=f["input_ids"], attention_mask=f["attention_mask"], labels=f["labels"]).loss
        (loss / accum).backward()
        if (i + 1) % accum == 0:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)


def our_loop(model, batches, accum, lr, batch_size):
    spec = get_method("GradAscent")
    features = FeatureMaker(model, spec, {})
    accelerator = make_accelerator()
    logged = []

    def loss_fn(m, batch, epoch):
        with accelerator.autocast():
            return spec.loss(features(m, batch), {})

    settings = TrainingConfig(
        lr=lr,
        epochs=1,
        batch_size=batch_size,
        grad_accum=accum,
        weight_decay=0.01,
        warmup_epochs=0.0,
        max_grad_norm=None,
        seed=0,
    )
    fit(
        model,
        settings=settings,
        n_items=len(batches) * batch_size,
        epoch_batches=lambda e: batches,
        loss_fn=loss_fn,
        accelerator=accelerator,
        on_step=logged.append,
        progress=False,
    )
    return len(logged)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    threads = configure_threads()
    cfg = load_experiment(None)
    plan = make_plan("run", cfg, device="cpu")
    prepare(plan)
    tok = load.load_tokenizer(plan.tokenizer)
    source = plan.source
    spec = get_method("GradAscent")
    data = plan.benchmark.unlearn_data(plan.cfg, source, tok, spec)
    u = cfg.unlearn
    gen = torch.Generator().manual_seed(0)
    batches = []
    while len(batches) < args.steps * u.grad_accum:
        batches += list(data.epoch_batches(u.batch_size, gen, spec))
    batches = batches[: args.steps * u.grad_accum]
    times = {"bare": [], "unlearn-lab": []}
    for _ in range(args.rounds):
        for name in ("bare", "unlearn-lab"):
            model = load.load_model(plan.target.spec)
            start = time.perf_counter()
            if name == "bare":
                bare_loop(model, batches, u.grad_accum, u.lr)
            else:
                assert our_loop(model, batches, u.grad_accum, u.lr, u.batch_size) == args.steps
            times[name].append((time.perf_counter() - start) / args.steps)
    bare, ours = statistics.median(times["bare"]), statistics.median(times["unlearn-lab"])
    print(
        f"GradAscent on the embedded target model, batch {u.batch_size} x accum {u.grad_accum}, {args.steps} steps, "
        f"{args.rounds} rounds, {threads} torch threads"
    )
    print(
        f"bare PyTorch loop: {bare * 1000:.1f} ms/step   unlearn-lab loop: {ours * 1000:.1f} ms/step   "
        f"ratio: {ours / bare:.3f}"
    )


if __name__ == "__main__":
    main()
