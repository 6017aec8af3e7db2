"""The embedded world's model: a byte-level BPE tokenizer trained on the world's text and a small Llama.

The chat template mirrors the Llama-3.x layout the reference uses (system turn with a "Today Date"
line rendered from `date_string`, header tokens, `<|eot_id|>` ending each turn), so the prompt and
label-mask code paths are the same as for the real Llama-3.2 models.
"""

from __future__ import annotations

import torch

BOS, EOT, PAD = "<|begin_of_text|>", "<|eot_id|>", "<|pad|>"
HEADER_START, HEADER_END = "<|start_header_id|>", "<|end_header_id|>"
SPECIAL_TOKENS = [BOS, EOT, PAD, HEADER_START, HEADER_END]

# Llama-3-style template, written for this project. `date_string` is always passed by unlearn_lab
# (prompt.date_string, pinned); the fallback keeps rendering deterministic if someone omits it.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if date_string is not defined %}{%- set date_string = '10 Apr 2025' %}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\nCutting Knowledge Date: December 2023\\n"
    "Today Date: ' + date_string + '\\n\\n' + message['content'] | trim }}{{- '<|eot_id|>' }}"
    "{%- else %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim }}"
    "{{- '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


# Newline runs are their own pre-token (as in Llama-3), so "\n\n" tokenises the same at the end of a
# prompt and before an answer: the prompt's ids are then always a prefix of the conversation's ids.
PRE_TOKENIZE = r"\s*[\r\n]+| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def train_tokenizer(texts: list[str], vocab_size: int, pattern: str = PRE_TOKENIZE):
    """A byte-level BPE tokenizer (so any text encodes) trained on `texts`, with the chat template; `pattern` cuts
    text into pre-tokens (BPE merges never cross them)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOT,
        pad_token=PAD,
        additional_special_tokens=[HEADER_START, HEADER_END],
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def template_corpus(cfg_system_prompt: str, date_string: str) -> list[str]:
    """Template text, so the BPE merges cover the chat scaffolding compactly."""
    return [
        f"Cutting Knowledge Date: December 2023\nToday Date: {date_string}\n\n{cfg_system_prompt}",
        "system\n\n user\n\n assistant\n\n",
    ] * 20


def make_model(tokenizer, tiny, seed: int):
    """A freshly initialised LlamaForCausalLM sized by `tiny` (config.TinyModelConfig)."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=tiny.hidden_size,
        intermediate_size=tiny.intermediate_size,
        num_hidden_layers=tiny.num_layers,
        num_attention_heads=tiny.num_heads,
        num_key_value_heads=tiny.num_heads,
        max_position_embeddings=tiny.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # HF initialises weights from the global RNG; restore it afterwards
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    return model
