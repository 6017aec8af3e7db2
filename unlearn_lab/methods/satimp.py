"""SatImp: token losses reweighted by saturation and importance (spec §4.1).

Paper: Puning Yang, Qizhou Wang, Zhuo Huang, Tongliang Liu, Chengqi Zhang, Bo Han, "Exploring Criteria of Loss
Reweighting to Enhance LLM Unlearning", ICML 2025, arXiv:2505.11953.

Per supervised token t (answer + eot, pooled over the batch): l_t = CE, p_t = e^{−l_t}.

    w_t = sg(p_t^{β₁}·(1 − p_t)^{β₂})
    L_f = −mean_t (w_t·l_t)
    L   = γ·L_f + α·L_retain

Defaults: the reference's TOFU config β₁ = 5, β₂ = 1, γ = 0.1, α = 1.0, retain NLL. (Its community README says
γ = 1, α = 0.1 and the trainer class defaults agree with the README; the config is what runs, spec §4.1/§9.)
"""

from __future__ import annotations

from typing import Literal

from .base import NON_NEGATIVE, Features, LossOutput
from .common import combine, need, retain_loss, token_nll

PAPER = (
    "Yang, Wang, Huang, Liu, Zhang, Han. Exploring Criteria of Loss Reweighting to Enhance LLM Unlearning. "
    "ICML 2025, arXiv:2505.11953"
)

BOUNDS = {"beta1": NON_NEGATIVE, "beta2": NON_NEGATIVE}  # exponents of the token weights


def loss(
    features: Features,
    state: dict,
    *,
    beta1: float = 5.0,
    beta2: float = 1.0,
    alpha: float = 1.0,
    gamma: float = 0.1,
    retain_loss_type: Literal["NLL", "KL"] = "NLL",
) -> LossOutput:
    nll, mask = token_nll(features.forget.logits, features.forget.labels)  # (B, T-1)
    p = (-nll).exp().detach()
    w = p**beta1 * (1 - p) ** beta2
    forget = -(w * nll).sum() / mask.sum().clamp_min(1)  # nll = 0 off the mask
    retain = retain_loss(need(features.retain, "retain", "SatImp"), retain_loss_type)
    return combine(forget, retain, alpha=alpha, gamma=gamma)
