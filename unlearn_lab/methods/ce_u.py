"""CE-U: Cross Entropy Unlearning (spec §4.1).

Paper: Bo Yang, "CE-U: Cross Entropy Unlearning", arXiv:2503.01224.

For each next-token pair with a supervised target y (answer + eot), EXCLUDING the first
`ignore_first_n_answer_tokens` supervised tokens of each sample (the paper's footnote trick; default 1):

    q_t = softmax(sg(z_t) with z_{t,y} := −∞)        (the model's own distribution with the true token removed)
    L_f = mean_t CE(z_t, q_t) = mean_t [ −Σ_v q_{t,v} log softmax(z_t)_v ]
    L   = L_f                                         (forget only: no retain term, no γ/α)

A batch with no remaining position gives 0 instead of the reference's NaN.
"""

from __future__ import annotations

import torch.nn.functional as F

from .base import NON_NEGATIVE, Features, LossOutput
from .common import IGNORE, shifted

PAPER = "Bo Yang. CE-U: Cross Entropy Unlearning. arXiv:2503.01224"

BOUNDS = {"ignore_first_n_answer_tokens": NON_NEGATIVE}  # a token count


def loss(features: Features, state: dict, *, ignore_first_n_answer_tokens: int = 1) -> LossOutput:
    f = features.forget
    supervised = f.labels != IGNORE  # (B, T), unshifted
    first_n = supervised & (supervised.cumsum(dim=1) <= ignore_first_n_answer_tokens)
    z, y = shifted(f.logits, f.labels.masked_fill(first_n, IGNORE))  # (B, T-1, V), (B, T-1)
    valid = y != IGNORE
    z, y = z[valid], y[valid]  # (N, V), (N,)
    target = z.detach().scatter(-1, y.unsqueeze(-1), float("-inf")).softmax(dim=-1)
    ce = -(target * F.log_softmax(z, dim=-1)).sum(dim=-1)  # (N,); target is exactly 0 at y
    forget = ce.sum() / max(ce.numel(), 1)
    return LossOutput(loss=forget, forget_loss=forget, retain_loss=None)
