"""MUSE items (spec §2): training chunks, verbmem / privleak / knowmem items, on two small tokenizers: a word-level
one (one id per word, so counts are worked out by hand) and the embedded world's byte-level BPE."""

from __future__ import annotations

import pytest

from unlearn_lab.benchmarks.muse.items import (
    chunk_stats,
    chunk_texts,
    is_empty,
    knowmem_items,
    knowmem_prompt,
    privleak_items,
    training_chunks,
    verbmem_items,
)
from unlearn_lab.benchmarks.muse.world import WorldParams, generate_muse_world, qa_text
from unlearn_lab.data.prompts import IGNORE, Encoded

WORDS = [
    "a",
    "b",
    "c",
    "d",
    "e",
    "f",
    "g",
    "h",
    "Question:",
    "Answer:",
    "Ada",
    "Tarsk",
    "Who",
    "won?",
    "Where?",
    "When?",
]


@pytest.fixture(scope="module")
def words():
    """Word-level tokenizer: BOS <s> = 0, EOS </s> = 1, then one id per word (whitespace split)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<s>", "</s>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.fixture(scope="module")
def world():
    return generate_muse_world(WorldParams(n_forget=6, n_retain1=2, n_retain2=6, n_holdout=2, n_qa=6, n_icl=2,
                                           n_verbmem=4, n_privleak=2), seed=0)  # fmt: skip


@pytest.fixture(scope="module")
def bpe(world):
    """The embedded recipe's tokenizer: byte-level BPE trained on the world's text (models/tiny.py)."""
    from unlearn_lab.models import tiny

    texts = [a["text"] for split in world["articles"].values() for a in split]
    return tiny.train_tokenizer(texts, 400)


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


# --------------------------------------------------------------------------------------------- training chunks


def test_chunk_count_and_windows_by_hand(words):
    """ "a b c" + "\\n\\n" + "d e" -> N = 5 word ids. chunk 2: floor(5/2) + 1 = 3 windows [a b] [c d] [e]."""
    assert chunk_texts(words, ["a b c", "d e"], 2) == ["a b", "c d", "e"]
    chunks = training_chunks(words, ["a b c", "d e"], 2)
    a, b, c, d, e = (words.convert_tokens_to_ids(w) for w in "abcde")
    assert chunks == [
        Encoded([0, a, b], [IGNORE, a, b], 1),
        Encoded([0, c, d], [IGNORE, c, d], 1),
        Encoded([0, e], [IGNORE, e], 1),
    ]


def test_multiple_of_chunk_gives_an_empty_bos_only_item(words):
    """N = 5, chunk 5: floor(5/5) + 1 = 2 windows, the second empty -> BOS only, zero supervised tokens."""
    chunks = training_chunks(words, ["a b c", "d e"], 5)
    assert len(chunks) == 2 and not is_empty(chunks[0])
    assert chunks[1] == Encoded([0], [IGNORE], 1) and is_empty(chunks[1])
    stats = chunk_stats(words, ["a b c", "d e"], 5)
    assert (stats.tokens, stats.chunks, stats.supervised, stats.empty) == (5, 2, 5, 1)


def test_chunks_on_byte_level_bpe(bpe, world):
    texts = [a["text"] for a in world["articles"]["forget"]]
    n = len(ids(bpe, "\n\n".join(texts)))
    for size in (64, 255):
        chunks = training_chunks(bpe, texts, size)
        assert len(chunks) == n // size + 1
        for item in chunks:
            assert item.input_ids[0] == bpe.bos_token_id and bpe.eos_token_id not in item.input_ids
            assert item.labels == [IGNORE, *item.input_ids[1:]] and item.prompt_len == 1
            assert len(item.input_ids) <= 1 + size
    assert "".join(chunk_texts(bpe, texts, 64)) == "\n\n".join(texts)  # windows decode back to the joined text
    with pytest.raises(ValueError, match="chunk_tokens"):
        chunk_texts(bpe, texts, 0)


# ------------------------------------------------------------------------------------------ evaluation items


def test_verbmem_items_split_labels_by_prefix_length(words):
    (item,) = verbmem_items(words, [{"prompt": "a b c", "gt": "d e f", "index": 7}], max_length=10)
    a, b, c, d, e, f = (words.convert_tokens_to_ids(w) for w in "abcdef")
    assert item.index == 7 and item.prompt_ids == [0, a, b, c]
    assert item.scoring == Encoded([0, a, b, c, d, e, f], [IGNORE] * 4 + [d, e, f], 4)
    (short,) = verbmem_items(words, [{"prompt": "a b c", "gt": "d e f"}], max_length=2)  # truncated to P + 2
    assert short.index == 0 and short.scoring == Encoded([0, a, b, c, d, e], [IGNORE] * 4 + [d, e], 4)


def test_verbmem_items_on_bpe(bpe, world):
    for item, record in zip(verbmem_items(bpe, world["verbmem"], 512), world["verbmem"], strict=True):
        p = len(item.prompt_ids)
        assert item.prompt_ids == [bpe.bos_token_id, *ids(bpe, record["prompt"])]
        assert item.scoring.input_ids == [bpe.bos_token_id, *ids(bpe, record["prompt"] + " " + record["gt"])]
        assert item.scoring.labels[:p] == [IGNORE] * p and item.scoring.labels[p:] == item.scoring.input_ids[p:]


def test_privleak_items(words):
    a, b, c = (words.convert_tokens_to_ids(w) for w in "abc")
    items = privleak_items(words, ["a b c", "c"], max_length=2)
    assert items == [Encoded([0, a, b], [IGNORE, a, b], 1), Encoded([0, c], [IGNORE, c], 1)]


def test_knowmem_prompt_is_byte_exact():
    icl = [{"question": "Who won?", "answer": "Ada"}, {"question": "Where?", "answer": "Tarsk"}]
    expected = "Question: Who won?\nAnswer: Ada\n\nQuestion: Where?\nAnswer: Tarsk\n\nQuestion: When?\nAnswer: "
    assert knowmem_prompt(icl, "When?") == expected
    assert knowmem_prompt([], "When?") == "Question: When?\nAnswer: "
    assert knowmem_prompt(icl, "When?") == qa_text(icl) + "\n\nQuestion: When?\nAnswer: "  # fine-tuning layout


def test_knowmem_items(words):
    icl = [{"question": "Who won?", "answer": "Ada"}]
    (item,) = knowmem_items(words, icl, [{"question": "Where?", "answer": "Tarsk", "index": 3}], max_length=512)
    prompt = [0, *ids(words, "Question: Who won? Answer: Ada Question: Where? Answer:")]
    assert item.index == 3 and item.prompt_ids == prompt
    full = [*prompt, words.convert_tokens_to_ids("Tarsk"), 1]  # + answer + EOS
    assert item.scoring == Encoded(full, full, len(prompt))  # generation-mode labels: the whole conversation
    (cut,) = knowmem_items(words, icl, [{"question": "Where?", "answer": "Tarsk"}], max_length=4)
    assert cut.prompt_ids == prompt[:4] and cut.scoring.input_ids == [*prompt[:4], 1]  # truncate, then EOS


def test_knowmem_items_on_bpe_start_after_the_trailing_space(bpe, world):
    icl, records = world["knowmem"]["forget_qa_icl"], world["knowmem"]["forget_qa"]
    for item, record in zip(knowmem_items(bpe, icl, records), records, strict=True):
        assert bpe.decode(item.prompt_ids[1:]) == knowmem_prompt(icl, record["question"])
        assert bpe.decode(item.scoring.input_ids[1:-1]).endswith("Answer: " + record["answer"])
        assert item.scoring.input_ids[-1] == bpe.eos_token_id
