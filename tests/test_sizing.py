"""Device-aware defaults: the memory budget from the device (faked here: no GPU on the test machines) and
the starting recipe by model size. Models are built on the meta device: real shapes, no weights."""

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from edulora.config import MemorySettings, load_config
from edulora.training.memory import GB, plan_memory
from edulora.training.sizing import RECIPES, apply_size_recipe, learning_rate_note, memory_budget, recipe_for, sized

#: Qwen2.5-1.5B-Instruct's published shape (config.json): 1.54B parameters.
QWEN_1_5B = Qwen2Config(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)


def meta_model(config):
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)


def fake_gpu(free_gb: float, held_gb: float = 0.0):
    """What torch.cuda would say for a GPU with this much free (and already held by us) memory."""
    return lambda device: (int(free_gb * GB), int(held_gb * GB))


def test_the_budget_comes_from_the_device_unless_set():
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert memory_budget(MemorySettings(), cpu) == (4.0, "training.memory.budget_gb")  # a CPU: as before
    budget, source = memory_budget(MemorySettings(), cuda, fake_gpu(78.0, 2.0))
    assert budget == 72.0 and "free memory of cuda:0" in source  # 90% of free + already ours
    assert memory_budget(MemorySettings(budget_gb=10), cuda, fake_gpu(78.0)) == (10.0, "training.memory.budget_gb")
    settings = load_config(None, ["training.memory.budget_gb=4"]).training.memory  # set, even to the default
    assert memory_budget(settings, cuda, fake_gpu(78.0))[0] == 4.0


def test_the_plan_for_a_1_5b_model_follows_the_device_size():
    model = meta_model(QWEN_1_5B)
    rows = [2048] * 8 + [600] * 40  # the recipe's max_length, batches of 4

    def plan(budget):
        return plan_memory(model, rows, 4, 32, 0.5, budget, "auto", 4)

    roomy = plan(memory_budget(MemorySettings(), torch.device("cuda"), fake_gpu(78.0))[0])  # an 80 GB GPU
    assert not roomy.gradient_checkpointing and "fits" in roomy.reason
    assert 30 < roomy.estimated_gb < 45  # 4 x 2048 tokens of a 1.5B model in bf16, without recomputing
    small = plan(memory_budget(MemorySettings(), torch.device("cuda"), fake_gpu(24.0))[0])  # a 24 GB card
    assert small.gradient_checkpointing and 0 < small.checkpoint_above_tokens < 4 * 2048
    cpu = plan(memory_budget(MemorySettings(), torch.device("cpu"))[0])  # the CPU's 4 GB: recompute, smaller batch
    assert cpu.gradient_checkpointing and cpu.budget_gb == 4.0


@pytest.mark.parametrize("parameters,name", [(135e6, "0.1–0.5B"), (494e6, "0.1–0.5B"), (1.54e9, "1–3B"),
                                             (3.1e9, "1–3B"), (7.6e9, "7–8B"), (8.03e9, "7–8B")])
def test_each_size_falls_in_its_class(parameters, name):
    assert recipe_for(int(parameters)).name == name


def test_the_smallest_class_is_todays_defaults():
    defaults = load_config()
    small = RECIPES[0]
    assert (small.learning_rate, small.r, small.alpha, small.batch_size, small.grad_accum, small.max_length) == (
        defaults.training.learning_rate, defaults.lora.r, defaults.lora.alpha, defaults.training.batch_size,
        defaults.training.grad_accum, defaults.data.max_length)
    config, line = apply_size_recipe(defaults, 135_000_000)
    assert config == defaults and line.startswith("edulora: recipe for a 135M model (0.1–0.5B class): ")


def test_the_recipe_fills_only_what_the_user_left_unset():
    config = load_config(None, ["training.learning_rate=1e-4", "data.max_length=512"])
    sized_config, line = apply_size_recipe(config, 7_600_000_000)
    assert (sized_config.lora.r, sized_config.lora.alpha, sized_config.training.batch_size) == (64, 16, 4)
    assert (sized_config.training.learning_rate, sized_config.data.max_length) == (1e-4, 512)  # the user's
    assert config.lora.r == 16  # the caller's config is left as it was
    assert line == ("edulora: recipe for a 7.6B model (7–8B class): lora.r 64, lora.alpha 16, training.batch_size 4, "
                    "training.grad_accum 4; set lora.r / lora.alpha / training.batch_size / training.grad_accum to "
                    "change (docs/gpu.md)")
    continued, _ = apply_size_recipe(config, 7_600_000_000, continuing=True)
    assert continued.lora == config.lora  # an adapter trained further keeps its shape
    dpo = load_config(None, ["training.method=dpo"])
    assert apply_size_recipe(dpo, 7_600_000_000) == (dpo, "")  # preference tuning: its own learning rates


def test_a_presets_small_model_learning_rate_is_flagged_on_a_large_model():
    preset = load_config("configs/bridge.yaml")  # 1e-3, tuned on the 135M model
    assert learning_rate_note(preset, 135_000_000) == ""
    note = learning_rate_note(preset, 1_540_000_000)
    assert note.startswith("warning: training.learning_rate=0.001 is 5x the 0.0002")


def test_sized_reads_the_loaded_model_and_says_what_it_picked(capsys):
    model = meta_model(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                   vocab_size=1000))
    config = sized(load_config(), model)
    assert config.data.max_length == 1024
    out = capsys.readouterr().out
    assert out.startswith(f"edulora: recipe for a {model.num_parameters() / 1e3:.3g}K model (0.1–0.5B class): "
                          "training.learning_rate 0.0002, lora.r 16") and out.count("\n") == 1
