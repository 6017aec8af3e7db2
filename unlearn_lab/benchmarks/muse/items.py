"""MUSE formatting and tokenisation (spec §2): training chunks and the verbmem / privleak / knowmem items.

Pure functions over any Hugging Face tokenizer. The reference's tokenizer is Llama-2's (BOS `<s>` = 1, EOS `</s>` = 2,
adds BOS and not EOS). Here "BOS + tokens(text)" is built explicitly as ``[bos_token_id] + tokenizer(text,
add_special_tokens=False)`` (identical for Llama-2, and right for tokenizers that add no BOS themselves, such as the
embedded world's); a tokenizer without a BOS token gets no prefix, and the label rules below then mask nothing.

Collation the reference assumes (spec §2.5), for the lead's batching:
- **pad := EOS** where the tokenizer has no pad token (Llama-2 has none, so pad id 2); labels padded with -100;
- **attention mask = (input id != pad)**, from the inputs only; MUSE inputs hold no EOS (raw text and prompts have
  none; knowmem's appended EOS sits only in the full ids, which the reference uses as labels), so this masks exactly
  the padding;
- **right padding** for training, extraction strength / exact memorisation and the MIAs (Min-K, loss, zlib, Min-K++);
  **left padding** for the three ROUGE metrics' generation (knowmem forget / retain, verbmem).
Items are `data.prompts.Encoded` (input_ids, labels, prompt_len) so `data.prompts.collate` can batch them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from unlearn_lab.data.prompts import IGNORE, Encoded

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

__all__ = [
    "ChunkStats",
    "GenerationItem",
    "chunk_stats",
    "chunk_texts",
    "is_empty",
    "knowmem_items",
    "knowmem_prompt",
    "privleak_items",
    "training_chunks",
    "verbmem_items",
]

JOIN = "\n\n"  # the reference joins the rows of a training split with a blank line


def _ids(tokenizer: Tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _bos(tokenizer: Tokenizer) -> list[int]:
    bos = tokenizer.bos_token_id
    return [] if bos is None else [int(bos)]


def is_empty(item: Encoded) -> bool:
    """True for an item without a supervised token (all labels -100), e.g. the BOS-only last chunk."""
    return all(label == IGNORE for label in item.labels)


# --------------------------------------------------------------------------------------------- training chunks


def chunk_texts(tokenizer: Tokenizer, texts: Sequence[str], chunk_tokens: int) -> list[str]:
    """Spec §2.1 steps 1-4: join `texts` with "\\n\\n", tokenize without special tokens (N ids), cut into
    floor(N / chunk_tokens) + 1 windows of `chunk_tokens` ids (the last shorter, and empty when N is a multiple of
    `chunk_tokens`), decode each window with special tokens kept and no space clean-up."""
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    ids = _ids(tokenizer, JOIN.join(texts))
    windows = [ids[i * chunk_tokens : (i + 1) * chunk_tokens] for i in range(len(ids) // chunk_tokens + 1)]
    return [
        str(tokenizer.decode(window, skip_special_tokens=False, clean_up_tokenization_spaces=False))
        for window in windows
    ]


def training_chunks(tokenizer: Tokenizer, texts: Sequence[str], chunk_tokens: int) -> list[Encoded]:
    """The reference's forget / retain training items (spec §2.1; 2048 for Llama-2, smaller in the embedded world).

    Each chunk string of `chunk_texts` is re-encoded as BOS + tokens, truncated to 1 + `chunk_tokens` ids; labels
    are -100 on BOS and equal the ids elsewhere; no EOS; prompt_len = 1. The decode -> re-encode round trip is not
    the identity at chunk boundaries, so items are `chunk_tokens` +- a few tokens (the truncation can drop the last
    few). When N is a multiple of `chunk_tokens` the last item is BOS-only with zero supervised tokens, as in the
    reference: `is_empty(item)` (all labels -100) tells it apart; a per-sequence mean over supervised tokens must
    guard it (SimNPO gets NaN in the reference), and a batch token-mean simply ignores it.
    """
    prefix = _bos(tokenizer)
    items = []
    for text in chunk_texts(tokenizer, texts, chunk_tokens):
        ids = (prefix + _ids(tokenizer, text))[: len(prefix) + chunk_tokens]
        items.append(Encoded(ids, [IGNORE] * len(prefix) + ids[len(prefix) :], len(prefix)))
    return items


@dataclass(frozen=True)
class ChunkStats:
    tokens: int  # N: ids of the joined text, no special tokens
    chunks: int  # floor(N / chunk_tokens) + 1
    supervised: int  # labelled tokens over all items
    empty: int  # items without a supervised token


def chunk_stats(tokenizer: Tokenizer, texts: Sequence[str], chunk_tokens: int) -> ChunkStats:
    """What `training_chunks` gives, counted (for plans and logs)."""
    items = training_chunks(tokenizer, texts, chunk_tokens)
    return ChunkStats(
        tokens=len(_ids(tokenizer, JOIN.join(texts))),
        chunks=len(items),
        supervised=sum(sum(label != IGNORE for label in it.labels) for it in items),
        empty=sum(is_empty(it) for it in items),
    )


# ------------------------------------------------------------------------------------------ evaluation items


@dataclass(frozen=True)
class GenerationItem:
    """One evaluation row in both forms: `prompt_ids` is the generation input (left-padded for ROUGE); `scoring`
    is the teacher-forced form (input_ids, labels, prompt_len = len(prompt_ids)); `index` = the row's index."""

    index: int
    prompt_ids: list[int]
    scoring: Encoded


def verbmem_items(tokenizer: Tokenizer, records: Sequence[Mapping[str, Any]], max_length: int) -> list[GenerationItem]:
    """Spec §2.2 (`insert_space`, max_length 2048 in the reference).

    prompt_ids = BOS + tokens(prompt), P = len(prompt_ids); full ids = BOS + tokens(prompt + " " + gt) truncated to
    P + `max_length`; labels -100 on the first P positions and the ids after them: the gt part is split **by
    position**, not by matching tokens (where the boundary merges, the label split still falls at P). No EOS.
    Generation (ROUGE) feeds prompt_ids and recovers the ground truth from the labels; ES / EM score the full ids.
    """
    prefix = _bos(tokenizer)
    items = []
    for position, record in enumerate(records):
        prompt_ids = prefix + _ids(tokenizer, record["prompt"])
        size = len(prompt_ids)
        full = (prefix + _ids(tokenizer, record["prompt"] + " " + record["gt"]))[: size + max_length]
        labels = [IGNORE] * min(size, len(full)) + full[size:]
        items.append(GenerationItem(int(record.get("index", position)), prompt_ids, Encoded(full, labels, size)))
    return items


def privleak_items(tokenizer: Tokenizer, texts: Sequence[str], max_length: int) -> list[Encoded]:
    """Spec §2.3: BOS + tokens(text) truncated to 1 + `max_length` ids (2048 in the reference); label -100 on BOS
    only; no EOS; prompt_len = 1. Item i is the text at position i (its `index`)."""
    prefix = _bos(tokenizer)
    items = []
    for text in texts:
        ids = (prefix + _ids(tokenizer, text))[: len(prefix) + max_length]
        items.append(Encoded(ids, [IGNORE] * len(prefix) + ids[len(prefix) :], len(prefix)))
    return items


def knowmem_prompt(icl: Sequence[Mapping[str, Any]], question: str) -> str:
    """Spec §2.4: "Question: {q}\\nAnswer: {a}\\n\\n" for every in-context pair in order, then
    "Question: {question}\\nAnswer: " (trailing space; generation starts after it). Byte-identical to MUSE's."""
    shots = "".join(f"Question: {pair['question']}\nAnswer: {pair['answer']}\n\n" for pair in icl)
    return f"{shots}Question: {question}\nAnswer: "


def knowmem_items(
    tokenizer: Tokenizer, icl: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]], max_length: int = 512
) -> list[GenerationItem]:
    """Spec §2.4 (all ICL rows, in order, for every question; max_length 512 in the reference).

    prompt_ids = BOS + tokens(prompt), right-truncated to `max_length`; full ids = BOS + tokens(prompt + answer),
    right-truncated to `max_length`, then EOS appended unless already last. In generation mode the reference's
    labels are the full ids **unmasked** (the whole conversation; the answer is recovered by deleting the decoded
    input from the decoded labels, `metrics.ground_truth`), so `scoring.labels` = `scoring.input_ids` and
    `scoring.prompt_len` = len(prompt_ids) marks where the answer starts.
    """
    prefix, eos = _bos(tokenizer), tokenizer.eos_token_id
    items = []
    for position, record in enumerate(records):
        prompt = knowmem_prompt(icl, record["question"])
        prompt_ids = (prefix + _ids(tokenizer, prompt))[:max_length]
        full = (prefix + _ids(tokenizer, prompt + record["answer"]))[:max_length]
        if eos is not None and (not full or full[-1] != eos):
            full = [*full, int(eos)]
        items.append(
            GenerationItem(int(record.get("index", position)), prompt_ids, Encoded(full, list(full), len(prompt_ids)))
        )
    return items
