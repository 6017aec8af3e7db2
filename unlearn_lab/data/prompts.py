"""Prompts, tokenisation and label masks (spec 1.3-1.5).

With a chat template (Llama-3 style): full = template(system, user, assistant) without a generation
prompt; prompt = template(system, user) with the generation prompt. Labels are -100 on the prompt and
equal the input ids afterwards, so exactly the answer tokens plus the final end-of-turn token are
supervised. Without a chat template: "Question: {q}\\nAnswer: {a}" + eos, prompt "Question: {q}\\nAnswer:".

Collation pads to the longest item with the tokenizer's pad token (eos where it has none, as the reference
does). `reference_attention_mask=True` reproduces the reference exactly: attention_mask = (input_ids != pad),
which, when pad = eos (Llama-3), also hides every in-sequence eos/eot token. Off (our default), the mask covers
exactly the real tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from unlearn_lab.config import PromptConfig
from unlearn_lab.errors import UsageError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # -100 on prompt positions
    prompt_len: int


def uses_chat_template(tokenizer: Tokenizer, cfg: PromptConfig) -> bool:
    has = bool(getattr(tokenizer, "chat_template", None))
    if cfg.chat_template is None:
        return has
    if cfg.chat_template and not has:
        raise UsageError("prompt.chat_template is true but the tokenizer has no chat template; set it to null or false")
    return cfg.chat_template


def _messages(cfg: PromptConfig, question: str, answer: str | None) -> list[dict]:
    messages = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    messages.append({"role": "user", "content": question})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def _template_ids(tokenizer: Tokenizer, messages, cfg: PromptConfig, *, generation_prompt: bool) -> list[int]:
    out: Any = tokenizer.apply_chat_template(
        messages,
        tokenize=True,
        add_generation_prompt=generation_prompt,
        date_string=cfg.date_string,
        return_dict=False,
    )
    if isinstance(out, dict) or hasattr(out, "keys"):  # some transformers versions return a BatchEncoding
        out = out["input_ids"]
    return list(out)


def prompt_text(tokenizer: Tokenizer, question: str, cfg: PromptConfig) -> str:
    """The rendered prompt string (what generation starts from)."""
    if uses_chat_template(tokenizer, cfg):
        text = tokenizer.apply_chat_template(
            _messages(cfg, question, None), tokenize=False, add_generation_prompt=True, date_string=cfg.date_string
        )
        return str(text)
    return f"Question: {question}\nAnswer:"


def encode_prompt(tokenizer: Tokenizer, question: str, cfg: PromptConfig) -> list[int]:
    if uses_chat_template(tokenizer, cfg):
        return _template_ids(tokenizer, _messages(cfg, question, None), cfg, generation_prompt=True)
    return tokenizer(prompt_text(tokenizer, question, cfg), add_special_tokens=True)["input_ids"]


def encode_qa(
    tokenizer: Tokenizer, question: str, answer: str, cfg: PromptConfig, prompt: list[int] | None = None
) -> Encoded:
    """Token ids and labels of one QA pair; supervised = answer tokens + the final eos/eot.

    `prompt` = `encode_prompt(tokenizer, question, cfg)` when the caller already has it (one question, many answers).
    """
    eos = tokenizer.eos_token_id
    prompt = prompt if prompt is not None else encode_prompt(tokenizer, question, cfg)
    if uses_chat_template(tokenizer, cfg):
        full = _template_ids(tokenizer, _messages(cfg, question, answer), cfg, generation_prompt=False)
        # Templates such as ChatML end the turn with eos + "\n": cut trailing tokens after the last eos
        # so the final supervised token is eos (documented difference: the reference would append another eos).
        if eos in full[len(prompt) :]:
            last = len(full) - 1 - full[::-1].index(eos)
            full = full[: last + 1]
    else:
        full = tokenizer(f"Question: {question}\nAnswer: {answer}", add_special_tokens=True)["input_ids"]
        full = full[: cfg.max_length]
    if full[-1] != eos:
        full = [*full, eos]
    if full[: len(prompt)] != prompt:
        raise ValueError("the tokenised prompt is not a prefix of the tokenised conversation; check the chat template")
    labels = [IGNORE] * len(prompt) + full[len(prompt) :]
    return Encoded(full, labels, len(prompt))


def pad_id(tokenizer: Tokenizer, cfg: PromptConfig) -> int:
    """The tokenizer's pad token; eos only where it has none (the reference's collation, spec 1.5, in both modes)."""
    return tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id


def collate(items: list[Encoded], pad: int, *, reference_mask: bool = False, left: bool = False) -> dict:
    """Pad to the longest item (right by default), labels with -100; returns tensors."""
    width = max(len(it.input_ids) for it in items)
    ids, labels, mask = [], [], []
    for it in items:
        n = width - len(it.input_ids)
        fill, lab_fill, m = [pad] * n, [IGNORE] * n, [1] * len(it.input_ids)
        if left:
            ids.append(fill + it.input_ids)
            labels.append(lab_fill + it.labels)
            mask.append([0] * n + m)
        else:
            ids.append(it.input_ids + fill)
            labels.append(it.labels + lab_fill)
            mask.append(m + [0] * n)
    input_ids = torch.tensor(ids, dtype=torch.long)
    attention = (input_ids != pad).long() if reference_mask else torch.tensor(mask, dtype=torch.long)
    return {"input_ids": input_ids, "labels": torch.tensor(labels, dtype=torch.long), "attention_mask": attention}


def collate_prompts(prompts: list[list[int]], pad: int, *, reference_mask: bool = False) -> dict:
    """Left-padded prompt batch for generation."""
    items = [Encoded(p, [IGNORE] * len(p), len(p)) for p in prompts]
    batch = collate(items, pad, reference_mask=reference_mask, left=True)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def text_items(tokenizer, texts: list[str]) -> list[Encoded]:
    """Plain language-modelling items (every token after BOS supervised), for pre-training."""
    out = []
    for text in texts:
        ids = (
            [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        )
        out.append(Encoded(ids, [IGNORE, *ids[1:]], 1))
    return out
