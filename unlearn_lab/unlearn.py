"""Unlearning on top of the shared loop: the benchmark's forget-anchored batches (data/unlearning.py) -> features ->
a method's pure loss. `FeatureMaker` runs the model (and the frozen reference, only on the sides the method reads)
and packs the outputs; the method's loss does the math.
"""

from __future__ import annotations

import copy

import torch

from unlearn_lab.data.unlearning import UnlearnData
from unlearn_lab.errors import UsageError
from unlearn_lab.methods import Features, MethodSpec, Side, reference_sides

__all__ = ["FeatureMaker", "UnlearnData", "resolve_layer"]


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
