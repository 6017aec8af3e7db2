"""What the processes of one `torchrun` / `accelerate launch` must agree on, in one place.

Every rank runs the same loop; a collective (DDP's gradient all-reduce, a barrier) waits until every rank reaches
it. So each rank must run the same number of micro-batches (`shard`), and every decision that ends or skips work
must be the same on every rank: a divergence seen on one rank (`first_flagged`), early stopping decided by the main
process's evaluation (`main_decides`). Work that only the main process does (the retain reference, per-epoch
evaluations, saving) is followed by an explicit barrier, so the others wait there (with the long timeout of
`runtime.dist_timeout_s`) rather than inside a gradient all-reduce.

With one process every function returns its input unchanged and runs no collective: single-process numbers are
untouched. `accelerator` is an accelerate `Accelerator` (or None: one process).
"""

from __future__ import annotations

from typing import Any


def processes(accelerator: Any) -> int:
    return accelerator.num_processes if accelerator is not None else 1


def shard(order: list[int], rank: int, count: int) -> list[int]:
    """Rank `rank`'s items of one epoch's `order` among `count` processes, as torch's DistributedSampler deals
    them: the order padded to a multiple of `count` by repeating its first items, then every `count`-th item
    from position `rank`. Every rank gets ceil(n / count) items, so every rank runs the same number of
    micro-batches (ceil(ceil(n / count) / batch) = `Schedule.of`'s count) and reaches each all-reduce. With one
    process the order itself."""
    if count <= 1 or not order:
        return order
    padded = order + [order[i % len(order)] for i in range((-len(order)) % count)]
    return padded[rank::count]


def first_flagged(accelerator: Any, pair: tuple[float, float] | None) -> tuple[float, float] | None:
    """On every rank: the `pair` of the lowest rank that has one (None where no rank has). One all-gather of three
    numbers per rank; with one process `pair` itself.

    Divergence uses it: a rank's non-finite loss and its epoch stop every rank at the same step, with the same
    message (the tracked one is the main process's, whichever rank saw it)."""
    if processes(accelerator) <= 1:
        return pair
    import torch

    row = [1.0, *pair] if pair is not None else [0.0, 0.0, 0.0]
    rows = accelerator.gather(torch.tensor(row, dtype=torch.float64, device=accelerator.device)).view(-1, 3)
    flagged = [r for r in rows.tolist() if r[0] == 1.0]
    return (flagged[0][1], flagged[0][2]) if flagged else None


def main_decides(accelerator: Any, decision: bool) -> bool:
    """The main process's `decision` on every rank. The others wait at a barrier first: the main process may have
    spent a long time deciding (an evaluation), and they must not wait for it inside a gradient all-reduce."""
    if processes(accelerator) <= 1:
        return decision
    import torch
    from accelerate.utils import broadcast

    accelerator.wait_for_everyone()
    value = torch.tensor([1.0 if decision else 0.0], device=accelerator.device)
    return bool(broadcast(value, from_process=0).item() > 0)


def wait_for_main(accelerator: Any) -> None:
    """A barrier after work only the main process does (see the module docstring); nothing with one process."""
    if processes(accelerator) > 1:
        accelerator.wait_for_everyone()
