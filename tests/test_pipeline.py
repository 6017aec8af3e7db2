"""End to end on a tiny world: prepare (cached), eval (reference layout), invariants of the suite."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY, evaluate, make_plan
from unlearn_lab.config import load_experiment


def test_prepare_is_cached(tiny_cfg, prepared):
    from unlearn_lab.models.prepare import prepare

    assert set(prepared.built) == {"base", "target", "retain"}
    plan = make_plan(tiny_cfg, "prepare")
    assert not plan.to_build and plan.target.cached and plan.retain.cached
    assert prepare(plan, log=lambda _: None).built == ()
    assert (plan.target.spec, plan.retain.spec) == (prepared.target, prepared.retain)
    from unlearn_lab.data.tofu import SyntheticSource

    manifest = json.loads(open(f"{prepared.retain}/unlearn_lab.json").read())
    general = sum(len(SyntheticSource(10).load(s)) for s in ("real_authors_perturbed", "world_facts_perturbed"))
    # retain90 of 10 authors = 9 x 20 rows, each also in its paraphrased phrasing, plus the general replay
    assert manifest["split"] == "retain90" and manifest["items"] == 2 * 180 + general


def test_retain_against_its_own_reference(tiny_cfg, prepared, tmp_path):
    """A model evaluated against its own reference: identical TR arrays -> KS p = 1; same AUC -> privleak 0."""
    result = evaluate(tiny_cfg, "retain", out_dir=tmp_path)
    assert result.summary["forget_quality"] == 1.0 and result.summary["privleak"] == 0.0  # exactly
    saved = json.loads((tmp_path / "TOFU_EVAL.json").read_text())
    summary = json.loads((tmp_path / "TOFU_SUMMARY.json").read_text())
    assert sorted(summary) == sorted(
        [
            "extraction_strength",
            "forget_Q_A_Prob",
            "forget_Q_A_ROUGE",
            "forget_quality",
            "forget_truth_ratio",
            "model_utility",
            "privleak",
        ]
    )
    expected_keys = {
        "forget_Q_A_PARA_Prob",
        "forget_Q_A_PERT_Prob",
        "mia_min_k",
        "ra_Q_A_PERT_Prob",
        "ra_Q_A_Prob",
        "ra_Q_A_Prob_normalised",
        "ra_Q_A_ROUGE",
        "ra_Truth_Ratio",
        "retain_Q_A_PARA_Prob",
        "retain_Q_A_PERT_Prob",
        "retain_Q_A_Prob",
        "retain_Q_A_ROUGE",
        "retain_Truth_Ratio",
        "wf_Q_A_PERT_Prob",
        "wf_Q_A_Prob",
        "wf_Q_A_Prob_normalised",
        "wf_Q_A_ROUGE",
        "wf_Truth_Ratio",
    }
    assert set(saved) == set(summary) | expected_keys
    assert sorted(saved["forget_Q_A_Prob"]["value_by_index"], key=int) == [str(i) for i in range(20)]
    assert len(saved["forget_Q_A_PERT_Prob"]["value_by_index"]["0"]["prob"]) == 5
    text = (tmp_path / "TOFU_EVAL.json").read_text()
    assert text == json.dumps(saved, indent=4, sort_keys=True) + "\n"  # reference layout round-trips
    rouge = saved["forget_Q_A_ROUGE"]["value_by_index"]["0"]
    assert set(rouge) == {"rouge1_recall", "rougeL_f1", "rougeL_recall", "input", "ground_truth", "generation"}


def test_all_metrics_and_mismatched_reference(tiny_cfg, prepared, tmp_path):
    from unlearn_lab.errors import UsageError

    cfg = load_experiment(None, [*TINY, "eval.metrics=all"])
    result = evaluate(cfg, "target", out_dir=tmp_path / "all")
    for name in ("exact_memorization", "mia_loss", "mia_zlib", "mia_min_k_plus_plus", "mia_gradnorm", "mia_reference"):
        assert 0.0 <= result.results[name]["agg_value"] <= 1.0, name
    # a reference from another split size is an error, not a silent None
    bad = {
        "forget_truth_ratio": {"agg_value": 0.5, "value_by_index": {str(i): {"score": 1.0} for i in range(400)}},
        "mia_min_k": {"agg_value": 0.5},
    }
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(UsageError, match="has 400 forget samples but this forget split has 20"):
        evaluate(tiny_cfg, "target", retain_logs=str(tmp_path / "bad.json"))


def test_bf16_and_fp32_agree(tiny_cfg, prepared):
    """Log-probs are computed from fp32-upcast logits: a bf16 copy gives close probabilities, no numpy crash."""
    import numpy as np

    from unlearn_lab.data.tofu import SyntheticSource
    from unlearn_lab.metrics.scoring import Scorer
    from unlearn_lab.models import load

    tok = load.load_tokenizer(prepared.target)
    pairs = [(r["question"], r["answer"]) for r in SyntheticSource(10).load("forget10")[:8]]
    lp = {}
    for dtype in ("float32", "bfloat16"):
        model = load.load_model(prepared.target, dtype=dtype)
        stats = Scorer(model, tok, tiny_cfg.prompt, 4).score_pairs(pairs)
        assert all(s.logprobs.dtype == np.float32 for s in stats)
        lp[dtype] = np.array([s.avg_loss for s in stats])
    assert np.allclose(lp["float32"], lp["bfloat16"], rtol=0.05, atol=0.05)


@pytest.mark.parametrize("reference_mask", [False, True, "no pad token"])
def test_prefix_shared_scoring_equals_plain_forward(tiny_cfg, prepared, reference_mask):
    """score_pairs shares each question's prompt pass; it must equal one plain forward per pair."""
    import dataclasses

    import numpy as np
    import torch

    from unlearn_lab.data import prompts
    from unlearn_lab.data.tofu import SyntheticSource
    from unlearn_lab.metrics.scoring import Scorer
    from unlearn_lab.models import load

    pcfg = dataclasses.replace(tiny_cfg.prompt, reference_attention_mask=bool(reference_mask))
    tok, model = load.load_tokenizer(prepared.target), load.load_model(prepared.target)
    if reference_mask == "no pad token":  # pad = eos: the mask hides every in-sequence eot as well
        tok.pad_token = None
    recs = SyntheticSource(10).load("forget10_perturbed")[:5]
    pairs = [(r["question"], a) for r in recs for a in [r["answer"], r["paraphrased_answer"], *r["perturbed_answer"]]]
    stats = Scorer(model, tok, pcfg, batch_size=9).score_pairs(pairs)
    for (q, a), st in zip(pairs, stats, strict=False):
        enc = prompts.encode_qa(tok, q, a, pcfg)
        ids = torch.tensor([enc.input_ids])
        mask = (ids != prompts.pad_id(tok, pcfg)).long() if reference_mask else torch.ones_like(ids)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[0, :-1].float()
        labels = torch.tensor(enc.labels[1:])
        keep = labels != prompts.IGNORE
        expected = torch.log_softmax(logits[keep], -1).gather(1, labels[keep][:, None]).squeeze(1).numpy()
        assert np.allclose(st.logprobs, expected, atol=1e-4), (q, a)
        assert st.labels.tolist() == labels[keep].tolist()


def test_retain_against_its_own_reference_at_batch_size_one(prepared):
    """Exactly 1.0 and 0.0 at batch size 1 too: the reference is scored by the same code path, batched the same."""
    cfg = load_experiment(None, [*TINY, "eval.batch_size=1", "eval.metrics=forget_quality,privleak"])
    result = evaluate(cfg, "retain")
    assert result.summary == {"forget_quality": 1.0, "privleak": 0.0}


def test_scores_are_batch_invariant(tiny_cfg, prepared):
    """Per-sample log-probs do not depend on the batch size or on which other rows share the batch (1e-6 relative,
    fp32, CPU): batch sizes 1, 3 and 32 over the forget set, and the forget set scored with or without others."""
    import numpy as np

    from unlearn_lab.data.tofu import SyntheticSource
    from unlearn_lab.metrics.scoring import Scorer
    from unlearn_lab.models import load

    tok, model = load.load_tokenizer(prepared.target), load.load_model(prepared.target)
    src = SyntheticSource(10)
    recs = src.load("forget10_perturbed")
    pairs = [(r["question"], a) for r in recs for a in [r["answer"], r["paraphrased_answer"], *r["perturbed_answer"]]]
    losses = {}
    for batch in (1, 3, 32):
        stats = Scorer(model, tok, tiny_cfg.prompt, batch).score_pairs(pairs)
        losses[batch] = np.array([s.avg_loss for s in stats])
    for batch in (3, 32):
        assert np.allclose(losses[batch], losses[1], rtol=1e-6, atol=0), batch
    others = [(r["question"], r["answer"]) for r in src.load("retain_perturbed")]
    mixed = Scorer(model, tok, tiny_cfg.prompt, 32).score_pairs(others + pairs)[len(others) :]
    assert np.allclose([s.avg_loss for s in mixed], losses[1], rtol=1e-6, atol=0)


@pytest.mark.parametrize("pad_token", [True, False])
def test_gradnorm_honours_the_reference_mask(tiny_cfg, prepared, pad_token):
    """mia_gradnorm's per-sample gradients (batch size 1, eot excluded from the loss) use the parity switch's mask:
    ids != pad. Expected values: a hand-written forward/backward with that mask."""
    import dataclasses

    import torch

    from unlearn_lab.data import prompts
    from unlearn_lab.data.tofu import SyntheticSource
    from unlearn_lab.metrics.scoring import Scorer
    from unlearn_lab.models import load

    pcfg = dataclasses.replace(tiny_cfg.prompt, reference_attention_mask=True)
    tok, model = load.load_tokenizer(prepared.target), load.load_model(prepared.target)
    if not pad_token:
        tok.pad_token = None
    rec = SyntheticSource(10).load("forget10")[0]
    got = Scorer(model, tok, pcfg).gradnorm_grads(rec["question"], rec["answer"])
    enc = prompts.encode_qa(tok, rec["question"], rec["answer"], pcfg)
    ids = torch.tensor([enc.input_ids])
    mask = (ids != (tok.pad_token_id if pad_token else tok.eos_token_id)).long()
    assert int((mask == 0).sum()) == (0 if pad_token else 3)
    labels = torch.tensor(enc.labels[1:])
    labels[max(i for i, v in enumerate(labels.tolist()) if v != prompts.IGNORE)] = prompts.IGNORE  # no final eot
    model.train()
    model.zero_grad()
    logits = model(input_ids=ids, attention_mask=mask).logits[0, :-1].float()
    keep = labels != prompts.IGNORE
    (-torch.log_softmax(logits[keep], -1).gather(1, labels[keep][:, None]).mean()).backward()
    for g, p in zip(got, model.parameters(), strict=False):
        assert (g is None) == (p.grad is None)
        if g is not None:
            assert torch.allclose(g, p.grad, atol=1e-6, rtol=1e-5)


def test_generation_is_capped_at_the_model_positions(tiny_cfg, prepared, caplog):
    """max_new_tokens = min(asked, positions - longest prompt): a 1000-token budget on a 256-position model never
    runs past the model (transformers' 'exceeded the model's predefined maximum length' is not logged)."""
    import logging

    from unlearn_lab.data import prompts
    from unlearn_lab.data.tofu import SyntheticSource
    from unlearn_lab.metrics.scoring import Scorer
    from unlearn_lab.models import load

    tok, model = load.load_tokenizer(prepared.target), load.load_model(prepared.target)
    questions = [r["question"] for r in SyntheticSource(10).load("forget10")[:4]]
    scorer = Scorer(model, tok, tiny_cfg.prompt, 4)
    longest = max(len(prompts.encode_prompt(tok, q, tiny_cfg.prompt)) for q in questions)
    assert model.config.max_position_embeddings == 256
    budget = scorer.generation_budget(questions, 1000)
    assert budget == 256 - longest
    assert scorer.generation_budget(questions, 8) == 8  # a smaller request is kept
    with caplog.at_level(logging.WARNING):
        texts = scorer.generate(questions, budget)
    assert len(texts) == 4 and "maximum length" not in caplog.text


@pytest.mark.parametrize("ratio", [None, 1.5])
def test_generation_bounded_by_the_answers(tiny_cfg, prepared, monkeypatch, ratio):
    """eval.answer_length_ratio: each part generates at most ratio x its longest ground-truth answer (in tokens, eot
    included); None keeps the reference's max_new_tokens (capped only by the model's 256 positions)."""
    import math

    from unlearn_lab.data.tofu import SyntheticSource
    from unlearn_lab.metrics.scoring import Scorer

    asked = {}
    real = Scorer.generate

    def spy(self, questions, max_new_tokens, progress=None):
        asked[len(questions)] = max_new_tokens
        return real(self, questions, max_new_tokens, progress)

    monkeypatch.setattr(Scorer, "generate", spy)
    sets = [*TINY, "eval.max_new_tokens=200", "eval.metrics=forget_Q_A_ROUGE"]
    sets.append(f"eval.answer_length_ratio={'null' if ratio is None else ratio}")  # the embedded default says 3
    evaluate(load_experiment(None, sets), "target")
    from unlearn_lab.models import load

    tok = load.load_tokenizer(prepared.target)
    scorer = Scorer(None, tok, tiny_cfg.prompt)
    forget = SyntheticSource(10).load("forget10_perturbed")
    from unlearn_lab.data import prompts

    longest = max(scorer.answer_tokens(r["question"], r["answer"]) for r in forget)
    positions = 256 - max(len(prompts.encode_prompt(tok, r["question"], tiny_cfg.prompt)) for r in forget)
    expected = min(200, positions) if ratio is None else math.ceil(ratio * longest)
    assert asked == {len(forget): expected} and (ratio is None or expected < positions)
