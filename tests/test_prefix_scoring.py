"""Shared-prefix scoring (issue 28): the layout (pure), its scores against a plain forward per row, the fallback.

The oracle everywhere is one plain, unpadded teacher-forced forward pass of the whole model per row, written here
independently of `metrics/scoring.py`: log-softmax of the fp32 logits at the positions predicting the supervised
tokens (the prompt config's attention mask: all ones, or ids != pad under the parity switch).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from unlearn_lab.data import prompts
from unlearn_lab.metrics import layout
from unlearn_lab.metrics.layout import Row

# --- the layout, on hand-made token ids ------------------------------------------------------------------------------


def random_rows(seed: int, n: int = 60) -> list[Row]:
    """Rows as TOFU shapes them: a common system prefix, a few prompts, answers that often share a beginning,
    duplicates, an answer extending another, a row without a supervised token."""
    rng = np.random.default_rng(seed)
    system = tuple(int(t) for t in rng.integers(3, 50, 6))
    prompts_ = [system + tuple(int(t) for t in rng.integers(3, 50, rng.integers(1, 8))) + (2,) for _ in range(7)]
    stems = [tuple(int(t) for t in rng.integers(3, 50, rng.integers(0, 5))) for _ in range(4)]
    rows = []
    for _ in range(n):
        prompt = prompts_[rng.integers(len(prompts_))]
        answer = stems[rng.integers(len(stems))] + tuple(int(t) for t in rng.integers(3, 50, rng.integers(0, 6)))
        rows.append(Row(prompt + answer + (1,), len(prompt)))
    rows += [rows[0], Row((*rows[1].ids[:-1], 7, 1), rows[1].prompt_len), Row(prompts_[0], len(prompts_[0]))]
    return rows


def check_layout(rows: list[Row], plan: layout.Layout, batch_size: int) -> None:
    """Every entry reads the site at the position before its token, on a segment whose ancestors spell the row's
    prefix; parents run before children; nothing runs twice; keys/values are released after their last use."""
    site_at = {}
    batch_of = {}
    for b, batch in enumerate(plan.batches):
        assert 1 <= len(batch.segments) <= batch_size
        for i in batch.segments:
            assert i not in batch_of, "a segment runs once"
            batch_of[i] = b
            seg = plan.segments[i]
            assert all(batch_of[a] < b for a in seg.chain), "ancestors run first"
            parent = plan.segments[seg.chain[-1]] if seg.chain else None
            assert seg.start == (parent.start + len(parent.tokens) if parent else 0), "a segment continues its parent"
        cursor = batch.site_lo
        for r, i in enumerate(batch.segments):
            for col in range(plan.segments[i].first_site, len(plan.segments[i].tokens)):
                site_at[cursor] = (i, col)
                assert batch.site_rows[cursor - batch.site_lo] == r and batch.site_cols[cursor - batch.site_lo] == col
                cursor += 1
        assert cursor == batch.site_hi
        for i in batch.release:
            assert all(batch_of.get(j, -1) <= b for j, s in enumerate(plan.segments) if i in s.chain)
    assert sorted(batch_of) == list(range(len(plan.segments)))
    for r, row in enumerate(rows):
        a, b = plan.bounds[r], plan.bounds[r + 1]
        assert plan.entry_label[a:b].tolist() == list(row.ids[row.prompt_len :])
        for k, e in enumerate(range(a, b)):
            seg_id, col = site_at[int(plan.entry_site[e])]
            seg = plan.segments[seg_id]
            pos = seg.start + col
            assert pos == row.prompt_len - 1 + k, "the site predicting token t is position t - 1"
            prefix = [t for c in seg.chain for t in plan.segments[c].tokens] + list(seg.tokens[: col + 1])
            assert prefix == list(row.ids[: pos + 1]), "the site sees exactly the row's tokens so far"
    released = [i for batch in plan.batches for i in batch.release]
    assert sorted(released) == sorted({a for s in plan.segments for a in s.chain})
    assert sum(batch.rows_done for batch in plan.batches) == sum(len(r.ids) > r.prompt_len for r in rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    ("batch_size", "answer_levels", "window_rows"), [(1, 1, 512), (3, 0, 8), (4, 3, 16), (32, 1, 512)]
)
def test_layout_reads_every_token_once_at_the_right_site(seed, batch_size, answer_levels, window_rows):
    rows = random_rows(seed)
    plan = layout.plan(rows, batch_size, answer_levels=answer_levels, window_rows=window_rows)
    check_layout(rows, plan, batch_size)


def test_groups_are_prompt_token_ids_not_strings():
    a, b, c = (1, 5, 6, 2), (1, 5, 7, 2), (1, 5, 6, 2)
    rows = [Row((*a, 9, 1), 4), Row((*b, 9, 1), 4), Row((*c, 8, 1), 4), Row(a, 4)]
    assert layout.group_by_prompt(rows) == [[0, 2], [1]]  # the prompt-only row has nothing to score
    with pytest.raises(ValueError, match="a prompt of 5 tokens"):
        layout.group_by_prompt([Row((1, 2), 5)])


def test_shared_prompts_and_answer_prefixes_run_once():
    """A question's prompt runs once, its answers' common beginning once (answer_levels=1), the system prefix
    that every prompt shares once per window; a group larger than a batch is split across batches."""
    system, q1, q2 = (1, 2, 3, 4), (10, 11), (20, 21, 22)
    rows = [Row(system + q1 + (5,) + a + (99,), 7) for a in [(30, 31, 32), (30, 31, 33), (30, 31, 34, 35), (40,)]]
    rows += [Row(system + q2 + (5,) + (50, 51), 8)]
    plan = layout.plan(rows, 2)
    tokens = sorted(s.tokens for s in plan.segments)
    # a row's input is its conversation less the last token (99, or 51): nothing is predicted from it
    assert tokens == sorted([system, (*q1, 5), (*q2, 5, 50), (30, 31), (32,), (33,), (34, 35), (40,)])
    assert plan.tokens_run()["real"] == 4 + 3 + 5 + 2 + 1 + 1 + 2 + 1
    assert sum(len(r.ids) - 1 for r in rows) == 48  # the same inputs, each row run whole
    leaves = [
        b for b in plan.batches if any(plan.segments[i].tokens in [(32,), (33,), (34, 35), (40,)] for i in b.segments)
    ]
    assert len(leaves) >= 2, "the group's answers are split over batches of 2"
    check_layout(rows, plan, 2)


def test_min_k_plus_plus_stats_shortcut_is_exact():
    """Without a -inf log-prob the mask is skipped: the same numbers as the always-masked formula."""
    from unlearn_lab.metrics.mia import min_k_plus_plus_stats

    logp = torch.log_softmax(torch.randn(50, 300, generator=torch.Generator().manual_seed(0)) * 8, -1)
    probs = logp.exp()
    finite = logp.masked_fill(probs == 0, 0.0)
    mu = (probs * finite).sum(-1)
    sigma = ((probs * finite.square()).sum(-1) - mu.square()).clamp(min=1e-6).sqrt()
    got = min_k_plus_plus_stats(logp)
    assert torch.equal(got[0], mu) and torch.equal(got[1], sigma)


# --- scores on the tiny model against a plain forward per row --------------------------------------------------------


def oracle(model, tok, pcfg, pairs):
    """Per row: fp32 log-probs, argmax, labels, Min-K++ mu/sigma from one unpadded plain forward pass."""
    from unlearn_lab.metrics.mia import min_k_plus_plus_stats

    out = []
    for q, a in pairs:
        enc = prompts.encode_qa(tok, q, a, pcfg)
        ids = torch.tensor([enc.input_ids])
        mask = (ids != prompts.pad_id(tok, pcfg)).long() if pcfg.reference_attention_mask else torch.ones_like(ids)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[0, enc.prompt_len - 1 : -1].float()
        logp = torch.log_softmax(logits, -1)
        labels = torch.tensor(enc.input_ids[enc.prompt_len :])
        mu, sigma = min_k_plus_plus_stats(logp)
        out.append((logp.gather(1, labels[:, None]).squeeze(1), logits.argmax(-1), labels, mu, sigma))
    return out


def assert_matches(stats, expected, pairs):
    """fp32 tolerance. Min-K++'s sigma^2 = E[log p^2] - mu^2 loses digits to the subtraction, so it is held to
    1e-5 of E[log p^2] (the path before shared prefixes differed from this oracle by up to 2.7e-5 relative in sigma
    on these rows; a near-uniform random model loses more)."""
    for st, (lp, argmax, labels, mu, sigma), pair in zip(stats, expected, pairs, strict=True):
        assert st.labels.tolist() == labels.tolist(), pair
        np.testing.assert_allclose(st.logprobs, lp.numpy(), rtol=1e-5, atol=2e-6, err_msg=str(pair))
        np.testing.assert_allclose(st.mu, mu.numpy(), rtol=1e-5, atol=2e-6, err_msg=str(pair))
        second = mu.numpy().astype(np.float64) ** 2 + sigma.numpy().astype(np.float64) ** 2
        assert np.all(np.abs(st.sigma.astype(np.float64) ** 2 - sigma.numpy() ** 2) <= 1e-5 * second), pair
        assert st.argmax.tolist() == argmax.tolist(), pair


def tricky_pairs():
    """Five questions' 7 answers each, a duplicate, a single-answer question, two question strings with the same
    prompt ids (the template trims), an answer extending another."""
    from unlearn_lab.data.tofu import SyntheticSource

    recs = SyntheticSource(10).load("forget10_perturbed")[:5]
    pairs = [(r["question"], a) for r in recs for a in [r["answer"], r["paraphrased_answer"], *r["perturbed_answer"]]]
    q = recs[0]["question"]
    return [*pairs, pairs[3], ("Who is the author?", "Nobody."), (f"  {q}  ", "Nobody."), (q, "Nobody. Really.")]


@pytest.fixture(scope="module")
def tiny(prepared):
    from unlearn_lab.models import load

    return load.load_model(prepared.target), load.load_tokenizer(prepared.target)


@pytest.mark.parametrize("reference_mask", [False, True, "pad = eos"])
@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_continuations_equal_a_plain_forward_per_row(tiny_cfg, tiny, reference_mask, batch_size):
    """Every row's stats, scored as continuations of shared prompts and answer prefixes (left-padded past,
    right-padded new tokens, groups split over batches of 1 and 3), equal one plain forward per row."""
    from unlearn_lab.metrics.scoring import Scorer

    model, tok = tiny
    pcfg = dataclasses.replace(tiny_cfg.prompt, reference_attention_mask=bool(reference_mask))
    saved = tok.pad_token
    if reference_mask == "pad = eos":  # the mask then hides every in-sequence eot as well
        tok.pad_token = None
    try:
        pairs = tricky_pairs()
        said: list[str] = []
        scorer = Scorer(model, tok, pcfg, batch_size, log=said.append)
        assert scorer.obstacle is None
        assert_matches(scorer.score_pairs(pairs), oracle(model, tok, pcfg, pairs), pairs)
        assert said == []
    finally:
        tok.pad_token = saved


# --- the fallback: a model or setting the continuation cannot serve --------------------------------------------------


class NoCache(torch.nn.Module):
    """A causal LM as a model without a KV cache presents itself: forward(input_ids, attention_mask) -> logits."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config = inner, inner.config

    def forward(self, input_ids, attention_mask=None, **_):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)


def sliding_window_model(vocab: int):
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        sliding_window=4096,
    )
    return MistralForCausalLM(config).eval()


@pytest.mark.parametrize("case", ["no KV cache", "sliding window", "pad = bos under the reference mask"])
def test_fallback_runs_full_sequences_and_says_so_once(tiny_cfg, tiny, case):
    from unlearn_lab.metrics.scoring import Scorer

    model, tok = tiny
    pcfg = tiny_cfg.prompt
    saved = tok.pad_token
    if case == "no KV cache":
        model = NoCache(model)
    elif case == "sliding window":
        model = sliding_window_model(len(tok))
    else:
        tok.pad_token = tok.bos_token
        pcfg = dataclasses.replace(pcfg, reference_attention_mask=True)
    try:
        pairs = tricky_pairs()
        said: list[str] = []
        scorer = Scorer(model, tok, pcfg, 4, log=said.append)
        stats = scorer.score_pairs(pairs[:20]) + scorer.score_pairs(pairs[20:])
        assert len(said) == 1 and said[0].startswith("scoring: ") and "every pair runs as a full sequence" in said[0]
        assert_matches(stats, oracle(model, tok, pcfg, pairs), pairs)
    finally:
        tok.pad_token = saved


def test_a_switched_off_scorer_is_silent(tiny_cfg, tiny):
    from unlearn_lab.metrics.scoring import Scorer

    said: list[str] = []
    scorer = Scorer(*tiny, tiny_cfg.prompt, 4, shared_prefix=False, log=said.append)
    assert scorer.obstacle == "shared-prefix scoring is switched off"
    scorer.score_pairs(tricky_pairs()[:3])
    assert said == []


# --- the whole suite: every TOFU_EVAL entry against the full-sequence path --------------------------------------------

EXACT = ("forget_quality", "privleak", "mia_gradnorm")  # KS on ranks, AUCs, gradients: not scored here


def exact(path: tuple) -> bool:
    """forget_quality, privleak, gradnorm, every AUC (a MIA's agg_value is its AUC) and ROUGE: identical."""
    top = path[0]
    return (
        top in EXACT or path[-1] == "auc" or (top.startswith("mia_") and path[1:] == ("agg_value",)) or "ROUGE" in top
    )


def compare_entries(new, old, path=()):
    """Strings identical; AUCs, forget_quality, privleak and generations identical; scores that are differences
    (mia_reference: NLL minus the reference's NLL; Min-K++: a mean of z-scores) within 1e-5 of max(1, |value|), as
    they may sit near 0; every other number (probabilities, NLLs, truth ratios, ...) within 1e-5 relative, or 1.2e-7
    absolute for NLLs near 0 (a memorised answer's 0.003 differs by one fp32 rounding of its log-probs, 3e-8, between
    any two batchings: the path before shared prefixes differed from the full-sequence path by 1.2e-5 relative)."""
    if isinstance(old, dict):
        assert set(new) == set(old), path
        for key in old:
            compare_entries(new[key], old[key], (*path, key))
    elif isinstance(old, list):
        assert len(new) == len(old), path
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            compare_entries(a, b, (*path, i))
    elif isinstance(old, str) or old is None or exact(path):
        assert new == old, path
    elif path[0] in ("mia_reference", "mia_min_k_plus_plus"):
        assert abs(new - old) <= 1e-5 * max(1.0, abs(old)), (path, new, old)
    else:  # 1.2e-7 absolute: fp32's resolution of a log-prob near 0 (an NLL of 0.003 cannot hold 1e-5 relative)
        assert abs(new - old) <= max(1e-5 * abs(old), 1.2e-7), (path, new, old)


@pytest.mark.parametrize("reference_mask", [False, "pad = eos"])
def test_every_entry_matches_the_full_sequence_path(tiny_cfg, prepared, reference_mask):
    """`--metrics all` with the retain reference, on the tiny world, shared prefixes vs every pair run whole."""
    from tests.conftest import make_plan
    from unlearn_lab.benchmarks.tofu import TOFU
    from unlearn_lab.evaluation import eval_data
    from unlearn_lab.metrics import suite
    from unlearn_lab.metrics.scoring import Scorer
    from unlearn_lab.models import load

    pcfg = dataclasses.replace(tiny_cfg.prompt, reference_attention_mask=bool(reference_mask))
    tok = load.load_tokenizer(prepared.target)
    if reference_mask == "pad = eos":
        tok.pad_token = None
    target, retain = load.load_model(prepared.target), load.load_model(prepared.retain)
    data = eval_data(make_plan(tiny_cfg, "eval", evaluated="target"))
    kw = {"progress": False, "max_new_tokens": 8}
    results = {}
    for shared in (True, False):
        ref = suite.evaluate(Scorer(retain, tok, pcfg, shared_prefix=shared), data, TOFU.reference_entries(), **kw)
        scorer = Scorer(target, tok, pcfg, shared_prefix=shared)
        results[shared] = suite.evaluate(scorer, data, suite.parse_metrics("all"), reference=ref, **kw)
    assert len(results[True]) == 31
    compare_entries(results[True], results[False])


@pytest.mark.parametrize("shared", [True, False])
def test_nothing_to_score(tiny_cfg, tiny, shared):
    from unlearn_lab.metrics.scoring import Scorer

    assert Scorer(*tiny, tiny_cfg.prompt, 4, shared_prefix=shared).score_pairs([]) == []


def test_learned_positions_continue_too(tiny_cfg, tiny):
    """GPT-2 (learned absolute positions, its own attention code) continues its cache: positions are those of the
    unpadded conversation, so the numbers equal a plain forward per row."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from unlearn_lab.metrics.scoring import Scorer

    _, tok = tiny
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2)
    model = GPT2LMHeadModel(config).eval()
    pairs = tricky_pairs()
    scorer = Scorer(model, tok, tiny_cfg.prompt, 5)
    assert scorer.obstacle is None
    assert_matches(scorer.score_pairs(pairs), oracle(model, tok, tiny_cfg.prompt, pairs), pairs)
