"""Chat template, label masks and collation (spec 1.3-1.5)."""

from __future__ import annotations

import torch

from unlearn_lab.config import PromptConfig
from unlearn_lab.data import prompts


def test_chat_template_renders_pinned_date(tiny_tokenizer):
    text = prompts.prompt_text(tiny_tokenizer, "Who wrote it?", PromptConfig(date_string="10 Apr 2025"))
    assert "Today Date: 10 Apr 2025\n\nYou are a helpful assistant.<|eot_id|>" in text
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    other = prompts.prompt_text(tiny_tokenizer, "Who wrote it?", PromptConfig(date_string="01 Jan 2030"))
    assert "Today Date: 01 Jan 2030" in other


def test_labels_supervise_exactly_answer_and_eot(tiny_tokenizer):
    cfg = PromptConfig()
    answer = "Lina Okoro was born in Port Elsworth."
    enc = prompts.encode_qa(tiny_tokenizer, "Where was Lina Okoro born?", answer, cfg)
    supervised = [t for t in enc.labels if t != prompts.IGNORE]
    answer_ids = tiny_tokenizer(answer, add_special_tokens=False)["input_ids"]
    assert supervised == [*answer_ids, tiny_tokenizer.convert_tokens_to_ids("<|eot_id|>")]
    assert enc.labels[: enc.prompt_len] == [prompts.IGNORE] * enc.prompt_len
    assert enc.input_ids[: enc.prompt_len] == prompts.encode_prompt(tiny_tokenizer, "Where was Lina Okoro born?", cfg)


def test_plain_template_without_chat(tiny_tokenizer):
    cfg = PromptConfig(chat_template=False)
    enc = prompts.encode_qa(tiny_tokenizer, "Q?", "Yes.", cfg)
    assert tiny_tokenizer.decode(enc.input_ids) == "Question: Q?\nAnswer: Yes.<|eot_id|>"
    assert tiny_tokenizer.decode([t for t in enc.labels if t != prompts.IGNORE]) == " Yes.<|eot_id|>"


def test_collate_masks(tiny_tokenizer):
    """Default: mask = real tokens. Reference parity: pad = the tokenizer's pad token (eos where it has none) and
    mask = ids != pad, which with pad = eos also hides the in-sequence eot tokens."""
    cfg = PromptConfig()
    a = prompts.encode_qa(tiny_tokenizer, "Short?", "Yes.", cfg)
    b = prompts.encode_qa(tiny_tokenizer, "A much longer question here?", "A much longer answer here.", cfg)
    eot = tiny_tokenizer.eos_token_id
    batch = prompts.collate([a, b], prompts.pad_id(tiny_tokenizer, cfg))
    assert batch["attention_mask"][0].tolist() == [1] * len(a.input_ids) + [0] * (len(b.input_ids) - len(a.input_ids))
    assert batch["labels"][0, len(a.input_ids) :].eq(prompts.IGNORE).all()
    ref_cfg = PromptConfig(reference_attention_mask=True)
    # the tokenizer has a pad token: the reference pads with it and masks only it (every eot stays visible)
    pad = prompts.pad_id(tiny_tokenizer, ref_cfg)
    assert pad == tiny_tokenizer.pad_token_id != eot
    ref = prompts.collate([a, b], pad, reference_mask=True)
    assert torch.equal(ref["attention_mask"], batch["attention_mask"])
    # no pad token (Llama-3): pad = eos and mask = ids != eos, which also hides the in-sequence eot tokens
    import copy

    nopad = copy.deepcopy(tiny_tokenizer)
    nopad.pad_token = None
    assert nopad.pad_token_id is None and prompts.pad_id(nopad, ref_cfg) == eot
    ref = prompts.collate([a, b], eot, reference_mask=True)
    assert torch.equal(ref["attention_mask"], (ref["input_ids"] != eot).long())
    n_eot = b.input_ids.count(eot)
    assert n_eot == 3 and int((ref["attention_mask"][1] == 0).sum()) == 3  # system, user and answer eot
    left = prompts.collate_prompts([a.input_ids[:5], b.input_ids], 0)
    assert left["attention_mask"][0].tolist()[: len(b.input_ids) - 5] == [0] * (len(b.input_ids) - 5)
