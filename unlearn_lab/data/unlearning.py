"""Unlearning batches, whatever the benchmark: forget-anchored micro-batches from encoded items (spec 4.0).

Each micro-batch pairs forget rows (shuffled with an explicit generator) with retain rows drawn uniformly with
replacement, anew every epoch, and, for IdkDPO, an "I don't know" answer per forget row. The benchmark encodes the
items (TOFU: question-answer pairs in the chat template; MUSE: chunks of raw text); this module only orders, pairs,
shards and collates them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from unlearn_lab.data import prompts
from unlearn_lab.data.batching import chunks, epoch_order, retain_partners
from unlearn_lab.distributed import shard

if TYPE_CHECKING:
    from unlearn_lab.methods.base import MethodSpec


@dataclass(frozen=True)
class UnlearnData:
    """A benchmark's unlearning items, encoded once per setting: the forget rows, the retain rows their partners are
    drawn from, and (IdkDPO) "I don't know" alternates."""

    forget: list[prompts.Encoded]
    retain: list[prompts.Encoded]
    alternate: Callable[[int, int], prompts.Encoded] | None  # (forget row, idk answer) -> encoded, for IdkDPO
    n_alternate: int
    pad: int
    reference_mask: bool

    def collate(self, items):
        return prompts.collate(items, self.pad, reference_mask=self.reference_mask)

    def epoch_batches(
        self, batch_size: int, generator: torch.Generator, spec: MethodSpec, rank: int = 0, processes: int = 1
    ):
        """Micro-batches of one epoch: {"forget": ..., "retain": ..., "alternate": ...} tensors. Under several
        processes, this rank's share of the forget rows (`distributed.shard`); every rank draws the same order,
        partners and answers from its own copy of the generator, so the generators stay in step."""
        order = shard(epoch_order(len(self.forget), generator), rank, processes)
        partners = retain_partners(len(self.forget), len(self.retain), generator) if spec.needs_retain else None
        idk = (
            torch.randint(0, self.n_alternate, (len(self.forget),), generator=generator).tolist()
            if spec.needs_alternate
            else None
        )
        for idx in chunks(order, batch_size):
            batch = {"forget": self.collate([self.forget[i] for i in idx])}
            if partners is not None:
                batch["retain"] = self.collate([self.retain[partners[i]] for i in idx])
            if idk is not None and self.alternate is not None:
                alternate = self.alternate
                batch["alternate"] = self.collate([alternate(i, idk[i]) for i in idx])
            yield batch
