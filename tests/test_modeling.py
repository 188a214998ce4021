import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM

from edulora.config import LoraSettings, ModelConfig
from edulora.errors import EduloraError
from edulora.modeling import (attach_adapter, attach_lora, choose_dtype, load_base_model, map_target_modules,
                              resolve_model_path)


def test_gpt2_names_are_mapped(tiny_gpt2):
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    assert map_target_modules(model, ["q_proj", "k_proj", "v_proj", "o_proj"]) == ["c_attn", "c_proj"]
    peft_model = attach_lora(model, LoraSettings())
    assert peft_model.get_nb_trainable_parameters()[0] > 0


def test_no_matching_module_is_a_clear_error(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    with pytest.raises(EduloraError, match="match no module.*q_proj"):
        map_target_modules(model, ["attention_of_doom"])


def test_lora_freezes_the_base(tiny_llama):
    model = attach_lora(AutoModelForCausalLM.from_pretrained(tiny_llama), LoraSettings(r=4))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_wrapping_in_peft_prints_no_deprecation_notice(tiny_llama, tmp_path):
    # PEFT reads transformers' deprecated is_gradient_checkpointing on every wrap; users saw it on each run.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = attach_lora(AutoModelForCausalLM.from_pretrained(tiny_llama), LoraSettings(r=4))
        model.save_pretrained(tmp_path / "adapter")
        attach_adapter(AutoModelForCausalLM.from_pretrained(tiny_llama), tmp_path / "adapter")
        warnings.warn("a notice of our own", FutureWarning)  # others still reach the user
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "is_gradient_checkpointing" in m]
    assert "a notice of our own" in messages


def test_fp16_on_cpu_is_refused_clearly():
    with pytest.raises(EduloraError, match="fp16 needs a CUDA GPU"):
        choose_dtype("fp16", torch.device("cpu"))


def test_qlora_without_cuda_is_refused_clearly(tiny_llama):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the refusal is for CPU-only machines")
    with pytest.raises(EduloraError, match="needs a CUDA GPU"):
        load_base_model(ModelConfig(name=str(tiny_llama), load_in_4bit=True))


def test_bad_model_names(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EduloraError, match="no config.json"):
        resolve_model_path(str(tmp_path / "empty"))
    with pytest.raises(EduloraError, match="no such GGUF"):
        resolve_model_path(str(tmp_path / "missing.gguf"))
    # A run, an adapter or an option where a base model belongs (eval's old switch `--base` before a run):
    (tmp_path / "run" / "adapter").mkdir(parents=True)
    (tmp_path / "adapter_only").mkdir()
    (tmp_path / "adapter_only" / "adapter_config.json").write_text("{}")
    for name in ("run", "adapter_only"):
        with pytest.raises(EduloraError, match="a run, adapter or option where a base model belongs"):
            resolve_model_path(str(tmp_path / name))
    with pytest.raises(EduloraError, match="^--data: a run, adapter or option"):
        resolve_model_path("--data")


def test_packaged_model_is_cached_as_safetensors(packaged_model_dir):
    assert (packaged_model_dir / "model.safetensors").exists()
    assert (packaged_model_dir / "tokenizer.json").exists() or (packaged_model_dir / "tokenizer_config.json").exists()


def test_qlora_config_wiring(tiny_llama, monkeypatch):
    """On CUDA, load_in_4bit asks transformers for NF4 + double quantization with the chosen compute
    dtype, places the model on the GPU, and runs PEFT's k-bit preparation before LoRA is attached.
    (The 4-bit kernels themselves need a GPU; here the loader is observed, not run.)"""
    import importlib.util

    import peft
    from transformers import AutoModelForCausalLM

    from edulora import modeling

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "bitsandbytes" else real_find_spec(name, *a))
    quant = modeling.quantization_config(ModelConfig(load_in_4bit=True), torch.bfloat16)
    assert quant.load_in_4bit and not quant.load_in_8bit
    assert quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    assert quant.bnb_4bit_compute_dtype == torch.bfloat16

    seen = {}
    real_from_pretrained = AutoModelForCausalLM.from_pretrained

    def from_pretrained(path, **kwargs):
        seen["kwargs"] = kwargs
        return real_from_pretrained(path, dtype=torch.float32)

    def prepare(model, use_gradient_checkpointing=True):
        seen["prepared"] = use_gradient_checkpointing
        return model

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.setattr(peft, "prepare_model_for_kbit_training", prepare)
    monkeypatch.setattr(modeling, "choose_dtype", lambda precision: torch.bfloat16)
    modeling.load_base_model(ModelConfig(name=str(tiny_llama), load_in_4bit=True), for_training=True)
    assert seen["kwargs"]["quantization_config"].bnb_4bit_quant_type == "nf4"
    assert seen["kwargs"]["device_map"] == {"": 0} and seen["prepared"] is True
    seen.clear()
    modeling.load_base_model(ModelConfig(name=str(tiny_llama), load_in_4bit=True), for_training=False)
    assert "prepared" not in seen  # inference needs no k-bit training preparation
