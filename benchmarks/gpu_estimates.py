"""What a 1.5B / 7B / 8B LoRA run needs on a GPU, by edulora's own memory estimate (``training.memory``),
for the table in docs/gpu.md. Estimates, not measurements: no GPU was available to this project.

    python benchmarks/gpu_estimates.py

The models are built on the meta device from their published shapes (no weights, no download); each row is
the peak ``estimate_peak_bytes`` gives for one micro-batch of the size recipe (4 rows; 1024 or 2048 tokens
each, half of them labelled reply tokens), in bf16, without and with activation checkpointing, and what
``plan_memory`` decides under the budget a GPU of that size would get (``training.sizing.memory_budget``,
all of it free). QLoRA's 4-bit weights are counted at 4.127 bits per decoder weight (NF4 with double
quantization, the QLoRA paper's figure) with embeddings and head in bf16. The time column is arithmetic:
4 x parameters x tokens FLOPs per epoch (forward, and backward through frozen weights) at 40% of the GPU's
dense bf16 peak, for 2,000 dialogues of 600 tokens.
"""
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from edulora.config import MemorySettings
from edulora.training.memory import GB, estimate_peak_bytes, plan_memory
from edulora.training.sizing import memory_budget, recipe_for

MODELS = {  # the published config.json shapes
    "Qwen2.5-1.5B-Instruct": Qwen2Config(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                                         num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                                         tie_word_embeddings=True),
    "Qwen2.5-7B-Instruct": Qwen2Config(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                       num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                                       tie_word_embeddings=False),
    "Llama-3.1-8B-Instruct": LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                         num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                                         tie_word_embeddings=False),
}
GPUS = {"24 GB (L4, A10G, RTX 4090)": (24, 121e12), "48 GB (L40S, A6000)": (48, 362e12),
        "80 GB (A100, H100)": (80, 989e12)}  # memory, dense bf16 FLOP/s from the vendors' sheets
TOKENS_PER_EPOCH = 2000 * 600

print("| model | params | micro-batch | bf16 peak | checkpointed | QLoRA 4-bit, checkpointed | "
      + " | ".join(f"plan on {g}" for g in GPUS) + " |")
print("|---" * (6 + len(GPUS)) + "|")
for name, shape in MODELS.items():
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(shape, dtype=torch.bfloat16)
    n = model.num_parameters()
    recipe = recipe_for(n)
    decoder = sum(p.numel() for layer in model.model.layers for p in layer.parameters() if p.dim() == 2)
    four_bit_saving = decoder * (2 - 4.127 / 8)
    for length in (1024, recipe.max_length) if recipe.max_length != 1024 else (1024,):
        tokens = recipe.batch_size * length
        plain = estimate_peak_bytes(model, tokens, 0.5, False, 4) / GB
        ckpt = estimate_peak_bytes(model, tokens, 0.5, True, 4) / GB
        plans = []
        for gb, _ in GPUS.values():
            budget, _ = memory_budget(MemorySettings(), torch.device("cuda", 0), lambda d, gb=gb: (gb * GB, 0))
            plan = plan_memory(model, [length] * recipe.batch_size * 8, recipe.batch_size, 32, 0.5, budget, "auto", 4)
            qlora = ckpt - four_bit_saving / GB <= budget
            plans.append(("recompute long batches" if plan.gradient_checkpointing else "fits")
                         if "even so" not in plan.reason else "over; QLoRA fits" if qlora else "over")
        print(f"| {name} | {n / 1e9:.2f}B | {recipe.batch_size} x {length} | {plain:.0f} GB | {ckpt:.0f} GB | "
              f"{ckpt - four_bit_saving / GB:.0f} GB | " + " | ".join(plans) + " |")

print("\nminutes per epoch of 2,000 x 600 tokens (arithmetic, 40% of peak):")
for name, shape in MODELS.items():
    with torch.device("meta"):
        n = AutoModelForCausalLM.from_config(shape, dtype=torch.bfloat16).num_parameters()
    print(f"  {name}: " + ", ".join(f"{g.split(' (')[0]} {4 * n * TOKENS_PER_EPOCH / (0.4 * flops) / 60:.1f}"
                                     for g, (_, flops) in GPUS.items()))
