"""Activation checkpointing chosen by a memory budget: the estimate, the decision, and that it
changes memory, not the result."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from edulora.config import RunConfig, load_config
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


def test_lm_head_kinds_count_what_each_trainer_holds(tiny_model):
    """edulora's SFT head holds the reply tokens' logits; TRL's DPO kernel a bounded tile however long the
    batch; ORPO's full logits grow with every token."""
    from edulora.training.memory import CHUNKED_TOKEN_TILE, head_bytes

    vocab = 49152
    assert head_bytes(vocab, 1000, 0.25) == pytest.approx(head_bytes(vocab, 1000, 1.0) / 4)
    assert head_bytes(vocab, 1000, 0.25, "chunked") == head_bytes(vocab, 1000, 1.0, "chunked")  # every position
    tile = head_bytes(vocab, CHUNKED_TOKEN_TILE, 1.0, "chunked")
    assert head_bytes(vocab, 10 * CHUNKED_TOKEN_TILE, 1.0, "chunked") == tile  # one tile at a time
    assert head_bytes(vocab, 2000, 1.0, "full") == 2 * head_bytes(vocab, 1000, 1.0, "full")
    with pytest.raises(ValueError, match="unknown LM head"):
        head_bytes(vocab, 1, 1.0, "logits")


def test_split_plans_make_the_micro_batch_smaller_before_recomputing(tiny_model):
    rows = [1000] * 16  # 8 examples of 2 rows (a preference batch), 1,024 tokens each once padded
    per = {n: estimate_peak_bytes(tiny_model, n * 2 * 1024, 1.0, False, 4, head="full") / GB for n in (1, 2, 4, 8)}
    plan = plan_memory(tiny_model, rows, 8, 32, 1.0, (per[2] + per[4]) / 2, "auto", 4, per_batch=False,
                       head="full", rows_per_example=2, split="first")
    assert plan.micro_batch_size == 2 and not plan.gradient_checkpointing and plan.checkpoint_above_tokens is None
    assert plan.batch_tokens == 8 * 2 * 1024 and plan.estimated_gb == pytest.approx(per[8], abs=0.01)
    # Room for the whole batch: nothing changes; no room for one example without recomputing: both.
    roomy = plan_memory(tiny_model, rows, 8, 32, 1.0, per[8] + 1, "auto", 4, per_batch=False, head="full",
                        rows_per_example=2, split="first")
    assert roomy.micro_batch_size is None and not roomy.gradient_checkpointing
    tight = plan_memory(tiny_model, rows, 8, 32, 1.0, 1e-3, "auto", 4, per_batch=False, head="full",
                        rows_per_example=2, split="first")
    assert tight.micro_batch_size == 1 and tight.gradient_checkpointing and "even so" in tight.reason
    # "last" (ORPO): recompute the whole batch first, split only when that is not enough.
    recomputed = estimate_peak_bytes(tiny_model, 8 * 2 * 1024, 1.0, True, 4, head="full") / GB
    last = plan_memory(tiny_model, rows, 8, 32, 1.0, recomputed + 1e-6, "auto", 4, per_batch=False,
                       head="full", rows_per_example=2, split="last")
    assert last.gradient_checkpointing and last.micro_batch_size is None
    over = plan_memory(tiny_model, rows, 8, 32, 1.0, recomputed - 1e-6, "auto", 4, per_batch=False,
                       head="full", rows_per_example=2, split="last")
    assert over.micro_batch_size in (1, 2, 4) and "gradient accumulation" in over.reason
    # Only divisors of the batch size, so every optimizer step sees the configured number of examples.
    odd = plan_memory(tiny_model, [1000] * 12, 6, 32, 1.0, (per[4] + per[2]) / 2 + 1e-9, "auto", 4, per_batch=False,
                      head="full", rows_per_example=2, split="first")
    assert odd.micro_batch_size in (1, 2, 3) and 6 % odd.micro_batch_size == 0


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
    with pytest.raises(EduloraError, match="gradient_checkpointing='sometimes' is not allowed; choose 'auto', 'true' or 'false'"):
        load_config(overrides=["training.memory.gradient_checkpointing=sometimes"])
    with pytest.raises(EduloraError, match=r"training\.memory\.budget_gb=-1 is out of range"):
        load_config(overrides=["training.memory.budget_gb=-1"])
    assert load_config(overrides=["training.memory.gradient_checkpointing=true"]).training.memory.gradient_checkpointing == "true"


def test_plan_checkpoints_only_micro_batches_past_the_limit(tiny_model):
    from edulora.training.memory import plain_token_limit

    budget = estimate_peak_bytes(tiny_model, 2_000, 0.5, False, 4) / GB
    limit = plain_token_limit(tiny_model, 0.5, budget, 4)
    assert limit == pytest.approx(2_000, abs=1)
    plan = plan_memory(tiny_model, [100, 900, 3000], 2, 32, 0.5, budget, "auto", 4)
    assert plan.gradient_checkpointing and plan.checkpoint_above_tokens == limit
    assert plan.checkpoints(limit + 1) and not plan.checkpoints(limit) and plan.per_micro_batch()
    assert plan_memory(tiny_model, [100, 900, 3000], 2, 32, 0.5, budget, "true", 4).checkpoint_above_tokens == 0
    assert not plan_memory(tiny_model, [100, 900, 3000], 2, 32, 0.5, budget, "false", 4).checkpoints(10**9)


def test_only_the_long_micro_batches_recompute_and_the_result_is_unchanged(tiny_llama, tmp_path):
    """A budget just under the longest micro-batch: that size recomputes its activations, the
    shorter ones do not, and losses equal a run that never checkpoints."""
    from conftest import tutoring_rows
    from edulora.modeling import attach_lora, load_base_model

    rows = tutoring_rows(16)
    for i, row in enumerate(rows):  # replies of very different lengths, so micro-batches differ in size
        row["response"] += " Check it again." * (1 + 8 * (i % 4))
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def config_for(name: str, **training) -> RunConfig:
        config = tiny_config(tiny_llama, data, tmp_path / name, max_steps=3, eval_steps=3, save_steps=3,
                             pedagogy_sample=0, retention_sample=0, **training)
        config.data.max_length, config.data.pad_to_multiple_of = 512, 8  # rows of varied lengths
        return config

    plain = train(config_for("plain", gradient_checkpointing="false")).summary
    config = config_for("auto")
    # The budget that fits every micro-batch but the longest, estimated on the network the run builds.
    torch.manual_seed(0)
    model = attach_lora(load_base_model(config.model, for_training=True)[0], config.lora)
    stats = json.loads(next((tmp_path / "plain").glob("*/data.json")).read_text())["train_tokens"]
    share = stats["trainable_tokens"] / stats["tokens"]
    longest = plain.memory["batch_tokens"]
    config.training.memory.budget_gb = estimate_peak_bytes(model, longest - 1, share, False,
                                                           len(config.lora.target_modules)) / GB
    auto = train(config).summary
    assert auto.memory["checkpoint_above_tokens"] in (longest - 1, longest - 2)
    assert 0 < auto.memory["checkpointed_micro_batches"] < auto.memory["micro_batches"]
    assert plain.memory["checkpointed_micro_batches"] == 0
    assert auto.eval_loss_after == pytest.approx(plain.eval_loss_after, rel=1e-4)
    assert auto.train_loss == pytest.approx(plain.train_loss, rel=1e-4)
