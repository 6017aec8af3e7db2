"""PDU: primal-dual unlearning with a logit-margin flattening forget loss (spec §4.1).

Paper: Taha Entesari, Arman Hatami, Rinat Khaziev, Anil Ramakrishna, Mahyar Fazlyab, "Constrained Entropic
Unlearning: A Primal-Dual Framework for Large Language Models", arXiv:2506.05314.

A = supervised positions, UNSHIFTED (the logits *at* the answer and eot positions, a reference artefact, spec §9).

    L_f = mean_{t∈A} (max_v z_{t,v} − mean_v z_{t,v})²
    L_r = NLL(retain)            (or KL via retain_loss_type)
    L   = γ·L_f + λ·(L_r − ε)     ε = retain_loss_eps

The dual variable λ lives in state["lam"]: `init_state` sets it to α; `update_state` runs after every loss call
(micro-batch) and, once epoch ≥ dual_warmup_epochs, applies λ ← max(0, λ + η·(L_r − ε)). `epoch` is the number of
epochs completed so far (fractional), so with warm-up 5 the updates start with the 6th epoch, as in the reference's
end-of-epoch callback. Only the reference's "step" update mode is implemented; η = 0 disables the dual ascent.
Defaults: ε = 0.3 (community TOFU value; the reference requires it), η = 1, warm-up 5 epochs, γ = 1, α = 1.
"""

from __future__ import annotations

from typing import Literal

import torch

from .base import NON_NEGATIVE, Features, LossOutput
from .common import IGNORE, need, retain_loss

PAPER = (
    "Entesari, Hatami, Khaziev, Ramakrishna, Fazlyab. Constrained Entropic Unlearning: A Primal-Dual Framework for "
    "Large Language Models. arXiv:2506.05314"
)


def init_state(hyperparams: dict, *, hidden_size: int, generator: torch.Generator) -> dict:
    return {"lam": float(hyperparams["alpha"])}


def update_state(state: dict, output: LossOutput, hyperparams: dict, *, epoch: float) -> dict:
    if epoch < hyperparams["dual_warmup_epochs"]:
        return state
    if output.retain_loss is None:
        raise ValueError("PDU's dual update needs the retain loss, but the loss output has none")
    violation = float(output.retain_loss.detach()) - hyperparams["retain_loss_eps"]
    return {**state, "lam": max(0.0, state["lam"] + hyperparams["eta"] * violation)}


# a loss level, the dual variable's step size and a number of epochs
BOUNDS = {"retain_loss_eps": NON_NEGATIVE, "eta": NON_NEGATIVE, "dual_warmup_epochs": NON_NEGATIVE}


def loss(
    features: Features,
    state: dict,
    *,
    retain_loss_eps: float = 0.3,
    eta: float = 1.0,
    dual_warmup_epochs: float = 5.0,
    alpha: float = 1.0,
    gamma: float = 1.0,
    retain_loss_type: Literal["NLL", "KL"] = "NLL",
) -> LossOutput:
    f = features.forget
    z = f.logits[f.labels != IGNORE].float()  # (N, V), unshifted positions
    margin = z.max(dim=-1).values - z.mean(dim=-1)
    forget = margin.pow(2).sum() / max(margin.numel(), 1)
    retain = retain_loss(need(features.retain, "retain", "PDU"), retain_loss_type)
    lam = state.get("lam", alpha)  # init_state puts α here; the fallback is the same value
    return LossOutput(loss=gamma * forget + lam * (retain - retain_loss_eps), forget_loss=forget, retain_loss=retain)
