"""Unit tests for the pure metric functions (spec §2).

Every expected value is derived by hand in the test docstring, or taken from scipy / sklearn /
rouge-score / zlib called directly, never from the code under test.
"""

from __future__ import annotations

import math
import warnings
import zlib

import numpy as np
import pytest
import torch
from rouge_score import rouge_scorer
from scipy import stats
from sklearn.metrics import roc_auc_score

from unlearn_lab.metrics.functions import (
    MODEL_UTILITY_COMPONENTS,
    aggregate_truth_ratio,
    exact_memorization,
    extraction_strength,
    forget_quality,
    gradnorm_score,
    mean_of_per_sample,
    mia_auc,
    min_k_plus_plus_score,
    min_k_plus_plus_stats,
    min_k_score,
    model_utility,
    normalised_option_prob,
    privleak,
    prob_from_avg_loss,
    reference_score,
    rouge_scores,
    truth_ratio,
    truth_ratio_prob_mean,
    zlib_score,
)

LN2, LN3 = math.log(2.0), math.log(3.0)

# --- probabilities and truth ratio --------------------------------------------------------------

# Two items, K = 2 wrong answers each, losses chosen as logs of powers of two.
CORRECT_LOSS = np.array([LN2, 2 * LN2])  # P_c = 1/2, 1/4
WRONG_LOSS = np.array([[LN2, 3 * LN2], [0.0, 2 * LN2]])  # mean losses 2 ln2, ln2 -> P_w = 1/4, 1/2


def test_prob_from_avg_loss():
    """exp(-0) = 1 and exp(-ln 2) = 1/2."""
    np.testing.assert_allclose(prob_from_avg_loss(np.array([0.0, LN2])), [1.0, 0.5])


def test_truth_ratio_averages_losses_of_wrong_answers():
    """Item 0: P_w = exp(-(ln2 + 3 ln2)/2) = 1/4, P_c = 1/2 -> TR = 0.5.
    Item 1: P_w = exp(-(0 + 2 ln2)/2) = 1/2, P_c = 1/4 -> TR = 2.
    (Averaging probabilities instead would give item 0 TR = ((1/2 + 1/8)/2) / (1/2) = 0.625.)
    The +1e-10 in the denominator moves these by < 1e-9 relative."""
    tr = truth_ratio(CORRECT_LOSS, WRONG_LOSS)
    np.testing.assert_allclose(tr, [0.5, 2.0], rtol=1e-8)


def test_truth_ratio_aggregators():
    """TR = [0.5, 2].
    closer_to_1_better: mean(min(0.5, 2), min(2, 0.5)) = mean(0.5, 0.5) = 0.5.
    true_better: mean(max(0, 1 - 0.5), max(0, 1 - 2)) = mean(0.5, 0) = 0.25."""
    tr = np.array([0.5, 2.0])
    assert aggregate_truth_ratio(tr, "closer_to_1_better") == pytest.approx(0.5, rel=1e-8)
    assert aggregate_truth_ratio(tr, "true_better") == pytest.approx(0.25, rel=1e-12)


def test_truth_ratio_unknown_aggregator_names_accepted_ones():
    with pytest.raises(ValueError, match="closer_to_1_better.*true_better"):
        aggregate_truth_ratio(np.array([1.0]), "prob_mean")


def test_truth_ratio_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        truth_ratio(CORRECT_LOSS, np.array([LN2, LN2]))


def test_truth_ratio_prob_mean_variant():
    """P_c / (P_c + P_w): item 0: (1/2) / (1/2 + 1/4) = 2/3; item 1: (1/4) / (1/4 + 1/2) = 1/3."""
    np.testing.assert_allclose(truth_ratio_prob_mean(CORRECT_LOSS, WRONG_LOSS), [2 / 3, 1 / 3], rtol=1e-8)


def test_normalised_option_prob():
    """0.6 / (0.6 + 0.1 + 0.1 + 0.2) = 0.6; 0.2 / (0.2 + 0.05 + 0.05 + 0.1) = 0.5."""
    correct = np.array([0.6, 0.2])
    wrong = np.array([[0.1, 0.1, 0.2], [0.05, 0.05, 0.1]])
    np.testing.assert_allclose(normalised_option_prob(correct, wrong), [0.6, 0.5], rtol=1e-8)


def test_mean_of_per_sample_with_lists_and_none():
    """Samples 0.2, mean(0.1, 0.3, 0.5) = 0.3, None (skipped), 0.6 -> (0.2 + 0.3 + 0.6) / 3 = 1.1/3."""
    assert mean_of_per_sample([0.2, [0.1, 0.3, 0.5], None, 0.6]) == pytest.approx(1.1 / 3)
    assert math.isnan(mean_of_per_sample([None, None]))
    assert math.isnan(mean_of_per_sample([]))


# --- extraction strength and exact memorisation -------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "expected"),
    [
        ([1, 2, 3, 4], 1.0),  # perfect match: k* = 0 -> 1 - 0/4
        ([1, 9, 3, 4], 0.5),  # suffix [3, 4] matches from k = 2 (a matching prefix is irrelevant) -> 1 - 2/4
        ([9, 9, 3, 4], 0.5),  # same suffix -> 1 - 2/4
        ([9, 9, 9, 4], 0.25),  # one-token suffix match: k* = 3 -> 1 - 3/4 = 1/n
        ([9, 9, 9, 9], 0.25),  # no match at all: reference loop ends at k = n-1 -> 1/n, not 0 (quirk)
    ],
)
def test_extraction_strength(pred, expected):
    """ES = 1 - k*/n with labels [1, 2, 3, 4] (n = 4); see the per-case comments."""
    assert extraction_strength(pred, [1, 2, 3, 4]) == pytest.approx(expected)


def test_extraction_strength_empty_is_zero():
    assert extraction_strength([], []) == 0.0


def test_exact_memorization():
    """[1, 9, 3, 4] vs [1, 2, 3, 4]: 3 of 4 positions equal -> 0.75; n = 0 -> None."""
    assert exact_memorization([1, 9, 3, 4], [1, 2, 3, 4]) == pytest.approx(0.75)
    assert exact_memorization([], []) is None
    with pytest.raises(ValueError):
        exact_memorization([1, 2], [1, 2, 3])


# --- MIA scores ---------------------------------------------------------------------------------


def test_min_k_score():
    """Log-probs [-0.1, -2, -0.5, -3, -1], k = 0.4: keep floor(0.4 * 5) = 2 lowest = -3, -2,
    mean -2.5 -> score 2.5."""
    assert min_k_score(np.array([-0.1, -2.0, -0.5, -3.0, -1.0]), k=0.4) == pytest.approx(2.5)


def test_min_k_score_keeps_at_least_one_token():
    """n = 1: floor(0.4) = 0 -> max(1, 0) = 1 -> -(-0.7) = 0.7.
    n = 2: floor(0.8) = 0 -> 1 lowest = -1.2 -> 1.2. n = 3: floor(1.2) = 1 -> 1.5. n = 0 -> 0."""
    assert min_k_score(np.array([-0.7])) == pytest.approx(0.7)
    assert min_k_score(np.array([-0.2, -1.2])) == pytest.approx(1.2)
    assert min_k_score(np.array([-0.2, -1.5, -1.2])) == pytest.approx(1.5)
    assert min_k_score(np.array([])) == 0.0


def test_min_k_plus_plus_stats_two_token_vocabulary():
    """p = (1/4, 3/4). mu = 1/4 ln(1/4) + 3/4 ln(3/4) = 3/4 ln3 - 2 ln2.
    For a two-point distribution Var(log p) = p1 p2 (ln p1 - ln p2)^2 = 3/16 (ln 3)^2,
    so sigma = (sqrt(3)/4) ln 3."""
    log_probs = torch.log(torch.tensor([[0.25, 0.75], [0.25, 0.75]]))
    mu, sigma = min_k_plus_plus_stats(log_probs)
    assert mu.shape == sigma.shape == (2,)
    assert mu.dtype == sigma.dtype == torch.float32
    np.testing.assert_allclose(mu.numpy(), 0.75 * LN3 - 2 * LN2, rtol=1e-6)
    np.testing.assert_allclose(sigma.numpy(), math.sqrt(3) / 4 * LN3, rtol=1e-6)


def test_min_k_plus_plus_stats_clamps_variance():
    """One-hot p = (1, 0): mu = 0 (0 * log 0 taken as 0), variance 0 -> clamped to 1e-6 -> sigma 1e-3.
    Uniform over 4 tokens: mu = ln(1/4), variance 0 (up to fp32 rounding) -> also sigma 1e-3."""
    one_hot = torch.log(torch.tensor([1.0, 0.0]))
    mu, sigma = min_k_plus_plus_stats(one_hot)
    assert float(mu) == 0.0
    assert float(sigma) == pytest.approx(1e-3, rel=1e-6)
    mu, sigma = min_k_plus_plus_stats(torch.log(torch.full((4,), 0.25)))
    assert float(mu) == pytest.approx(-2 * LN2, rel=1e-6)
    assert float(sigma) == pytest.approx(1e-3, rel=1e-6)


def test_min_k_plus_plus_stats_upcasts_bf16():
    """bf16 log-probs are computed on in fp32 (the reference works on fp32-upcast logits)."""
    mu, sigma = min_k_plus_plus_stats(torch.log(torch.tensor([0.25, 0.75])).to(torch.bfloat16))
    assert mu.dtype == sigma.dtype == torch.float32


def test_min_k_plus_plus_score():
    """Same p = (1/4, 3/4) at 5 positions, targets [0, 1, 1, 1, 1].
    z(token 0) = (ln(1/4) - mu)/sigma = (-3/4 ln3) / ((sqrt3/4) ln3) = -sqrt(3);
    z(token 1) = (ln(3/4) - mu)/sigma = (1/4 ln3) / ((sqrt3/4) ln3) = 1/sqrt(3).
    Keep floor(0.4 * 5) = 2 lowest: -sqrt3, 1/sqrt3 -> mean = -1/sqrt3 -> score 1/sqrt(3)."""
    log_probs = torch.log(torch.tensor([[0.25, 0.75]] * 5))
    mu, sigma = min_k_plus_plus_stats(log_probs)
    targets = torch.tensor([0, 1, 1, 1, 1])
    token_logprobs = log_probs.gather(-1, targets[:, None]).squeeze(-1)
    score = min_k_plus_plus_score(token_logprobs.numpy(), mu.numpy(), sigma.numpy(), k=0.4)
    assert score == pytest.approx(1 / math.sqrt(3), rel=1e-5)
    assert min_k_plus_plus_score(np.array([]), np.array([]), np.array([])) == 0.0


def test_zlib_score():
    """avg_loss / len(zlib.compress(UTF-8 bytes)); 'café' is 5 UTF-8 bytes, not 4 characters."""
    for text in ["hello hello hello", "café"]:
        assert zlib_score(2.0, text) == pytest.approx(2.0 / len(zlib.compress(text.encode("utf-8"))))


def test_gradnorm_is_mean_of_per_parameter_norms():
    """||[3, 4]||_2 = 5, ||[1, 0, 0]||_2 = 1 -> mean 3 (None skipped), while the global norm would be
    sqrt(9 + 16 + 1) = sqrt(26) ≈ 5.10. With p = 1: norms 7 and 1 -> mean 4."""
    grads = [torch.tensor([3.0, 4.0]), None, torch.tensor([1.0, 0.0, 0.0])]
    assert gradnorm_score(grads) == pytest.approx(3.0)
    assert gradnorm_score(grads) != pytest.approx(math.sqrt(26))
    assert gradnorm_score(grads, p=1.0) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        gradnorm_score([None])


def test_reference_score():
    assert reference_score(2.5, 1.0) == pytest.approx(1.5)


def test_mia_auc_counts_pairs_with_ties_as_half():
    """forget = [0.1, 0.4, 0.35] (label 0), holdout = [0.4, 0.8] (label 1).
    Pairs with holdout > forget: h=0.4 beats 0.1 and 0.35 and ties 0.4 (1/2) -> 2.5; h=0.8 beats all -> 3.
    AUC = 5.5 / 6."""
    forget, holdout = np.array([0.1, 0.4, 0.35]), np.array([0.4, 0.8])
    auc = mia_auc(forget, holdout)
    assert auc == pytest.approx(5.5 / 6)
    assert auc == pytest.approx(roc_auc_score([0, 0, 0, 1, 1], np.concatenate([forget, holdout])))


def test_mia_auc_perfect_separation():
    """Every holdout score above every forget score -> 1; the reverse -> 0."""
    assert mia_auc(np.array([0.1, 0.2]), np.array([0.5, 0.9])) == 1.0
    assert mia_auc(np.array([0.5, 0.9]), np.array([0.1, 0.2])) == 0.0
    with pytest.raises(ValueError):
        mia_auc(np.array([]), np.array([0.5]))


def test_privleak_sign():
    """auc == ref -> 0 (retain model). auc 0.98, ref 0.5: (0.02 - 0.5) / 0.5 * 100 = -96.
    auc 0.3, ref 0.5: (0.7 - 0.5) / 0.5 * 100 = +40 (over-unlearning)."""
    assert privleak(0.7, 0.7) == pytest.approx(0.0, abs=1e-12)
    assert privleak(0.98, 0.5) == pytest.approx(-96.0, rel=1e-8)
    assert privleak(0.98) == pytest.approx(-96.0, rel=1e-8)
    assert privleak(0.3, 0.5) == pytest.approx(40.0, rel=1e-8)


# --- forget quality ------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "rounded"), [(40, "1.86e-23"), (200, "1.94e-119"), (400, "1.06e-239")])
def test_forget_quality_floors_for_complete_separation(n, rounded):
    """Complete separation of n = m samples: the exact two-sided KS p-value is 2 / C(2n, n)."""
    tr = np.arange(n, dtype=float)
    reference = tr + n + 0.5
    p = forget_quality(tr, reference)
    # math.isclose, not pytest.approx: approx's default abs=1e-12 would accept any tiny value.
    assert math.isclose(p, 2 / math.comb(2 * n, n), rel_tol=1e-9)
    assert f"{p:.2e}" == rounded


def test_forget_quality_asymptotic_would_differ():
    """scipy's asymptotic KS p-value at n = 400 is not the exact 1.06e-239 floor (it underflows to 0)."""
    tr = np.arange(400, dtype=float)
    reference = tr + 1000.0
    asymptotic = stats.ks_2samp(tr, reference, method="asymp").pvalue
    exact = forget_quality(tr, reference)
    assert exact > 0.0
    assert not math.isclose(asymptotic, exact, rel_tol=1e-3)


def test_forget_quality_identical_arrays_and_invariance():
    """Identical samples -> D = 0 -> p = 1. KS only depends on ranks, so 1/TR gives the same p-value."""
    rng = np.random.default_rng(0)
    tr, reference = rng.uniform(0.1, 2.0, 50), rng.uniform(0.1, 2.0, 60)
    assert forget_quality(tr, tr) == 1.0
    assert forget_quality(tr, reference) == pytest.approx(forget_quality(1 / tr, 1 / reference), rel=1e-12)
    direct = stats.ks_2samp(tr, reference, method="exact").pvalue
    assert forget_quality(tr, reference) == pytest.approx(direct, rel=1e-12)


def test_forget_quality_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        forget_quality(np.array([]), np.array([1.0]))
    with pytest.raises(ValueError, match="non-finite"):
        forget_quality(np.array([1.0, np.nan]), np.array([1.0]))
    with pytest.raises(ValueError, match="non-finite"):
        forget_quality(np.array([1.0]), np.array([np.inf]))


# --- model utility -------------------------------------------------------------------------------


def test_model_utility_is_harmonic_mean_of_nine():
    """Values 1/2, 1/4, 4/5, 2/5, 1, 1/5, 1/2, 1/4, 4/5: Σ 1/x = 2+4+1.25+2.5+1+5+2+4+1.25 = 23 -> 9/23."""
    values = [0.5, 0.25, 0.8, 0.4, 1.0, 0.2, 0.5, 0.25, 0.8]
    assert len(MODEL_UTILITY_COMPONENTS) == 9
    components = dict(zip(MODEL_UTILITY_COMPONENTS, values, strict=False))
    assert model_utility(components) == pytest.approx(9 / 23)


def test_model_utility_zero_component_gives_zero_without_warning():
    components = dict.fromkeys(MODEL_UTILITY_COMPONENTS, 0.5)
    components["ra_Q_A_ROUGE"] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model_utility(components) == 0.0


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_model_utility_rejects_negative_or_non_finite(bad):
    components = dict.fromkeys(MODEL_UTILITY_COMPONENTS, 0.5)
    components["wf_Truth_Ratio"] = bad
    with pytest.raises(ValueError, match="wf_Truth_Ratio"):
        model_utility(components)


# --- ROUGE ---------------------------------------------------------------------------------------


def test_rouge_identical_strings():
    [score] = rouge_scores(["The author was born in Paris."], ["The author was born in Paris."])
    assert score == {"rouge1_recall": 1.0, "rougeL_f1": 1.0, "rougeL_recall": 1.0}


def test_rouge_stemmed_lcs_recall():
    """Reference "the cats are running" -> tokens [the, cat, are, run] ("the"/"are" have <= 3 chars and
    are not stemmed; Porter: cats -> cat, running -> run). Generation "cats run" -> [cat, run].
    LCS = [cat, run] = 2 -> recall 2/4 = 0.5, precision 2/2 = 1, F1 = 2·0.5·1/1.5 = 2/3;
    rouge1 recall = 2 unigram hits / 4 = 0.5."""
    [score] = rouge_scores(["cats run"], ["the cats are running"])
    assert score["rougeL_recall"] == pytest.approx(0.5)
    assert score["rougeL_f1"] == pytest.approx(2 / 3)
    assert score["rouge1_recall"] == pytest.approx(0.5)
    direct = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score("the cats are running", "cats run")
    assert score["rougeL_recall"] == pytest.approx(direct["rougeL"].recall)


def test_rouge_empty_generation_and_length_mismatch():
    [score] = rouge_scores([""], ["the cats are running"])
    assert score == {"rouge1_recall": 0.0, "rougeL_f1": 0.0, "rougeL_recall": 0.0}
    assert all(isinstance(v, float) for v in score.values())
    with pytest.raises(ValueError):
        rouge_scores(["a", "b"], ["a"])
