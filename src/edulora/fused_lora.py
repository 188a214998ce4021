"""One autograd node per LoRA layer: dropout mask, both low-rank matmuls and the add, fused.

PEFT computes ``base(x) + B(A(dropout(x))) * scaling`` as five autograd nodes per adapted layer,
and ``nn.Dropout`` draws one random number per element with ``bernoulli_``, which does not use
a second thread. On a 2-core CPU, with 120 adapted layers in SmolLM2-135M, those elementwise
passes (mask, scale, add, and their backward) cost more than the low-rank matmuls themselves.
Here the mask takes four 16-bit slices of each 64-bit random word, the dropout's 1/(1-p) and
the LoRA scaling ride in the matmul's ``alpha``, and the update is added into the frozen layer's
output by ``addmm_``. The arithmetic is PEFT's; only the rounding points differ in bf16.

The update lives in ``FusedLinear``, a subclass of PEFT's ``lora.Linear`` that PEFT itself builds
for every targeted ``nn.Linear``: ``lora_config`` registers it through
``LoraConfig._register_custom_module`` (PEFT's documented, if experimental, hook for custom LoRA
layers; see https://huggingface.co/docs/peft/developer_guides/custom_models). The registration
lives on the in-memory config only, so the saved adapter is a plain PEFT adapter. Because that
hook and the layer attributes read here are PEFT internals, ``check`` runs after
``get_peft_model`` and raises if PEFT built another class or moved what the update reads, rather
than let training run on different numbers.
"""

from __future__ import annotations

import inspect

import torch
from peft import LoraConfig
from peft.tuners.lora.layer import Linear as PeftLinear
from peft.tuners.lora.layer import LoraLayer


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


class FusedLinear(PeftLinear):
    """PEFT's ``lora.Linear``, training one unmerged vanilla adapter on a CPU through ``_LoraUpdate``.

    Everything else is PEFT's own forward: evaluation (so a tuned model answers exactly as it will
    after ``PeftModel.from_pretrained``; in bf16 the fused update rounds at other points), GPUs (the
    fusion targets per-op costs measured on CPUs; CUDA keeps PEFT's tested path), merged or disabled
    adapters, mixed-adapter batches, several active adapters, LoRA variants (DoRA, ...), a LoRA bias,
    and any extra call argument PEFT may route to the base layer.
    """

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        name = self._fused_adapter(x, args, kwargs)
        if name is None:
            return super().forward(x, *args, **kwargs)
        result = self.base_layer(x)
        p = getattr(self.lora_dropout[name], "p", 0.0)  # nn.Identity when lora_dropout is 0
        return _LoraUpdate.apply(result, x, self.lora_A[name].weight, self.lora_B[name].weight, self.scaling[name], p)

    def _fused_adapter(self, x: torch.Tensor, args: tuple, kwargs: dict) -> str | None:
        """The adapter the fused update computes for this call, or None where PEFT's forward must run."""
        active = self.active_adapters
        if (not self.training or x.device.type != "cpu" or args or kwargs or self.disable_adapters
                or self.merged or len(active) != 1):
            return None
        name = active[0]
        if name not in self.lora_A or name in self.lora_variant or self.lora_B[name].bias is not None:
            return None
        return name


def lora_config(model: torch.nn.Module, **settings) -> LoraConfig:
    """``LoraConfig(**settings)`` under which PEFT builds ``FusedLinear`` for ``model``'s ``nn.Linear`` targets.

    A quantized base (QLoRA's bitsandbytes layers subclass ``nn.Linear``) keeps PEFT's own layer
    classes: the mapping would win over PEFT's quantized dispatch, and those bases train on CUDA only.
    """
    config = LoraConfig(**settings)
    if getattr(model, "hf_quantizer", None) is None:
        register = getattr(config, "_register_custom_module", None)
        if register is None:
            raise RuntimeError(_moved("LoraConfig._register_custom_module is gone"))
        register({torch.nn.Linear: FusedLinear})
    return config


# What FusedLinear reads from PEFT's layer; ``check`` verifies each after get_peft_model.
_FORWARD_PARAMETERS = [("self", "POSITIONAL_OR_KEYWORD"), ("x", "POSITIONAL_OR_KEYWORD"),
                       ("args", "VAR_POSITIONAL"), ("kwargs", "VAR_KEYWORD")]
_LAYER_ATTRIBUTES = ("base_layer", "active_adapters", "disable_adapters", "merged", "lora_variant",
                     "lora_A", "lora_B", "lora_dropout", "scaling")


def check(model: torch.nn.Module) -> int:
    """Raise unless PEFT built every LoRA layer on a plain ``nn.Linear`` as a ``FusedLinear`` that has
    what the fused update reads; returns how many layers it checked."""
    parameters = [(p.name, p.kind.name) for p in inspect.signature(PeftLinear.forward).parameters.values()]
    if parameters != _FORWARD_PARAMETERS:
        raise RuntimeError(_moved(f"lora.Linear.forward takes {parameters}, not (self, x, *args, **kwargs)"))
    checked = 0
    for path, module in model.named_modules():
        if isinstance(module, LoraLayer) and type(getattr(module, "base_layer", None)) is torch.nn.Linear:
            _check_layer(path, module)
            checked += 1
    return checked


def _check_layer(path: str, layer: torch.nn.Module) -> None:
    if type(layer) is not FusedLinear:
        raise RuntimeError(_moved(f"PEFT built {type(layer).__module__}.{type(layer).__qualname__} for {path}"))
    missing = [name for name in _LAYER_ATTRIBUTES if not hasattr(layer, name)]
    if missing:
        raise RuntimeError(_moved(f"{path} has no {', '.join(missing)}"))
    for adapter in layer.lora_A:
        a, b, dropout, scaling = (getattr(layer, name)[adapter] if adapter in getattr(layer, name) else None
                                  for name in ("lora_A", "lora_B", "lora_dropout", "scaling"))
        if not (type(a) is torch.nn.Linear and type(b) is torch.nn.Linear and isinstance(scaling, (int, float))
                and isinstance(dropout, (torch.nn.Dropout, torch.nn.Identity))):
            raise RuntimeError(_moved(f"{path}'s adapter {adapter!r} is not nn.Linear A and B, "
                                      "an nn.Dropout / nn.Identity and a number scaling"))


def _moved(what: str) -> str:
    import peft

    return (f"edulora's fused LoRA layer does not fit peft {peft.__version__}: {what}. It was written against "
            "peft 0.21 (LoraConfig._register_custom_module building edulora.fused_lora.FusedLinear); "
            "pin peft to 0.21 or adapt src/edulora/fused_lora.py")
