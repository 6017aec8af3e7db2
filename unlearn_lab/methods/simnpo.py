"""SimNPO: reference-free, length-normalised NPO (spec §4.1).

Paper: Chongyu Fan, Jiancheng Liu, Licong Lin, Jinghan Jia, Ruiqi Zhang, Song Mei, Sijia Liu, "Simplicity Prevails:
Rethinking Negative Preference Optimization for LLM Unlearning", arXiv:2410.07163.

    l_i = S(y_i|x_i)/|y_i| − δ          (average NLL over the supervised tokens of sample i, answer + eot)
    L_f = −(2/β)·mean_i log σ(β·l_i)
    L   = γ·L_f + α·L_retain

Defaults (TOFU config): δ = 0, β = 4.5, γ = 0.125, α = 1, retain NLL. No reference model.
|y_i| is the number of shifted supervised targets; it equals the reference's count of labels ≠ −100 whenever the
first position is unsupervised (always true with a BOS-prefixed prompt).
"""

from __future__ import annotations

from typing import Literal

from .base import POSITIVE, Features, LossOutput
from .common import combine, need, per_sample_avg_nll, preference_loss, retain_loss

PAPER = (
    "Fan, Liu, Lin, Jia, Zhang, Mei, Liu. Simplicity Prevails: Rethinking Negative Preference Optimization for LLM "
    "Unlearning. arXiv:2410.07163"
)

BOUNDS = {"beta": POSITIVE}  # β divides the loss


def loss(
    features: Features,
    state: dict,
    *,
    beta: float = 4.5,
    delta: float = 0.0,
    alpha: float = 1.0,
    gamma: float = 0.125,
    retain_loss_type: Literal["NLL", "KL"] = "NLL",
) -> LossOutput:
    f = features.forget
    nll = per_sample_avg_nll(f.logits, f.labels) - delta  # (B,)
    forget = preference_loss(nll, beta=beta)
    retain = retain_loss(need(features.retain, "retain", "SimNPO"), retain_loss_type)
    return combine(forget, retain, alpha=alpha, gamma=gamma)
