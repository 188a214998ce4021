"""Ship a tutor without PEFT: merge the adapter into its base, or write one GGUF file for llama.cpp / Ollama.

Merging happens in fp32 and is checked against the unmerged model's logits, because a merge into
rounded (bf16) or quantized weights changes the tutor's answers silently. Every output is written
under a temporary name and renamed, so a crash never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
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


def merge_adapter(run: str | Path, base: str | None = None, tolerance: float = DEFAULT_TOLERANCE,
                  allow_pickle: bool = False):
    """The adapter folded into its fp32 base, checked on sample prompts; returns (model, tokenizer, info, diff)."""
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
              tolerance: float = DEFAULT_TOLERANCE, allow_pickle: bool = False) -> Path:
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


def load_merged_or_merge(source: str | Path, base: str | None = None, tolerance: float = DEFAULT_TOLERANCE,
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


def _permute_rotary(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """HF stores each head's rotary pairs as two halves; llama.cpp wants them interleaved, as in Meta's original."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


_LAYER_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}


def gguf_tensors(model) -> dict[str, torch.Tensor]:
    """The model's weights under llama.cpp's names, q/k rows permuted, as fp32 tensors."""
    config = model.config
    heads, kv_heads = config.num_attention_heads, getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    tied = bool(getattr(config, "tie_word_embeddings", False))
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().float().cpu()
        if name == "model.embed_tokens.weight":
            out["token_embd.weight"] = tensor
        elif name == "model.norm.weight":
            out["output_norm.weight"] = tensor
        elif name == "lm_head.weight":
            if not tied:
                out["output.weight"] = tensor
        elif name.startswith("model.layers."):
            index, rest = name[len("model.layers."):].split(".", 1)
            module, kind = rest.rsplit(".", 1)
            if module not in _LAYER_NAMES or kind != "weight":
                raise EduloraError(f"GGUF export: no llama.cpp name for tensor {name}")
            if module == "self_attn.q_proj":
                tensor = _permute_rotary(tensor, heads)
            elif module == "self_attn.k_proj":
                tensor = _permute_rotary(tensor, kv_heads)
            out[f"blk.{index}.{_LAYER_NAMES[module]}.weight"] = tensor
        elif not name.endswith("rotary_emb.inv_freq"):
            raise EduloraError(f"GGUF export: no llama.cpp name for tensor {name}")
    return out


def check_llama(config) -> None:
    if getattr(config, "model_type", None) != "llama":
        raise EduloraError(f"GGUF export supports llama-architecture models (e.g. SmolLM2); "
                           f"this one is {getattr(config, 'model_type', '?')!r}")
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise EduloraError(f"GGUF export: rope type {rope.get('rope_type')!r} is not supported")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise EduloraError("GGUF export: llama models with bias terms are not supported")


def _rope_theta(config) -> float:
    rope = getattr(config, "rope_parameters", None) or {}
    return float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def detect_pre_tokenizer(tokenizer_json: dict) -> str:
    """llama.cpp's name for how text is split before BPE, read from the tokenizer's structure.

    llama.cpp picks the split regex by this name; a wrong one tokenizes digits or spaces differently
    from training, so an unknown structure is refused rather than guessed.
    """
    pre = tokenizer_json.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm"  # each digit alone, then GPT-2's regex
    raise EduloraError(f"GGUF export: unknown pre-tokenizer {kinds}; pass the llama.cpp name with --tokenizer-pre")


def tokenizer_vocab(tokenizer, vocab_size: int) -> tuple[list[str], list[int], list[str], dict]:
    """(tokens by id, llama.cpp token types, merges, tokenizer.json) for a byte-level BPE tokenizer."""
    from gguf import TokenType

    data = json.loads(tokenizer.backend_tokenizer.to_str())
    model = data.get("model", {})
    if model.get("type") != "BPE":
        raise EduloraError(f"GGUF export supports byte-level BPE tokenizers; this one is {model.get('type')!r}")
    by_id: dict[int, tuple[str, int]] = {i: (t, TokenType.NORMAL) for t, i in model["vocab"].items()}
    for added in data.get("added_tokens", []):
        by_id[added["id"]] = (added["content"], TokenType.CONTROL if added["special"] else TokenType.USER_DEFINED)
    if max(by_id) >= vocab_size:
        raise EduloraError(f"GGUF export: tokenizer has id {max(by_id)} but the model has only {vocab_size} rows")
    # Rows the embedding has beyond the tokenizer get placeholders, as llama.cpp's own converter writes them.
    tokens = [by_id.get(i, (f"[PAD{i}]", TokenType.UNUSED)) for i in range(vocab_size)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return [t for t, _ in tokens], [int(k) for _, k in tokens], merges, data


def _adds_bos(tokenizer) -> bool:
    ids = tokenizer("a")["input_ids"]
    return tokenizer.bos_token_id is not None and bool(ids) and ids[0] == tokenizer.bos_token_id


@contextlib.contextmanager
def gguf_writer(out: Path, arch: str = "llama") -> Iterator:
    """A ``GGUFWriter`` whose file appears at ``out`` only when the block has added everything and it is written."""
    import gguf

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(str(tmp), arch)
        yield writer
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


#: Weight types ``write_gguf`` writes: f16, f32, and q8_0 (llama.cpp's 8-bit blocks: half of f16's size,
#: each weight within about half a step of 1/127 of its block's largest).
GGUF_DTYPES = ("f16", "f32", "q8_0")


def write_gguf(model, tokenizer, out: str | Path, dtype: str = "f16", name: str = "edulora-tutor",
               pre_tokenizer: str | None = None, overwrite: bool = False) -> Path:
    """One GGUF file (llama architecture) holding weights, hyperparameters, tokenizer and chat template."""
    import gguf

    if dtype not in GGUF_DTYPES:
        raise EduloraError(f"GGUF export: --dtype must be one of {', '.join(GGUF_DTYPES)}, not {dtype!r}")
    out = Path(out).expanduser()
    if out.exists() and not overwrite:
        raise EduloraError(f"{out}: exists; pass --overwrite to replace it")
    config = model.config
    check_llama(config)
    tensors = gguf_tensors(model)
    vocab_size = tensors["token_embd.weight"].shape[0]
    tokens, types, merges, tokenizer_json = tokenizer_vocab(tokenizer, vocab_size)
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads

    with gguf_writer(out) as writer:
        writer.add_name(name)
        writer.add_file_type({"f16": gguf.LlamaFileType.MOSTLY_F16, "f32": gguf.LlamaFileType.ALL_F32,
                              "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype])
        writer.add_context_length(int(config.max_position_embeddings))
        writer.add_embedding_length(int(config.hidden_size))
        writer.add_block_count(int(config.num_hidden_layers))
        writer.add_feed_forward_length(int(config.intermediate_size))
        writer.add_head_count(int(heads))
        writer.add_head_count_kv(int(kv_heads))
        writer.add_rope_dimension_count(int(head_dim))
        writer.add_rope_freq_base(_rope_theta(config))
        writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
        writer.add_vocab_size(int(vocab_size))
        if head_dim * heads != config.hidden_size:  # llama.cpp assumes hidden/heads unless told
            writer.add_key_length(int(head_dim))
            writer.add_value_length(int(head_dim))

        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre_tokenizer or detect_pre_tokenizer(tokenizer_json))
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        for setter, token_id in ((writer.add_bos_token_id, tokenizer.bos_token_id),
                                 (writer.add_eos_token_id, tokenizer.eos_token_id),
                                 (writer.add_unk_token_id, tokenizer.unk_token_id),
                                 (writer.add_pad_token_id, tokenizer.pad_token_id)):
            if token_id is not None:
                setter(int(token_id))
        writer.add_add_bos_token(_adds_bos(tokenizer))
        if getattr(tokenizer, "chat_template", None):
            writer.add_chat_template(tokenizer.chat_template)

        for tensor_name, tensor in tensors.items():
            # llama.cpp keeps 1-D tensors (norms) in f32 whatever the file type.
            array = tensor.numpy().astype("float32")
            if tensor.ndim > 1 and dtype == "q8_0" and array.shape[-1] % 32 == 0:
                # Q8_0: blocks of 32 weights sharing one f16 scale, written by the gguf package's quantizer.
                quantized = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
                writer.add_tensor(tensor_name, quantized, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            elif tensor.ndim > 1 and dtype != "f32":
                writer.add_tensor(tensor_name, array.astype("float16"))
            else:
                writer.add_tensor(tensor_name, array)
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
    if chat and "<|im_start|>" not in (getattr(tokenizer, "chat_template", None) or ""):
        raise EduloraError("Modelfile: only ChatML chat templates (<|im_start|>) are supported")
    stops = ["<|im_end|>", "<|im_start|>"] if chat else [tokenizer.eos_token or "</s>", "### Instruction:"]
    lines = [f"FROM ./{gguf_name}", "", f'TEMPLATE """{CHATML_TEMPLATE if chat else INSTRUCTION_TEMPLATE}"""', ""]
    lines += [f"PARAMETER stop {json.dumps(s)}" for s in stops]
    if info.system_prompt:
        raw = {"subject": info.subject, "grade_level": info.grade_level, "teaching_style": info.teaching_style}
        persona = tutor_persona(parse_metadata(raw, "edulora.json"))
        if persona:
            lines += ["", f'SYSTEM """{persona}"""']
    return "\n".join(lines) + "\n"


def export_gguf(source: str | Path, out: str | Path, dtype: str = "f16", base: str | None = None,
                tolerance: float = DEFAULT_TOLERANCE, allow_pickle: bool = False, pre_tokenizer: str | None = None,
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
