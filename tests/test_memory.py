"""Activation checkpointing chosen by a memory budget: the estimate, the decision, and that it
changes memory, not the result."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from edulora.config import load_config
from edulora.errors import EduloraError
from edulora.training import train
from edulora.training.memory import GB, estimate_peak_bytes, plan_memory
from test_training import tiny_config


@pytest.fixture(scope="module")
def tiny_model(tiny_llama):
    return AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)


def test_estimate_grows_with_tokens_and_checkpointing_cuts_it(tiny_model):
    small = estimate_peak_bytes(tiny_model, 1_000, 0.5, False, 4)
    large = estimate_peak_bytes(tiny_model, 100_000, 0.5, False, 4)
    checkpointed = estimate_peak_bytes(tiny_model, 100_000, 0.5, True, 4)
    assert small < large and checkpointed < large
    assert estimate_peak_bytes(tiny_model, 100_000, 1.0, False, 4) > large  # a bigger LM-head share


def test_auto_switches_on_over_the_budget_only(tiny_model):
    rows = [100, 900, 1000]
    need = plan_memory(tiny_model, rows, 8, 32, 0.5, 1e-3, "auto", 4)
    assert need.gradient_checkpointing and "exceeds" in need.reason
    assert need.batch_tokens == 3 * 1024  # three rows (fewer than the batch size), padded to 32
    roomy = plan_memory(tiny_model, rows, 8, 32, 0.5, 1e6, "auto", 4)
    assert not roomy.gradient_checkpointing and "fits" in roomy.reason
    assert not plan_memory(tiny_model, rows, 8, 32, 0.5, 0, "auto", 4).gradient_checkpointing  # no budget
    assert plan_memory(tiny_model, rows, 8, 32, 0.5, 1e6, "true", 4).gradient_checkpointing  # forced on
    assert not plan_memory(tiny_model, rows, 8, 32, 0.5, 1e-3, "false", 4).gradient_checkpointing


def test_the_packaged_models_long_batches_need_checkpointing_under_4_gb():
    """SmolLM2-135M's shapes in fp32: 8 x 1,024 tokens is far over 4 GB without checkpointing
    (we measured ~10 GB RSS), and under it with."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    plain = estimate_peak_bytes(model, 8 * 1024, 0.3, False, 4) / GB
    checkpointed = estimate_peak_bytes(model, 8 * 1024, 0.3, True, 4) / GB
    assert plain > 8 and checkpointed < 4


def test_checkpointing_changes_memory_not_the_result(tiny_llama, tmp_path):
    from conftest import write_tutoring_file

    data = write_tutoring_file(tmp_path, 16)
    runs = {}
    for setting in ("false", "true"):
        config = tiny_config(tiny_llama, data, tmp_path / setting, max_steps=3, eval_steps=3, save_steps=3,
                             pedagogy_sample=0, gradient_checkpointing=setting)
        runs[setting] = train(config).summary
    assert runs["true"].memory["gradient_checkpointing"] and not runs["false"].memory["gradient_checkpointing"]
    assert runs["true"].eval_loss_after == pytest.approx(runs["false"].eval_loss_after, rel=1e-4)
    assert runs["true"].train_loss == pytest.approx(runs["false"].train_loss, rel=1e-4)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(EduloraError, match="gradient_checkpointing must be auto, true or false"):
        load_config(overrides=["training.gradient_checkpointing=sometimes"])
    with pytest.raises(EduloraError, match="memory_budget_gb"):
        load_config(overrides=["training.memory_budget_gb=-1"])
    assert load_config(overrides=["training.gradient_checkpointing=true"]).training.gradient_checkpointing == "true"
