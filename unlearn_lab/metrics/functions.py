"""Pure TOFU metric functions with OpenUnlearning's semantics (docs: tofu-reference-spec.md §2).

No model, no I/O, no global state: inputs are per-sample arrays / strings produced by
`metrics/scoring.py`, outputs are per-sample values or aggregates. Reference quirks are kept on
purpose (they are what the published numbers mean) and are called out in each docstring.

The membership-inference pieces live in `metrics/mia.py` and are re-exported here, so every metric
function can be imported from this module. scipy.stats and rouge_score (which pulls in nltk) take
seconds to import, so they are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence

import numpy as np

from unlearn_lab.metrics.mia import (
    gradnorm_score,
    mia_auc,
    min_k_plus_plus_score,
    min_k_plus_plus_stats,
    min_k_score,
    privleak,
    reference_score,
    zlib_score,
)

__all__ = [
    "MODEL_UTILITY_COMPONENTS",
    "TRUTH_RATIO_AGGREGATORS",
    "aggregate_truth_ratio",
    "exact_memorization",
    "extraction_strength",
    "forget_quality",
    "gradnorm_score",
    "log10_forget_quality",
    "mean_of_per_sample",
    "mia_auc",
    "min_k_plus_plus_score",
    "min_k_plus_plus_stats",
    "min_k_score",
    "model_utility",
    "normalised_option_prob",
    "privleak",
    "prob_from_avg_loss",
    "reference_score",
    "rouge_scores",
    "truth_ratio",
    "truth_ratio_prob_mean",
    "utility_bound",
    "zlib_score",
]

# The 9 aggregates whose harmonic mean is model_utility (spec §2.4).
MODEL_UTILITY_COMPONENTS: tuple[str, ...] = (
    "retain_Q_A_Prob",
    "retain_Q_A_ROUGE",
    "retain_Truth_Ratio",
    "ra_Q_A_Prob_normalised",
    "ra_Q_A_ROUGE",
    "ra_Truth_Ratio",
    "wf_Q_A_Prob_normalised",
    "wf_Q_A_ROUGE",
    "wf_Truth_Ratio",
)

TRUTH_RATIO_AGGREGATORS: tuple[str, ...] = ("closer_to_1_better", "true_better")

EPS = 1e-10  # the reference's additive guard in every ratio below

# scipy's method="auto" uses the exact KS distribution up to this sample size.
_KS_EXACT_MAX_N = 10_000


# --- Probabilities and truth ratio -------------------------------------------------------------


def prob_from_avg_loss(avg_loss: np.ndarray) -> np.ndarray:
    """P̄ = exp(-ℓ), ℓ = average NLL over the supervised tokens (eot included): a geometric mean."""
    return np.exp(-np.asarray(avg_loss, dtype=np.float64))


def _correct_and_wrong(correct_avg_loss: np.ndarray, wrong: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate correct (N,) and wrong (N, K) arrays and return them as float64."""
    correct = np.asarray(correct_avg_loss, dtype=np.float64)
    wrong = np.asarray(wrong, dtype=np.float64)
    if correct.ndim != 1 or wrong.ndim != 2 or wrong.shape[0] != correct.shape[0]:
        raise ValueError(
            f"expected correct of shape (N,) and wrong of shape (N, K), got {correct.shape} and {wrong.shape}"
        )
    return correct, wrong


def truth_ratio(correct_avg_loss: np.ndarray, wrong_avg_loss: np.ndarray) -> np.ndarray:
    """Per-item TR_i = exp(-mean_k ℓ_w,ik) / (exp(-ℓ_c,i) + 1e-10), i.e. P_wrong / P_correct.

    The K wrong answers are combined by averaging their LOSSES (a geometric mean of their
    probabilities), as in both OpenUnlearning and the original TOFU code. correct: (N,), wrong: (N, K).
    """
    correct, wrong = _correct_and_wrong(correct_avg_loss, wrong_avg_loss)
    return np.exp(-wrong.mean(axis=1)) / (np.exp(-correct) + EPS)


def truth_ratio_prob_mean(correct_avg_loss: np.ndarray, wrong_avg_loss: np.ndarray) -> np.ndarray:
    """The `prob_mean` variant: P_c / (P_c + P_w + 1e-10), P_w = exp(-mean_k ℓ_w,ik).

    This is the "Truth Ratio" written in the OpenUnlearning paper. It is NOT used by any default
    config: the TOFU suite uses `truth_ratio` + `aggregate_truth_ratio`.
    """
    correct, wrong = _correct_and_wrong(correct_avg_loss, wrong_avg_loss)
    p_correct = np.exp(-correct)
    p_wrong = np.exp(-wrong.mean(axis=1))
    return p_correct / (p_correct + p_wrong + EPS)


def aggregate_truth_ratio(tr: np.ndarray, aggregator: str) -> float:
    """Aggregate per-item truth ratios.

    - "closer_to_1_better" (forget): mean_i min(TR_i, 1 / (TR_i + 1e-10)); 1 = can't tell.
    - "true_better" (retain / ra / wf): mean_i max(0, 1 - TR_i); higher = prefers the truth.
    """
    values = np.asarray(tr, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("aggregate_truth_ratio got an empty array")
    if aggregator == "closer_to_1_better":
        return float(np.mean(np.minimum(values, 1.0 / (values + EPS))))
    if aggregator == "true_better":
        return float(np.mean(np.maximum(0.0, 1.0 - values)))
    raise ValueError(f"unknown truth-ratio aggregator {aggregator!r}; accepted: {', '.join(TRUTH_RATIO_AGGREGATORS)}")


def normalised_option_prob(correct_prob: np.ndarray, wrong_probs: np.ndarray) -> np.ndarray:
    """Option-normalised probability (ra/wf): P_c / (P_c + Σ_k P_w,k + 1e-10); correct (N,), wrong (N, K)."""
    correct, wrong = _correct_and_wrong(correct_prob, wrong_probs)
    return correct / (correct + wrong.sum(axis=1) + EPS)


def mean_of_per_sample(values: Iterable[float | list[float] | None]) -> float:
    """The reference `probability` aggregation.

    Each sample's value is a float, or a list (K answers) that is averaged arithmetically first;
    None samples are skipped; the result is the arithmetic mean over the remaining samples, or NaN
    if none is left.
    """
    per_sample = []
    for value in values:
        if value is None:
            continue
        if isinstance(value, (list, tuple, np.ndarray)):
            if len(value) == 0:
                raise ValueError("mean_of_per_sample got a sample with an empty list of values")
            per_sample.append(float(np.mean(value)))
        else:
            per_sample.append(float(value))
    return float(np.mean(per_sample)) if per_sample else math.nan


# --- ROUGE -------------------------------------------------------------------------------------


def rouge_scores(generations: list[str], ground_truths: list[str]) -> list[dict]:
    """Per-item rouge1_recall, rougeL_f1 and rougeL_recall (TOFU's headline value).

    rouge_score's RougeScorer(['rouge1', 'rougeL'], use_stemmer=True) with target=ground truth and
    prediction=generation: sentence-level ROUGE-L (not rougeLsum), default tokenizer (lowercase,
    non-[a-z0-9] -> space, Porter stemming of tokens longer than 3 chars). Empty generation -> 0.
    """
    if len(generations) != len(ground_truths):
        raise ValueError(f"got {len(generations)} generations but {len(ground_truths)} ground truths")
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    results = []
    for generation, ground_truth in zip(generations, ground_truths, strict=False):
        score = scorer.score(target=ground_truth, prediction=generation)
        results.append(
            {
                "rouge1_recall": float(score["rouge1"].recall),
                "rougeL_f1": float(score["rougeL"].fmeasure),
                "rougeL_recall": float(score["rougeL"].recall),
            }
        )
    return results


# --- Forget quality and model utility ----------------------------------------------------------


def _finite_1d(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"{name} is empty; forget_quality needs at least one truth ratio")
    if not np.all(np.isfinite(array)):
        count = np.count_nonzero(~np.isfinite(array))
        raise ValueError(f"{name} contains {count} non-finite value(s) (NaN/inf)")
    return array


def forget_quality(tr: np.ndarray, reference_tr: np.ndarray) -> float:
    """Two-sided two-sample KS p-value of the per-item truth ratios vs the retain model's.

    The reference calls scipy.stats.ks_2samp with method='auto', which already picks the exact
    distribution when max(n, m) <= 10000 (always true for TOFU). Forcing method='exact' there
    makes that explicit and guarantees the published floors: complete separation of n = m samples
    gives 2 / C(2n, n) = 1.86e-23 / 1.94e-119 / 1.06e-239 for n = 40 / 200 / 400, where
    'asymp' would give 0.0. Larger samples fall back to 'auto'. Identical arrays give 1.0.
    """
    from scipy import stats

    sample = _finite_1d(tr, "tr")
    reference = _finite_1d(reference_tr, "reference_tr")
    method = "exact" if max(sample.size, reference.size) <= _KS_EXACT_MAX_N else "auto"
    result = stats.ks_2samp(sample, reference, alternative="two-sided", method=method)
    return float(result.pvalue)


def log10_forget_quality(fq: float) -> float:
    """log10 of forget_quality, which spans 1e-239..1: what tables, charts and the sweep's objective show. A
    p-value that underflowed to 0 counts as the smallest normal double (log10 = -307.65)."""
    return math.log10(max(float(fq), sys.float_info.min))


def model_utility(components: dict[str, float]) -> float:
    """Harmonic mean (scipy.stats.hmean) of the component aggregates, normally MODEL_UTILITY_COMPONENTS.

    Any zero component gives exactly 0.0 (handled here, so no scipy divide warning can escape);
    this is how GradAscent rows reach 0. Negative or non-finite components raise ValueError.
    """
    if not components:
        raise ValueError("model_utility got no components")
    bad = {name: value for name, value in components.items() if not math.isfinite(value) or value < 0}
    if bad:
        raise ValueError(f"model_utility components must be finite and >= 0, got {bad}")
    values = np.array(list(components.values()), dtype=np.float64)
    if np.any(values == 0):
        return 0.0
    from scipy import stats

    return float(stats.hmean(values))


# --- Extraction strength and exact memorisation ------------------------------------------------


def _check_same_length(pred_ids: Sequence[int], label_ids: Sequence[int]) -> int:
    if len(pred_ids) != len(label_ids):
        raise ValueError(f"pred_ids has {len(pred_ids)} tokens but label_ids has {len(label_ids)}")
    return len(label_ids)


def exact_memorization(pred_ids: Sequence[int], label_ids: Sequence[int]) -> float | None:
    """EM = (1/n)·#{t : ŷ_t = y_t} over teacher-forced argmax predictions; None when n == 0.

    The caller passes the answer tokens with the final eot already stripped.
    """
    n = _check_same_length(pred_ids, label_ids)
    if n == 0:
        return None
    return sum(int(p) == int(y) for p, y in zip(pred_ids, label_ids, strict=False)) / n


def extraction_strength(pred_ids: Sequence[int], label_ids: Sequence[int]) -> float:
    """ES = 1 - k*/n, k* = smallest k in 0..n-1 with ŷ[k:] == y[k:] (eot stripped by the caller).

    Reference quirk: when no suffix matches, the search loop ends at k = n-1 and ES = 1/n, not 0
    (the same value as a one-token suffix match). ES = 0.0 when n == 0; 1.0 for a perfect match.
    """
    n = _check_same_length(pred_ids, label_ids)
    if n == 0:
        return 0.0
    pred = [int(t) for t in pred_ids]
    labels = [int(t) for t in label_ids]
    k_star = n - 1  # the reference's loop variable when nothing matches
    for k in range(n):
        if pred[k:] == labels[k:]:
            k_star = k
            break
    return 1.0 - k_star / n


def utility_bound(known: dict[str, float]) -> float:
    """An upper bound on model_utility (the harmonic mean of MODEL_UTILITY_COMPONENTS) from some of its
    components: each missing one is at most 1 (probabilities, ROUGE recall and these truth ratios lie in [0, 1]),
    so the harmonic mean is at most n / (sum of 1/x over the known + the number missing). Any zero gives 0."""
    n = len(MODEL_UTILITY_COMPONENTS)
    if any(v <= 0 for v in known.values()):
        return 0.0
    return n / (sum(1.0 / v for v in known.values()) + (n - len(known)))
