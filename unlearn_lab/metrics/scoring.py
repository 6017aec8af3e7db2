"""The ONLY evaluation code that runs the model: batched teacher-forced token stats and generation.

`score_pairs` runs each (question, answer) pair through the model once and keeps everything the
teacher-forced metrics need (probability, truth ratio, ES, EM, LOSS, zlib, Min-K, Min-K++):
the fp32 log-prob of every supervised token, the argmax prediction there, and Min-K++'s mu/sigma.
Log-probs are computed from fp32-upcast logits whatever the model dtype (spec 2.0, 8.1), and only at
supervised positions (the lm_head runs on those rows only: with a 128k vocabulary the full
log-softmax over all positions would dominate).

`generate` is batched greedy decoding with left padding and the KV cache. Decoding skips special tokens
without transformers' clean-up of spaces before punctuation (the reference's transformers 4.45 applied it;
newer versions refuse it for BPE tokenizers): rouge-score drops punctuation, so ROUGE is unaffected.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from transformers import DynamicCache, GenerationMixin, PreTrainedModel, PreTrainedTokenizerBase

from unlearn_lab.config import PromptConfig
from unlearn_lab.data import prompts
from unlearn_lab.metrics.mia import min_k_plus_plus_stats


class Progress(Protocol):
    """A progress bar (tqdm's `update`)."""

    def update(self, n: int = 1) -> object: ...


def _padded(rows: list[list[int]], pad: int, *, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, real): `rows` padded with `pad` to the longest, on the left or the right; real = 1 on their tokens."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    real = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        cols = slice(width - len(row), width) if left else slice(0, len(row))
        ids[r, cols] = torch.tensor(row)
        real[r, cols] = 1
    return ids, real


@dataclass(frozen=True)
class TokenStats:
    """Teacher-forced statistics of one answer; arrays cover all supervised tokens (the last is eos/eot)."""

    logprobs: np.ndarray  # (n,) fp32 log p(y_t | x, y_<t)
    argmax: np.ndarray  # (n,) greedy prediction at the position predicting y_t
    labels: np.ndarray  # (n,) y_t
    mu: np.ndarray  # (n,) Min-K++ mean of log p under p at that position
    sigma: np.ndarray  # (n,) Min-K++ std (variance clamped at 1e-6)

    @property
    def avg_loss(self) -> float:
        """Mean NLL over all supervised tokens, eot included (the reference's `avg_loss`)."""
        return float(-self.logprobs.mean()) if len(self.logprobs) else float("nan")

    def without_eot(self) -> TokenStats:
        """Min-K, Min-K++, ES, EM and GradNorm exclude the final end-of-turn token."""
        cut = slice(0, max(0, len(self.labels) - 1))
        return TokenStats(self.logprobs[cut], self.argmax[cut], self.labels[cut], self.mu[cut], self.sigma[cut])


@dataclass(frozen=True)
class Scorer:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    prompt_cfg: PromptConfig
    batch_size: int = 32
    # Min-K++'s per-position mu/sigma cost a pass over the vocabulary per answer token (~20 % of scoring on the
    # embedded world); off when no metric needs them, and then NaN (a metric that used them would raise)
    min_k_plus_plus: bool = True

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, question: str, answer: str) -> prompts.Encoded:
        return prompts.encode_qa(self.tokenizer, question, answer, self.prompt_cfg)

    @torch.no_grad()
    def score_pairs(self, pairs: list[tuple[str, str]], progress: Progress | None = None) -> list[TokenStats]:
        """Token stats for each (question, answer), in input order.

        Pairs that share a question share one prompt pass: the prompts of a batch of questions run once
        (left-padded, explicit position ids), their KV cache is repeated for each answer, and only the
        answer tokens run again. Positions equal those of the unpadded conversation, so the numbers are
        those of one full teacher-forced pass per pair (the tests check this against a plain forward).
        """
        by_question: dict[str, list[int]] = {}
        for i, (q, _) in enumerate(pairs):
            by_question.setdefault(q, []).append(i)
        prompt_ids = {q: prompts.encode_prompt(self.tokenizer, q, self.prompt_cfg) for q in by_question}
        encoded = [prompts.encode_qa(self.tokenizer, q, a, self.prompt_cfg, prompt=prompt_ids[q]) for q, a in pairs]
        groups = sorted(by_question.values(), key=lambda rows: len(encoded[rows[0]].input_ids))
        out: list[TokenStats | None] = [None] * len(encoded)
        self.model.eval()
        batch_groups: list[list[int]] = []
        size = 0
        for rows in groups:  # about `batch_size` answers per pass
            if batch_groups and size + len(rows) > self.batch_size:
                self._score_groups([[encoded[i] for i in g] for g in batch_groups], batch_groups, out)
                if progress is not None:
                    progress.update(size)
                batch_groups, size = [], 0
            batch_groups.append(rows)
            size += len(rows)
        if batch_groups:
            self._score_groups([[encoded[i] for i in g] for g in batch_groups], batch_groups, out)
            if progress is not None:
                progress.update(size)
        return out  # type: ignore[return-value]

    def _score_groups(self, items: list[list[prompts.Encoded]], rows: list[list[int]], out: list) -> None:
        device, pad = self.device, prompts.pad_id(self.tokenizer, self.prompt_cfg)
        ref_mask = self.prompt_cfg.reference_attention_mask
        decoder, head = self.model.get_decoder(), self.model.get_output_embeddings()
        # 1. prompts, left-padded; position ids count every real token from 0, as in the unpadded pass
        ids, real = _padded([g[0].input_ids[: g[0].prompt_len] for g in items], pad, left=True)
        mask = (ids != pad).long() * real if ref_mask else real
        positions = (real.cumsum(1) - 1).clamp_min(0)
        cache = DynamicCache()
        # transformers >= 5.24 names the argument `cache` (and deprecates `past_key_values`)
        cache_arg = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
        prompt_out = decoder(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            use_cache=True,
            **{cache_arg: cache},
        )
        last_hidden = prompt_out.last_hidden_state[:, -1]  # predicts each answer's first token
        # 2. answers: repeat each prompt's cache once per answer and run the answer tokens only
        owner = [r for r, g in enumerate(items) for _ in g]
        answers = [e.input_ids[e.prompt_len :] for g in items for e in g]
        cache.batch_select_indices(torch.tensor(owner, device=device))
        a_ids, a_real = _padded(answers, pad, left=False)
        a_width = a_ids.shape[1]
        a_mask = (a_ids != pad).long() * a_real if ref_mask else a_real
        a_pos = positions[owner, -1:] + 1 + torch.arange(a_width)[None, :]
        answer_out = decoder(
            input_ids=a_ids.to(device),
            attention_mask=torch.cat([mask[owner], a_mask], 1).to(device),
            position_ids=a_pos.to(device),
            use_cache=True,
            **{cache_arg: cache},
        )
        # hidden state predicting answer token j: the prompt's last for j = 0, else answer position j - 1
        hidden = torch.cat([last_hidden[owner][:, None], answer_out.last_hidden_state[:, :-1]], 1)
        keep = a_real.bool().to(device)
        logits = head(hidden[keep]).float()  # (N, V): only the rows we need, upcast to fp32
        logp = torch.log_softmax(logits, dim=-1)
        targets = a_ids.to(device)[keep]
        token_lp = logp.gather(1, targets[:, None]).squeeze(1)
        if self.min_k_plus_plus:
            mu, sigma = min_k_plus_plus_stats(logp)
        else:
            mu = sigma = torch.full_like(token_lp, float("nan"))
        pieces = [t.cpu().numpy() for t in (token_lp, logits.argmax(dim=-1), targets, mu, sigma)]
        offset = 0
        for row, answer in zip((i for g in rows for i in g), answers, strict=False):
            n = len(answer)
            out[row] = TokenStats(*(p[offset : offset + n] for p in pieces))
            offset += n

    @property
    def max_positions(self) -> int | None:
        config = self.model.config
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    def generation_budget(self, questions: list[str], max_new_tokens: int) -> int:
        """max_new_tokens capped so no sequence runs past the model's positions: its positions minus the longest
        prompt (one cap for the whole evaluation, so generations do not depend on how prompts are batched)."""
        limit = self.max_positions
        if limit is None or not questions:
            return max_new_tokens
        longest = max(len(prompts.encode_prompt(self.tokenizer, q, self.prompt_cfg)) for q in questions)
        return max(1, min(max_new_tokens, limit - longest))

    @torch.no_grad()
    def generate(self, questions: list[str], max_new_tokens: int, progress: Progress | None = None) -> list[str]:
        """Greedy generations (decoded with special tokens skipped, stripped), in input order."""
        model = self.model
        if not isinstance(model, GenerationMixin):
            raise TypeError(f"{type(model).__name__} cannot generate: it is not a transformers GenerationMixin")
        encoded = [prompts.encode_prompt(self.tokenizer, q, self.prompt_cfg) for q in questions]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        pad = prompts.pad_id(self.tokenizer, self.prompt_cfg)
        eos = model.generation_config.eos_token_id or self.tokenizer.eos_token_id
        texts: list[str] = [""] * len(encoded)
        model.eval()
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = prompts.collate_prompts(
                [encoded[i] for i in idx], pad, reference_mask=self.prompt_cfg.reference_attention_mask
            )
            batch = {k: v.to(self.device) for k, v in batch.items()}
            generated = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                top_p=None,
                temperature=None,
                use_cache=True,
                pad_token_id=pad,
                eos_token_id=eos,
            )
            new = generated[:, batch["input_ids"].shape[1] :]
            for row, ids in zip(idx, new.tolist(), strict=False):
                texts[row] = self._decode(ids)
            if progress is not None:
                progress.update(len(idx))
        return texts

    # ------------------------------------------------------------------------- token-id items (MUSE and others)

    @property
    def raw_pad(self) -> int:
        """Padding for items built without a chat template: the tokenizer's pad token, else EOS (MUSE, spec 2.5)."""
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id)

    @torch.no_grad()
    def score_items(self, items: list[prompts.Encoded], progress: Progress | None = None) -> list[TokenStats]:
        """Token stats of already-encoded items at their supervised positions (labels != -100), in input order:
        one right-padded teacher-forced pass per batch (shortest first); the lm_head runs on the supervised rows
        only, in slices of a bounded size (long texts: 2048 tokens x a 32k vocabulary per item)."""
        order = sorted(range(len(items)), key=lambda i: len(items[i].input_ids))
        out: list[TokenStats | None] = [None] * len(items)
        self.model.eval()
        head = self.model.get_output_embeddings()
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            ids, real = _padded([list(items[i].input_ids) for i in idx], self.raw_pad, left=False)
            labels = torch.full_like(ids, prompts.IGNORE)
            for r, i in enumerate(idx):
                labels[r, : len(items[i].labels)] = torch.tensor(list(items[i].labels))
            hidden = self.model.get_decoder()(input_ids=ids.to(self.device), attention_mask=real.to(self.device))
            target = labels[:, 1:].to(self.device)
            keep = target != prompts.IGNORE
            rows = hidden.last_hidden_state[:, :-1][keep]  # the positions predicting a supervised token
            pieces = self._read_rows(head, rows, target[keep])
            counts = keep.sum(1).tolist()
            offset = 0
            for i, n in zip(idx, counts, strict=True):
                out[i] = TokenStats(*(p[offset : offset + n] for p in pieces))
                offset += n
            if progress is not None:
                progress.update(len(idx))
        return out  # type: ignore[return-value]

    def _read_rows(self, head: torch.nn.Module, rows: torch.Tensor, targets: torch.Tensor) -> list[np.ndarray]:
        """(log-prob of the target, argmax, target, Min-K++ mu, sigma) per row, fp32, the vocabulary read in slices of
        about 2**26 logits."""
        vocab = int(getattr(self.model.config, "vocab_size", 0) or 32000)
        step = max(1, 2**26 // vocab)
        parts: list[list[np.ndarray]] = [[], [], [], [], []]
        for s in range(0, rows.shape[0], step):
            logits = head(rows[s : s + step]).float()
            logp = torch.log_softmax(logits, dim=-1)
            tgt = targets[s : s + step]
            token_lp = logp.gather(1, tgt[:, None]).squeeze(1)
            if self.min_k_plus_plus:
                mu, sigma = min_k_plus_plus_stats(logp)
            else:
                mu = sigma = torch.full_like(token_lp, float("nan"))
            for part, value in zip(parts, (token_lp, logits.argmax(dim=-1), tgt, mu, sigma), strict=True):
                part.append(value.cpu().numpy())
        empty = (np.float32, np.int64, np.int64, np.float32, np.float32)
        return [np.concatenate(p) if p else np.zeros(0, dtype=t) for p, t in zip(parts, empty, strict=True)]

    @torch.no_grad()
    def generate_ids(self, prompt_ids: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy continuations (new token ids, through the first EOS) of token-id prompts, in input order: left
        padding, the KV cache, batches of similar length; `max_new_tokens` capped so the longest prompt stays within
        the model's positions (one cap for the whole call, so outputs do not depend on the batching)."""
        model = self.model
        if not isinstance(model, GenerationMixin):
            raise TypeError(f"{type(model).__name__} cannot generate: it is not a transformers GenerationMixin")
        if not prompt_ids:
            return []
        limit = self.max_positions
        if limit is not None:
            max_new_tokens = max(1, min(max_new_tokens, limit - max(len(p) for p in prompt_ids)))
        order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
        pad, eos = self.raw_pad, self.tokenizer.eos_token_id
        out: list[list[int]] = [[] for _ in prompt_ids]
        model.eval()
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            ids, real = _padded([list(prompt_ids[i]) for i in idx], pad, left=True)
            generated = model.generate(
                input_ids=ids.to(self.device),
                attention_mask=real.to(self.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                top_p=None,
                temperature=None,
                use_cache=True,
                pad_token_id=pad,
                eos_token_id=eos,
            )
            for i, row in zip(idx, generated[:, ids.shape[1] :].tolist(), strict=True):
                out[i] = row[: row.index(eos) + 1] if eos in row else row
        return out

    def answer_tokens(self, question: str, answer: str) -> int:
        """Supervised tokens of an answer (its tokens plus the final eos/eot)."""
        enc = self.encode(question, answer)
        return len(enc.input_ids) - enc.prompt_len

    def ground_truth(self, question: str, answer: str) -> str:
        """The reference's ROUGE target: the supervised tokens decoded with special tokens skipped."""
        enc = self.encode(question, answer)
        return self._decode(enc.input_ids[enc.prompt_len :])

    def _decode(self, ids: list[int]) -> str:
        """Special tokens skipped, no clean-up of spaces (see the module docstring), stripped."""
        text = self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        assert isinstance(text, str), "one sequence decodes to one string"
        return text.strip()

    def gradnorm_grads(self, question: str, answer: str) -> list[torch.Tensor | None]:
        """Per-parameter gradients of -mean token log-prob (eot excluded), batch size 1, train mode (spec 2.6)."""
        enc = self.encode(question, answer)
        labels = list(enc.labels)
        last = max(i for i, v in enumerate(labels) if v != prompts.IGNORE)
        labels[last] = prompts.IGNORE  # exclude the final eot
        ids = torch.tensor([enc.input_ids], device=self.device)
        lab = torch.tensor([labels], device=self.device)
        # batch size 1: no padding, but the parity switch masks what the reference's collator masks (ids != pad)
        pad = prompts.pad_id(self.tokenizer, self.prompt_cfg)
        mask = (ids != pad).long() if self.prompt_cfg.reference_attention_mask else torch.ones_like(ids)
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        try:
            logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            target = lab[:, 1:]
            keep = target != prompts.IGNORE
            if not keep.any():
                return []
            loss = -torch.log_softmax(logits[keep], -1).gather(1, target[keep][:, None]).mean()
            loss.backward()
            grads = [p.grad.detach().clone() if p.grad is not None else None for p in self.model.parameters()]
        finally:
            self.model.zero_grad(set_to_none=True)
            self.model.eval()
        return grads
