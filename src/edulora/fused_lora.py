"""One autograd node per LoRA layer: dropout mask, both low-rank matmuls and the add, fused.

PEFT computes ``base(x) + B(A(dropout(x))) * scaling`` as five autograd nodes per adapted layer,
and ``nn.Dropout`` draws one random number per element with ``bernoulli_``, which does not use
a second thread. On a 2-core CPU, with 120 adapted layers in SmolLM2-135M, those elementwise
passes (mask, scale, add, and their backward) cost more than the low-rank matmuls themselves.
Here the mask takes four 16-bit slices of each 64-bit random word, the dropout's 1/(1-p) and
the LoRA scaling ride in the matmul's ``alpha``, and the update is added into the frozen layer's
output by ``addmm_``. The arithmetic is PEFT's; only the rounding points differ in bf16.
"""

from __future__ import annotations

import types

import torch


def dropout_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """Boolean mask, True where an element is dropped; ``p`` is rounded to a multiple of 1/65536."""
    n = shape.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), 2**63 - 1)
    return words.view(torch.int16)[:n].view(shape) < round(p * 65536) - 32768


class _LoraUpdate(torch.autograd.Function):
    """``result += scale/(1-p) · (x ⊙ keep) Aᵀ Bᵀ`` in place; gradients for x, A and B."""

    @staticmethod
    def forward(ctx, result, x, lora_a, lora_b, scale, p):
        rows = x.reshape(-1, x.shape[-1]).to(result.dtype)
        dropped = dropout_mask(rows.shape, p, rows.device) if p > 0 else None
        if dropped is not None:
            rows = rows.masked_fill(dropped, 0)
            scale = scale / (1 - p)
        a = lora_a.to(rows.dtype)
        b = lora_b.to(rows.dtype)
        low = rows @ a.t()
        result.view(-1, result.shape[-1]).addmm_(low, b.t(), alpha=scale)
        ctx.mark_dirty(result)
        ctx.save_for_backward(rows, low, a, b, dropped)
        ctx.scale, ctx.x_meta = scale, (x.shape, x.dtype)
        ctx.weight_dtypes = (lora_a.dtype, lora_b.dtype)
        return result

    @staticmethod
    def backward(ctx, grad):
        rows, low, a, b, dropped = ctx.saved_tensors
        grad_rows = grad.reshape(-1, grad.shape[-1])
        grad_low = (grad_rows @ b).mul_(ctx.scale)
        grad_a = (grad_low.t() @ rows).to(ctx.weight_dtypes[0]) if ctx.needs_input_grad[2] else None
        grad_b = (grad_rows.t() @ low).mul_(ctx.scale).to(ctx.weight_dtypes[1]) if ctx.needs_input_grad[3] else None
        grad_x = None
        if ctx.needs_input_grad[1]:
            grad_x = grad_low @ a
            if dropped is not None:
                grad_x.masked_fill_(dropped, 0)
            shape, dtype = ctx.x_meta
            grad_x = grad_x.view(shape).to(dtype)
        return grad, grad_x, grad_a, grad_b, None, None


def _forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """PEFT's ``lora.Linear.forward`` for training with one unmerged vanilla adapter; PEFT's own otherwise.

    Outside training PEFT's forward runs, so a tuned model answers exactly as it will after
    ``PeftModel.from_pretrained`` (in bf16 the fused update rounds at other points). On GPUs PEFT's
    forward runs too: the fusion targets per-op costs measured on CPUs, and CUDA keeps its tested path.
    """
    active = self.active_adapters
    if (not self.training or x.device.type != "cpu" or self.disable_adapters or self.merged
            or kwargs.get("adapter_names") is not None or len(active) != 1
            or active[0] not in self.lora_A or active[0] in self.lora_variant):
        return type(self).forward(self, x, *args, **kwargs)
    name = active[0]
    result = self.base_layer(x, *args, **kwargs)
    p = getattr(self.lora_dropout[name], "p", 0.0)
    return _LoraUpdate.apply(result, x, self.lora_A[name].weight, self.lora_B[name].weight, self.scaling[name], p)


def install(model: torch.nn.Module) -> None:
    """Route every plain LoRA linear layer of a PEFT model through the fused update."""
    from peft.tuners.lora.layer import Linear

    for module in model.modules():
        if type(module) is Linear and type(module.base_layer) is torch.nn.Linear:
            module.forward = types.MethodType(_forward, module)
