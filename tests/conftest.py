"""Shared fixtures: tiny random models built from configs (fast), and the real packaged model (e2e)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def packaged_model_dir() -> Path:
    """The packaged SmolLM2 converted to safetensors (once per machine, in the user cache)."""
    from edulora.modeling import DEFAULT_MODEL, resolve_model_path

    return Path(resolve_model_path(DEFAULT_MODEL))


def _save_tiny(tmp: Path, kind: str, packaged: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(packaged)
    vocab = len(tokenizer)
    if kind == "llama":
        config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                             tie_word_embeddings=True, initializer_range=0.3, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        model = LlamaForCausalLM(config)
    else:
        config = GPT2Config(vocab_size=vocab, n_embd=64, n_layer=2, n_head=4, n_positions=2048, initializer_range=0.3,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        model = GPT2LMHeadModel(config)
    out = tmp / f"tiny-{kind}"
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, packaged_model_dir) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("models"), "llama", packaged_model_dir)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory, packaged_model_dir) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("models"), "gpt2", packaged_model_dir)


@pytest.fixture
def write_jsonl(tmp_path):
    """Write rows (dicts or raw strings) to a JSONL file and return its path."""

    def write(rows, name: str = "data.jsonl") -> Path:
        path = tmp_path / name
        lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return path

    return write


def tutoring_rows(n: int = 24) -> list[dict]:
    """A small, consistent data set a tiny model can overfit: a fixed phrasing per style."""
    subjects = ["mathematics", "biology", "history"]
    styles = ["socratic", "step_by_step", "direct_instruction"]
    rows = []
    for i in range(n):
        a, b = 2 + i % 7, 3 + i % 5
        rows.append({
            "instruction": f"What is {a} times {b}?",
            "response": f"Let's work it out. {a} groups of {b} make {a * b}. So the answer is {a * b}.",
            "metadata": {"subject": subjects[i % 3], "grade_level": "elementary", "teaching_style": styles[i % 3]},
        })
    return rows


def write_tutoring_file(folder: Path, n: int = 24) -> Path:
    """``tutoring_rows(n)`` as ``folder/data.jsonl`` (for module-scoped fixtures, which cannot use write_jsonl)."""
    path = folder / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in tutoring_rows(n)), encoding="utf-8")
    return path


def short_examples(vocab: int):
    """Four short token sequences, the first half of each a prompt (label -100)."""
    import torch

    from edulora.formatting import EncodedExample

    torch.manual_seed(1)
    out = []
    for n in (9, 14, 6, 11):
        ids = torch.randint(5, vocab, (n,)).tolist()
        out.append(EncodedExample(ids, [-100] * (n // 2) + ids[n // 2:]))
    return out
