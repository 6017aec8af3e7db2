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

from dataclasses import dataclass

import numpy as np
import torch

from unlearn_lab.data import prompts
from unlearn_lab.metrics.mia import min_k_plus_plus_stats


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

    def without_eot(self) -> "TokenStats":
        """Min-K, Min-K++, ES, EM and GradNorm exclude the final end-of-turn token."""
        cut = slice(0, max(0, len(self.labels) - 1))
        return TokenStats(self.logprobs[cut], self.argmax[cut], self.labels[cut], self.mu[cut], self.sigma[cut])


@dataclass(frozen=True)
class Scorer:
    model: torch.nn.Module
    tokenizer: object
    prompt_cfg: object
    batch_size: int = 32

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, question: str, answer: str) -> prompts.Encoded:
        return prompts.encode_qa(self.tokenizer, question, answer, self.prompt_cfg)

    @torch.no_grad()
    def score_pairs(self, pairs: list[tuple[str, str]], progress=None) -> list[TokenStats]:
        """Token stats for each (question, answer), in input order; batches sorted by length."""
        encoded = [self.encode(q, a) for q, a in pairs]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
        pad = prompts.pad_id(self.tokenizer, self.prompt_cfg)
        out: list[TokenStats | None] = [None] * len(encoded)
        self.model.eval()
        decoder, head = self.model.get_decoder(), self.model.get_output_embeddings()
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = prompts.collate([encoded[i] for i in idx], pad,
                                    reference_mask=self.prompt_cfg.reference_attention_mask)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            labels = batch["labels"][:, 1:]
            keep = labels != prompts.IGNORE  # (B, T-1): positions predicting a supervised token
            logits = head(hidden[:, :-1][keep]).float()  # (N, V) only the rows we need, upcast to fp32
            logp = torch.log_softmax(logits, dim=-1)
            targets = labels[keep]
            token_lp = logp.gather(1, targets[:, None]).squeeze(1)
            mu, sigma = min_k_plus_plus_stats(logp)
            argmax = logits.argmax(dim=-1)
            counts = keep.sum(dim=1).tolist()
            pieces = [t.cpu().numpy() for t in (token_lp, argmax, targets, mu, sigma)]
            offset = 0
            for row, n in zip(idx, counts):
                out[row] = TokenStats(*(p[offset : offset + n] for p in pieces))
                offset += n
            if progress is not None:
                progress.update(len(idx))
        return out  # type: ignore[return-value]

    @torch.no_grad()
    def generate(self, questions: list[str], max_new_tokens: int, progress=None) -> list[str]:
        """Greedy generations (decoded with special tokens skipped, stripped), in input order."""
        encoded = [prompts.encode_prompt(self.tokenizer, q, self.prompt_cfg) for q in questions]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        pad = prompts.pad_id(self.tokenizer, self.prompt_cfg)
        eos = self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id
        texts: list[str] = [""] * len(encoded)
        self.model.eval()
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = prompts.collate_prompts([encoded[i] for i in idx], pad,
                                            reference_mask=self.prompt_cfg.reference_attention_mask)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            generated = self.model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False, top_p=None, temperature=None,
                use_cache=True, pad_token_id=pad, eos_token_id=eos,
            )
            new = generated[:, batch["input_ids"].shape[1]:]
            for row, ids in zip(idx, new.tolist()):
                texts[row] = self.tokenizer.decode(ids, skip_special_tokens=True,
                                                   clean_up_tokenization_spaces=False).strip()
            if progress is not None:
                progress.update(len(idx))
        return texts

    def ground_truth(self, question: str, answer: str) -> str:
        """The reference's ROUGE target: the supervised tokens decoded with special tokens skipped."""
        enc = self.encode(question, answer)
        ids = enc.input_ids[enc.prompt_len:]
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False).strip()

    def gradnorm_grads(self, question: str, answer: str) -> list[torch.Tensor | None]:
        """Per-parameter gradients of -mean token log-prob (eot excluded), batch size 1, train mode (spec 2.6)."""
        enc = self.encode(question, answer)
        labels = list(enc.labels)
        last = max(i for i, v in enumerate(labels) if v != prompts.IGNORE)
        labels[last] = prompts.IGNORE  # exclude the final eot
        ids = torch.tensor([enc.input_ids], device=self.device)
        lab = torch.tensor([labels], device=self.device)
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        try:
            logits = self.model(input_ids=ids).logits[:, :-1].float()
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
