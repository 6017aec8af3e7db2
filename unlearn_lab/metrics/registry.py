"""Every TOFU metric declared once: what it reads, how it is computed, its direction and aggregation (spec 2).

`METRICS` is the one table. An entry names the token-stat groups it reads (`groups`: (eval part, answer key)
pairs), the part whose greedy generations it reads (`generations`), the metrics it is computed from
(`pre_compute`, the reference's pre_compute: computed first and stored in TOFU_EVAL too) and the retain
reference entry it needs (`reference`). `compute(metric, inputs)` returns the metric's TOFU_EVAL entry; it is
one small function per kind below, which reads its parameters from the entry itself (the probability kind its
group, the truth ratio its pre-computes and aggregation), so nothing about a metric is written twice.
`suite.evaluate` derives what to score and generate from the entries it needs. Adding a metric = one entry.

Kinds do arithmetic only (`metrics/functions.py`); the model runs in `metrics/scoring.py`, reached through the
scorer (tokenizer-only ground truths; GradNorm's per-sample gradients, which are not token stats).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from unlearn_lab.errors import UsageError
from unlearn_lab.metrics import functions as F

if TYPE_CHECKING:
    import torch

    from unlearn_lab.metrics.evaldata import EvalData
    from unlearn_lab.metrics.scoring import Progress, TokenStats

Group = tuple[str, str]  # (eval part, answer key), e.g. ("forget", "paraphrased_answer")
Entry = dict[str, Any]  # one TOFU_EVAL entry: {"agg_value": ..., "value_by_index": ...} and the like (spec 3)
Direction = Literal["higher_is_better", "lower_is_better", "closer_to_0_better", "closer_to_0.5_better", "none"]
Aggregation = Literal["mean", "closer_to_1_better", "true_better", "ks_test", "harmonic_mean", "roc_auc", "privleak"]


class EvalScorer(Protocol):
    """What the suite asks of `scoring.Scorer` (tests use a scripted stand-in)."""

    def score_pairs(self, pairs: list[tuple[str, str]], progress: Progress | None = None) -> list[TokenStats]: ...
    def generation_budget(self, questions: list[str], max_new_tokens: int) -> int: ...
    def generate(self, questions: list[str], max_new_tokens: int, progress: Progress | None = None) -> list[str]: ...
    def answer_tokens(self, question: str, answer: str) -> int: ...
    def ground_truth(self, question: str, answer: str) -> str: ...
    def gradnorm_grads(self, question: str, answer: str) -> list[torch.Tensor | None]: ...


@dataclass(frozen=True)
class Metric:
    """One metric. `direction` is that of its aggregate (for display and docs; "none": a pre-compute with no
    direction of its own); `aggregation` is how per-sample values become `agg_value`."""

    name: str
    compute: Callable[[Metric, Inputs], Entry]
    direction: Direction
    aggregation: Aggregation
    groups: tuple[Group, ...] = ()  # token stats read (each part is scored whole: see suite.evaluate)
    generations: str | None = None  # the eval part whose greedy generations are read
    pre_compute: tuple[str, ...] = ()  # metrics computed first and read from `Inputs.results`
    reference: str | None = None  # the retain model's TOFU_EVAL entry it needs (a missing one is an error)


def reference_entry(reference: dict | None, name: str, metric: str, n_forget: int) -> Entry:
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


@dataclass(frozen=True)
class Inputs:
    """What the kinds read, gathered once per evaluation; `results` fills in dependency order."""

    data: EvalData
    scorer: EvalScorer
    stats: Mapping[Group, list[TokenStats]]  # every answer key of every scored part
    generations: Mapping[str, list[str]]  # per part, in record order
    reference: dict | None
    mink_k: float
    results: dict[str, Entry] = field(default_factory=dict)

    def losses(self, part: str, key: str) -> np.ndarray:
        """Average NLLs of a group: (N,), or (N, K) for the K perturbed answers."""
        records, flat = self.data.records(part), self.stats[(part, key)]
        if key != "perturbed_answer":
            return np.array([s.avg_loss for s in flat])
        k = len(records[0][key])
        if any(len(r[key]) != k for r in records):
            raise UsageError(f"{part} records have different numbers of perturbed answers; expected {k} each")
        return np.array([s.avg_loss for s in flat]).reshape(len(records), k)

    def ground_truths(self, part: str, key: str = "answer") -> list[str]:
        """The reference's ROUGE / zlib text: each answer's supervised tokens decoded."""
        return [self.scorer.ground_truth(self.data.question(part, r), r[key]) for r in self.data.records(part)]

    def reference_entry(self, metric: Metric) -> Entry:
        assert metric.reference is not None, metric.name
        return reference_entry(self.reference, metric.reference, metric.name, len(self.data.forget))

    def per_index(self, name: str, value: str) -> np.ndarray:
        """A computed metric's per-sample `value` ("avg_loss", "prob", "score") as an array, in index order."""
        by_index = self.results[name]["value_by_index"]
        return np.array([by_index[str(i)][value] for i in range(len(by_index))])


def _by_index(values: list, key: str = "score") -> dict[str, dict]:
    return {str(i): {key: v} for i, v in enumerate(values)}


# --- kinds: (metric, inputs) -> TOFU_EVAL entry --------------------------------------------------------------------


def probability(m: Metric, x: Inputs) -> Entry:
    """P̄ = exp(-avg NLL) of the one group; K answers -> lists, averaged per sample first (spec 2.0)."""
    ((part, key),) = m.groups
    loss = x.losses(part, key)
    prob = F.prob_from_avg_loss(loss)
    pairs = zip(prob.tolist(), loss.tolist(), strict=True)
    return {
        "agg_value": F.mean_of_per_sample(prob.tolist()),
        "value_by_index": {str(i): {"prob": p, "avg_loss": nll} for i, (p, nll) in enumerate(pairs)},
    }


def rouge(m: Metric, x: Inputs) -> Entry:
    """ROUGE-L recall of the part's generations against its answers (spec 2.5)."""
    part = m.generations
    assert part is not None, m.name
    records, generations, truths = x.data.records(part), x.generations[part], x.ground_truths(part)
    scores = F.rouge_scores(generations, truths)
    rows = zip(scores, records, truths, generations, strict=False)
    return {
        "agg_value": float(np.mean([s["rougeL_recall"] for s in scores])),
        "value_by_index": {
            str(i): {**s, "input": x.data.question(part, r), "ground_truth": t, "generation": g}
            for i, (s, r, t, g) in enumerate(rows)
        },
    }


def truth_ratio(m: Metric, x: Inputs) -> Entry:
    """TR_i from the pre-computes' losses, (correct, wrong), aggregated by `m.aggregation` (spec 2.2)."""
    correct, wrong = m.pre_compute
    tr = F.truth_ratio(x.per_index(correct, "avg_loss"), x.per_index(wrong, "avg_loss"))
    return {"agg_value": F.aggregate_truth_ratio(tr, m.aggregation), "value_by_index": _by_index(tr.tolist())}


def option_normalised(m: Metric, x: Inputs) -> Entry:
    """P_c / (P_c + Σ_k P_w,k + 1e-10) from the pre-computes' probabilities, (correct, wrong) (spec 2.1)."""
    correct, wrong = m.pre_compute
    norm = F.normalised_option_prob(x.per_index(correct, "prob"), x.per_index(wrong, "prob"))
    return {"agg_value": float(np.mean(norm)), "value_by_index": _by_index(norm.tolist(), "prob")}


def ks_test(m: Metric, x: Inputs) -> Entry:
    """forget_quality: KS p-value of the pre-computed truth ratios against the retain model's (spec 2.3)."""
    ref = x.reference_entry(m)["value_by_index"]
    ref_tr = np.array([ref[k]["score"] for k in sorted(ref, key=int)])
    return {"agg_value": F.forget_quality(x.per_index(m.pre_compute[0], "score"), ref_tr)}


def harmonic_mean(m: Metric, x: Inputs) -> Entry:
    """model_utility: harmonic mean of the pre-computes' aggregates (spec 2.4)."""
    return {"agg_value": F.model_utility({c: x.results[c]["agg_value"] for c in m.pre_compute})}


def privleak(m: Metric, x: Inputs) -> Entry:
    """privleak of the pre-computed AUC against the retain model's (spec 2.7)."""
    return {"agg_value": F.privleak(x.results[m.pre_compute[0]]["agg_value"], x.reference_entry(m)["agg_value"])}


def token_match(per_sample: Callable[[list[int], list[int]], float | None], m: Metric, x: Inputs) -> Entry:
    """ES / EM: teacher-forced argmax against the labels, final eot excluded (spec 2.8)."""
    ((part, key),) = m.groups
    values = [per_sample(s.without_eot().argmax.tolist(), s.without_eot().labels.tolist()) for s in x.stats[part, key]]
    return {"agg_value": F.mean_of_per_sample(values), "value_by_index": _by_index(values)}


# --- membership inference: an attack gives the per-sample scores of one group, higher = looks like a non-member

Attack = Callable[[Inputs, Metric, Group], list[float]]


def mia(attack: Attack, m: Metric, x: Inputs) -> Entry:
    """ROC-AUC of the attack's scores, `m.groups` = (members, non-members) = forget, holdout (spec 2.6)."""
    (members, _), (others, _) = m.groups
    scores = {group[0]: attack(x, m, group) for group in m.groups}
    auc = F.mia_auc(np.array(scores[members]), np.array(scores[others]))
    by_part = {p: {"agg_value": float(np.mean(s)), "value_by_index": _by_index(s)} for p, s in scores.items()}
    return {**by_part, "auc": auc, "agg_value": auc}


def loss_attack(x: Inputs, m: Metric, group: Group) -> list[float]:
    return [s.avg_loss for s in x.stats[group]]


def zlib_attack(x: Inputs, m: Metric, group: Group) -> list[float]:
    return [F.zlib_score(s.avg_loss, t) for s, t in zip(x.stats[group], x.ground_truths(*group), strict=False)]


def min_k_attack(x: Inputs, m: Metric, group: Group) -> list[float]:
    return [F.min_k_score(s.without_eot().logprobs, x.mink_k) for s in x.stats[group]]


def min_k_plus_plus_attack(x: Inputs, m: Metric, group: Group) -> list[float]:
    cut = [s.without_eot() for s in x.stats[group]]
    return [F.min_k_plus_plus_score(s.logprobs, s.mu, s.sigma, x.mink_k) for s in cut]


def gradnorm_attack(x: Inputs, m: Metric, group: Group) -> list[float]:
    part, key = group
    records = x.data.records(part)
    return [F.gradnorm_score(x.scorer.gradnorm_grads(x.data.question(part, r), r[key])) for r in records]


def reference_attack(x: Inputs, m: Metric, group: Group) -> list[float]:
    ref = x.reference_entry(m)[group[0]]["value_by_index"]
    return [F.reference_score(s.avg_loss, ref[str(i)]["score"]) for i, s in enumerate(x.stats[group])]


# --- the table ------------------------------------------------------------------------------------------------------

_MIA = (("forget", "answer"), ("holdout", "answer"))  # members, non-members

METRICS: tuple[Metric, ...] = (
    # probabilities (spec 2.0): forgetXX_perturbed, retain_perturbed, real authors (ra), world facts (wf)
    Metric("forget_Q_A_Prob", probability, "lower_is_better", "mean", groups=(("forget", "answer"),)),
    Metric("forget_Q_A_PARA_Prob", probability, "lower_is_better", "mean", groups=(("forget", "paraphrased_answer"),)),
    Metric("forget_Q_A_PERT_Prob", probability, "none", "mean", groups=(("forget", "perturbed_answer"),)),
    Metric("retain_Q_A_Prob", probability, "higher_is_better", "mean", groups=(("retain", "answer"),)),
    Metric("retain_Q_A_PARA_Prob", probability, "higher_is_better", "mean", groups=(("retain", "paraphrased_answer"),)),
    Metric("retain_Q_A_PERT_Prob", probability, "none", "mean", groups=(("retain", "perturbed_answer"),)),
    Metric("ra_Q_A_Prob", probability, "higher_is_better", "mean", groups=(("ra", "answer"),)),
    Metric("ra_Q_A_PERT_Prob", probability, "none", "mean", groups=(("ra", "perturbed_answer"),)),
    Metric("wf_Q_A_Prob", probability, "higher_is_better", "mean", groups=(("wf", "answer"),)),
    Metric("wf_Q_A_PERT_Prob", probability, "none", "mean", groups=(("wf", "perturbed_answer"),)),
    # ROUGE-L recall of greedy generations (spec 2.5)
    Metric("forget_Q_A_ROUGE", rouge, "lower_is_better", "mean", generations="forget"),
    Metric("retain_Q_A_ROUGE", rouge, "higher_is_better", "mean", generations="retain"),
    Metric("ra_Q_A_ROUGE", rouge, "higher_is_better", "mean", generations="ra"),
    Metric("wf_Q_A_ROUGE", rouge, "higher_is_better", "mean", generations="wf"),
    # truth ratios, pre_compute = (correct, wrong): the paraphrase for forget/retain, the answer for ra/wf (spec 2.2)
    Metric(
        "forget_truth_ratio",
        truth_ratio,
        "higher_is_better",  # mean min(TR, 1/TR): 1 = can't tell the true answer from the false ones
        "closer_to_1_better",
        pre_compute=("forget_Q_A_PARA_Prob", "forget_Q_A_PERT_Prob"),
    ),
    Metric(
        "retain_Truth_Ratio",
        truth_ratio,
        "higher_is_better",
        "true_better",
        pre_compute=("retain_Q_A_PARA_Prob", "retain_Q_A_PERT_Prob"),
    ),
    Metric(
        "ra_Truth_Ratio",
        truth_ratio,
        "higher_is_better",
        "true_better",
        pre_compute=("ra_Q_A_Prob", "ra_Q_A_PERT_Prob"),
    ),
    Metric(
        "wf_Truth_Ratio",
        truth_ratio,
        "higher_is_better",
        "true_better",
        pre_compute=("wf_Q_A_Prob", "wf_Q_A_PERT_Prob"),
    ),
    # option-normalised probabilities, pre_compute = (correct, wrong)
    Metric(
        "ra_Q_A_Prob_normalised",
        option_normalised,
        "higher_is_better",
        "mean",
        pre_compute=("ra_Q_A_Prob", "ra_Q_A_PERT_Prob"),
    ),
    Metric(
        "wf_Q_A_Prob_normalised",
        option_normalised,
        "higher_is_better",
        "mean",
        pre_compute=("wf_Q_A_Prob", "wf_Q_A_PERT_Prob"),
    ),
    # aggregates of other metrics
    Metric(
        "forget_quality",
        ks_test,
        "higher_is_better",  # KS p-value against the retain model: high = indistinguishable from it
        "ks_test",
        pre_compute=("forget_truth_ratio",),
        reference="forget_truth_ratio",
    ),
    Metric("model_utility", harmonic_mean, "higher_is_better", "harmonic_mean", pre_compute=F.MODEL_UTILITY_COMPONENTS),
    Metric(
        "privleak",
        privleak,
        "closer_to_0_better",  # 0 = the retain model; < 0 leakage, > 0 over-unlearning
        "privleak",
        pre_compute=("mia_min_k",),
        reference="mia_min_k",
    ),
    # teacher-forced argmax against the labels (spec 2.8)
    Metric(
        "extraction_strength",
        partial(token_match, F.extraction_strength),
        "lower_is_better",
        "mean",
        groups=(("forget", "answer"),),
    ),
    Metric(
        "exact_memorization",
        partial(token_match, F.exact_memorization),
        "lower_is_better",
        "mean",
        groups=(("forget", "answer"),),
    ),
    # membership inference, forget vs holdout (spec 2.6): AUC 0.5 = no membership signal
    Metric("mia_loss", partial(mia, loss_attack), "closer_to_0.5_better", "roc_auc", groups=_MIA),
    Metric("mia_zlib", partial(mia, zlib_attack), "closer_to_0.5_better", "roc_auc", groups=_MIA),
    Metric("mia_min_k", partial(mia, min_k_attack), "closer_to_0.5_better", "roc_auc", groups=_MIA),
    Metric("mia_min_k_plus_plus", partial(mia, min_k_plus_plus_attack), "closer_to_0.5_better", "roc_auc", groups=_MIA),
    Metric("mia_gradnorm", partial(mia, gradnorm_attack), "closer_to_0.5_better", "roc_auc", groups=_MIA),
    Metric(
        "mia_reference",
        partial(mia, reference_attack),
        "closer_to_0.5_better",
        "roc_auc",
        groups=_MIA,
        reference="mia_loss",
    ),
)

REGISTRY: dict[str, Metric] = {m.name: m for m in METRICS}
