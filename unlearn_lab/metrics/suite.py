"""The TOFU evaluation suite: the metrics asked for, their pre-computes, one scoring pass, the TOFU_EVAL dict.

What each metric reads and how it is computed is declared once, in `metrics/registry.py`. `evaluate` takes the
closure of the requested metrics over their pre-computes, scores every eval part that one of them reads
(`Scorer.score_pairs`, each part whole), generates once per part whose generations are read, then computes each
metric by its entry, dependencies first, into the reference's TOFU_EVAL layout (spec 3). forget_quality,
privleak and mia_reference need the retain model's reference entries (`reference`, a TOFU_EVAL-shaped dict); a
missing one is an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from unlearn_lab.errors import UsageError, unknown
from unlearn_lab.metrics.evaldata import PART_KEYS, EvalData
from unlearn_lab.metrics.registry import METRICS, REGISTRY, EvalScorer, Group, Inputs, Metric, reference_entry

if TYPE_CHECKING:
    from unlearn_lab.metrics.scoring import Progress, TokenStats

__all__ = [
    "ALL_NAMES",
    "DEFAULT_METRICS",
    "DIRECTIONS",
    "EXTRA_METRICS",
    "METRICS",
    "NEEDS_REFERENCE",
    "PART_KEYS",
    "REGISTRY",
    "EvalData",
    "closure",
    "evaluate",
    "parse_metrics",
    "summary",
]

# the reference's default suite (configs/eval/tofu.yaml) and the metrics it lists but leaves off (spec 2.1)
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
ALL_NAMES = tuple(dict.fromkeys(DEFAULT_METRICS + EXTRA_METRICS + tuple(REGISTRY)))
# metric -> the retain reference entry it needs
NEEDS_REFERENCE = {m.name: m.reference for m in METRICS if m.reference is not None}
DIRECTIONS = {m.name: m.direction for m in METRICS}


def registry() -> dict[str, Metric]:
    """REGISTRY and the installed plugins' metrics (entry point group `unlearn_lab.metrics`, docs/extending.md)."""
    from unlearn_lab import plugins

    return plugins.registry("metrics", Metric, REGISTRY)


def known_names() -> tuple[str, ...]:
    return tuple(dict.fromkeys(ALL_NAMES + tuple(registry())))


def parse_metrics(spec: str) -> tuple[str, ...]:
    """'default' | 'all' | comma-separated names, where default and all may be among the names (e.g.
    'default,my_metric') -> the top-level metrics, in a stable order."""
    tokens = [n.strip() for n in spec.split(",") if n.strip()]
    if not tokens:
        raise UsageError("--metrics is empty; accepted: default, all, or comma-separated metric names")
    names: list[str] = []
    known = known_names()
    for token in tokens:
        if token in ("default", "all"):
            names += DEFAULT_METRICS + (EXTRA_METRICS if token == "all" else ())
        elif token in known:
            names.append(token)
        else:
            raise unknown("metric", token, known, listed=f"default, all, or names from: {', '.join(known)}")
    return tuple(dict.fromkeys(names))


def closure(top_level: tuple[str, ...]) -> list[str]:
    """Top-level metrics plus everything they are computed from, dependencies first."""
    ordered: list[str] = []
    table = registry()

    def visit(name: str) -> None:
        if name not in table:
            raise unknown("metric", name, known_names())
        for dep in table[name].pre_compute:
            visit(dep)
        if name not in ordered:
            ordered.append(name)

    for name in top_level:
        visit(name)
    return ordered


def _pair_count(records: list[dict], part: str) -> int:
    return sum(len(r[k]) if isinstance(r[k], list) else 1 for r in records for k in PART_KEYS[part])


def _score_parts(scorer: EvalScorer, data: EvalData, parts: list[str], bar: Progress) -> dict[Group, list[TokenStats]]:
    """Token stats of every answer key of each part, one `score_pairs` call per part (no pair scored twice)."""
    stats: dict[Group, list[TokenStats]] = {}
    for part in parts:
        records = data.records(part)
        pairs: list[tuple[str, str]] = []
        slices: dict[str, tuple[int, int]] = {}
        for key in PART_KEYS[part]:
            start = len(pairs)
            for r in records:
                answers = r[key] if isinstance(r[key], list) else [r[key]]
                pairs += [(data.question(part, r), a) for a in answers]
            slices[key] = (start, len(pairs))
        flat = scorer.score_pairs(pairs, progress=bar)
        stats.update({(part, key): flat[a:b] for key, (a, b) in slices.items()})
    return stats


def _generate(
    scorer: EvalScorer,
    data: EvalData,
    parts: list[str],
    bar: Progress,
    *,
    max_new_tokens: int,
    answer_length_ratio: float | None,
    log: Callable[[str], object] | None,
) -> dict[str, list[str]]:
    """Greedy generations of each part, under one budget for the whole evaluation."""
    questions = {p: [data.question(p, r) for r in data.records(p)] for p in parts}
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
            longest = max(scorer.answer_tokens(data.question(part, r), r["answer"]) for r in data.records(part))
            limit = min(budget, math.ceil(answer_length_ratio * longest))
        generations[part] = scorer.generate(qs, limit, progress=bar)
    return generations


def evaluate(
    scorer: EvalScorer,
    data: EvalData,
    top_level: tuple[str, ...],
    *,
    max_new_tokens: int = 200,
    mink_k: float = 0.4,
    reference: dict | None = None,
    progress: bool = True,
    log: Callable[[str], object] | None = None,
    answer_length_ratio: float | None = None,
) -> dict:
    """Compute `top_level` and their pre-computes; returns the TOFU_EVAL dict."""
    from unlearn_lab.runtime import progress_bar

    names = closure(top_level)
    table = registry()
    metrics: list[Metric] = [table[name] for name in names]
    for m in table.values():  # before any model work; registry order, so the same missing entry is always named first
        if m.reference is not None and m.name in names:
            reference_entry(reference, m.reference, m.name, len(data.forget))
    # Batch invariance: a part is always scored whole (every answer key it has), in its own passes, so the
    # batches a row lands in depend only on that part's data, never on which other metrics or parts this
    # evaluation computes. The retain reference and an evaluation therefore score the forget and holdout rows
    # identically: a model against its own reference gets forget_quality 1.0 and privleak 0.0 exactly.
    parts = sorted({part for m in metrics for part, _ in m.groups})
    generated = [part for part in PART_KEYS if any(m.generations == part for m in metrics)]
    total = sum(_pair_count(data.records(p), p) for p in parts) + sum(len(data.records(p)) for p in generated)
    bar = progress_bar(total, "eval", progress)
    stats = _score_parts(scorer, data, parts, bar)
    generations = _generate(
        scorer,
        data,
        generated,
        bar,
        max_new_tokens=max_new_tokens,
        answer_length_ratio=answer_length_ratio,
        log=log,
    )
    bar.close()
    inputs = Inputs(data, scorer, stats, generations, reference, mink_k)
    for m in metrics:  # dependencies first: a pre-compute is in inputs.results before its user runs
        inputs.results[m.name] = m.compute(m, inputs)
    return inputs.results


def summary(results: dict, top_level: tuple[str, ...]) -> dict:
    """TOFU_SUMMARY: top-level metrics only; None values are left out (spec 3)."""
    return {n: results[n]["agg_value"] for n in top_level if n in results and results[n]["agg_value"] is not None}
