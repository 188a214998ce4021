"""Defaults that depend on the hardware and the model: the memory budget and a starting recipe by size.

A fixed 4 GB budget suits a laptop CPU; on a GPU it would make a 1.5B model recompute every
micro-batch although 80 GB are free. So, when ``training.memory.budget_gb`` is not set, a CUDA run
plans for the GPU's free memory (``memory_budget``); a CPU run keeps the 4 GB default.

Settings tuned on the packaged 135M model do not carry over to a 7B one, so ``edulora train`` starts
from a recipe for the model's size class (``RECIPES``) for each key the user did not set (pydantic's
``model_fields_set``), and says so in one line. The smallest class is today's defaults, so nothing
changes for the packaged model. The larger classes follow published LoRA practice, cited per class;
they have not been run on a GPU here (docs/gpu.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..config import MemorySettings, RunConfig
from ..rundir import is_main_process

GB = 1024**3
#: Share of a GPU's free memory the plan may use: the rest is for the CUDA context, the allocator's
#: fragmentation and the evaluation's generation, which the training estimate does not count.
GPU_BUDGET_SHARE = 0.9


def memory_budget(settings: MemorySettings, device: torch.device,
                  cuda_memory: Callable[[torch.device], tuple[int, int]] | None = None) -> tuple[float, str]:
    """The budget (GB) a step should stay under, and where it came from.

    The user's ``budget_gb`` when set; on CUDA otherwise ``GPU_BUDGET_SHARE`` of what the GPU has free plus
    what this process already holds there (the plan counts the weights too); on a CPU the default.
    ``cuda_memory(device) -> (free, reserved_here)`` in bytes is injectable, so the plan can be tested for
    a GPU of any size without one."""
    if "budget_gb" in settings.model_fields_set or device.type != "cuda":
        return settings.budget_gb, "training.memory.budget_gb"
    free, held = (cuda_memory or _cuda_memory)(device)
    return round(GPU_BUDGET_SHARE * (free + held) / GB, 1), f"{GPU_BUDGET_SHARE:.0%} of the free memory of {device}"


def _cuda_memory(device: torch.device) -> tuple[int, int]:
    free, _total = torch.cuda.mem_get_info(device)
    return free, torch.cuda.memory_reserved(device)


@dataclass(frozen=True)
class SizeRecipe:
    """Starting settings for base models of up to ``below_billions`` parameters."""

    name: str
    below_billions: float
    learning_rate: float
    r: int
    alpha: int
    batch_size: int
    grad_accum: int
    max_length: int
    source: str


#: One per size class, smallest first. Effective batch 16 examples per optimizer step throughout (the
#: QLoRA paper's for 7B and 13B); the memory plan splits a micro-batch that does not fit.
RECIPES = (
    SizeRecipe("0.1–0.5B", 1.0, 2e-4, 16, 32, 4, 4, 1024,
               "today's defaults: the guide's recipe, run on SmolLM2-135M here (docs/benchmarks.md)"),
    SizeRecipe("1–3B", 5.0, 2e-4, 16, 32, 4, 4, 2048,
               "the 2e-4 LoRA learning rate of QLoRA (Dettmers et al., 2023) and of Unsloth's guides at these "
               "sizes, the small class's rank; 2048 tokens, as long multi-turn dialogues need on a GPU"),
    SizeRecipe("7–8B", math.inf, 2e-4, 64, 16, 4, 4, 2048,
               "QLoRA (Dettmers et al., 2023, appendix B) for 7B/13B: learning rate 2e-4, r 64, alpha 16, "
               "batch 16"),
)
#: The keys a recipe sets, as (section, key) of ``RunConfig``.
RECIPE_KEYS = (("training", "learning_rate"), ("lora", "r"), ("lora", "alpha"), ("training", "batch_size"),
               ("training", "grad_accum"), ("data", "max_length"))


def recipe_for(parameters: int) -> SizeRecipe:
    return next(r for r in RECIPES if parameters < r.below_billions * 1e9)


def apply_size_recipe(config: RunConfig, parameters: int, continuing: bool = False) -> tuple[RunConfig, str]:
    """``config`` with the size class's value for each recipe key the user left unset, and the line that
    says so ("" when every key was set). SFT only: preference tuning wants far lower learning rates
    (docs/preference.md). ``continuing``: an adapter trained further keeps its own LoRA shape."""
    recipe = recipe_for(parameters)
    if config.training.method != "sft":
        return config, ""
    config = config.model_copy(deep=True)
    picked = []
    for section, key in RECIPE_KEYS:
        block = getattr(config, section)
        if key in block.model_fields_set or (continuing and section == "lora"):
            continue
        setattr(block, key, getattr(recipe, key))
        picked.append(f"{section}.{key} {getattr(recipe, key):g}")
    unit, suffix = next((u, s) for u, s in ((1e9, "B"), (1e6, "M"), (1e3, "K"), (1, "")) if parameters >= u or u == 1)
    size = f"{parameters / unit:.3g}{suffix}"
    line = (f"edulora: recipe for a {size} model ({recipe.name} class): {', '.join(picked)}; set "
            f"{' / '.join(p.split()[0] for p in picked)} to change (docs/gpu.md)") if picked else ""
    return config, line


def learning_rate_note(config: RunConfig, parameters: int) -> str:
    """A warning line when a set learning rate is far above the size class's (e.g. a preset's 1e-3, tuned
    on the 135M model, on a 7B one); "" otherwise."""
    recipe = recipe_for(parameters)
    lr = config.training.learning_rate
    if config.training.method != "sft" or recipe is RECIPES[0] or lr <= 2.5 * recipe.learning_rate:
        return ""
    return (f"warning: training.learning_rate={lr:g} is {lr / recipe.learning_rate:.0f}x the {recipe.learning_rate:g} "
            f"LoRA usually takes at {recipe.name} (docs/gpu.md); presets' 1e-3 was tuned on a 135M model")


def sized(config: RunConfig, model, continuing: bool = False) -> RunConfig:
    """The run's config once the base ``model`` is loaded: its size class's recipe for the keys left unset,
    said in one line, with a warning for a learning rate far above that class's."""
    parameters = model.num_parameters()
    config, line = apply_size_recipe(config, parameters, continuing)
    for text in (line, learning_rate_note(config, parameters)):
        if text and is_main_process():
            print(text, flush=True)
    return config


def budget_line(budget_gb: float, source: str) -> str:
    """Said at start when the budget came from the device, not from the config."""
    return "" if source.startswith("training.") else (
        f"edulora: memory budget {budget_gb:g} GB ({source}; set training.memory.budget_gb to change)")
