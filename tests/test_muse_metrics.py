"""MUSE metric functions (spec §3) and entry shapes (§4). Expected values are worked out by hand in each docstring
and, where a library defines the number, cross-checked against rouge_score / scikit-learn directly."""

from __future__ import annotations

import json
import math
import zlib

import pytest

from unlearn_lab.benchmarks.muse import metrics as M
from unlearn_lab.errors import UsageError

# ------------------------------------------------------------------------------------------ post-processing


@pytest.mark.parametrize(
    ("generation", "eos", "expected"),
    [
        (" Tarsk\n\nQuestion: Who won?\nAnswer: Ada", None, "Tarsk"),  # cut at the blank line
        ("Corvin Dale\nQuestion: Where?", None, "Corvin Dale"),  # "\nQuestion"
        ("4100 homes Question: x", None, "4100 homes"),  # "Question:" with no newline before it
        ("Ada</s>Question: junk", "</s>", "Ada"),  # the decoded EOS first
        # In order: "\n\n" cuts "a Question: b\n\nc" to "a Question: b", "\nQuestion" finds nothing, "Question:"
        # leaves "a ", stripped to "a".
        ("a Question: b\n\nc", None, "a"),
        ("  no stop word  ", None, "no stop word"),
    ],
)
def test_cut_generation_knowmem(generation, eos, expected):
    assert M.cut_generation(generation, eos) == expected


def test_cut_generation_verbmem_keeps_stop_words():
    assert M.cut_generation("one\n\nQuestion: two</s>three", "</s>", stopwords=()) == "one\n\nQuestion: two"


def test_ground_truth_deletes_the_decoded_input():
    prompt = "Question: Who won?\nAnswer: Ada\n\nQuestion: Where?\nAnswer: "
    assert M.ground_truth(prompt + "Tarsk", prompt) == "Tarsk"  # knowmem: labels = whole conversation
    assert (
        M.ground_truth(" About 4100 homes lost power.", "Storm Brisa reached Tarsk.") == "About 4100 homes lost power."
    )


# ----------------------------------------------------------------------------------------------------- ROUGE


def test_rouge_by_hand_and_against_rouge_score():
    """gt "The cats are running" -> tokens the, cat (stemmed), are, run (stemmed); generation "cat running fast" ->
    cat, run, fast (tokens of <= 3 characters are not stemmed). LCS = [cat, run] = 2: P = 2/3, R = 2/4,
    F1 = 2PR / (P + R) = (2/3) / (7/6) = 4/7; rouge1 recall = 2/4. An empty generation scores 0.
    MUSE's aggregate = mean rougeL_f1 = (4/7 + 0) / 2 = 2/7."""
    from rouge_score import rouge_scorer

    gts, gens = ["The cats are running", "Velmora"], ["cat running fast", ""]
    per_item = M.rouge_scores(gens, gts)
    assert per_item[0]["rougeL_f1"] == pytest.approx(4 / 7)
    assert per_item[0]["rougeL_recall"] == pytest.approx(0.5) and per_item[0]["rouge1_recall"] == pytest.approx(0.5)
    assert per_item[1] == {"rouge1_recall": 0.0, "rougeL_f1": 0.0, "rougeL_recall": 0.0}
    direct = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True).score(gts[0], gens[0])
    assert per_item[0]["rougeL_f1"] == pytest.approx(direct["rougeL"].fmeasure)
    assert M.rouge_agg(per_item) == pytest.approx(2 / 7)


def test_rouge_entry_shape():
    entry = M.rouge_entry([4, 9], ["prompt a", "prompt b"], ["Tarsk", "Ada Fane"], ["Tarsk", "Fane"])
    assert entry["agg_value"] == pytest.approx((1 + 2 / 3) / 2)  # "Fane" vs "Ada Fane": P 1, R 1/2, F1 2/3
    assert list(entry["value_by_index"]) == ["4", "9"]
    assert entry["value_by_index"]["9"] == {
        "rouge1_recall": 0.5,
        "rougeL_f1": pytest.approx(2 / 3),
        "rougeL_recall": 0.5,
        "input": "prompt b",
        "ground_truth": "Ada Fane",
        "generation": "Fane",
    }


# --------------------------------------------------------------------------------------------- Min-K and MIAs


def test_min_k_drops_the_last_labelled_token():
    """log-probs of n = 6 labelled tokens [-1, -2, -3, -4, -5, -10]: the last (-10) is dropped, n - 1 = 5 left,
    m = max(1, floor(0.4 * 5)) = 2 lowest = -5, -4 -> score 4.5. (Keeping the last would give (10 + 5) / 2 = 7.5.)"""
    assert M.min_k_item([-1, -2, -3, -4, -5, -10]) == pytest.approx(4.5)
    assert M.min_k_item([-3.0, -7.0]) == pytest.approx(3.0)  # n = 2: one value left, m = max(1, 0) = 1
    assert M.min_k_item([-3.0]) == 0.0 and M.min_k_item([]) == 0.0  # nothing left: the reference's 0


def test_min_k_plus_plus_loss_and_zlib():
    """Min-K++: z of the first two positions = [-1, -2] (mu 0, sigma 1; the last dropped), m = max(1, floor(0.8)) = 1
    -> 2. Loss keeps the last token: -mean(-1, -3) = 2; zlib = 2 / len(zlib.compress(b"abc"))."""
    assert M.min_k_plus_plus_item([-1, -2, -9], [0, 0, 0], [1, 1, 1]) == pytest.approx(2.0)
    assert M.loss_item([-1, -3]) == pytest.approx(2.0)
    assert M.zlib_item([-1, -3], "abc") == pytest.approx(2.0 / len(zlib.compress(b"abc")))
    with pytest.raises(ValueError):
        M.loss_item([])


def test_auc_orientation_and_ties_against_sklearn():
    """forget = label 0, holdout = label 1, AUC = P(holdout score > forget score), ties 1/2. forget [1, 2] vs
    holdout [2, 3]: pairs (2>1) 1, (2=2) 1/2, (3>1) 1, (3>2) 1 -> 3.5 / 4 = 0.875."""
    from sklearn.metrics import roc_auc_score

    assert M.mia_auc([1, 2], [3, 4]) == 1.0  # members far more likely (lower score): memorised
    assert M.mia_auc([1, 2], [2, 3]) == pytest.approx(0.875)
    assert M.mia_auc([1, 2], [2, 3]) == pytest.approx(roc_auc_score([0, 0, 1, 1], [1, 2, 2, 3]))


def test_privleak_formula():
    """privleak = ((1 - AUC) - (1 - AUC_ref)) / ((1 - AUC_ref) + 1e-10) x 100.
    Retain model (AUC = AUC_ref) -> 0. Target-like AUC 0.99 against 0.52: (0.01 - 0.48) / 0.48 x 100 = -97.9167.
    Over-unlearned AUC 0.2 against 0.5: (0.8 - 0.5) / 0.5 x 100 = +60."""
    assert M.privleak(0.52, 0.52) == pytest.approx(0.0, abs=1e-9)
    assert M.privleak(0.99, 0.52) == pytest.approx(-97.916667, rel=1e-6)
    assert M.privleak(0.2) == pytest.approx(60.0)


def test_reference_auc_and_its_fallback(tmp_path):
    assert M.reference_auc(None) == (0.5, True)
    assert M.reference_auc({"privleak": {"agg_value": 1.0}}) == (0.5, True)
    assert M.reference_auc({"mia_min_k": {"agg_value": 0.52}}) == (0.52, False)
    logs = tmp_path / "MUSE_EVAL.json"
    logs.write_text(json.dumps({"mia_min_k": {"agg_value": 0.4}}))
    assert M.reference_auc(M.read_retain_logs(logs)) == (0.4, False)
    for path, start in ((tmp_path / "none.json", "retain logs not found: "), (tmp_path, "retain logs ")):
        with pytest.raises(UsageError) as exc:
            M.read_retain_logs(path)
        assert str(exc.value).startswith(start) and "\n" not in str(exc.value)


def test_mia_and_privleak_entries():
    entry = M.mia_entry({0: 1.0, 1: 2.0}, {0: 2.0, 1: 3.0})
    assert entry == {
        "forget": {"agg_value": 1.5, "value_by_index": {"0": {"score": 1.0}, "1": {"score": 2.0}}},
        "holdout": {"agg_value": 2.5, "value_by_index": {"0": {"score": 2.0}, "1": {"score": 3.0}}},
        "auc": pytest.approx(0.875),
        "agg_value": pytest.approx(0.875),
    }
    value, fell_back = M.privleak_entry(entry, {"mia_min_k": {"agg_value": 0.875}})
    assert value == {"agg_value": pytest.approx(0.0, abs=1e-6)} and not fell_back
    value, fell_back = M.privleak_entry(entry, None)  # (0.125 - 0.5) / 0.5 x 100 = -75
    assert value == {"agg_value": pytest.approx(-75.0)} and fell_back


# ----------------------------------------------------------------------------------- extraction strength, EM


def test_extraction_strength_edge_cases():
    """Inputs cover every position predicting a gt token; the last is dropped, leaving n.
    - full match: k* = 0, ES = 1 - 0/n = 1;
    - a suffix from k = 2 of n = 4 matches: ES = 1 - 2/4 = 0.5;
    - nothing matches (the dropped last token does not count): the loop ends at k = n - 1, ES = 1 - 3/4 = 1/n;
    - one labelled token: n = 0 after the drop -> 0; no token at all -> 0."""
    assert M.extraction_strength_item([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == 1.0
    assert M.extraction_strength_item([9, 9, 3, 4, 0], [1, 2, 3, 4, 5]) == 0.5
    assert M.extraction_strength_item([5, 6, 7, 8, 9], [1, 2, 3, 4, 9]) == 0.25
    assert M.extraction_strength_item([7], [7]) == 0.0 and M.extraction_strength_item([], []) == 0.0


def test_exact_memorization():
    """[1, 9, 3, 9] vs [1, 2, 3, 4] after dropping the last: 2 of 4 equal -> 0.5; n = 0 -> None."""
    assert M.exact_memorization_item([1, 9, 3, 9, 0], [1, 2, 3, 4, 5]) == 0.5
    assert M.exact_memorization_item([4], [4]) is None


def test_score_entry_skips_none_and_summary_keeps_the_five():
    entry = M.score_entry([0, 1, 2], [0.5, None, 1.0])
    assert entry == {
        "agg_value": 0.75,
        "value_by_index": {"0": {"score": 0.5}, "1": {"score": None}, "2": {"score": 1.0}},
    }
    assert math.isnan(M.score_entry([0], [None])["agg_value"])
    entries = {name: {"agg_value": float(i)} for i, name in enumerate(M.SUITE)}
    entries["mia_min_k"] = {"agg_value": 0.9}
    summary = M.summary(entries)
    assert list(summary) == sorted(M.SUITE) and "mia_min_k" not in summary
    assert M.summary(entries, ["mia_min_k", "absent"]) == {"mia_min_k": 0.9}
    assert set(M.SUITE) <= set(M.METRICS)
