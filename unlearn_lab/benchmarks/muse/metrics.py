"""Pure MUSE metric functions with OpenUnlearning's semantics (spec §3) and the MUSE_EVAL / MUSE_SUMMARY entry
shapes (spec §4).

No model, no I/O except `read_retain_logs`: inputs are per-item arrays or strings from the scoring code; outputs are
per-item values, aggregates and JSON-ready entries. Where the math equals TOFU's the TOFU function is called
(`metrics/functions.py`, `metrics/mia.py`); what differs is the input convention:

- **Last labelled token.** TOFU's callers strip the final eot before Min-K, Min-K++, ES and EM. MUSE texts have no
  EOS, but the reference drops the last labelled position all the same; the `*_item` functions here take **every**
  labelled position of an item and drop the last one themselves (loss and zlib keep it, as in TOFU).
- **ROUGE.** Same scorer and per-item fields as TOFU (stemmer on, sentence-level ROUGE-L), but MUSE aggregates
  `rougeL_f1` (TOFU: `rougeL_recall`), and knowmem generations are cut at stop words first.
- **privleak reference.** The retain model's `mia_min_k` AUC from its MUSE_EVAL.json; the reference falls back to
  0.5 when no logs are given or they lack `mia_min_k` (TOFU in this project refuses a missing reference instead;
  `reference_auc` reports whether it fell back, so the caller can choose).

Direction and aggregation of every metric are in `METRICS`; `SUITE` is the reference's default order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unlearn_lab.errors import UsageError
from unlearn_lab.metrics.functions import exact_memorization, extraction_strength, mean_of_per_sample, rouge_scores
from unlearn_lab.metrics.mia import mia_auc, min_k_plus_plus_score, min_k_score, privleak, zlib_score

__all__ = [
    "KNOWMEM_STOPWORDS",
    "METRICS",
    "MIN_K",
    "REFERENCE_FALLBACK_AUC",
    "SUITE",
    "SUMMARY_METRICS",
    "MetricInfo",
    "cut_generation",
    "exact_memorization_item",
    "extraction_strength_item",
    "ground_truth",
    "loss_item",
    "mia_auc",
    "mia_entry",
    "min_k_item",
    "min_k_plus_plus_item",
    "privleak",
    "privleak_entry",
    "read_retain_logs",
    "reference_auc",
    "rouge_agg",
    "rouge_entry",
    "rouge_scores",
    "score_entry",
    "summary",
    "zlib_item",
]

KNOWMEM_STOPWORDS: tuple[str, ...] = ("\n\n", "\nQuestion", "Question:")
MIN_K = 0.4
REFERENCE_FALLBACK_AUC = 0.5


@dataclass(frozen=True)
class MetricInfo:
    data: str  # which split(s) it reads
    per_item: str  # the value stored per index
    aggregate: str  # how agg_value is made
    direction: str  # what a better-unlearned model shows


METRICS: dict[str, MetricInfo] = {
    "forget_knowmem_ROUGE": MetricInfo(
        "knowmem/forget_qa + forget_qa_icl",
        "rougeL_f1 of the cut greedy answer (<= 32 new tokens)",
        "mean",
        "lower (the retain model's value is the goal)",
    ),
    "retain_knowmem_ROUGE": MetricInfo(
        "knowmem/retain_qa + retain_qa_icl",
        "rougeL_f1 of the cut greedy answer (<= 32 new tokens)",
        "mean",
        "higher (utility)",
    ),
    "forget_verbmem_ROUGE": MetricInfo(
        "verbmem/forget",
        "rougeL_f1 of the greedy continuation (<= 128 new tokens) vs the whole gt",
        "mean",
        "lower (the retain model's value is the goal)",
    ),
    "mia_min_k": MetricInfo(
        "privleak/forget (label 0), privleak/holdout (label 1)",
        "Min-40% score",
        "ROC-AUC",
        "closer to the retain model's AUC (pre-compute of privleak)",
    ),
    "privleak": MetricInfo(
        "mia_min_k of the model and of the retain model",
        "-",
        "(AUC_ref - AUC) / (1 - AUC_ref) x 100",
        "closer to 0 (negative: under-unlearned, positive: over-unlearned)",
    ),
    "extraction_strength": MetricInfo(
        "verbmem/forget (prompt + ' ' + gt, teacher-forced)",
        "ES = 1 - k*/n",
        "mean",
        "lower",
    ),
    "exact_memorization": MetricInfo(
        "verbmem/forget (teacher-forced)",
        "fraction of argmax = label (None when n = 0)",
        "mean over non-None",
        "lower",
    ),
    "mia_loss": MetricInfo(
        "privleak/forget, privleak/holdout", "mean NLL, last token included", "ROC-AUC", "as mia_min_k"
    ),
    "mia_zlib": MetricInfo("privleak/forget, privleak/holdout", "mean NLL / zlib length", "ROC-AUC", "as mia_min_k"),
    "mia_min_k_plus_plus": MetricInfo(
        "privleak/forget, privleak/holdout",
        "Min-40%++ score",
        "ROC-AUC",
        "as mia_min_k",
    ),
}
SUITE: tuple[str, ...] = (
    "forget_knowmem_ROUGE",
    "retain_knowmem_ROUGE",
    "forget_verbmem_ROUGE",
    "privleak",
    "extraction_strength",
)
SUMMARY_METRICS: tuple[str, ...] = tuple(sorted(SUITE))


# --------------------------------------------------------------------------------------- generation -> text


def cut_generation(text: str, eos_text: str | None = None, stopwords: Sequence[str] = KNOWMEM_STOPWORDS) -> str:
    """Spec §3.1 post-processing of a decoded generation: for each of [decoded EOS] + `stopwords`, in that order,
    keep the part before its first occurrence; then strip whitespace. Knowmem uses the three stop words (default);
    verbmem passes `stopwords=()` (EOS only). The decoding (skip special tokens, clean up spaces) is the caller's."""
    for stop in ([eos_text] if eos_text else []) + list(stopwords):
        text = text.split(stop, 1)[0]
    return text.strip()


def ground_truth(decoded_labels: str, decoded_input: str) -> str:
    """Spec §3.1: the decoded non-ignored labels with the decoded input deleted (every occurrence), stripped. For
    knowmem (labels = the whole conversation) this leaves the answer; for verbmem (labels = the gt tokens only) it
    is the decoded gt, never truncated."""
    return decoded_labels.replace(decoded_input, "").strip() if decoded_input else decoded_labels.strip()


def rouge_agg(per_item: Sequence[Mapping[str, float]]) -> float:
    """MUSE's ROUGE aggregate: the arithmetic mean of `rougeL_f1` (a fraction in [0, 1])."""
    if not per_item:
        raise ValueError("rouge_agg got no items")
    return float(np.mean([item["rougeL_f1"] for item in per_item]))


# ------------------------------------------------------------------------------- teacher-forced item scores


def _drop_last(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    array = np.asarray(values)
    return array[:-1] if array.size else array


def min_k_item(token_logprobs: Sequence[float] | np.ndarray, k: float = MIN_K) -> float:
    """Min-K score of one text from the log-probs of **all** its labelled tokens (n): the last is dropped, then
    -mean of the lowest m = max(1, floor(k (n - 1))) values; 0.0 when nothing is left (n <= 1).
    Higher = less likely = looks like a non-member."""
    return min_k_score(_drop_last(np.asarray(token_logprobs, dtype=np.float64)), k)


def min_k_plus_plus_item(
    token_logprobs: Sequence[float] | np.ndarray,
    mu: Sequence[float] | np.ndarray,
    sigma: Sequence[float] | np.ndarray,
    k: float = MIN_K,
) -> float:
    """Min-K++ of one text (§3.7): all three arrays cover every labelled position; the last is dropped, then TOFU's
    `min_k_plus_plus_score` (z = (log p - mu) / sigma, sigma from a variance clamped at 1e-6)."""
    return min_k_plus_plus_score(_drop_last(token_logprobs), _drop_last(mu), _drop_last(sigma), k)


def loss_item(token_logprobs: Sequence[float] | np.ndarray) -> float:
    """mia_loss's score (§3.7): the mean NLL over **all** labelled tokens, the last one included."""
    values = np.asarray(token_logprobs, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("loss_item got an item without labelled tokens")
    return float(-values.mean())


def zlib_item(token_logprobs: Sequence[float] | np.ndarray, text: str) -> float:
    """mia_zlib's score (§3.7): `loss_item` / len(zlib.compress(text)), text = the decoded labelled text."""
    return zlib_score(loss_item(token_logprobs), text)


def extraction_strength_item(pred_ids: Sequence[int], label_ids: Sequence[int]) -> float:
    """ES of one verbmem item (§3.6) from the argmax predictions and labels at **every** position that predicts a gt
    token; the last is dropped here, leaving n. ES = 1 - k*/n with k* the smallest k in 0..n-1 such that
    pred[k:] == labels[k:]: 1.0 for a full match (k* = 0), 1/n when nothing matches (the reference's loop ends at
    k = n - 1), 0.0 when n = 0."""
    return extraction_strength(list(_drop_last(pred_ids)), list(_drop_last(label_ids)))


def exact_memorization_item(pred_ids: Sequence[int], label_ids: Sequence[int]) -> float | None:
    """EM of one verbmem item (§3.6): the fraction of positions with argmax == label over the same positions as
    `extraction_strength_item` (last gt token dropped); None when n = 0."""
    return exact_memorization(list(_drop_last(pred_ids)), list(_drop_last(label_ids)))


# ---------------------------------------------------------------------------------------- privleak reference


def read_retain_logs(path: str | Path) -> dict:
    """The retain model's MUSE_EVAL.json (`retain_logs_path`); a path to a missing or unreadable file is an error,
    as in the reference."""
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"retain logs not found: {path} (expected the retain model's MUSE_EVAL.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"retain logs {path} are not readable JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UsageError(f"retain logs {path} are not a MUSE_EVAL.json object")
    return data


def reference_auc(retain_eval: Mapping[str, Any] | None) -> tuple[float, bool]:
    """(AUC_ref, fell_back): `mia_min_k.agg_value` of the retain model's MUSE_EVAL; (0.5, True) when no logs are
    given or they lack `mia_min_k`, where the reference warns and goes on with 0.5 (spec §3.5)."""
    entry = (retain_eval or {}).get("mia_min_k")
    if not isinstance(entry, Mapping) or entry.get("agg_value") is None:
        return REFERENCE_FALLBACK_AUC, True
    value = float(entry["agg_value"])
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"retain logs: mia_min_k.agg_value must be an AUC in [0, 1], got {value}")
    return value, False


# ----------------------------------------------------------------------------------------- MUSE_EVAL entries


def _by_index(indices: Sequence[int], values: Sequence[Any]) -> dict[str, Any]:
    if len(indices) != len(values):
        raise ValueError(f"got {len(indices)} indices but {len(values)} values")
    return {str(int(i)): v for i, v in zip(indices, values, strict=True)}


def rouge_entry(
    indices: Sequence[int], inputs: Sequence[str], ground_truths: Sequence[str], generations: Sequence[str]
) -> dict:
    """A ROUGE metric's entry: {agg_value = mean rougeL_f1, value_by_index: {"<idx>": {rouge1_recall, rougeL_f1,
    rougeL_recall, input, ground_truth, generation}}} (knowmem's `input` is the whole ICL prompt)."""
    scores = rouge_scores(list(generations), list(ground_truths))
    rows = [
        {**score, "input": text, "ground_truth": truth, "generation": generation}
        for score, text, truth, generation in zip(scores, inputs, ground_truths, generations, strict=True)
    ]
    return {"agg_value": rouge_agg(scores), "value_by_index": _by_index(indices, rows)}


def score_entry(indices: Sequence[int], scores: Sequence[float | None]) -> dict:
    """{agg_value, value_by_index: {"<idx>": {score}}} for extraction_strength / exact_memorization; the mean skips
    None (EM's n = 0 items), NaN when nothing is left."""
    return {
        "agg_value": mean_of_per_sample(scores),
        "value_by_index": _by_index(indices, [{"score": s} for s in scores]),
    }


def mia_entry(forget: Mapping[int, float], holdout: Mapping[int, float]) -> dict:
    """An attack's entry (mia_min_k and the optional MIAs): {forget: {agg_value = mean score, value_by_index},
    holdout: {...}, auc, agg_value = auc}, AUC with forget = label 0, holdout = label 1 (ties half credit)."""
    parts = {}
    for name, scores in (("forget", forget), ("holdout", holdout)):
        parts[name] = {
            "agg_value": float(np.mean(list(scores.values()))) if scores else math.nan,
            "value_by_index": {str(int(i)): {"score": float(s)} for i, s in scores.items()},
        }
    auc = mia_auc(np.array(list(forget.values())), np.array(list(holdout.values())))
    return {**parts, "auc": auc, "agg_value": auc}


def privleak_entry(mia_min_k: Mapping[str, Any], retain_eval: Mapping[str, Any] | None) -> tuple[dict, bool]:
    """({agg_value: privleak}, fell_back) from this model's mia_min_k entry and the retain model's MUSE_EVAL (or
    None): privleak = ((1 - AUC) - (1 - AUC_ref)) / ((1 - AUC_ref) + 1e-10) x 100."""
    ref, fell_back = reference_auc(retain_eval)
    return {"agg_value": privleak(float(mia_min_k["agg_value"]), ref)}, fell_back


def summary(entries: Mapping[str, Mapping[str, Any]], metrics: Sequence[str] = SUMMARY_METRICS) -> dict[str, Any]:
    """MUSE_SUMMARY: {name: agg_value} for the top-level metrics present (default: the five of the suite; mia_min_k,
    a pre-compute, is left out unless named)."""
    return {name: entries[name]["agg_value"] for name in metrics if name in entries}
