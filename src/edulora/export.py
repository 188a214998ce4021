"""Ship a tutor without PEFT: merge the adapter into its base, or write one GGUF file for llama.cpp / Ollama.

Merging happens in fp32 and is checked against the unmerged model's logits, because a merge into
rounded (bf16) or quantized weights changes the tutor's answers silently. Every output is written
under a temporary name and renamed, so a crash never leaves a file that looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from .errors import EduloraError
from .modeling import (
    ADAPTER_META_FILE,
    AdapterInfo,
    adapter_dir,
    load_tutor,
    read_adapter_info,
)

#: Largest |merged - unmerged| logit accepted; fp32 merges of small models land around 1e-5.
DEFAULT_TOLERANCE = 1e-3

SAMPLE_QUESTIONS = ("What is 7 times 8?", "Why do leaves change colour in autumn?",
                    "Explain the causes of the First World War in two sentences.")


# ---------------------------------------------------------------- merge


def refuse_quantized(model) -> None:
    """Merging a LoRA delta into 4-bit or 8-bit weights rounds it away; only a float base is mergeable."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    quantized = (getattr(base, "hf_quantizer", None) is not None or getattr(base, "is_loaded_in_4bit", False)
                 or getattr(base, "is_loaded_in_8bit", False) or getattr(base.config, "quantization_config", None))
    if quantized:
        raise EduloraError("the base model is loaded quantized; merging into quantized weights loses the adapter. "
                           "Merge into the full-precision base (model.load_in_4bit=false)")
    odd = {str(p.dtype) for p in base.parameters() if p.dtype != torch.float32}
    if odd:
        raise EduloraError(f"the base model has {', '.join(sorted(odd))} weights; merging needs fp32")


def sample_inputs(fmt) -> list[torch.Tensor]:
    """Token ids of a few tutor prompts, rendered the way the adapter was trained to read them."""
    tokenizer = fmt.tokenizer
    prompts = [fmt.render(fmt.question(q)) for q in SAMPLE_QUESTIONS]
    return [torch.tensor([tokenizer(p, add_special_tokens=False)["input_ids"]]) for p in prompts]


@torch.no_grad()
def logits_for(model, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    on = next(model.parameters()).device
    return [model(input_ids=ids.to(on)).logits.float().cpu() for ids in inputs]


def max_abs_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def merge_adapter(run: str | Path, base: str | None = None, tolerance: float | None = None,
                  allow_pickle: bool = False):
    """The adapter folded into its fp32 base, checked on sample prompts; returns (model, tokenizer, info, diff).
    ``tolerance``: the largest accepted |merged - unmerged| logit (None: ``DEFAULT_TOLERANCE``)."""
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    model, tokenizer, info = load_tutor(run, base, precision="fp32", allow_pickle=allow_pickle)
    refuse_quantized(model)
    from .formatting import PromptFormat

    inputs = sample_inputs(PromptFormat.create(tokenizer, info.template or "auto", info.system_prompt, info.answer_key))
    expected = logits_for(model, inputs)
    merged = model.merge_and_unload()
    merged.eval()
    diff = max_abs_diff(expected, logits_for(merged, inputs))
    if not diff <= tolerance:  # also catches NaN
        raise EduloraError(f"merged model disagrees with adapter + base: max |logit diff| {diff:.3g} > {tolerance:g}")
    return merged, tokenizer, info, diff


def _replace_dir(tmp: Path, out: Path) -> None:
    """Put ``tmp`` at ``out``; an old ``out`` is moved aside first so some complete version always exists."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old."))
        os.rename(out, old / "previous")
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise EduloraError(f"{out}: exists and is not empty; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise EduloraError(f"{out}: exists and is not a directory")


def merge_run(run: str | Path, out: str | Path, base: str | None = None, overwrite: bool = False,
              tolerance: float | None = None, allow_pickle: bool = False) -> Path:
    """Write the merged tutor as a standard Hugging Face model folder (safetensors, tokenizer, chat template)."""
    out = Path(out).expanduser()
    _check_target(out, overwrite)
    merged, tokenizer, info, diff = merge_adapter(run, base, tolerance, allow_pickle)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        merged.to("cpu").save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        meta = {**asdict(info), "merged_from": str(adapter_dir(run).resolve()), "merge_max_logit_diff": diff}
        (tmp / ADAPTER_META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_merged_or_merge(source: str | Path, base: str | None = None, tolerance: float | None = None,
                         allow_pickle: bool = False):
    """(model, tokenizer, info) from a merged model folder or from a run / adapter (merged here, in memory)."""
    path = Path(source).expanduser()
    if (path / "config.json").exists() and not (path / "adapter_config.json").exists():
        from transformers import AutoModelForCausalLM

        from .modeling import load_tokenizer

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True).eval()
        meta = path / ADAPTER_META_FILE
        info = read_adapter_info(path) if meta.exists() else AdapterInfo(base_model=str(path))
        return model, load_tokenizer(str(path)), info
    merged, tokenizer, info, _ = merge_adapter(source, base, tolerance, allow_pickle)
    return merged.to("cpu"), tokenizer, info


# ---------------------------------------------------------------- GGUF

def write_gguf(model, tokenizer, out: str | Path, dtype: str = "f16", name: str = "edulora-tutor",
               pre_tokenizer: str | None = None, overwrite: bool = False) -> Path:
    """One GGUF file holding weights, hyperparameters, tokenizer and chat template, in the layout llama.cpp's
    own converter gives the model's architecture (any it supports: see ``inference.convert``)."""
    from .inference.convert import GGUF_DTYPES, convert_model

    if dtype not in GGUF_DTYPES:
        raise EduloraError(f"GGUF export: --dtype must be one of {', '.join(GGUF_DTYPES)}, not {dtype!r}")
    out = Path(out).expanduser()
    if out.exists() and not overwrite:
        raise EduloraError(f"{out}: exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    # The converter reads a model folder: the merged weights go through one, next to the output, and go.
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.model.") as tmp:
        model.to("cpu").save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        convert_model(tmp, out, dtype, name, pre_tokenizer)
    return out


# ---------------------------------------------------------------- Ollama

#: Ollama's Go template for ChatML, the format SmolLM2's chat template renders.
CHATML_TEMPLATE = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}{{- if ne .Role \"system\" }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
    "{{ end }}{{- end }}<|im_start|>assistant\n"
)

#: The guide's instruction template (see ``formatting._instruction_prompt``) for adapters trained on it.
INSTRUCTION_TEMPLATE = (
    "### Instruction: {{ .Prompt }}\n{{- if .System }}\n### Context: {{ .System }}{{ end }}\n### Response: "
)


def modelfile_text(gguf_name: str, tokenizer, info: AdapterInfo) -> str:
    """An Ollama Modelfile: the prompt format the tutor was trained on, its stop tokens and its persona."""
    from .data.schema import parse_metadata
    from .formatting import persona as tutor_persona

    chat = info.template == "chat"
    chatml = chat and "<|im_start|>" in (getattr(tokenizer, "chat_template", None) or "")
    eos = tokenizer.eos_token or "</s>"
    stops = ["<|im_end|>", "<|im_start|>"] if chatml else [eos] if chat else [eos, "### Instruction:"]
    lines = [f"FROM ./{gguf_name}", ""]
    if chatml or not chat:
        lines += [f'TEMPLATE """{CHATML_TEMPLATE if chat else INSTRUCTION_TEMPLATE}"""', ""]
    # Other chat formats (Gemma, Phi-3, Mistral …): Ollama renders the chat template the GGUF file carries.
    lines += [f"PARAMETER stop {json.dumps(s)}" for s in stops]
    if info.system_prompt:
        raw = {"subject": info.subject, "grade_level": info.grade_level, "teaching_style": info.teaching_style}
        persona = tutor_persona(parse_metadata(raw, "edulora.json"))
        if persona:
            lines += ["", f'SYSTEM """{persona}"""']
    return "\n".join(lines) + "\n"


def export_gguf(source: str | Path, out: str | Path, dtype: str = "f16", base: str | None = None,
                tolerance: float | None = None, allow_pickle: bool = False, pre_tokenizer: str | None = None,
                overwrite: bool = False, modelfile: bool = True) -> Path:
    """Merge a run (or take a merged folder) and write ``out`` (.gguf) plus an Ollama ``Modelfile`` beside it."""
    out = Path(out).expanduser()
    if out.suffix != ".gguf":
        raise EduloraError(f"{out}: the output file name must end in .gguf")
    model, tokenizer, info = load_merged_or_merge(source, base, tolerance, allow_pickle)
    name = f"edulora-{info.subject}-tutor" if info.subject else "edulora-tutor"
    write_gguf(model, tokenizer, out, dtype, name, pre_tokenizer, overwrite)
    if modelfile:
        from .data.io import atomic_write_text

        atomic_write_text(out.parent / "Modelfile", modelfile_text(out.name, tokenizer, info))
    return out
