"""The ONLY evaluation code that runs the model: batched teacher-forced token stats and generation.

`score_pairs` computes everything the teacher-forced metrics need (probability, truth ratio, ES, EM, LOSS, zlib,
Min-K, Min-K++) for each (question, answer) pair: the fp32 log-prob of every supervised token, the argmax
prediction there, and Min-K++'s mu/sigma. Log-probs are computed from fp32-upcast logits whatever the model dtype
(spec 2.0, 8.1), and only at the positions that predict a supervised token (the lm_head runs on those rows only:
with a 128k vocabulary the full log-softmax over all positions would dominate).

Shared prefixes: a question's answers all continue the same chat-templated prompt, and many of them continue each
other (a perturbed answer starts like the paraphrase it perturbs). `metrics/layout.py` plans which token runs
where (rows grouped by prompt token ids, a small radix tree per prompt); this module runs that plan: each segment
once, as a continuation of its ancestors' keys and values (left-padded past, right-padded new tokens, positions
those of the unpadded conversation, the attention mask the prompt config asks for), and the lm_head once per
position, read by every row through it. The numbers are those of one plain teacher-forced pass per pair, to fp32
rounding (the tests check this against a plain forward). Where a model cannot continue a cache this way (no
separate decoder and head, no KV cache, sliding-window or recurrent layers) or the parity switch's mask could not
be honoured exactly (pad = bos: the first token hidden), every pair runs as one full right-padded sequence
instead, and the scorer says so once.

`generate` is batched greedy decoding with left padding and the KV cache. Decoding skips special tokens
without transformers' clean-up of spaces before punctuation (the reference's transformers 4.45 applied it;
newer versions refuse it for BPE tokenizers): rouge-score drops punctuation, so ROUGE is unaffected.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np
import torch
from transformers import DynamicCache, GenerationMixin, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicLayer

from unlearn_lab.config import PromptConfig
from unlearn_lab.data import prompts
from unlearn_lab.metrics import layout
from unlearn_lab.metrics.mia import min_k_plus_plus_stats
from unlearn_lab.runtime import check_interrupted

# rows of fp32 logits the lm_head produces at once: 2**26 values (256 MB), so a 128k vocabulary reads 512 rows
HEAD_CHUNK_VALUES = 2**26


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


def prefix_obstacle(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt_cfg: PromptConfig) -> str | None:
    """Why shared-prefix scoring cannot run on this model and setting, or None when it can."""
    config = model.config
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if getattr(config, "is_encoder_decoder", False) or decoder is None or decoder is model or head is None:
        return f"{type(model).__name__} has no separate decoder and output head to continue a KV cache with"
    params = set(inspect.signature(decoder.forward).parameters)
    if not {"attention_mask", "position_ids"} <= params or not {"cache", "past_key_values"} & params:
        return f"{type(model).__name__}'s decoder takes no KV cache with explicit positions"
    layers = DynamicCache(config=config).layers
    if any(type(layer) is not DynamicLayer for layer in layers):
        return f"{type(model).__name__} has sliding-window or recurrent layers, whose cache cannot be continued"
    pad = prompts.pad_id(tokenizer, prompt_cfg)
    if prompt_cfg.reference_attention_mask and pad == tokenizer.bos_token_id:
        return "the reference attention mask hides the first token (pad = bos), which a continuation cannot reproduce"
    return None


def _stacked(cache: DynamicCache, rows: torch.Tensor) -> torch.Tensor:
    """The keys and values of a cache's `rows` as one tensor (layers, 2, rows, heads, tokens, head dim)."""
    pairs = []
    for layer in cache.layers:
        assert isinstance(layer, DynamicLayer) and layer.keys is not None and layer.values is not None, layer
        pairs.append(torch.stack([layer.keys.index_select(0, rows), layer.values.index_select(0, rows)]))
    return torch.stack(pairs)


@dataclass(frozen=True)
class _Sinks:
    """Where a layout's results land: per entry (supervised token) and per site (position read)."""

    logprobs: torch.Tensor  # (E,)
    argmax: torch.Tensor  # (S,)
    mu: torch.Tensor  # (S,)
    sigma: torch.Tensor  # (S,)

    @classmethod
    def empty(cls, entries: int, sites: int, device: torch.device) -> _Sinks:
        nan = float("nan")
        return cls(
            torch.full((entries,), nan, device=device),
            torch.zeros(sites, dtype=torch.long, device=device),
            torch.full((sites,), nan, device=device),
            torch.full((sites,), nan, device=device),
        )

    def stats(self, entry_site: np.ndarray, labels: np.ndarray, bounds: np.ndarray) -> list[TokenStats]:
        """One TokenStats per row: its entries [bounds[r], bounds[r + 1]), site values read at each entry's site."""
        lp = self.logprobs.cpu().numpy()
        argmax, mu, sigma = (t.cpu().numpy()[entry_site] for t in (self.argmax, self.mu, self.sigma))
        return [
            TokenStats(*(p[a:b] for p in (lp, argmax, labels, mu, sigma)))
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
        ]


@dataclass(frozen=True)
class Scorer:
    """Runs one model for an evaluation: token stats of (question, answer) pairs, greedy generations, GradNorm's
    per-sample gradients. Holds only what it derives from its inputs: the encodings it has made (so a pair is
    tokenised once per evaluation) and the lines it has said."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    prompt_cfg: PromptConfig
    batch_size: int = 32
    # Min-K++'s per-position mu/sigma cost a pass over the vocabulary per answer token (~20 % of scoring on the
    # embedded world); off when no metric needs them, and then NaN (a metric that used them would raise)
    min_k_plus_plus: bool = True
    # run shared prompts and answer prefixes once (metrics/layout.py); False: every pair as a full sequence
    shared_prefix: bool = True
    log: Callable[[str], object] | None = None  # where the one line about a fallback goes (else a logging warning)
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # encodings, by their inputs
    _said: set = field(default_factory=set, init=False, repr=False, compare=False)  # lines already said

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def pad(self) -> int:
        return prompts.pad_id(self.tokenizer, self.prompt_cfg)

    def prompt_ids(self, question: str) -> list[int]:
        """The question's prompt tokens (memoised: several answers, generation and its budget read them)."""
        key = ("prompt", question)
        if key not in self._memo:
            self._memo[key] = prompts.encode_prompt(self.tokenizer, question, self.prompt_cfg)
        return list(self._memo[key])

    def encode(self, question: str, answer: str) -> prompts.Encoded:
        """The pair's tokens and labels (memoised: scoring, ROUGE's ground truth, zlib and gradnorm read them)."""
        key = ("pair", question, answer)
        if key not in self._memo:
            prompt = self.prompt_ids(question)
            self._memo[key] = prompts.encode_qa(self.tokenizer, question, answer, self.prompt_cfg, prompt=prompt)
        encoded: prompts.Encoded = self._memo[key]
        return encoded

    def _say_once(self, line: str) -> None:
        """`line` through `log` (a logging warning without one), the first time only."""
        if line in self._said:
            return
        self._said.add(line)
        if self.log is not None:
            self.log(line)
        else:
            logging.getLogger(__name__).warning(line)

    @cached_property
    def obstacle(self) -> str | None:
        """Why this scorer runs every pair as a full sequence (None: it shares prefixes)."""
        if not self.shared_prefix:
            return "shared-prefix scoring is switched off"
        return prefix_obstacle(self.model, self.tokenizer, self.prompt_cfg)

    def _mask(self, ids: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The attention mask of padded ids: their real tokens, less pad-token ids under the parity switch."""
        return (ids != self.pad).long() * real if self.prompt_cfg.reference_attention_mask else real

    @torch.no_grad()
    def score_pairs(self, pairs: list[tuple[str, str]], progress: Progress | None = None) -> list[TokenStats]:
        """Token stats for each (question, answer), in input order (see the module docstring)."""
        rows = [layout.Row(tuple(e.input_ids), e.prompt_len) for e in (self.encode(q, a) for q, a in pairs)]
        self.model.eval()
        if self.obstacle is not None:
            if self.shared_prefix:
                self._say_once(f"scoring: {self.obstacle}; every pair runs as a full sequence")
            return self._score_plain(rows, progress)
        return self._score_layout(layout.plan(rows, self.batch_size), progress)

    def _score_layout(self, plan: layout.Layout, progress: Progress | None) -> list[TokenStats]:
        """Runs the plan's batches in order, holding the keys/values of segments that later batches continue."""
        sinks = _Sinks.empty(len(plan.entry_site), plan.sites, self.device)
        label = torch.as_tensor(plan.entry_label, device=self.device)
        site = torch.as_tensor(plan.entry_site, device=self.device)
        held: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for batch in plan.batches:
            check_interrupted()  # a Ctrl-C Python dropped (runtime.check_interrupted)
            hidden = self._run_segments(plan, batch, held)
            rows, cols = (torch.as_tensor(a, device=self.device) for a in (batch.site_rows, batch.site_cols))
            entries = torch.as_tensor(batch.entries, device=self.device)
            self._read(hidden[rows, cols], batch.site_lo, site[entries] - batch.site_lo, label[entries], entries, sinks)
            for i in batch.release:
                del held[i]
            if progress is not None:
                progress.update(batch.rows_done)
        return sinks.stats(plan.entry_site, plan.entry_label, plan.bounds)

    def _run_segments(
        self, plan: layout.Layout, batch: layout.Batch, held: dict[int, tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        """One forward over a batch's segments (right-padded), continuing their ancestors' keys and values (their
        prefixes, left-padded); keeps the prefixes of segments that later batches continue. Returns hidden states."""
        device, decoder = self.device, self.model.get_decoder()
        segments = [plan.segments[i] for i in batch.segments]
        ids, real = _padded([list(s.tokens) for s in segments], self.pad, left=False)
        mask = self._mask(ids, real)
        # positions of the unpadded conversation; a padded column repeats its row's last one (always a valid position)
        last = torch.tensor([s.start + len(s.tokens) - 1 for s in segments])[:, None]
        positions = torch.minimum(torch.tensor([s.start for s in segments])[:, None] + torch.arange(ids.shape[1]), last)
        cache, past = None, 0
        if segments[0].chain:
            cache, past_mask = self._past(segments, held)
            mask, past = torch.cat([past_mask, mask], 1), past_mask.shape[1]
        elif batch.keep:
            cache = DynamicCache(config=self.model.config)
        # transformers >= 5.24 names the argument `cache` (and deprecates `past_key_values`)
        cache_arg = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
        out = decoder(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            use_cache=cache is not None,
            **({cache_arg: cache} if cache is not None else {}),
        )
        if batch.keep:
            assert cache is not None, "a batch with continued segments runs with a cache"
            kept = [r for r, i in enumerate(batch.segments) if i in batch.keep]
            kv = _stacked(cache, torch.tensor(kept, device=device))
            for n, r in enumerate(kept):
                seg = segments[r]
                cols = slice(past - seg.start, past + len(seg.tokens))  # its whole prefix, less the left padding
                held[batch.segments[r]] = (kv[:, :, n, :, cols].clone(), mask[r, cols].clone())
        return out.last_hidden_state

    def _past(
        self, segments: Sequence[layout.Segment], held: dict[int, tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[DynamicCache, torch.Tensor]:
        """The batch's past: each segment's prefix (its parent's held keys/values and mask), left-padded."""
        width = max(s.start for s in segments)
        first, first_mask = held[segments[0].chain[-1]]
        shape = (*first.shape[:2], len(segments), first.shape[2], width, first.shape[4])
        if all(s.chain[-1] == segments[0].chain[-1] for s in segments):  # one parent (a window's root): no padding
            kv, mask = first.unsqueeze(2).expand(shape), first_mask.expand(len(segments), width)
        else:
            kv = first.new_zeros(shape)
            mask = torch.zeros((len(segments), width), dtype=torch.long)
            for r, seg in enumerate(segments):
                prefix, visible = held[seg.chain[-1]]
                kv[:, :, r, :, width - seg.start :] = prefix
                mask[r, width - seg.start :] = visible
        # the cache copies each layer's keys and values once (DynamicLayer concatenates onto an empty tensor)
        cache = DynamicCache(ddp_cache_data=[(layer[0], layer[1]) for layer in kv], config=self.model.config)
        return cache, mask

    def _read(
        self,
        hidden: torch.Tensor,
        site_lo: int,
        local: torch.Tensor,
        labels: torch.Tensor,
        entries: torch.Tensor,
        sinks: _Sinks,
        *,
        logits_in: bool = False,
    ) -> None:
        """The lm_head (unless `logits_in`) at a batch's sites, in chunks: argmax and Min-K++ stats per site
        [site_lo, site_lo + len(hidden)), the log-prob of `labels` at `local` sites for `entries`."""
        head = self.model.get_output_embeddings() if not logits_in else None
        step = max(1, HEAD_CHUNK_VALUES // int(hidden.shape[-1] if head is None else head.weight.shape[0]))
        for lo in range(0, len(hidden), step):
            logits = (head(hidden[lo : lo + step]) if head is not None else hidden[lo : lo + step]).float()
            logp = torch.log_softmax(logits, dim=-1)
            sites = slice(site_lo + lo, site_lo + lo + len(logits))
            sinks.argmax[sites] = logits.argmax(dim=-1)
            if self.min_k_plus_plus:
                sinks.mu[sites], sinks.sigma[sites] = min_k_plus_plus_stats(logp)
            inside = (local >= lo) & (local < lo + len(logits))
            sinks.logprobs[entries[inside]] = logp[local[inside] - lo, labels[inside]]

    def _score_plain(self, rows: list[layout.Row], progress: Progress | None) -> list[TokenStats]:
        """The fallback: every row one full right-padded sequence through the whole model, `batch_size` a pass,
        shortest first; positions 0..n-1 and the prompt config's mask, as the reference runs it."""
        sizes = [len(r.ids) - r.prompt_len for r in rows]
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        labels = np.array([t for r in rows for t in r.ids[r.prompt_len :]], dtype=np.int64)
        entry_site = np.zeros(len(labels), dtype=np.int64)  # one site per entry, numbered in run order
        sinks = _Sinks.empty(len(labels), len(labels), self.device)
        order = sorted((i for i in range(len(rows)) if sizes[i]), key=lambda i: (len(rows[i].ids), i))
        cursor = 0
        for k in range(0, len(order), self.batch_size):
            idx = order[k : k + self.batch_size]
            entries = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in idx])
            entry_site[entries] = cursor + np.arange(len(entries))
            self._plain_batch([rows[i] for i in idx], entries, labels[entries], cursor, sinks)
            cursor += len(entries)
            if progress is not None:
                progress.update(len(idx))
        if progress is not None and len(order) < len(rows):
            progress.update(len(rows) - len(order))
        return sinks.stats(entry_site, labels, bounds)

    def _plain_batch(
        self, rows: list[layout.Row], entries: np.ndarray, labels: np.ndarray, site_lo: int, sinks: _Sinks
    ) -> None:
        """One fallback pass: the whole model over full sequences, read at each row's supervised positions."""
        device = self.device
        ids, real = _padded([list(r.ids) for r in rows], self.pad, left=False)
        mask = self._mask(ids, real).to(device)
        logits = self.model(input_ids=ids.to(device), attention_mask=mask, use_cache=False).logits
        at_row = np.concatenate([np.full(len(r.ids) - r.prompt_len, n) for n, r in enumerate(rows)])
        at_col = np.concatenate([np.arange(r.prompt_len - 1, len(r.ids) - 1) for r in rows])
        picked = logits[torch.as_tensor(at_row, device=device), torch.as_tensor(at_col, device=device)]
        local = torch.arange(len(entries), device=device)
        targets, where = torch.as_tensor(labels, device=device), torch.as_tensor(entries, device=device)
        self._read(picked, site_lo, local, targets, where, sinks, logits_in=True)

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
        longest = max(len(self.prompt_ids(q)) for q in questions)
        return max(1, min(max_new_tokens, limit - longest))

    @torch.no_grad()
    def generate(self, questions: list[str], max_new_tokens: int, progress: Progress | None = None) -> list[str]:
        """Greedy generations (decoded with special tokens skipped, stripped), in input order."""
        model = self.model
        if not isinstance(model, GenerationMixin):
            raise TypeError(f"{type(model).__name__} cannot generate: it is not a transformers GenerationMixin")
        encoded = [self.prompt_ids(q) for q in questions]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        pad = prompts.pad_id(self.tokenizer, self.prompt_cfg)
        eos = model.generation_config.eos_token_id or self.tokenizer.eos_token_id
        texts: list[str] = [""] * len(encoded)
        model.eval()
        for start in range(0, len(order), self.batch_size):
            check_interrupted()  # a Ctrl-C Python dropped (runtime.check_interrupted)
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
            check_interrupted()  # a Ctrl-C Python dropped (runtime.check_interrupted)
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
        """(log-prob of the target, argmax, target, Min-K++ mu, sigma) per row, fp32, the lm_head run on slices of
        rows of at most HEAD_CHUNK_VALUES logits."""
        step = max(1, HEAD_CHUNK_VALUES // int(self.model.config.vocab_size))
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
            check_interrupted()  # a Ctrl-C Python dropped (runtime.check_interrupted)
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
