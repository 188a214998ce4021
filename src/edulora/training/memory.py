"""How much memory a training step will take, and whether to recompute activations to fit a budget.

A LoRA step on a small model is dominated by stored activations, not weights: SmolLM2-135M keeps
about 1.3 MB per token across its 30 layers in fp32, so a micro-batch of 8 × 1,024 tokens needs
~10 GB before the weights are counted. Activation checkpointing keeps only each layer's input and
recomputes the rest in the backward pass (~30% more compute), which brings that down to a few
hundred MB. ``plan_memory`` estimates the peak for the longest micro-batch the data will form and,
when that is over ``training.memory.budget_gb``, finds how many tokens a micro-batch may hold
without checkpointing: only micro-batches past that recompute their activations. Length-grouped
batches vary a lot (the demo's: ~800 tokens typical, 3,072 the longest), so a run pays the recompute
on its few long batches instead of on every step, and its peak stays within the budget.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch

from .. import attention

GB = 1024**3

#: How a trainer's LM head holds memory. "reply": edulora's SFT head scores the labelled (reply) tokens only,
#: keeping their fp32 logits, log-softmax and its gradient. "chunked": TRL's DPO scores every position through
#: its chunked log-probability kernel (``trl.kernels.chunked_logprob``; Triton only on CUDA/XPU), which never
#: holds the whole logits but, on a CPU, makes fp32 temporaries of one tile (up to ``CHUNKED_TOKEN_TILE``
#: tokens × ``CHUNKED_VOCAB_TILE`` entries) at a time. "full": TRL's ORPO materialises the logits of every
#: position and takes its log-softmax and cross-entropy from them.
HEADS = ("reply", "chunked", "full")
#: TRL's tile: ``TOKEN_CHUNK_SIZE`` and the vocabulary chunk ``add_fused_lm_head`` passes (TRL 1.16).
CHUNKED_TOKEN_TILE, CHUNKED_VOCAB_TILE = 4096, 32768
#: fp32 tile-sized tensors alive at once in the kernel's CPU backward (the recomputed tile, scaled logits,
#: log-probabilities, probabilities, the gradient and its temporaries); see the measurement in docs/preference.md.
CHUNKED_TILE_COPIES = 8
#: Vocabulary-wide tensors per position, in the model's dtype, alive in an ORPO step (the logits, the chosen
#: half's shifted copy, its log-softmax, the logits' gradient and temporaries): 4 was 0.4 GiB short of the
#: measured peak of a checkpointed fp32 step (docs/preference.md).
FULL_LOGITS_COPIES = 5


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
    #: Examples per micro-batch when the plan made the configured batch smaller to fit (gradient
    #: accumulation makes up the optimizer step); None: the configured batch.
    micro_batch_size: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def checkpoints(self, tokens: int) -> bool:
        """Whether a micro-batch of ``tokens`` tokens (rows × padded length) recomputes its activations."""
        return self.checkpoint_above_tokens is not None and tokens > self.checkpoint_above_tokens

    def per_micro_batch(self) -> bool:
        """Whether checkpointing is switched for each micro-batch rather than for the whole run: in one
        process only, since DDP wraps the model once, knowing whether it checkpoints."""
        return bool(self.checkpoint_above_tokens) and int(os.environ.get("WORLD_SIZE", "1")) == 1


def available_memory_gb(meminfo: str = "/proc/meminfo", cgroup: str = "/sys/fs/cgroup") -> float | None:
    """Memory this process could still take, in GB: Linux's ``MemAvailable``, lowered to what the cgroup
    (a container's limit) has left; None where neither can be read (then callers keep their fixed budget)."""
    try:
        with open(meminfo) as info:
            free = next(int(line.split()[1]) * 1024 for line in info if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    try:
        with open(os.path.join(cgroup, "memory.max")) as limit_file, \
                open(os.path.join(cgroup, "memory.current")) as used_file:
            limit = limit_file.read().strip()
            if limit != "max":
                free = min(free, int(limit) - int(used_file.read().strip()))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit to read: the machine's count stands
    return max(free, 0) / GB


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


def head_bytes(vocab_size: int, batch_tokens: int, labelled_share: float, head: str = "reply",
               dtype_bytes: int = 4) -> float:
    """Bytes the LM head holds at the peak of a step on ``batch_tokens`` tokens (see ``HEADS``);
    ``dtype_bytes``: the model's, in which ORPO's logits are kept (the other heads work in fp32)."""
    if head == "reply":
        return 3 * 4 * vocab_size * batch_tokens * labelled_share
    if head == "chunked":
        return CHUNKED_TILE_COPIES * 4 * min(batch_tokens, CHUNKED_TOKEN_TILE) * min(vocab_size, CHUNKED_VOCAB_TILE)
    if head == "full":
        return FULL_LOGITS_COPIES * dtype_bytes * vocab_size * batch_tokens
    raise ValueError(f"unknown LM head kind {head!r}; one of {HEADS}")


def estimate_peak_bytes(model: torch.nn.Module, batch_tokens: int, labelled_share: float,
                        checkpointing: bool, lora_modules: int, head: str = "reply") -> float:
    """Peak resident bytes of one training step on ``batch_tokens`` tokens.

    Weights (as loaded) + what the LM head holds (``head_bytes``: for SFT the fp32 logits, their
    log-softmax and its gradient for the labelled share of tokens) + stored activations (all of them,
    or with checkpointing one hidden-sized input per layer plus one layer's full set recomputed) + the
    attention probabilities ``attention.ShortAttention`` keeps where the model uses it (their most) + a
    fixed allowance for the Python process, tokenizer and allocator slack.
    """
    config = model.config
    dtype_bytes = next(model.parameters()).element_size()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    logits = head_bytes(config.vocab_size, batch_tokens, labelled_share, head, dtype_bytes)
    per_token = activation_bytes_per_token(config, dtype_bytes, lora_modules)
    # Short rows' attention keeps its probabilities for backward (SDPA's flash kernel keeps none).
    short = (attention.extra_bytes(config, batch_tokens)
             if getattr(config, "_attn_implementation", None) == attention.NAME else 0.0)
    if checkpointing:  # only the recomputed layer holds its full set
        per_token = (config.num_hidden_layers * config.hidden_size * dtype_bytes
                     + per_token / config.num_hidden_layers)
        short /= config.num_hidden_layers
    overhead = 0.6 * GB
    return weights + logits + per_token * batch_tokens + short + overhead


def plain_token_limit(model: torch.nn.Module, labelled_share: float, budget_gb: float, lora_modules: int) -> int:
    """The most tokens a micro-batch may hold without checkpointing and stay within ``budget_gb``
    (the estimate grows with tokens, so a bisection finds it)."""
    def fits(tokens: int) -> bool:
        return estimate_peak_bytes(model, tokens, labelled_share, False, lora_modules) <= budget_gb * GB

    low, high = 0, 1
    while fits(high):
        low, high = high, high * 2
    while high - low > 1:  # fits(low), not fits(high)
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low  # 0 when not even one token fits


def plan_memory(model: torch.nn.Module, row_lengths: list[int], batch_size: int, pad_to_multiple_of: int,
                labelled_share: float, budget_gb: float, setting: str, lora_modules: int,
                per_batch: bool = True, head: str = "reply", rows_per_example: int = 1,
                split: str | None = None) -> MemoryPlan:
    """Which micro-batches recompute activations: ``setting`` "true"/"false" decides for all; "auto"
    compares the estimate for the largest micro-batch (``batch_size`` examples of ``rows_per_example``
    rows, each as long as the longest) with the budget and, when it is over, checkpoints only
    micro-batches past ``plain_token_limit`` (all of them where the trainer cannot switch per
    micro-batch: ``per_batch=False``).

    With ``split`` (preference runs, whose trainers forward a whole micro-batch in one call), "auto" may
    also make the micro-batch smaller: a divisor of ``batch_size``, the rest of the optimizer step made up
    by gradient accumulation, so each step still sees the configured examples. ``split="first"`` tries
    that before recomputing (the largest micro-batch that fits without, then with recomputation);
    ``"last"`` recomputes first and splits only when the whole batch does not fit even so.
    """
    longest = max(row_lengths, default=0)
    padded = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    examples = min(batch_size, max(len(row_lengths) // rows_per_example, 1))

    def estimate(n: int, checkpointing: bool) -> float:
        return estimate_peak_bytes(model, padded * rows_per_example * n, labelled_share, checkpointing,
                                   lora_modules, head) / GB

    tokens = padded * rows_per_example * examples
    plain, checkpointed = estimate(examples, False), estimate(examples, True)
    above: int | None = None
    micro: int | None = None
    if setting in ("true", "false"):
        on = setting == "true"
        above = 0 if on else None
        reason = f"training.memory.gradient_checkpointing={setting}"
    elif budget_gb <= 0:
        on, reason = False, "no memory budget (training.memory.budget_gb=0)"
    else:
        on = plain > budget_gb
        reason = (f"estimated {plain:.1f} GB for {tokens} tokens per micro-batch "
                  f"{'exceeds' if on else 'fits'} the {budget_gb:g} GB budget")
        if on and split:
            # (examples per micro-batch, recompute?) in order of preference: splitting is exact where the loss is a
            # mean over examples (DPO: split="first"), recomputing where it is a mean over tokens (ORPO's NLL part,
            # which smaller micro-batches would weight differently: split="last").
            sizes = [n for n in range(examples, 0, -1) if batch_size % n == 0]
            if split == "last":
                sizes = [n for n in sizes if n < examples]
            first = [(examples, True)] if split == "last" else []
            tries = first + [(n, False) for n in sizes] + [(n, True) for n in sizes]
            micro, on = next(((n, c) for n, c in tries if estimate(n, c) <= budget_gb), (1, True))
            above = 0 if on else None
            if micro < examples:
                reason += (f"; {micro} of the {batch_size} examples per micro-batch"
                           f"{', activations recomputed' if on else ''} ({estimate(micro, on):.1f} GB), "
                           f"gradient accumulation makes up the step")
            else:
                reason += f"; activations recomputed ({estimate(micro, on):.1f} GB)"
                micro = None
        elif on and not per_batch:
            above = 0
        elif on:
            above = plain_token_limit(model, labelled_share, budget_gb, lora_modules)
            reason += f"; micro-batches over {above} tokens recompute their activations"
        final = estimate(micro or examples, on)
        if on and final > budget_gb:
            reason += f"; even so ~{final:.1f} GB: lower training.batch_size or data.max_length"
    return MemoryPlan(budget_gb, tokens, round(plain, 2), round(checkpointed, 2), on, reason, above, micro)
