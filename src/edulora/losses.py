"""Causal-LM loss on tutor tokens, with the LM head applied only where a label is set.

On a 135M model with a 49k-word vocabulary the head and its log-softmax cost more CPU time
than all attention layers together (see ../shared/perf-notes.md); prompt tokens never need
logits during training, so skipping them is free accuracy-wise and a large saving in time
and memory. ``plain`` computes logits everywhere and is kept as the reference the fast path
is tested against.
"""

from __future__ import annotations

from contextlib import ExitStack

import torch
import torch.nn.functional as F

from .formatting import IGNORE_INDEX


def _causal_lm(model):
    """The ``…ForCausalLM`` module under PEFT / DDP wrappers."""
    while hasattr(model, "module"):  # DistributedDataParallel
        model = model.module
    if hasattr(model, "get_base_model"):  # PeftModel
        model = model.get_base_model()
    return model


def supports_response_only_head(model) -> bool:
    """True when the model's logits are exactly ``head(decoder(x))`` (no softcapping or scaling)."""
    lm = _causal_lm(model)
    config = getattr(lm, "config", None)
    if config is None or getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return False
    try:
        return lm.get_decoder() is not None and lm.get_output_embeddings() is not None
    except (AttributeError, NotImplementedError):
        return False


def _mixed_precision(model, stack: ExitStack) -> None:
    """bf16 base weights + fp32 LoRA weights on a CPU: run the LoRA matmuls in bf16 under autocast.

    PEFT otherwise casts every LoRA input to fp32 (a copy per adapted module), applies dropout in fp32
    and adds the fp32 update to the bf16 output, which promotes the sum to fp32 and casts it back:
    three dtype copies per module per pass, and fp32 activations saved for backward. Under autocast
    with PEFT's input cast switched off, x stays bf16 and the fp32 LoRA weights (the optimizer's
    master copy) are cast to bf16 for the matmul, as in any mixed-precision training.
    """
    try:
        param = next(p for p in model.parameters() if not p.requires_grad)
    except StopIteration:
        return
    if param.device.type != "cpu" or param.dtype != torch.bfloat16:
        return
    if torch.is_autocast_enabled("cpu"):
        return  # the caller already chose
    from peft.helpers import disable_input_dtype_casting

    stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
    stack.enter_context(disable_input_dtype_casting(model))


def token_loss_sum(model, batch: dict, response_only_head: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over labelled positions and their count.

    ``batch`` comes from ``formatting.collate_examples``: ``shift_labels[i]`` is the token that
    position ``i`` must predict. Packed rows are kept apart by ``position_ids`` (no attention
    mask, no cache), which transformers turns into a block-diagonal causal mask.
    """
    targets = batch["shift_labels"]
    mask = targets != IGNORE_INDEX
    count = mask.sum()
    with ExitStack() as stack:
        _mixed_precision(model, stack)
        if response_only_head and supports_response_only_head(model):
            lm = _causal_lm(model)
            if hasattr(model, "module"):
                # DDP / FSDP / DeepSpeed sync gradients (or gather shards) only in their own forward; calling the
                # decoder inside them would train each process on its own shard. logits_to_keep=1 keeps the
                # full-vocabulary head off every position but the last.
                hidden = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False,
                               output_hidden_states=True, logits_to_keep=1).hidden_states[-1]
            else:
                hidden = lm.get_decoder()(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                                          use_cache=False).last_hidden_state
            return head_loss_sum(hidden[mask], lm.get_output_embeddings(), targets[mask]), count
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[mask]
    return F.cross_entropy(logits.float(), targets[mask], reduction="sum"), count


@torch.no_grad()
def mean_token_loss(model, batches, response_only_head: bool = True, accelerator=None,
                    batch_count: int | None = None) -> float:
    """Cross-entropy per tutor token over a whole data set (not a mean of batch means).

    A progress bar counts the batches (``batch_count``, else ``len(batches)`` when it has one): a held-out
    loss on a CPU takes tens of seconds."""
    from .progress import bar

    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=next(model.parameters()).device)
    count = batch_count if batch_count is not None else len(batches) if hasattr(batches, "__len__") else None
    main = accelerator is None or accelerator.is_main_process
    for batch in bar(batches, desc="eval loss", total=count, unit="batch", enabled=main):
        batch = {k: v.to(total.device) for k, v in batch.items() if torch.is_tensor(v)}
        loss_sum, count = token_loss_sum(model, batch, response_only_head)
        total += torch.stack([loss_sum.double(), count.double()])
    if accelerator is not None and accelerator.num_processes > 1:
        total = accelerator.reduce(total, reduction="sum")
    model.train(was_training)
    return float(total[0] / total[1].clamp(min=1))


def head_loss_sum(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of ``head(hidden)`` against ``targets``, without keeping the logits when the head is frozen."""
    if (type(head) is torch.nn.Linear and head.bias is None and not head.weight.requires_grad
            and head.weight.device.type == "cpu"):
        need_grad = torch.is_grad_enabled() and hidden.requires_grad
        return _FrozenHeadCrossEntropy.apply(hidden, head.weight, targets, need_grad)
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


class _FrozenHeadCrossEntropy(torch.autograd.Function):
    """Head matmul + cross-entropy in row chunks, the hidden-state gradient computed on the way.

    With a 49k-word vocabulary the plain path keeps bf16 logits, their fp32 copy and the fp32
    log-probabilities of every labelled position until backward (~0.5 MB per token), and its
    backward zero-fills and rereads them. Here each chunk's logits live only inside the loop:
    softmax minus one-hot is the logits' gradient, so the hidden-state gradient is one more
    matmul and backward only scales it. The head is frozen (tied embeddings), so no weight gradient.
    """

    ROWS = 256  # 256 × 49k fp32 logits = 50 MB per chunk

    @staticmethod
    def forward(ctx, hidden, weight, targets, need_grad):
        grad = torch.empty_like(hidden, dtype=weight.dtype) if need_grad else None
        ctx.hidden_dtype = hidden.dtype
        hidden = hidden.to(weight.dtype)
        total = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, hidden.shape[0], _FrozenHeadCrossEntropy.ROWS):
            rows = slice(start, start + _FrozenHeadCrossEntropy.ROWS)
            log_probs = torch.log_softmax(hidden[rows] @ weight.t(), dim=1, dtype=torch.float32)
            target = targets[rows].unsqueeze(1)
            total -= log_probs.gather(1, target).sum()
            if grad is not None:
                probs = log_probs.exp_()
                probs.scatter_add_(1, target, torch.full_like(target, -1, dtype=probs.dtype))
                torch.mm(probs.to(weight.dtype), weight, out=grad[rows])
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return (grad * grad_output.to(grad.dtype)).to(ctx.hidden_dtype), None, None, None
