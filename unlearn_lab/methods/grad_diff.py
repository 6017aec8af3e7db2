"""GradDiff: gradient ascent on the forget set plus descent on the retain set (spec §4.1).

Paper: Bo Liu, Qiang Liu, Peter Stone, "Continual Learning and Private Unlearning", CoLLAs 2022, arXiv:2203.12817;
the TOFU baseline "Grad. Diff." of Maini et al., arXiv:2401.06121.

    L = γ·(−NLL_f) + α·L_retain,    L_retain = NLL_r  or  KL(π_ref ‖ π_θ) on the retain batch (spec §4.0)

Defaults: γ = 1, α = 1, retain_loss_type = "NLL". With "KL" the loop must supply retain ref_logits
(see `requires_reference` in the registry).
"""

from __future__ import annotations

from typing import Literal

from .base import Features, LossOutput
from .common import combine, need, nll, retain_loss

PAPER = "Liu, Liu, Stone. Continual Learning and Private Unlearning. CoLLAs 2022, arXiv:2203.12817"


def loss(
    features: Features,
    state: dict,
    *,
    alpha: float = 1.0,
    gamma: float = 1.0,
    retain_loss_type: Literal["NLL", "KL"] = "NLL",
) -> LossOutput:
    forget = -nll(features.forget)
    retain = retain_loss(need(features.retain, "retain", "GradDiff"), retain_loss_type)
    return combine(forget, retain, alpha=alpha, gamma=gamma)
