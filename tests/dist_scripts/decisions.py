"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2` (gloo, CPU): the shared loop's
multi-process agreements on a two-parameter model, one JSON line per case in $DIST_RESULTS/rank<r>.jsonl.

- "sync": which micro-batches' backwards all-reduced gradients (a DDP communication hook records the micro-batch
  it fires in), with batch 1 x accumulation 3 over 7 items per rank;
- "stop": rank 0's on_epoch_end asks to stop after epoch 1 (the other rank says nothing): the steps each rank ran;
- "diverge": rank 1's loss is NaN at its 3rd micro-batch (step 1 of windows of 2): what each rank raised.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout's unlearn_lab

from unlearn_lab.config import TrainingConfig
from unlearn_lab.runtime import make_accelerator
from unlearn_lab.train import DivergedError, fit


def record(rank: int, result: dict) -> None:
    """One JSON line in this rank's own file (ranks printing to one pipe interleave their lines)."""
    with open(Path(os.environ["DIST_RESULTS"]) / f"rank{rank}.jsonl", "a") as fh:
        fh.write(json.dumps(result) + "\n")


class Out:
    def __init__(self, loss):
        self.loss = loss


def settings(epochs: int, accum: int) -> TrainingConfig:
    return TrainingConfig(
        lr=0.1, epochs=epochs, batch_size=1, grad_accum=accum, weight_decay=0.0, warmup_epochs=0.0, seed=0
    )


class Probe:
    """The current case's micro-batch count and the micro-batches whose backward all-reduced (a DDP communication
    hook, registered once on each model accelerate prepares)."""

    def __init__(self, acc):
        self.micro, self.fired = 0, []
        prepare = acc.prepare_model

        def hook(state, bucket):
            self.fired.append(self.micro)
            return default_hooks.allreduce_hook(state, bucket)

        def prepare_model(model, **kw):
            wrapped = prepare(model, **kw)
            wrapped.register_comm_hook(None, hook)
            return wrapped

        acc.prepare_model = prepare_model


def run_case(acc, probe: Probe, name: str, s: TrainingConfig, n_items: int, loss_at, on_epoch_end=None) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    probe.micro, probe.fired = 0, []
    steps: list[int] = []

    def loss_fn(m, batch, epoch):
        probe.micro += 1
        return Out(loss_at(m, batch, probe.micro))

    result: dict = {"case": name, "rank": acc.process_index}
    try:
        fit(
            model,
            settings=s,
            n_items=n_items,
            epoch_batches=lambda epoch: [torch.ones(1, 2)] * (n_items // acc.num_processes),
            loss_fn=loss_fn,
            accelerator=acc,
            on_step=lambda log: steps.append(log.step),
            on_epoch_end=on_epoch_end,
            progress=False,
        )
    except DivergedError as exc:
        result["diverged"] = {"step": exc.step, "value": str(exc.value)}
    result.update(micro=probe.micro, fired=probe.fired, steps=steps)
    record(acc.process_index, result)


def main() -> None:
    acc = make_accelerator("cpu")
    probe, rank = Probe(acc), acc.process_index
    plain = lambda m, b, k: m(b).sum()
    run_case(acc, probe, "sync", settings(1, 3), 14, plain)  # 7 micro-batches per rank: windows end at 3 and 6
    stop_first = lambda epoch, step: rank == 0 and epoch == 1
    run_case(acc, probe, "stop", settings(3, 1), 4, plain, on_epoch_end=stop_first)
    nan_on_1 = lambda m, b, k: m(b).sum() * (float("nan") if rank == 1 and k == 3 else 1.0)
    run_case(acc, probe, "diverge", settings(2, 2), 8, nan_on_1)


if __name__ == "__main__":
    main()
