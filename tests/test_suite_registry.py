"""The metric registry and `suite.evaluate` on a scripted scorer (no model: seconds, same numbers on every machine).

`FakeScorer` returns token stats, generations and gradients derived from a CRC of each (question, answer), so an
evaluation is a pure function of the records. Two checks pin the numbers:

- `suite_eval_fixture.json` holds the TOFU_EVAL dicts and the scoring calls that the suite produced *before* the
  registry refactor (the if/elif suite of commit 94bdc41); the current suite must reproduce them exactly.
- every entry is recomputed here from `metrics/functions.py` on the same stats, without the suite.

Regenerate the fixture (`python -m tests.test_suite_registry`) only for a deliberate, documented change of numbers.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearn_lab.errors import UsageError
from unlearn_lab.metrics import functions as F
from unlearn_lab.metrics import registry, suite
from unlearn_lab.metrics.scoring import TokenStats

FIXTURE = Path(__file__).with_name("suite_eval_fixture.json")
WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
]
KW = {"max_new_tokens": 7, "mink_k": 0.4, "progress": False, "answer_length_ratio": 0.6}
BUDGET = 6  # FakeScorer.generation_budget's model limit


def _sentence(i: int, n: int) -> str:
    return " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(n))


def _records(part: str, count: int, k: int, paraphrase: bool) -> list[dict]:
    out = []
    for i in range(count):
        rec = {"question": f"{part} question {i}?", "answer": _sentence(i, 3 + i % 4)}
        if paraphrase:
            rec["paraphrased_answer"] = _sentence(i + 1, 4 + i % 3)
        if k:
            rec["perturbed_answer"] = [_sentence(i + 2 + j, 3 + (i + j) % 3) for j in range(k)]
        out.append(rec)
    return out


DATA = suite.EvalData(
    forget=_records("forget", 6, 3, True),
    retain=_records("retain", 5, 3, True),
    ra=_records("ra", 4, 2, False),
    wf=_records("wf", 3, 2, False),
    holdout=_records("holdout", 6, 0, False),
)
ANSWERS = {r["question"]: r["answer"] for p in ("forget", "retain", "ra", "wf") for r in getattr(DATA, p)}


class FakeScorer:
    """Deterministic stand-in for `scoring.Scorer`; `memorised` makes forget answers likelier than holdout ones."""

    def __init__(self, seed: int, memorised: bool) -> None:
        self.seed, self.memorised = seed, memorised
        self.scored: list[list[tuple[str, str]]] = []
        self.generated: list[tuple[list[str], int]] = []
        self.gradnorm: list[tuple[str, str]] = []

    def _rng(self, *text: str) -> np.random.Generator:
        return np.random.default_rng(zlib.crc32("|".join((str(self.seed), *text)).encode()))

    def stats(self, question: str, answer: str) -> TokenStats:
        rng, n = self._rng(question, answer), len(answer.split()) + 1
        scale = 0.3 if self.memorised and question.startswith("forget") else 1.0
        logprobs = (-scale * rng.gamma(2.0, 0.7, n)).astype(np.float32)
        labels = rng.integers(0, 50, n)
        argmax = np.where(rng.random(n) < 0.6, labels, (labels + 1) % 50)
        mu = (logprobs - rng.random(n)).astype(np.float32)
        sigma = (0.5 + rng.random(n)).astype(np.float32)
        return TokenStats(logprobs, argmax, labels, mu, sigma)

    def score_pairs(self, pairs: list[tuple[str, str]], progress=None) -> list[TokenStats]:
        self.scored.append(list(pairs))
        if progress is not None:
            progress.update(len(pairs))
        return [self.stats(q, a) for q, a in pairs]

    def generation_budget(self, questions: list[str], max_new_tokens: int) -> int:
        return min(max_new_tokens, BUDGET)

    def answer_tokens(self, question: str, answer: str) -> int:
        return len(answer.split()) + 1

    def generate(self, questions: list[str], max_new_tokens: int, progress=None) -> list[str]:
        self.generated.append((list(questions), max_new_tokens))
        if progress is not None:
            progress.update(len(questions))
        out = []
        for q in questions:
            words = ANSWERS[q].split() + list(self._rng(q).choice(WORDS, 3))
            out.append(" ".join(self._rng(q, "order").permutation(words)[:max_new_tokens]))
        return out

    def ground_truth(self, question: str, answer: str) -> str:
        return answer

    def gradnorm_grads(self, question: str, answer: str) -> list[torch.Tensor | None]:
        self.gradnorm.append((question, answer))
        rng = self._rng("grad", question, answer)
        return [torch.tensor(rng.normal(size=3)), None, torch.tensor(rng.normal(size=(2, 2)))]


def _reference() -> dict:
    return suite.evaluate(FakeScorer(1, False), DATA, ("forget_truth_ratio", "mia_min_k", "mia_loss"), **KW)


def _run(metrics: tuple[str, ...], reference: dict | None) -> tuple[dict, FakeScorer]:
    scorer = FakeScorer(0, True)
    return suite.evaluate(scorer, DATA, metrics, reference=reference, **KW), scorer


def _snapshot() -> dict:
    """What the fixture holds: TOFU_EVAL dicts (JSON round trip) and every call the suite made on the scorer."""
    reference = _reference()
    results, scorer = _run(suite.parse_metrics("all"), reference)
    default, _ = _run(suite.parse_metrics("default"), reference)
    calls = {"scored": scorer.scored, "generated": scorer.generated, "gradnorm": scorer.gradnorm}
    return json.loads(json.dumps({"reference": reference, "all": results, "default": default, "calls": calls}))


# --- numbers unchanged ---------------------------------------------------------------------------------------------


def test_evaluate_reproduces_the_fixture_exactly():
    """Same TOFU_EVAL layout and values (bit for bit after the JSON round trip), same scoring and generation calls."""
    expected = json.loads(FIXTURE.read_text())
    got = _snapshot()
    assert got.keys() == expected.keys()
    for key in expected:
        if key != "calls":
            assert sorted(got[key]) == sorted(expected[key]), key
        for name in expected[key]:
            assert got[key][name] == expected[key][name], (key, name)


def test_the_tofu_benchmark_evaluates_through_the_interface_as_the_suite_did(monkeypatch):
    """TOFU behind the benchmark interface (`benchmarks/tofu.py`): `TOFU.metrics` parses the experiment's names,
    `TOFU.evaluate` builds the scorer from the config and runs the suite; with the scripted scorer in place of the
    model its TOFU_EVAL dicts are the fixture's, recorded before the interface existed, bit for bit."""
    from unlearn_lab.benchmarks import get_benchmark
    from unlearn_lab.config import EvalConfig, ExperimentConfig
    from unlearn_lab.metrics import scoring

    made: list[dict] = []

    def fake(model, tokenizer, prompt_cfg, batch_size, **kw):
        made.append({"batch_size": batch_size, **kw})
        return FakeScorer(1, False) if len(made) == 1 else FakeScorer(0, True)

    monkeypatch.setattr(scoring, "Scorer", fake)
    tofu = get_benchmark("tofu")
    cfg = ExperimentConfig(eval=EvalConfig(max_new_tokens=7, mink_k=0.4, answer_length_ratio=0.6, batch_size=5))
    run = lambda names, ref: tofu.evaluate(cfg, None, None, DATA, names, reference=ref, progress=False, log=None)
    reference = run(("forget_truth_ratio", "mia_min_k", "mia_loss"), None)
    everything = run(tofu.metrics("all"), reference)
    expected = json.loads(FIXTURE.read_text())
    assert json.loads(json.dumps(reference)) == expected["reference"]
    assert json.loads(json.dumps(everything)) == expected["all"]
    assert made[0] == {"batch_size": 5, "min_k_plus_plus": False, "log": None} and made[1]["min_k_plus_plus"] is True
    summary = tofu.summary(everything, tofu.metrics("all"))
    assert summary["forget_quality"] == expected["all"]["forget_quality"]["agg_value"]


def _losses(scorer: FakeScorer, part: str, key: str) -> np.ndarray:
    """Average NLLs straight from the scripted stats: (N,), or (N, K) for the perturbed answers."""
    rows = [r[key] if isinstance(r[key], list) else [r[key]] for r in getattr(DATA, part)]
    losses = np.array(
        [
            [float(-scorer.stats(r["question"], a).logprobs.mean()) for a in answers]
            for r, answers in zip(getattr(DATA, part), rows, strict=True)
        ]
    )
    return losses if key == "perturbed_answer" else losses[:, 0]


def _generations(scorer: FakeScorer, part: str) -> list[str]:
    """What the suite must have generated: budget min(7, 6), capped at ceil(0.6 x the longest answer + eot)."""
    records = getattr(DATA, part)
    longest = max(len(r["answer"].split()) + 1 for r in records)
    limit = min(BUDGET, math.ceil(KW["answer_length_ratio"] * longest))
    return scorer.generate([r["question"] for r in records], limit)


def test_probabilities_truth_ratios_and_aggregates_recomputed():
    """Every probability, truth ratio, option-normalised probability, ROUGE, model_utility and forget_quality entry
    equals the functions of metrics/functions.py applied to the same stats, without the suite."""
    reference = _reference()
    out, _ = _run(suite.parse_metrics("all"), reference)
    target = FakeScorer(0, True)
    probs = {}
    for part, keys in suite.PART_KEYS.items():
        for key, suffix in (("answer", ""), ("paraphrased_answer", "_PARA"), ("perturbed_answer", "_PERT")):
            if part == "holdout" or key not in keys:
                continue
            loss = _losses(target, part, key)
            entry = out[f"{part}_Q_A{suffix}_Prob"]
            probs[part, key] = np.exp(-loss)
            assert entry["agg_value"] == pytest.approx(np.exp(-loss).reshape(len(loss), -1).mean(axis=1).mean())
            assert [entry["value_by_index"][str(i)]["avg_loss"] for i in range(len(loss))] == loss.tolist()
    for name, part, correct, agg in [
        ("forget_truth_ratio", "forget", "paraphrased_answer", "closer_to_1_better"),
        ("retain_Truth_Ratio", "retain", "paraphrased_answer", "true_better"),
        ("ra_Truth_Ratio", "ra", "answer", "true_better"),
        ("wf_Truth_Ratio", "wf", "answer", "true_better"),
    ]:
        tr = F.truth_ratio(_losses(target, part, correct), _losses(target, part, "perturbed_answer"))
        assert out[name]["agg_value"] == F.aggregate_truth_ratio(tr, agg)
        assert [out[name]["value_by_index"][str(i)]["score"] for i in range(len(tr))] == tr.tolist()
    for part in ("ra", "wf"):
        norm = F.normalised_option_prob(probs[part, "answer"], probs[part, "perturbed_answer"])
        assert out[f"{part}_Q_A_Prob_normalised"]["agg_value"] == pytest.approx(norm.mean())
    for part in ("forget", "retain", "ra", "wf"):
        scores = F.rouge_scores(_generations(target, part), [r["answer"] for r in getattr(DATA, part)])
        assert out[f"{part}_Q_A_ROUGE"]["agg_value"] == pytest.approx(np.mean([s["rougeL_recall"] for s in scores]))
    utility = F.model_utility({c: out[c]["agg_value"] for c in F.MODEL_UTILITY_COMPONENTS})
    assert out["model_utility"]["agg_value"] == utility
    ref_tr = F.truth_ratio(
        _losses(FakeScorer(1, False), "forget", "paraphrased_answer"),
        _losses(FakeScorer(1, False), "forget", "perturbed_answer"),
    )
    mine = F.truth_ratio(_losses(target, "forget", "paraphrased_answer"), _losses(target, "forget", "perturbed_answer"))
    assert out["forget_quality"]["agg_value"] == F.forget_quality(mine, ref_tr)


def _attack_scores(scorer: FakeScorer, part: str, reference: FakeScorer) -> dict[str, list[float]]:
    """Per-sample scores of the six attacks, from the scripted stats and gradients (spec 2.6)."""
    records = getattr(DATA, part)
    full = [scorer.stats(r["question"], r["answer"]) for r in records]
    cut = [replace(s, **{f: getattr(s, f)[:-1] for f in ("logprobs", "argmax", "labels", "mu", "sigma")}) for s in full]
    loss = [float(-s.logprobs.mean()) for s in full]
    ref_loss = [float(-reference.stats(r["question"], r["answer"]).logprobs.mean()) for r in records]
    return {
        "mia_loss": loss,
        "mia_zlib": [F.zlib_score(v, r["answer"]) for v, r in zip(loss, records, strict=True)],
        "mia_min_k": [F.min_k_score(s.logprobs, 0.4) for s in cut],
        "mia_min_k_plus_plus": [F.min_k_plus_plus_score(s.logprobs, s.mu, s.sigma, 0.4) for s in cut],
        "mia_gradnorm": [F.gradnorm_score(scorer.gradnorm_grads(r["question"], r["answer"])) for r in records],
        "mia_reference": [F.reference_score(v, w) for v, w in zip(loss, ref_loss, strict=True)],
        "extraction_strength": [F.extraction_strength(s.argmax.tolist(), s.labels.tolist()) for s in cut],
        "exact_memorization": [F.exact_memorization(s.argmax.tolist(), s.labels.tolist()) for s in cut],
    }


def test_attacks_extraction_and_privleak_recomputed():
    """MIA entries (forget/holdout scores, AUC), ES, EM and privleak from the functions, without the suite."""
    reference = _reference()
    out, _ = _run(suite.parse_metrics("all"), reference)
    target, retain = FakeScorer(0, True), FakeScorer(1, False)
    forget, holdout = _attack_scores(target, "forget", retain), _attack_scores(target, "holdout", retain)
    for name in ("extraction_strength", "exact_memorization"):
        assert out[name]["value_by_index"] == {str(i): {"score": v} for i, v in enumerate(forget[name])}
        assert out[name]["agg_value"] == pytest.approx(np.mean(forget[name]))
    for name in ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus", "mia_gradnorm", "mia_reference"):
        auc = F.mia_auc(np.array(forget[name]), np.array(holdout[name]))
        assert out[name]["auc"] == out[name]["agg_value"] == auc, name
        for part, scores in (("forget", forget[name]), ("holdout", holdout[name])):
            assert out[name][part]["value_by_index"] == {str(i): {"score": v} for i, v in enumerate(scores)}, name
            assert out[name][part]["agg_value"] == pytest.approx(np.mean(scores)), name
    ref_auc = _attack_scores(retain, "forget", retain), _attack_scores(retain, "holdout", retain)
    auc_ref = F.mia_auc(np.array(ref_auc[0]["mia_min_k"]), np.array(ref_auc[1]["mia_min_k"]))
    assert reference["mia_min_k"]["agg_value"] == auc_ref
    assert out["privleak"]["agg_value"] == F.privleak(out["mia_min_k"]["agg_value"], auc_ref)
    assert -100 < out["privleak"]["agg_value"] < 0  # the scripted target "memorised" its forget answers


# --- scoring passes --------------------------------------------------------------------------------------------------


def _part_pairs(part: str) -> list[tuple[str, str]]:
    """A part scored whole: every answer key, in PART_KEYS order, record by record."""
    pairs = []
    for key in suite.PART_KEYS[part]:
        for r in getattr(DATA, part):
            pairs += [(r["question"], a) for a in (r[key] if isinstance(r[key], list) else [r[key]])]
    return pairs


@pytest.mark.parametrize(
    ("metrics", "parts", "generated"),
    [
        (suite.parse_metrics("all"), ["forget", "holdout", "ra", "retain", "wf"], ["forget", "retain", "ra", "wf"]),
        (("forget_Q_A_ROUGE",), [], ["forget"]),
        (("retain_Truth_Ratio",), ["retain"], []),
        (("model_utility",), ["ra", "retain", "wf"], ["retain", "ra", "wf"]),
        (("extraction_strength", "mia_loss"), ["forget", "holdout"], []),
    ],
)
def test_each_needed_part_is_scored_whole_once(metrics, parts, generated):
    """Batch invariance: one score_pairs call per part the metrics read, holding all of that part's pairs, whatever
    else is computed; no pair scored twice; generations only for the parts a ROUGE metric reads."""
    out, scorer = _run(metrics, _reference())
    assert scorer.scored == [_part_pairs(p) for p in parts]
    assert [qs for qs, _ in scorer.generated] == [[r["question"] for r in getattr(DATA, p)] for p in generated]
    assert list(out) == suite.closure(metrics)


# --- the registry ----------------------------------------------------------------------------------------------------


def test_registry_is_consistent():
    """Names unique; every pre-compute and reference need names a registered metric; groups and generations name
    eval parts and their answer keys; DEFAULT and EXTRA are registered; the derived tables agree with the entries."""
    assert len(suite.REGISTRY) == len(suite.METRICS)
    assert all(suite.REGISTRY[m.name] is m for m in suite.METRICS)
    for m in suite.METRICS:
        assert set(m.pre_compute) <= set(suite.REGISTRY), m.name
        assert m.reference is None or m.reference in suite.REGISTRY, m.name
        assert all(key in suite.PART_KEYS[part] for part, key in m.groups), m.name
        assert m.generations is None or m.generations in suite.PART_KEYS, m.name
        assert m.groups or m.generations or m.pre_compute, f"{m.name} reads nothing"
        assert m.direction in {
            "higher_is_better",
            "lower_is_better",
            "closer_to_0_better",
            "closer_to_0.5_better",
            "none",
        }
        assert m.aggregation not in F.TRUTH_RATIO_AGGREGATORS or m.compute is registry.truth_ratio, m.name
        order = suite.closure((m.name,))  # terminates (no cycle); dependencies first
        assert order[-1] == m.name and set(m.pre_compute) <= set(order[:-1])
    assert set(suite.DEFAULT_METRICS + suite.EXTRA_METRICS) <= set(suite.REGISTRY)
    assert set(suite.ALL_NAMES) == set(suite.REGISTRY)
    assert suite.NEEDS_REFERENCE == {
        "forget_quality": "forget_truth_ratio",
        "privleak": "mia_min_k",
        "mia_reference": "mia_loss",
    }
    assert suite.REGISTRY["model_utility"].pre_compute == F.MODEL_UTILITY_COMPONENTS


def test_directions_of_the_top_level_metrics():
    expected = {
        "forget_quality": "higher_is_better",
        "model_utility": "higher_is_better",
        "forget_Q_A_Prob": "lower_is_better",
        "forget_Q_A_ROUGE": "lower_is_better",
        "forget_truth_ratio": "higher_is_better",
        "privleak": "closer_to_0_better",
        "extraction_strength": "lower_is_better",
        "exact_memorization": "lower_is_better",
    }
    for name, direction in expected.items():
        assert suite.DIRECTIONS[name] == direction
    for attack in ["loss", "zlib", "min_k", "min_k_plus_plus", "gradnorm", "reference"]:
        assert suite.DIRECTIONS[f"mia_{attack}"] == "closer_to_0.5_better"


def test_adding_a_metric_is_one_entry(monkeypatch):
    """A new entry is computed from its declared pre-compute, with nothing else to edit."""

    def mean_nll(m: registry.Metric, x: registry.Inputs) -> dict:
        return {"agg_value": float(x.per_index(m.pre_compute[0], "avg_loss").mean())}

    entry = registry.Metric("forget_mean_nll", mean_nll, "higher_is_better", "mean", pre_compute=("forget_Q_A_Prob",))
    monkeypatch.setitem(suite.REGISTRY, entry.name, entry)
    out, scorer = _run(("forget_mean_nll",), None)
    assert list(out) == ["forget_Q_A_Prob", "forget_mean_nll"]
    assert out["forget_mean_nll"]["agg_value"] == pytest.approx(_losses(FakeScorer(0, True), "forget", "answer").mean())
    assert scorer.scored == [_part_pairs("forget")]


# --- errors ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "entry"),
    [("forget_quality", "forget_truth_ratio"), ("privleak", "mia_min_k"), ("mia_reference", "mia_loss")],
)
def test_missing_reference_is_an_error_before_any_scoring(metric, entry):
    scorer = FakeScorer(0, True)
    with pytest.raises(UsageError, match=f"^{metric} needs the retain model's '{entry}' \\(give --retain-model"):
        suite.evaluate(scorer, DATA, (metric,), reference=None, **KW)
    assert scorer.scored == [] and scorer.generated == []


def test_the_first_missing_reference_named_is_stable():
    """Whatever order the metrics are asked in, forget_quality's need is reported before privleak's."""
    with pytest.raises(UsageError, match="^forget_quality needs"):
        suite.evaluate(FakeScorer(0, True), DATA, ("privleak", "forget_quality"), reference={}, **KW)


def test_reference_of_another_size_is_an_error():
    reference = _reference()
    small = {**reference, "forget_truth_ratio": {**reference["forget_truth_ratio"], "value_by_index": {"0": {}}}}
    with pytest.raises(UsageError, match="has 1 forget samples but this forget split has 6"):
        suite.evaluate(FakeScorer(0, True), DATA, ("forget_quality",), reference=small, **KW)


def test_unknown_metric_names_the_accepted_ones():
    with pytest.raises(UsageError, match="unknown metric 'forget_qualty'; did you mean 'forget_quality'"):
        suite.parse_metrics("forget_Q_A_Prob,forget_qualty")
    with pytest.raises(UsageError, match="unknown metric 'nope'"):
        suite.closure(("nope",))


if __name__ == "__main__":
    FIXTURE.write_text(json.dumps(_snapshot(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}")
