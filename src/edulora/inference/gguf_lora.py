"""A PEFT LoRA adapter as a GGUF LoRA file that llama.cpp applies on top of a GGUF base, per request.

llama.cpp names each low-rank pair after the base weight it changes (``blk.3.attn_q.weight.lora_a``
and ``.lora_b``), keeps A as PEFT stores it (rank × in) and B likewise (out × rank), and scales the
product by ``scale × adapter.lora.alpha / rank``. The base GGUF's q/k rows are permuted for its rotary
layout (see ``export.gguf_tensors``); B's rows carry the same permutation, since P(W + sBA) = PW + s(PB)A.
Files are cached by content, so an adapter is converted once, however often it is served.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..errors import EduloraError
from ..export import _LAYER_NAMES, check_llama, _permute_rotary, gguf_writer
from ..modeling import adapter_weights, cache_dir

#: What PEFT prefixes each adapter tensor with.
_PEFT_PREFIX = "base_model.model.model.layers."


def read_adapter_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise EduloraError(f"{folder / 'adapter_config.json'}: cannot read it ({err})") from None


def lora_alpha(config: dict, folder: Path) -> float:
    """The alpha that gives llama.cpp's ``alpha / rank`` the scaling PEFT used (rsLoRA: alpha / sqrt(rank))."""
    if config.get("use_dora"):
        raise EduloraError(f"{folder}: DoRA adapters cannot run on llama.cpp; serve them with --backend transformers")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise EduloraError(f"{folder}: adapter_config.json has rank_pattern/alpha_pattern; llama.cpp takes one alpha")
    if config.get("modules_to_save") or config.get("bias", "none") != "none":
        raise EduloraError(f"{folder}: adapters with modules_to_save or bias terms cannot run on llama.cpp")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    scaling = alpha / rank ** 0.5 if config.get("use_rslora") else alpha / rank
    return scaling * rank


def load_lora_tensors(folder: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    weights = adapter_weights(folder, allow_pickle)
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(weights), device="cpu")
    return torch.load(weights, map_location="cpu", weights_only=True)


def gguf_lora_tensors(tensors: dict[str, torch.Tensor], heads: int, kv_heads: int) -> dict[str, torch.Tensor]:
    """PEFT's ``lora_A`` / ``lora_B`` weights under llama.cpp's names, B's q/k rows permuted like the base's."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if not name.startswith(_PEFT_PREFIX) or not name.endswith((".lora_A.weight", ".lora_B.weight")):
            raise EduloraError(f"GGUF LoRA: no llama.cpp name for adapter tensor {name}")
        index, rest = name[len(_PEFT_PREFIX):].split(".", 1)
        module, kind = rest[: -len(".lora_A.weight")], rest[-len("A.weight"):-len(".weight")]
        if module not in _LAYER_NAMES or module.endswith("layernorm"):
            raise EduloraError(f"GGUF LoRA: no llama.cpp name for adapter tensor {name}")
        tensor = tensor.detach().float()
        if kind == "B" and module in ("self_attn.q_proj", "self_attn.k_proj"):
            tensor = _permute_rotary(tensor, heads if module == "self_attn.q_proj" else kv_heads)
        out[f"blk.{index}.{_LAYER_NAMES[module]}.weight.lora_{kind.lower()}"] = tensor.contiguous()
    return out


def write_gguf_lora(folder: Path, base_config, out: Path, allow_pickle: bool = False) -> Path:
    """Write the adapter in ``folder`` (trained on a llama model with ``base_config``) as one GGUF LoRA file."""
    import gguf

    check_llama(base_config)
    alpha = lora_alpha(read_adapter_config(folder), folder)
    heads = int(base_config.num_attention_heads)
    kv_heads = int(getattr(base_config, "num_key_value_heads", None) or heads)
    tensors = gguf_lora_tensors(load_lora_tensors(folder, allow_pickle), heads, kv_heads)
    if not tensors:
        raise EduloraError(f"{folder}: the adapter holds no LoRA weights")
    with gguf_writer(out) as writer:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)  # adapters are small: keep them exact
        for name, tensor in tensors.items():
            writer.add_tensor(name, tensor.numpy())
    return out


def cached_gguf_lora(folder: Path, base_config, allow_pickle: bool = False) -> Path:
    """The adapter's GGUF LoRA file in the cache, written on first use; keyed by its weights and config."""
    digest = hashlib.sha256()
    for part in (adapter_weights(folder, allow_pickle), folder / "adapter_config.json"):
        with open(part, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    digest.update(f"{base_config.num_attention_heads}:{getattr(base_config, 'num_key_value_heads', 0)}".encode())
    out = cache_dir() / "gguf-lora" / f"{digest.hexdigest()[:24]}.gguf"
    return out if out.is_file() else write_gguf_lora(folder, base_config, out, allow_pickle)
