"""Unlearning on top of the shared loop: forget-anchored batches -> features -> a method's pure loss.

Each micro-batch pairs forget rows (shuffled with an explicit generator) with retain rows drawn
uniformly with replacement, anew every epoch (spec 4.0), and, for IdkDPO, an "I don't know" answer
per forget row. `features` runs the model (and the frozen reference, only for methods that need
one) and packs the outputs; the method's loss does the math.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from unlearn_lab.data import prompts
from unlearn_lab.data.batching import chunks, epoch_order, retain_partners
from unlearn_lab.distributed import shard
from unlearn_lab.errors import UsageError
from unlearn_lab.methods import Features, MethodSpec, Side, reference_sides


@dataclass(frozen=True)
class UnlearnData:
    forget: list[prompts.Encoded]
    retain: list[prompts.Encoded]
    alternate: Callable[[int, int], prompts.Encoded] | None  # (forget row, idk answer) -> encoded, for IdkDPO
    n_alternate: int
    pad: int
    reference_mask: bool

    @classmethod
    def build(cls, tokenizer, pcfg, forget: list[dict], retain: list[dict], idk: list[dict] | None):
        enc = lambda q, a: prompts.encode_qa(tokenizer, q, a, pcfg)
        alternate = None
        if idk:
            alternate = functools.lru_cache(maxsize=None)(lambda i, j: enc(forget[i]["question"], idk[j]["answer"]))
        return cls(
            [enc(r["question"], r["answer"]) for r in forget],
            [enc(r["question"], r["answer"]) for r in retain],
            alternate,
            len(idk or ()),
            prompts.pad_id(tokenizer, pcfg),
            pcfg.reference_attention_mask,
        )

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


def resolve_layer(hp: dict, num_layers: int) -> dict:
    """RMU's layer None -> num_layers // 2 - 1 (the reference's layer 7 of Llama-3.2-1B's 16); a layer the model
    does not have is a one-line error."""
    if "layer" not in hp:
        return hp
    if hp["layer"] is None:
        return {**hp, "layer": num_layers // 2 - 1}
    if hp["layer"] >= num_layers:
        raise UsageError(
            f"method.layer {hp['layer']} is past the model's {num_layers} layers; accepted: 0..{num_layers - 1}, "
            f"or null for the middle layer ({num_layers // 2 - 1})"
        )
    return hp


class FeatureMaker:
    """Runs the current model, and a frozen copy of the start model on the sides whose reference outputs the
    method's loss reads (`methods.reference_sides`: NPO's forget side, IdkDPO's forget and alternate sides, RMU's
    retain side, every retain side with a KL retain term); no copy at all when it reads none."""

    def __init__(self, model, spec: MethodSpec, hp: dict):
        self.spec, self.hp = spec, hp
        self.sides = reference_sides(spec, hp)
        self.reference = None
        if self.sides:
            self.reference = copy.deepcopy(model).eval()
            for p in self.reference.parameters():
                p.requires_grad_(False)

    def _run(self, model, batch: dict, *, with_ref: bool) -> Side:
        layer = self.hp.get("layer") if self.spec.needs_hidden else None
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        out = model(**inputs, output_hidden_states=layer is not None)
        ref_logits = ref_hidden = None
        if with_ref and self.reference is not None:
            with torch.no_grad():
                ref = self.reference(**inputs, output_hidden_states=layer is not None)
            ref_logits = ref.logits
            ref_hidden = ref.hidden_states[layer + 1] if layer is not None else None
        hidden = out.hidden_states[layer + 1] if layer is not None else None
        return Side(out.logits, batch["labels"], batch["attention_mask"], ref_logits, hidden, ref_hidden)

    def __call__(self, model, batch: dict) -> Features:
        device = next(model.parameters()).device
        batch = {k: {n: t.to(device) for n, t in v.items()} for k, v in batch.items()}
        run = lambda side: self._run(model, batch[side], with_ref=side in self.sides) if side in batch else None
        forget = run("forget")
        assert forget is not None, "every micro-batch has a forget side"
        return Features(forget=forget, retain=run("retain"), alternate=run("alternate"))
