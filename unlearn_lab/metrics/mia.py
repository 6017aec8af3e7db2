"""Membership-inference attack scores, their AUC and privleak (spec §2.6-§2.7).

Pure functions: every per-sample score is signed so that **higher = looks like a non-member**
(loss-like), which is what `mia_auc` assumes. The model-touching part (log-probs, gradients) lives in
`metrics/scoring.py`; this module only does the arithmetic. torch is not imported here: the two
functions that take tensors use tensor methods only. sklearn is imported inside `mia_auc` because
it takes seconds to import.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

MIN_K_VARIANCE_FLOOR = 1e-6
"""Min-K%++ clamps the per-position variance at this value before the square root."""


def _lowest_k_mean(values: np.ndarray, k: float) -> float:
    """Mean of the lowest max(1, floor(k*n)) values; callers handle n == 0."""
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k must be in (0, 1], got {k}")
    count = max(1, math.floor(k * values.size))
    return float(np.sort(values)[:count].mean())


def min_k_score(token_logprobs: np.ndarray, k: float = 0.4) -> float:
    """Min-K% score: -mean of the lowest max(1, floor(k*n)) token log-probs.

    `token_logprobs` are the fp32 log-probs of the answer tokens **excluding the final eot** (the
    caller strips it). An item with no tokens scores 0.0, as in the reference.
    """
    values = np.asarray(token_logprobs, dtype=np.float64).ravel()
    if values.size == 0:
        return 0.0
    return -_lowest_k_mean(values, k)


def min_k_plus_plus_stats(log_probs_full: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position (mu, sigma) of the next-token distribution for Min-K%++.

    mu = Σ_v p_v log p_v and sigma = sqrt(max(Σ_v p_v (log p_v)^2 - mu^2, 1e-6)), over the last
    dimension of `log_probs_full` (log-softmax output, upcast to fp32 here). Vocabulary entries
    with p_v = 0 contribute 0 (the limit of p log p), instead of the NaN that 0 * -inf would give.
    """
    log_probs = log_probs_full.float()
    probs = log_probs.exp()
    # only a -inf log-prob makes p * log p NaN (0 * -inf); a finite one with p = 0 already gives 0, so the mask
    # (two passes over the vocabulary) is applied only when some -inf is there: the same numbers, ~40 % faster
    if log_probs.isneginf().any():
        log_probs = log_probs.masked_fill(probs == 0, 0.0)
    mu = (probs * log_probs).sum(dim=-1)
    second_moment = (probs * log_probs.square()).sum(dim=-1)
    sigma = (second_moment - mu.square()).clamp(min=MIN_K_VARIANCE_FLOOR).sqrt()
    return mu, sigma


def min_k_plus_plus_score(token_logprobs: np.ndarray, mu: np.ndarray, sigma: np.ndarray, k: float = 0.4) -> float:
    """Min-K%++ score: -mean of the lowest max(1, floor(k*n)) values of z = (log p - mu) / sigma.

    All three arrays are per answer token, eot excluded; `mu` and `sigma` come from
    `min_k_plus_plus_stats` at the same positions. An item with no tokens scores 0.0.
    """
    logp = np.asarray(token_logprobs, dtype=np.float64).ravel()
    mu = np.asarray(mu, dtype=np.float64).ravel()
    sigma = np.asarray(sigma, dtype=np.float64).ravel()
    if not logp.shape == mu.shape == sigma.shape:
        raise ValueError(
            f"token_logprobs, mu and sigma must have the same length, got {logp.size}, {mu.size}, {sigma.size}"
        )
    if logp.size == 0:
        return 0.0
    return -_lowest_k_mean((logp - mu) / sigma, k)


def zlib_score(avg_loss: float, text: str) -> float:
    """zlib attack: avg NLL (eot included) / len(zlib.compress(text as UTF-8)), text = the answer."""
    return float(avg_loss) / len(zlib.compress(text.encode("utf-8")))


def gradnorm_score(grads: Iterable[torch.Tensor | None], p: float = 2.0) -> float:
    """GradNorm attack: the arithmetic MEAN over parameter tensors of each gradient's p-norm.

    Reference quirk: this is not the global norm (sqrt of the summed squares for p = 2). Parameters
    without a gradient (None) are skipped.
    """
    norms = [float(g.detach().float().norm(p=p)) for g in grads if g is not None]
    if not norms:
        raise ValueError("gradnorm_score got no gradients (every entry was None or the list was empty)")
    return float(np.mean(norms))


def reference_score(target_avg_loss: float, reference_avg_loss: float) -> float:
    """Reference attack: ℓ_target - ℓ_ref (avg NLLs, eot included)."""
    return float(target_avg_loss) - float(reference_avg_loss)


def mia_auc(forget_scores: np.ndarray, holdout_scores: np.ndarray) -> float:
    """ROC-AUC with labels 0 = forget (member), 1 = holdout (non-member): P(holdout > forget).

    Scores are used as given (higher = looks like a non-member); ties count 1/2. ≈1 means the
    forget set is clearly memorised, ≈0.5 means no membership signal.
    """
    forget = np.asarray(forget_scores, dtype=np.float64).ravel()
    holdout = np.asarray(holdout_scores, dtype=np.float64).ravel()
    if forget.size == 0 or holdout.size == 0:
        raise ValueError(f"mia_auc needs scores on both sides, got {forget.size} forget and {holdout.size} holdout")
    from sklearn.metrics import roc_auc_score

    labels = np.concatenate([np.zeros(forget.size), np.ones(holdout.size)])
    return float(roc_auc_score(labels, np.concatenate([forget, holdout])))


def privleak(auc: float, reference_auc: float = 0.5) -> float:
    """privleak = ((1-auc) - (1-ref)) / ((1-ref) + 1e-10) * 100 = (ref - auc)/(1 - ref) * 100.

    0 for the retain model; negative = leakage / under-unlearning (finetuned ≈ -96 at auc 0.98,
    ref 0.5); positive = over-unlearning. `reference_auc` is the retain model's mia_min_k AUC, or
    0.5 when no retain logs are given.
    """
    return ((1.0 - auc) - (1.0 - reference_auc)) / ((1.0 - reference_auc) + 1e-10) * 100.0
