"""The TOFU evaluation suite: which metric needs what, computed from one scoring pass.

`evaluate` scores every needed (question, answer) group once (`Scorer.score_pairs`), generates
once per question set, then fills the reference's TOFU_EVAL layout (spec 3) with the pure
functions of `metrics/functions.py`. forget_quality and privleak need the retain model's
reference entries (`reference`, a TOFU_EVAL-shaped dict); a missing one is an error.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

import numpy as np

from unlearn_lab.errors import UsageError
from unlearn_lab.metrics import functions as F

DEFAULT_METRICS = (
    "forget_truth_ratio",
    "forget_quality",
    "forget_Q_A_Prob",
    "forget_Q_A_ROUGE",
    "model_utility",
    "privleak",
    "extraction_strength",
)
EXTRA_METRICS = (
    "exact_memorization",
    "mia_loss",
    "mia_zlib",
    "mia_min_k",
    "mia_min_k_plus_plus",
    "mia_gradnorm",
    "mia_reference",
)
# metric -> the metrics it is computed from (the reference's "pre_compute")
PRECOMPUTE: dict[str, tuple[str, ...]] = {
    "forget_truth_ratio": ("forget_Q_A_PARA_Prob", "forget_Q_A_PERT_Prob"),
    "forget_quality": ("forget_truth_ratio",),
    "retain_Truth_Ratio": ("retain_Q_A_PARA_Prob", "retain_Q_A_PERT_Prob"),
    "ra_Q_A_Prob_normalised": ("ra_Q_A_Prob", "ra_Q_A_PERT_Prob"),
    "ra_Truth_Ratio": ("ra_Q_A_Prob", "ra_Q_A_PERT_Prob"),
    "wf_Q_A_Prob_normalised": ("wf_Q_A_Prob", "wf_Q_A_PERT_Prob"),
    "wf_Truth_Ratio": ("wf_Q_A_Prob", "wf_Q_A_PERT_Prob"),
    "model_utility": F.MODEL_UTILITY_COMPONENTS,
    "privleak": ("mia_min_k",),
}
# probability metrics: name -> (eval set, answer key)
PROB_METRICS = {
    f"{p}_Q_A{suffix}_Prob": (p, key)
    for p in ("forget", "retain", "ra", "wf")
    for suffix, key in (("", "answer"), ("_PARA", "paraphrased_answer"), ("_PERT", "perturbed_answer"))
    if not (p in ("ra", "wf") and key == "paraphrased_answer")
}
ROUGE_METRICS = {f"{p}_Q_A_ROUGE": p for p in ("forget", "retain", "ra", "wf")}
TRUTH_RATIOS = {
    "forget_truth_ratio": ("forget", "paraphrased_answer", "closer_to_1_better"),
    "retain_Truth_Ratio": ("retain", "paraphrased_answer", "true_better"),
    "ra_Truth_Ratio": ("ra", "answer", "true_better"),
    "wf_Truth_Ratio": ("wf", "answer", "true_better"),
}
MIA_METRICS = ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus", "mia_gradnorm", "mia_reference")
ALL_NAMES = tuple(
    dict.fromkeys(
        DEFAULT_METRICS
        + EXTRA_METRICS
        + tuple(PROB_METRICS)
        + tuple(ROUGE_METRICS)
        + tuple(TRUTH_RATIOS)
        + tuple(PRECOMPUTE)
        + F.MODEL_UTILITY_COMPONENTS
    )
)
NEEDS_REFERENCE = {"forget_quality": "forget_truth_ratio", "privleak": "mia_min_k", "mia_reference": "mia_loss"}


def parse_metrics(spec: str) -> tuple[str, ...]:
    """'default' | 'all' | comma-separated names -> the top-level metrics, in a stable order."""
    if spec == "default":
        return DEFAULT_METRICS
    if spec == "all":
        return DEFAULT_METRICS + EXTRA_METRICS
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    for name in names:
        if name not in ALL_NAMES:
            close = difflib.get_close_matches(name, ALL_NAMES, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise UsageError(
                f"unknown metric '{name}'; {hint}accepted: default, all, or names from: {', '.join(ALL_NAMES)}"
            )
    if not names:
        raise UsageError("--metrics is empty; accepted: default, all, or comma-separated metric names")
    return names


def closure(top_level: tuple[str, ...]) -> list[str]:
    """Top-level metrics plus everything they are computed from, dependencies first."""
    ordered: list[str] = []

    def visit(name):
        for dep in PRECOMPUTE.get(name, ()):
            visit(dep)
        if name not in ordered:
            ordered.append(name)

    for name in top_level:
        visit(name)
    return ordered


@dataclass(frozen=True)
class EvalData:
    """The records of each eval set (spec 1.2)."""

    forget: list[dict]  # forgetXX_perturbed
    retain: list[dict]  # retain_perturbed
    ra: list[dict]  # real_authors_perturbed
    wf: list[dict]  # world_facts_perturbed
    holdout: list[dict]  # holdoutXX
    question_key: str = "question"

    @classmethod
    def load(cls, source, forget_split: str, holdout_split: str, question_key: str = "question") -> EvalData:
        return cls(
            source.load(f"{forget_split}_perturbed"),
            source.load("retain_perturbed"),
            source.load("real_authors_perturbed"),
            source.load("world_facts_perturbed"),
            source.load(holdout_split),
            question_key,
        )

    def question(self, part: str, record: dict) -> str:
        return record[self.question_key] if part in ("forget", "retain") else record["question"]


def _needed_groups(names: list[str]) -> set[tuple[str, str]]:
    groups: set[tuple[str, str]] = set()
    for name in names:
        if name in PROB_METRICS:
            groups.add(PROB_METRICS[name])
        elif name in ("extraction_strength", "exact_memorization"):
            groups.add(("forget", "answer"))
        elif name in MIA_METRICS:
            groups |= {("forget", "answer"), ("holdout", "answer")}
    return groups


# every answer key of each eval part (spec 1.2): a part is scored whole
PART_KEYS = {
    "forget": ("answer", "paraphrased_answer", "perturbed_answer"),
    "retain": ("answer", "paraphrased_answer", "perturbed_answer"),
    "ra": ("answer", "perturbed_answer"),
    "wf": ("answer", "perturbed_answer"),
    "holdout": ("answer",),
}


def _pair_count(records: list[dict], part: str) -> int:
    return sum(len(r[k]) if isinstance(r[k], list) else 1 for r in records for k in PART_KEYS[part])


def _by_index(values, key: str = "score") -> dict:
    return {str(i): {key: v} for i, v in enumerate(values)}


def _reference_entry(reference: dict | None, name: str, metric: str, n_forget: int) -> dict:
    """The retain model's entry `name`, checked against this evaluation's size."""
    if reference is None or name not in reference:
        raise UsageError(f"{metric} needs the retain model's '{name}' (give --retain-model or --retain-logs)")
    entry = reference[name]
    per_sample = entry.get("value_by_index") or entry.get("forget", {}).get("value_by_index") or {}
    if len(per_sample) != n_forget:
        raise UsageError(
            f"retain reference '{name}' has {len(per_sample)} forget samples but this forget split has "
            f"{n_forget}: it was computed on another split or data"
        )
    return entry


def evaluate(
    scorer,
    data: EvalData,
    top_level: tuple[str, ...],
    *,
    max_new_tokens: int = 200,
    mink_k: float = 0.4,
    reference: dict | None = None,
    progress: bool = True,
    log=None,
    answer_length_ratio: float | None = None,
) -> dict:
    """Compute `top_level` and their pre-computes; returns the TOFU_EVAL dict."""
    from tqdm.auto import tqdm

    names = closure(top_level)
    for metric, ref_name in NEEDS_REFERENCE.items():
        if metric in names:
            _reference_entry(reference, ref_name, metric, len(data.forget))
    # Batch invariance: a part is always scored whole (every answer key it has), in its own passes, so the
    # batches a row lands in depend only on that part's data, never on which other metrics or parts this
    # evaluation computes. The retain reference and an evaluation therefore score the forget and holdout rows
    # identically: a model against its own reference gets forget_quality 1.0 and privleak 0.0 exactly.
    parts = sorted({part for part, _ in _needed_groups(names)})
    stats: dict = {}
    rouge_parts = [p for n, p in ROUGE_METRICS.items() if n in names]
    total = sum(_pair_count(getattr(data, p), p) for p in parts) + sum(len(getattr(data, p)) for p in rouge_parts)
    bar = tqdm(total=total, desc="eval", disable=not progress, leave=False)
    for part in parts:
        records, pairs, slices = getattr(data, part), [], {}
        for key in PART_KEYS[part]:
            start = len(pairs)
            for r in records:
                answers = r[key] if isinstance(r[key], list) else [r[key]]
                pairs += [(data.question(part, r), a) for a in answers]
            slices[key] = (start, len(pairs))
        flat = scorer.score_pairs(pairs, progress=bar)
        stats.update({(part, key): flat[a:b] for key, (a, b) in slices.items()})
    questions = {p: [data.question(p, r) for r in getattr(data, p)] for p in rouge_parts}
    budget = scorer.generation_budget([q for qs in questions.values() for q in qs], max_new_tokens)
    if budget < max_new_tokens and log is not None:
        log(
            f"generation: max_new_tokens {max_new_tokens} capped to {budget}, the model's positions minus the "
            "longest prompt"
        )
    generations = {}
    for part, qs in questions.items():
        limit = budget
        if answer_length_ratio is not None:  # bounded by the answers too: a rambling model stops early
            longest = max(scorer.answer_tokens(data.question(part, r), r["answer"]) for r in getattr(data, part))
            limit = min(budget, math.ceil(answer_length_ratio * longest))
        generations[part] = scorer.generate(qs, limit, progress=bar)
    bar.close()

    def losses(part, key):  # (N,) or (N, K)
        recs, flat_stats = getattr(data, part), stats[(part, key)]
        if key != "perturbed_answer":
            return np.array([s.avg_loss for s in flat_stats])
        k = len(recs[0][key])
        if any(len(r[key]) != k for r in recs):
            raise UsageError(f"{part} records have different numbers of perturbed answers; expected {k} each")
        return np.array([s.avg_loss for s in flat_stats]).reshape(len(recs), k)

    out: dict = {}
    for name in names:
        if name in PROB_METRICS:
            loss = losses(*PROB_METRICS[name])
            prob = F.prob_from_avg_loss(loss)
            out[name] = {
                "agg_value": F.mean_of_per_sample(prob.tolist()),
                "value_by_index": {
                    str(i): {"prob": p, "avg_loss": nll}
                    for i, (p, nll) in enumerate(zip(prob.tolist(), loss.tolist(), strict=True))
                },
            }
        elif name in ROUGE_METRICS:
            part = ROUGE_METRICS[name]
            recs = getattr(data, part)
            truths = [scorer.ground_truth(data.question(part, r), r["answer"]) for r in recs]
            scores = F.rouge_scores(generations[part], truths)
            out[name] = {
                "agg_value": float(np.mean([s["rougeL_recall"] for s in scores])),
                "value_by_index": {
                    str(i): {**s, "input": data.question(part, r), "ground_truth": t, "generation": g}
                    for i, (s, r, t, g) in enumerate(zip(scores, recs, truths, generations[part], strict=False))
                },
            }
        elif name in TRUTH_RATIOS:
            part, correct_key, aggregator = TRUTH_RATIOS[name]
            tr = F.truth_ratio(losses(part, correct_key), losses(part, "perturbed_answer"))
            out[name] = {"agg_value": F.aggregate_truth_ratio(tr, aggregator), "value_by_index": _by_index(tr.tolist())}
        elif name in ("ra_Q_A_Prob_normalised", "wf_Q_A_Prob_normalised"):
            part = name[:2]
            norm = F.normalised_option_prob(
                F.prob_from_avg_loss(losses(part, "answer")), F.prob_from_avg_loss(losses(part, "perturbed_answer"))
            )
            out[name] = {"agg_value": float(np.mean(norm)), "value_by_index": _by_index(norm.tolist(), "prob")}
        elif name == "forget_quality":
            ref = _reference_entry(reference, "forget_truth_ratio", name, len(data.forget))["value_by_index"]
            ref_tr = np.array([ref[k]["score"] for k in sorted(ref, key=int)])
            mine = np.array(
                [out["forget_truth_ratio"]["value_by_index"][str(i)]["score"] for i in range(len(data.forget))]
            )
            out[name] = {"agg_value": F.forget_quality(mine, ref_tr)}
        elif name == "model_utility":
            out[name] = {"agg_value": F.model_utility({c: out[c]["agg_value"] for c in F.MODEL_UTILITY_COMPONENTS})}
        elif name in ("extraction_strength", "exact_memorization"):
            fn = F.extraction_strength if name == "extraction_strength" else F.exact_memorization
            vals = [
                fn(s.without_eot().argmax.tolist(), s.without_eot().labels.tolist())
                for s in stats[("forget", "answer")]
            ]
            out[name] = {"agg_value": F.mean_of_per_sample(vals), "value_by_index": _by_index(vals)}
        elif name in MIA_METRICS:
            out[name] = _mia(name, scorer, data, stats, mink_k, reference)
        elif name == "privleak":
            ref_auc = _reference_entry(reference, "mia_min_k", name, len(data.forget))["agg_value"]
            out[name] = {"agg_value": F.privleak(out["mia_min_k"]["agg_value"], ref_auc)}
        else:  # pragma: no cover - every name in ALL_NAMES is handled above
            raise AssertionError(name)
    return out


def _mia(name: str, scorer, data: EvalData, stats: dict, k: float, reference: dict | None) -> dict:
    def scores(part: str) -> list[float]:
        recs, st = getattr(data, part), stats[(part, "answer")]
        if name == "mia_loss":
            return [s.avg_loss for s in st]
        if name == "mia_zlib":
            return [
                F.zlib_score(s.avg_loss, scorer.ground_truth(data.question(part, r), r["answer"]))
                for s, r in zip(st, recs, strict=False)
            ]
        if name == "mia_min_k":
            return [F.min_k_score(s.without_eot().logprobs, k) for s in st]
        if name == "mia_min_k_plus_plus":
            return [
                F.min_k_plus_plus_score(s.without_eot().logprobs, s.without_eot().mu, s.without_eot().sigma, k)
                for s in st
            ]
        if name == "mia_gradnorm":
            return [F.gradnorm_score(scorer.gradnorm_grads(data.question(part, r), r["answer"])) for r in recs]
        ref = _reference_entry(reference, "mia_loss", name, len(data.forget))[part]["value_by_index"]  # mia_reference
        return [F.reference_score(s.avg_loss, ref[str(i)]["score"]) for i, s in enumerate(st)]

    forget, holdout = scores("forget"), scores("holdout")
    auc = F.mia_auc(np.array(forget), np.array(holdout))
    return {
        "forget": {"agg_value": float(np.mean(forget)), "value_by_index": _by_index(forget)},
        "holdout": {"agg_value": float(np.mean(holdout)), "value_by_index": _by_index(holdout)},
        "auc": auc,
        "agg_value": auc,
    }


def summary(results: dict, top_level: tuple[str, ...]) -> dict:
    """TOFU_SUMMARY: top-level metrics only; None values are left out (spec 3)."""
    return {n: results[n]["agg_value"] for n in top_level if n in results and results[n]["agg_value"] is not None}
