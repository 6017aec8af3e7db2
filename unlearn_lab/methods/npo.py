"""NPO: Negative Preference Optimization (spec §4.1).

Paper: Ruiqi Zhang, Licong Lin, Yu Bai, Song Mei, "Negative Preference Optimization: From Catastrophic Collapse to
Effective Unlearning", COLM 2024, arXiv:2404.05868.

    L_f = (2/β)·mean_i log(1 + (π_θ(y_i|x_i)/π_ref(y_i|x_i))^β)
        = −(2/β)·mean_i log σ(−β·[log π_θ(y_i|x_i) − log π_ref(y_i|x_i)])
    L   = γ·L_f + α·L_retain

log π is the sequence-level SUM of token log-probs over the supervised tokens (answer + eot); π_ref is the frozen
start model. When π_θ = π_ref, L_f = (2/β)·ln 2. Defaults: β = 0.1, γ = 1, α = 1, retain NLL.
"""

from __future__ import annotations

from typing import Literal

from .base import POSITIVE, Features, LossOutput
from .common import combine, log_ratio, need, preference_loss, retain_loss

PAPER = (
    "Zhang, Lin, Bai, Mei. Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning. "
    "COLM 2024, arXiv:2404.05868"
)

BOUNDS = {"beta": POSITIVE}  # β divides the loss


def loss(
    features: Features,
    state: dict,
    *,
    beta: float = 0.1,
    alpha: float = 1.0,
    gamma: float = 1.0,
    retain_loss_type: Literal["NLL", "KL"] = "NLL",
) -> LossOutput:
    ratio = log_ratio(features.forget, "NPO")  # (B,)
    forget = preference_loss(-ratio, beta=beta)  # the forget answer is the dispreferred one
    retain = retain_loss(need(features.retain, "retain", "NPO"), retain_loss_type)
    return combine(forget, retain, alpha=alpha, gamma=gamma)
