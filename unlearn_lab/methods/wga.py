"""WGA: Weighted Gradient Ascent, token losses weighted by their detached probability (spec §4.1).

Paper: Qizhou Wang, Jin Peng Zhou, Zhanke Zhou, Saebyeol Shin, Bo Han, Kilian Q. Weinberger, "Rethinking LLM
Unlearning Objectives: A Gradient Perspective and Go Beyond", ICLR 2025, arXiv:2502.19301.

Per supervised token t (answer + eot, pooled over the batch): l_t = CE, p_t = e^{−l_t}.

    w_t = sg(p_t)^β
    L_f = −mean_t (w_t·l_t)
    L   = γ·L_f + α·L_retain

Defaults: β = 1, γ = 1, α = 1, retain NLL. With β = 0 this is GradAscent. (The reference builds an unused
reference model; this implementation does not need one.)
"""

from __future__ import annotations

from typing import Literal

from .base import NON_NEGATIVE, Features, LossOutput
from .common import combine, need, retain_loss, token_nll

PAPER = (
    "Wang, Zhou, Zhou, Shin, Han, Weinberger. Rethinking LLM Unlearning Objectives: A Gradient Perspective and Go "
    "Beyond. ICLR 2025, arXiv:2502.19301"
)

BOUNDS = {"beta": NON_NEGATIVE}  # β = 0: every token weighted 1 (gradient ascent)


def loss(
    features: Features,
    state: dict,
    *,
    beta: float = 1.0,
    alpha: float = 1.0,
    gamma: float = 1.0,
    retain_loss_type: Literal["NLL", "KL"] = "NLL",
) -> LossOutput:
    nll, mask = token_nll(features.forget.logits, features.forget.labels)  # (B, T-1)
    w = (-nll).exp().detach() ** beta
    forget = -(w * nll).sum() / mask.sum().clamp_min(1)  # nll = 0 off the mask
    retain = retain_loss(need(features.retain, "retain", "WGA"), retain_loss_type)
    return combine(forget, retain, alpha=alpha, gamma=gamma)
