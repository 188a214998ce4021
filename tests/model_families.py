"""Tiny random models of each popular open family, built offline from transformers configs.

Each uses the packaged SmolLM2 tokenizer (so no tokenizer download is needed) with a chat template in
the shape of its family's own (written here): Qwen's ChatML, Gemma's turns without a system role
(Gemma 2's refuses one, Gemma 3's folds it into the first user turn), Phi-3's tags, Mistral's [INST]
with strictly alternating roles. That is what the prompt code must cope with for each family.
"""

from __future__ import annotations

from pathlib import Path

FAMILIES = ("llama", "llama-bias", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "mistral")

GEMMA2_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n{{ m['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% set first = '' %}{% set turns = messages %}"
    "{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] + '\n\n' %}"
    "{% set turns = messages[1:] %}{% endif %}"
    "{% for m in turns %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ (first if loop.first else '') + m['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
PHI3_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% else %}{{ eos_token }}{% endif %}"
)
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% else %}{{ m['content'] }}{{ eos_token }}"
    "{% endif %}{% endfor %}"
)
TEMPLATES = {"gemma2": GEMMA2_TEMPLATE, "gemma3": GEMMA3_TEMPLATE, "phi3": PHI3_TEMPLATE, "mistral": MISTRAL_TEMPLATE}
#: The turn markers these families' own tokenizers hold as special tokens (llama.cpp looks Phi-3's up by name).
SPECIAL_TOKENS = {"gemma2": ["<start_of_turn>", "<end_of_turn>"], "gemma3": ["<start_of_turn>", "<end_of_turn>"],
                  "phi3": ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]}


def family_config(kind: str, tokenizer):
    import transformers as tf

    common = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                  initializer_range=0.3, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    if kind in ("llama", "llama-bias"):
        bias = kind == "llama-bias"
        return tf.LlamaConfig(**common, tie_word_embeddings=True, attention_bias=bias, mlp_bias=bias)
    if kind == "qwen2":
        return tf.Qwen2Config(**common, tie_word_embeddings=True)
    if kind == "qwen3":
        return tf.Qwen3Config(**common, head_dim=16, tie_word_embeddings=True)
    if kind == "gemma2":
        return tf.Gemma2Config(**common, head_dim=16, query_pre_attn_scalar=16, sliding_window=32,
                               attn_logit_softcapping=50.0, final_logit_softcapping=30.0)
    if kind == "gemma3":
        return tf.Gemma3TextConfig(**common, head_dim=16, query_pre_attn_scalar=16, sliding_window=32)
    if kind == "phi3":
        return tf.Phi3Config(**common, original_max_position_embeddings=2048, tie_word_embeddings=False)
    if kind == "mistral":
        return tf.MistralConfig(**common, head_dim=16, sliding_window=None, tie_word_embeddings=False)
    raise ValueError(kind)


def build_family(kind: str, out: Path, tokenizer_dir: Path) -> Path:
    """A 2-layer random model of ``kind`` saved (safetensors + tokenizer) in ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if kind in TEMPLATES:
        tokenizer.chat_template = TEMPLATES[kind]
    if kind in SPECIAL_TOKENS:
        tokenizer.add_tokens(SPECIAL_TOKENS[kind], special_tokens=True)
    model = AutoModelForCausalLM.from_config(family_config(kind, tokenizer), dtype=torch.float32)
    if kind == "llama-bias":  # random biases, so a converter that dropped them would be caught
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith(".bias"):
                    param.normal_(0, 0.3)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
