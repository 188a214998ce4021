"""Merge and GGUF export of a tiny trained Llama run: exactness, round trips, atomicity, refusals."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from edulora.cli import main
from edulora.errors import EduloraError
from edulora.export import export_gguf, merge_run, refuse_quantized, write_gguf
from edulora.modeling import load_tutor
from edulora.training import train

pytestmark = pytest.mark.slow  # trains, and writes GGUF files in llama.cpp's converter (a child process)

SAMPLE = "<|im_start|>user\nWhat is 12 times 34?  Show   me.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def run_dir(tiny_llama, tmp_path_factory):
    from conftest import write_tutoring_file
    from test_training import tiny_config

    folder = tmp_path_factory.mktemp("export")
    data = write_tutoring_file(folder, 16)
    config = tiny_config(tiny_llama, data, folder / "runs", max_steps=4, save_steps=4, eval_steps=4)
    return train(config).run_dir


@pytest.fixture(scope="module")
def merged_dir(run_dir, tmp_path_factory):
    return merge_run(run_dir, tmp_path_factory.mktemp("merged") / "tutor")


def _ids(tokenizer) -> torch.Tensor:
    return torch.tensor([tokenizer(SAMPLE, add_special_tokens=False)["input_ids"]])


def test_merged_folder_matches_adapter_plus_base(run_dir, merged_dir):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "edulora.json"):
        assert (merged_dir / name).exists(), name
    assert not list(merged_dir.glob("*.bin")) and not list(merged_dir.glob("adapter_*"))
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    assert "<|im_start|>" in tokenizer.chat_template
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    tutor, _, _ = load_tutor(run_dir, precision="fp32")
    ids = _ids(tokenizer)
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, tutor(input_ids=ids).logits, atol=1e-4)
    meta = json.loads((merged_dir / "edulora.json").read_text())
    assert meta["subject"] == "mathematics" and meta["merge_max_logit_diff"] < 1e-3


def test_merge_refuses_to_overwrite_and_leaves_no_temp(run_dir, merged_dir):
    with pytest.raises(EduloraError, match="--overwrite"):
        merge_run(run_dir, merged_dir)
    merge_run(run_dir, merged_dir, overwrite=True)
    assert (merged_dir / "model.safetensors").exists()
    assert [p.name for p in merged_dir.parent.iterdir()] == [merged_dir.name]


def test_merge_check_catches_disagreement(run_dir, tmp_path):
    with pytest.raises(EduloraError, match="disagrees"):
        merge_run(run_dir, tmp_path / "out", tolerance=-1.0)  # no real diff is below zero
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


def test_merge_refuses_non_fp32_or_quantized_base(tiny_llama):
    with pytest.raises(EduloraError, match="fp32"):
        refuse_quantized(AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.bfloat16))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    model.config.quantization_config = {"load_in_4bit": True}
    with pytest.raises(EduloraError, match="quantized"):
        refuse_quantized(model)


def _read_gguf(path):
    from gguf import GGUFReader

    return GGUFReader(str(path))


def test_gguf_f32_round_trips_through_transformers(run_dir, merged_dir, tmp_path):
    out = export_gguf(run_dir, tmp_path / "tutor.gguf", dtype="f32")
    reader = _read_gguf(out)
    fields = reader.fields
    assert fields["general.architecture"].contents() == "llama"
    for key in ("llama.context_length", "llama.embedding_length", "llama.block_count", "llama.feed_forward_length",
                "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.freq_base",
                "llama.attention.layer_norm_rms_epsilon", "llama.vocab_size", "tokenizer.ggml.merges",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.chat_template"):
        assert key in fields, key
    assert fields["llama.block_count"].contents() == 2 and fields["tokenizer.ggml.model"].contents() == "gpt2"
    names = {t.name for t in reader.tensors}
    # 2 layers x 9 tensors + embedding + final norm; the output matrix is tied to the embedding.
    assert len(names) == 2 * 9 + 2 and "blk.1.attn_q.weight" in names and "output.weight" not in names

    gguf_model = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=out.name, dtype=torch.float32).eval()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    original_tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    gguf_tokenizer = AutoTokenizer.from_pretrained(tmp_path, gguf_file=out.name)
    text = SAMPLE + "Let's see: 12 groups of 34 make 408. Ünïcödé ✓"
    assert gguf_tokenizer(text)["input_ids"] == original_tokenizer(text)["input_ids"]
    ids = _ids(original_tokenizer)
    with torch.no_grad():
        # q/k rows are permuted for llama.cpp and un-permuted by the loader: a wrong permutation shows here.
        assert torch.allclose(gguf_model(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-5)

    modelfile = (tmp_path / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./tutor.gguf\n")
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and "<|im_start|>assistant" in modelfile
    assert 'SYSTEM """You are a patient mathematics tutor."""' in modelfile


def test_gguf_f16_from_merged_folder(merged_dir, tmp_path):
    out = export_gguf(merged_dir, tmp_path / "tutor-f16.gguf", dtype="f16", modelfile=False)
    types = {t.name: t.tensor_type.name for t in _read_gguf(out).tensors}
    assert types["blk.0.ffn_up.weight"] == "F16" and types["blk.0.attn_norm.weight"] == "F32"
    gguf_model = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=out.name, dtype=torch.float32).eval()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    ids = _ids(AutoTokenizer.from_pretrained(merged_dir))
    with torch.no_grad():
        a, b = gguf_model(input_ids=ids).logits, merged(input_ids=ids).logits
    assert (a - b).abs().max() < 2e-2 * b.abs().max()
    assert not (tmp_path / "Modelfile").exists()
    with pytest.raises(EduloraError, match="--overwrite"):
        export_gguf(merged_dir, out)


def test_gguf_q8_0_blocks_hold_the_weights_to_8_bits(merged_dir, tmp_path):
    import gguf

    out = export_gguf(merged_dir, tmp_path / "tutor-q8.gguf", dtype="q8_0", modelfile=False)
    tensors = {t.name: t for t in _read_gguf(out).tensors}
    assert tensors["blk.0.ffn_up.weight"].tensor_type.name == "Q8_0"
    assert tensors["blk.0.attn_norm.weight"].tensor_type.name == "F32"
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    up = merged.model.layers[0].mlp.up_proj.weight
    q8 = gguf.GGMLQuantizationType.Q8_0
    stored = torch.from_numpy(gguf.quants.dequantize(tensors["blk.0.ffn_up.weight"].data, q8))
    # One scale per 32 weights, 8-bit steps (max |w| of the block / 127): each weight within half a step,
    # give or take the scale's own rounding to f16 (up to 127 * 2^-11 of a step at the block's ends).
    step = up.reshape(-1, 32).abs().amax(-1, keepdim=True) / 127
    assert ((stored.reshape(up.shape) - up).reshape(-1, 32).abs() <= step * 0.6).all()
    assert not torch.equal(stored.reshape(up.shape), up)  # it is quantized, not a copy
    gguf_model = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=out.name, dtype=torch.float32).eval()
    ids = _ids(AutoTokenizer.from_pretrained(merged_dir))
    with torch.no_grad():
        a, b = gguf_model(input_ids=ids).logits, merged(input_ids=ids).logits
    # The tiny random model magnifies 8-bit rounding more than a trained one; the logits still line up.
    similarity = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
    assert similarity > 0.995
    assert _cli(["export", str(merged_dir), "--out", str(tmp_path / "x.gguf"), "--dtype", "q4"]) == 2


def test_gguf_refuses_an_architecture_llama_cpp_has_no_layout_for(tiny_gpt2, tmp_path):
    """Any architecture llama.cpp's converter maps is written (GPT-2 too); one it does not is refused in one
    line naming it, and nothing is left behind."""
    import shutil

    from edulora.inference.convert import convert_model

    folder = tmp_path / "model"
    shutil.copytree(tiny_gpt2, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["TutorNetForCausalLM"]}))
    out = tmp_path / "out"
    with pytest.raises(EduloraError, match="no GGUF layout for architecture 'TutorNetForCausalLM'"):
        convert_model(folder, out / "x.gguf")
    assert not out.exists()
    with pytest.raises(EduloraError, match="--dtype must be one of"):
        write_gguf(AutoModelForCausalLM.from_pretrained(tiny_gpt2), AutoTokenizer.from_pretrained(tiny_gpt2),
                   out / "x.gguf", dtype="q4")


def test_pickle_adapters_are_refused_unless_allowed(run_dir, tmp_path):
    from safetensors.torch import load_file

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for item in (run_dir / "adapter").iterdir():
        if item.name != "adapter_model.safetensors":
            (adapter / item.name).write_bytes(item.read_bytes())
    torch.save(load_file(run_dir / "adapter" / "adapter_model.safetensors"), adapter / "adapter_model.bin")
    with pytest.raises(EduloraError, match="--allow-pickle"):
        load_tutor(adapter, precision="fp32")
    with pytest.raises(EduloraError, match="--allow-pickle"):
        merge_run(adapter, tmp_path / "merged")
    model, _, _ = load_tutor(adapter, precision="fp32", allow_pickle=True)
    assert any("lora_A" in name for name, _ in model.named_parameters())


def _cli(argv: list[str]) -> int:
    return main(argv)  # an EduloraError becomes exit code 2


def test_cli_merge_and_export(run_dir, tmp_path, capsys):
    assert _cli(["merge", str(run_dir), "--out", str(tmp_path / "m")]) == 0
    assert _cli(["merge", str(run_dir), "--out", str(tmp_path / "m")]) == 2
    assert _cli(["export", str(tmp_path / "m"), "--out", str(tmp_path / "g" / "t.gguf"), "--dtype", "f32"]) == 0
    assert (tmp_path / "g" / "t.gguf").stat().st_size > 0 and (tmp_path / "g" / "Modelfile").exists()
    assert _cli(["export", str(run_dir), "--out", str(tmp_path / "t.bin")]) == 2


@pytest.mark.skipif(importlib.util.find_spec("xllamacpp") is None, reason="optional: pip install xllamacpp")
def test_gguf_runs_in_llama_cpp(merged_dir, tmp_path):
    """llama.cpp itself (PyPI xllamacpp) loads the file, tokenizes alike and decodes greedily alike."""
    import xllamacpp

    out = export_gguf(merged_dir, tmp_path / "tutor.gguf", dtype="f32", modelfile=False)
    params = xllamacpp.CommonParams()
    params.model.path = str(out)
    params.n_ctx, params.warmup = 256, False
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 1
    server = xllamacpp.Server(params)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    model = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    ids = _ids(tokenizer)
    with torch.no_grad():
        expected = model.generate(ids, max_new_tokens=8, do_sample=False)[0, ids.shape[1]:].tolist()
        first = torch.log_softmax(model(input_ids=ids).logits[0, -1], -1)
    reply = server.handle_completions({"prompt": SAMPLE, "n_predict": 8, "temperature": 0.0, "n_probs": 1,
                                       "cache_prompt": False})
    assert reply["usage"]["prompt_tokens"] == ids.shape[1]  # llama.cpp split the text into as many tokens
    steps = reply["choices"][0]["logprobs"]["content"]
    assert [s["id"] for s in steps] == expected
    # llama.cpp keeps its KV cache in f16 by default, so its log-probabilities agree to about 1e-2.
    assert steps[0]["logprob"] == pytest.approx(float(first[expected[0]]), abs=3e-2)
