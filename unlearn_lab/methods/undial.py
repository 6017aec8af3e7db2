"""UNDIAL: self-distillation towards reference logits with the label token pushed down (spec §4.1).

Paper: Yijiang River Dong, Hongzhou Lin, Mikhail Belkin, Ramón Huerta, Ivan Vulić, "UNDIAL: Self-Distillation with
Adjusted Logits for Robust Unlearning in Large Language Models", NAACL 2025, arXiv:2402.10052.

For each next-token pair (t predicts y_{t+1}), with z_ref the frozen reference logits and z the current ones:

    q_t = softmax(z_ref,t − β·onehot(y_{t+1}))
    L_f = mean_t CE(z_t, q_t) = mean_t [ −Σ_v q_{t,v} log softmax(z_t)_v ]
    L   = γ·L_f + α·L_retain

reference_ignore_wrap = True (default) reproduces the reference's implementation artefact (spec §9): the mean runs
over ALL B×(T−1) positions (prompt and padding included), and at unsupervised positions the label −100 indexes the
vocabulary Python-style, so token V−100 gets the −β shift (requires V ≥ 100). With False, only supervised positions
enter the loss and the mean is over them.
Defaults: β = 10, γ = 1, α = 0 (the retain loss is computed but has weight 0), retain NLL.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from .base import NON_NEGATIVE, Features, LossOutput
from .common import IGNORE, combine, need, need_tensor, retain_loss, shifted

PAPER = (
    "Dong, Lin, Belkin, Huerta, Vulić. UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large "
    "Language Models. NAACL 2025, arXiv:2402.10052"
)

BOUNDS = {"beta": NON_NEGATIVE}  # β = 0: no logit adjustment


def loss(
    features: Features,
    state: dict,
    *,
    beta: float = 10.0,
    alpha: float = 0.0,
    gamma: float = 1.0,
    retain_loss_type: Literal["NLL", "KL"] = "NLL",
    reference_ignore_wrap: bool = True,
) -> LossOutput:
    f = features.forget
    z, y = shifted(f.logits, f.labels)  # (B, T-1, V), (B, T-1)
    z_ref, _ = shifted(need_tensor(f.ref_logits, "ref_logits", "UNDIAL").detach(), f.labels)
    vocab = z.shape[-1]
    ignored = y == IGNORE
    if reference_ignore_wrap:
        if vocab < 100 and bool(ignored.any()):
            raise ValueError(f"UNDIAL reference_ignore_wrap needs a vocabulary of at least 100 tokens, got {vocab}")
        index = torch.where(ignored, vocab - 100, y)  # −100 wraps to V−100, as Python indexing does
        keep = torch.ones_like(ignored)
    else:
        index, keep = y.clamp_min(0), ~ignored
    shift = torch.full((*index.shape, 1), -beta, dtype=z_ref.dtype, device=z_ref.device)
    q = F.softmax(z_ref.scatter_add(-1, index.unsqueeze(-1), shift), dim=-1)
    ce = -(q * F.log_softmax(z, dim=-1)).sum(dim=-1)  # (B, T-1)
    forget = ce[keep].mean()
    retain = retain_loss(need(features.retain, "retain", "UNDIAL"), retain_loss_type)
    return combine(forget, retain, alpha=alpha, gamma=gamma)
