"""A PEFT LoRA adapter as a GGUF LoRA file that llama.cpp applies on top of a GGUF base, per request.

llama.cpp names each low-rank pair after the base weight it changes (``blk.3.attn_q.weight.lora_a`` and
``.lora_b``) and scales the product by ``scale × adapter.lora.alpha / rank``. The names and the layout of
each weight (e.g. Llama's q/k rows permuted for llama.cpp's rotary order, which B's rows must share) are
the ones llama.cpp's converter gives the base, for any architecture it supports (see ``convert``).
Files are cached by content, so an adapter is converted once, however often it is served.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from ..errors import EduloraError
from ..modeling import adapter_weights, cache_dir
from .convert import CONVERTER_VERSION, as_safetensors, convert_lora


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


def write_gguf_lora(folder: Path, base_folder: str | os.PathLike, out: Path, allow_pickle: bool = False) -> Path:
    """Write the adapter in ``folder`` (trained on the Hugging Face model in ``base_folder``) as one GGUF LoRA."""
    folder = Path(folder)
    alpha = lora_alpha(read_adapter_config(folder), folder)
    weights = adapter_weights(folder, allow_pickle)
    if weights.suffix == ".safetensors":
        return convert_lora(weights, base_folder, out, alpha, str(folder))
    import torch

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=Path(out).parent) as tmp:
        tensors = torch.load(weights, map_location="cpu", weights_only=True)
        return convert_lora(as_safetensors(tensors, Path(tmp)), base_folder, out, alpha, str(folder))


def cached_gguf_lora(folder: Path, base_folder: str | os.PathLike, allow_pickle: bool = False) -> Path:
    """The adapter's GGUF LoRA file in the cache, written on first use; keyed by its weights, its config,
    the base's config (the layout depends on the base's architecture and head counts) and the converter."""
    digest = hashlib.sha256()
    for part in (adapter_weights(folder, allow_pickle), Path(folder) / "adapter_config.json",
                 Path(base_folder) / "config.json"):
        with open(part, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    digest.update(CONVERTER_VERSION.encode())
    out = cache_dir() / "gguf-lora" / f"{digest.hexdigest()[:24]}.gguf"
    return out if out.is_file() else write_gguf_lora(folder, base_folder, out, allow_pickle)
