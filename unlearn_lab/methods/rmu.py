"""RMU: Representation Misdirection for Unlearning (spec §4.1).

Paper: Nathaniel Li, Alexander Pan, Anjali Gopal, Summer Yue, Daniel Berrios, Alice Gatti, et al., "The WMDP
Benchmark: Measuring and Reducing Malicious Use With Unlearning", ICML 2024, arXiv:2403.03218.

h = residual stream after decoder block `layer` (Side.hidden; with HF output_hidden_states that is
hidden_states[layer + 1], valid for every block but the last, whose entry has the final norm applied).
A = supervised positions, UNSHIFTED (labels ≠ −100: answer tokens + eot). u ~ U[0,1)^d, u/‖u‖, c = steering_coeff.

    MSE_A(h, g) = mean_b [ Σ_{t∈A_b} mean_d (h_{b,t,d} − g_{b,t,d})² / |A_b| ]
    L_f = MSE_A(h_forget, c·u)
    L_r = MSE_A(h_retain, h_ref_retain)   ("EMBED_DIFF"; "NLL" and "KL" are also accepted)
    L   = γ·L_f + α·L_r

Defaults (TOFU): steering_coeff = 2 (the code default is 20), γ = 1, α = 1, retain EMBED_DIFF, all weights trained.
`layer` = None means num_layers // 2 − 1, resolved by the training loop: 7 for the 16-layer Llama-3.2-1B, i.e. the
reference's `model.layers.7`. u is drawn once in `init_state` from an explicit generator (the reference draws it
lazily from the global RNG). |A_b| is clamped to ≥ 1 so a sample without supervised tokens contributes 0, not NaN.
"""

from __future__ import annotations

from typing import Literal

import torch

from .base import NON_NEGATIVE, POSITIVE, Features, LossOutput
from .common import IGNORE, combine, need, need_tensor, retain_loss

PAPER = (
    "Li, Pan, Gopal, Yue, Berrios, Gatti, et al. The WMDP Benchmark: Measuring and Reducing Malicious Use With "
    "Unlearning. ICML 2024, arXiv:2403.03218"
)


def masked_mse(h: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """mean over samples of (Σ over supervised positions of mean_d (h − target)²) / #supervised positions."""
    mask = (labels != IGNORE).float()  # (B, T), unshifted
    sq = (h.float() - target.float()).pow(2).mean(dim=-1)  # (B, T)
    return ((sq * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)).mean()


def init_state(hyperparams: dict, *, hidden_size: int, generator: torch.Generator) -> dict:
    u = torch.rand(hidden_size, generator=generator)
    return {"control_vector": u / u.norm()}


BOUNDS = {"steering_coeff": POSITIVE, "layer": NON_NEGATIVE}  # the random direction's scale; a layer index


def loss(
    features: Features,
    state: dict,
    *,
    steering_coeff: float = 2.0,
    layer: int | None = None,
    alpha: float = 1.0,
    gamma: float = 1.0,
    retain_loss_type: Literal["EMBED_DIFF", "NLL", "KL"] = "EMBED_DIFF",
) -> LossOutput:
    f = features.forget
    h = need_tensor(f.hidden, "hidden", "RMU")
    target = steering_coeff * state["control_vector"].to(h.device, torch.float32)  # (D,), broadcast over (B, T)
    forget = masked_mse(h, target.expand_as(h), f.labels)
    r = need(features.retain, "retain", "RMU")
    if retain_loss_type == "EMBED_DIFF":
        ref_h = need_tensor(r.ref_hidden, "ref_hidden", "RMU").detach()
        retain = masked_mse(need_tensor(r.hidden, "hidden", "RMU"), ref_h, r.labels)
    else:
        retain = retain_loss(r, retain_loss_type)
    return combine(forget, retain, alpha=alpha, gamma=gamma)
