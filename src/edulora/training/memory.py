"""How much memory a training step will take, and whether to recompute activations to fit a budget.

A LoRA step on a small model is dominated by stored activations, not weights: SmolLM2-135M keeps
about 1.3 MB per token across its 30 layers in fp32, so a micro-batch of 8 × 1,024 tokens needs
~10 GB before the weights are counted. Activation checkpointing keeps only each layer's input and
recomputes the rest in the backward pass (~30% more compute), which brings that down to a few
hundred MB. ``plan_memory`` estimates the peak for the longest micro-batch the data will form and,
when that is over ``training.memory_budget_gb``, finds how many tokens a micro-batch may hold
without checkpointing: only micro-batches past that recompute their activations. Length-grouped
batches vary a lot (the demo's: ~800 tokens typical, 3,072 the longest), so a run pays the recompute
on its few long batches instead of on every step, and its peak stays within the budget.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch

GB = 1024**3


@dataclass(frozen=True)
class MemoryPlan:
    """The estimate and the decision, kept in the run's summary."""

    budget_gb: float
    #: Tokens in the largest micro-batch (batch size × its longest padded row).
    batch_tokens: int
    estimated_gb: float
    estimated_checkpointed_gb: float
    #: Whether any micro-batch recomputes its activations.
    gradient_checkpointing: bool
    reason: str
    #: Micro-batches with more tokens than this recompute their activations; 0: all of them; None: none.
    checkpoint_above_tokens: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def checkpoints(self, tokens: int) -> bool:
        """Whether a micro-batch of ``tokens`` tokens (rows × padded length) recomputes its activations."""
        return self.checkpoint_above_tokens is not None and tokens > self.checkpoint_above_tokens

    def per_micro_batch(self) -> bool:
        """Whether checkpointing is switched for each micro-batch rather than for the whole run: in one
        process only, since DDP wraps the model once, knowing whether it checkpoints."""
        return bool(self.checkpoint_above_tokens) and int(os.environ.get("WORLD_SIZE", "1")) == 1


def activation_bytes_per_token(config, dtype_bytes: int, lora_modules: int) -> float:
    """Bytes stored for the backward pass per token, all layers, without checkpointing.

    Per decoder layer (measured shapes of Llama-style blocks): the two norms' inputs and outputs,
    q/k/v/o inputs and outputs and the attention output (~10 hidden-sized tensors), the MLP's gate,
    up, activation and product (4 intermediate-sized tensors), and for each LoRA module its dropout
    mask and rank-sized hidden (~1 hidden-sized tensor each).
    """
    hidden, inter = config.hidden_size, config.intermediate_size
    per_layer = (10 + lora_modules) * hidden + 4 * inter
    return float(per_layer * config.num_hidden_layers * dtype_bytes)


def estimate_peak_bytes(model: torch.nn.Module, batch_tokens: int, labelled_share: float,
                        checkpointing: bool, lora_modules: int) -> float:
    """Peak resident bytes of one training step on ``batch_tokens`` tokens.

    Weights (as loaded) + the LM head's logits, their log-softmax and its gradient in fp32 for the
    labelled share of tokens (``response_only_head``) + stored activations (all of them, or with
    checkpointing one hidden-sized input per layer plus one layer's full set recomputed) + a fixed
    allowance for the Python process, tokenizer and allocator slack.
    """
    config = model.config
    dtype_bytes = next(model.parameters()).element_size()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    logits = 3 * 4 * config.vocab_size * batch_tokens * labelled_share
    per_token = activation_bytes_per_token(config, dtype_bytes, lora_modules)
    if checkpointing:
        per_token = (config.num_hidden_layers * config.hidden_size * dtype_bytes
                     + per_token / config.num_hidden_layers)
    overhead = 0.6 * GB
    return weights + logits + per_token * batch_tokens + overhead


def plain_token_limit(model: torch.nn.Module, labelled_share: float, budget_gb: float, lora_modules: int) -> int:
    """The most tokens a micro-batch may hold without checkpointing and stay within ``budget_gb``
    (the estimate is linear in tokens: a fixed part plus a cost per token)."""
    fixed = estimate_peak_bytes(model, 0, labelled_share, False, lora_modules)
    per_token = estimate_peak_bytes(model, 1, labelled_share, False, lora_modules) - fixed
    return max(int((budget_gb * GB - fixed) // per_token), 0)


def plan_memory(model: torch.nn.Module, row_lengths: list[int], batch_size: int, pad_to_multiple_of: int,
                labelled_share: float, budget_gb: float, setting: str, lora_modules: int,
                per_batch: bool = True) -> MemoryPlan:
    """Which micro-batches recompute activations: ``setting`` "true"/"false" decides for all; "auto"
    compares the estimate for the largest micro-batch (``batch_size`` rows as long as the longest)
    with the budget and, when it is over, checkpoints only micro-batches past ``plain_token_limit``
    (all of them where the trainer cannot switch per micro-batch: ``per_batch=False``)."""
    longest = max(row_lengths, default=0)
    padded = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    tokens = padded * min(batch_size, max(len(row_lengths), 1))
    plain = estimate_peak_bytes(model, tokens, labelled_share, False, lora_modules) / GB
    checkpointed = estimate_peak_bytes(model, tokens, labelled_share, True, lora_modules) / GB
    above: int | None = None
    if setting in ("true", "false"):
        on = setting == "true"
        above = 0 if on else None
        reason = f"training.gradient_checkpointing={setting}"
    elif budget_gb <= 0:
        on, reason = False, "no memory budget (training.memory_budget_gb=0)"
    else:
        on = plain > budget_gb
        reason = (f"estimated {plain:.1f} GB for {tokens} tokens per micro-batch "
                  f"{'exceeds' if on else 'fits'} the {budget_gb:g} GB budget")
        if on and not per_batch:
            above = 0
        elif on:
            above = plain_token_limit(model, labelled_share, budget_gb, lora_modules)
            reason += f"; micro-batches over {above} tokens recompute their activations"
        if on and checkpointed > budget_gb:
            reason += f"; even with checkpointing ~{checkpointed:.1f} GB: lower training.batch_size or data.max_length"
    return MemoryPlan(budget_gb, tokens, round(plain, 2), round(checkpointed, 2), on, reason, above)
