"""Attention for short bf16 rows on a CPU: plain matrix products instead of SDPA's flash kernel.

A tutoring example is ~100–350 tokens. For rows that short, PyTorch's flash-attention kernel for CPUs
is slow in bf16: in a SmolLM2-135M LoRA step on 4 rows of ~175 tokens (AVX-512 CPU without AMX) its
forward and backward took 29% of the step's CPU time, for ~4% of its FLOPs. Two batched matrix
products with a softmax between them do the same work faster there: whole training steps ran ~20%
faster on rows up to ~200 tokens, a few percent on 4 rows of 230–320, and slower once a layer's
query-key pairs passed ~3.5 million (benchmarks/history/benchmarks-2026-12.md, "Run 10"; ``benchmarks/attention_rows.py``
measures the crossover on another CPU).

``ShortAttention`` keeps what the backward pass needs in bf16: the probabilities (2 bytes per
query-key pair, against the 6 that transformers' eager attention keeps: an fp32 softmax output and
its bf16 copy) and the output. Calls with longer rows, another dtype or device, a single query
(decoding), attention dropout, or features these products do not implement (soft-capping, sinks,
position biases) go to transformers' own SDPA function unchanged.

It is plugged in through transformers' public ``AttentionInterface`` (with SDPA's mask function,
so it receives exactly the boolean masks SDPA would) and chosen per model with
``set_attn_implementation``; nothing of transformers is replaced.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "edulora_short"
#: Longest key length computed with plain products; longer rows go to SDPA.
SHORT_KEYS = 320
#: Most query-key pairs (batch × heads × queries × keys) per layer on that path. Past ~3.5M pairs the
#: products were slower than the flash kernel (8 rows × 230 tokens, 4 × 367); this also bounds what the
#: path keeps for backward to 6 MiB per layer (2 bytes per pair).
MAX_SCORES = 3 * 2**20
#: Keyword arguments that change attention's arithmetic in ways these products do not implement.
_UNSUPPORTED = ("softcap", "s_aux", "sinks", "position_bias")


class ShortAttention(torch.autograd.Function):
    """``softmax(q kᵀ · scale, masked) v`` for (batch, heads, queries, dim) tensors, keys already
    repeated for grouped-query attention; ``keep`` is True where a query may attend to a key."""

    @staticmethod
    def forward(ctx, query, key, value, keep, scale):
        scores = torch.matmul(query, key.transpose(-1, -2)).float().mul_(scale)
        # The dtype's lowest value rather than -inf: a query that may see no key gets uniform weights
        # (as in transformers' eager attention) instead of NaN.
        scores.masked_fill_(~keep, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, dim=-1).to(query.dtype)
        out = torch.matmul(probs, value)
        ctx.save_for_backward(query, key, value, probs, out)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad):
        query, key, value, probs, out = ctx.saved_tensors
        grad_value = torch.matmul(probs.transpose(-1, -2), grad)
        grad_probs = torch.matmul(grad, value.transpose(-1, -2)).float()
        # Softmax backward: rowsum(dP ⊙ P) equals rowsum(dO ⊙ O), which needs no query-key-sized product.
        row = (grad.float() * out.float()).sum(-1, keepdim=True)
        grad_scores = (probs.float() * (grad_probs - row)).mul_(ctx.scale).to(query.dtype)
        grad_query = torch.matmul(grad_scores, key)
        grad_key = torch.matmul(grad_scores.transpose(-1, -2), query)
        return grad_query, grad_key, grad_value, None, None


def short_enough(batch: int, heads: int, queries: int, keys: int) -> bool:
    """Whether attention of this shape is within the limits where plain products were faster."""
    return 1 < queries and keys <= SHORT_KEYS and batch * heads * queries * keys <= MAX_SCORES


def takes_short_path(query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None,
                     dropout: float = 0.0, **kwargs) -> bool:
    """Whether ``short_attention_forward`` computes this call itself rather than passing it to SDPA."""
    batch, heads, queries, _ = query.shape
    keys = key.shape[2]
    return (query.device.type == "cpu" and query.dtype == torch.bfloat16
            and short_enough(batch, heads, queries, keys) and not dropout
            and not kwargs.get("output_attentions") and all(kwargs.get(name) is None for name in _UNSUPPORTED)
            and (attention_mask.dtype == torch.bool if attention_mask is not None else queries == keys))


def short_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                            is_causal: bool | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature; returns (batch, queries, heads, dim) like SDPA's."""
    if not takes_short_path(query, key, attention_mask, dropout, **kwargs):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    if attention_mask is None:  # SDPA's mask function leaves out a purely causal mask (queries == keys here)
        causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
        attention_mask = torch.ones(query.shape[2], key.shape[2], dtype=torch.bool, device=query.device)
        if causal:
            attention_mask = attention_mask.tril()
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out = ShortAttention.apply(query, key, value, attention_mask, scale)
    return out.transpose(1, 2).contiguous(), None


def use_short_attention(model: torch.nn.Module) -> bool:
    """Switch ``model`` (a transformers model, not yet wrapped) to this attention where it pays: bf16
    weights on a CPU, loaded with SDPA. Returns whether it did."""
    config = getattr(model, "config", None)
    try:
        weight = next(model.parameters())
    except StopIteration:
        return False
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa" \
            or weight.device.type != "cpu" or weight.dtype != torch.bfloat16:
        return False
    AttentionInterface.register(NAME, short_attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
    return True


def extra_bytes(config, batch_tokens: int) -> float:
    """The most this attention keeps for backward beyond SDPA in a micro-batch of ``batch_tokens``
    tokens, all layers: 2 bytes per query-key pair; a row on this path has at most ``SHORT_KEYS``
    keys and a layer at most ``MAX_SCORES`` pairs."""
    heads = config.num_attention_heads
    return float(config.num_hidden_layers * 2 * min(MAX_SCORES, heads * batch_tokens * SHORT_KEYS))
