"""IdkDPO: DPO with an "I don't know" answer as the preferred response (spec §4.1).

Papers: Rafael Rafailov, Archit Sharma, Eric Mitchell, Stefano Ermon, Christopher D. Manning, Chelsea Finn, "Direct
Preference Optimization: Your Language Model is Secretly a Reward Model", NeurIPS 2023, arXiv:2305.18290;
the IDK variant is the TOFU baseline of Pratyush Maini, Zhili Feng, Avi Schwarzschild, Zachary C. Lipton,
J. Zico Kolter, "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv:2401.06121.

    win w = same question, random "I don't know" answer (Features.alternate);
    lose l = the forget answer (Features.forget)
    L_f = −(2/β)·mean_i log σ(β·[(log π_θ(w_i) − log π_ref(w_i)) − (log π_θ(l_i) − log π_ref(l_i))])
    L   = γ·L_f + α·L_retain

log π are sequence sums over supervised tokens. Note the 2/β scale, which standard DPO lacks; when π_θ = π_ref,
L_f = (2/β)·ln 2. Defaults: β = 0.1, γ = 1, α = 1, retain NLL.
"""

from __future__ import annotations

from typing import Literal

from .base import POSITIVE, Features, LossOutput
from .common import combine, log_ratio, need, preference_loss, retain_loss

PAPER = (
    "Rafailov, Sharma, Mitchell, Ermon, Manning, Finn. Direct Preference Optimization: Your Language Model is "
    "Secretly a Reward Model. NeurIPS 2023, arXiv:2305.18290; IDK variant: Maini, Feng, Schwarzschild, Lipton, "
    "Kolter. TOFU: A Task of Fictitious Unlearning for LLMs. arXiv:2401.06121"
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
    win = log_ratio(need(features.alternate, "alternate", "IdkDPO"), "IdkDPO")
    lose = log_ratio(features.forget, "IdkDPO")
    forget = preference_loss(win - lose, beta=beta)
    retain = retain_loss(need(features.retain, "retain", "IdkDPO"), retain_loss_type)
    return combine(forget, retain, alpha=alpha, gamma=gamma)
