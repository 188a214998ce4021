"""Bring your own model: each popular family trains, decodes on llama.cpp as transformers does, exports to
GGUF and is served on llama.cpp by ``--backend auto`` — on tiny random models of each family."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("xllamacpp")
pytestmark = pytest.mark.slow  # trains, converts in a child process and runs llama.cpp for each family

from model_families import FAMILIES, build_family  # noqa: E402

from edulora.generation import Request, Sampling  # noqa: E402


@pytest.fixture(scope="module")
def family(request, packaged_model_dir, tmp_path_factory) -> tuple[str, Path, Path]:
    """(kind, base folder, run folder): a tiny model of the family and a two-step LoRA run on it."""
    from conftest import write_tutoring_file
    from test_training import tiny_config

    from edulora.training import train

    kind = request.param
    folder = tmp_path_factory.mktemp(f"family-{kind}")
    base = build_family(kind, folder / "base", packaged_model_dir)
    config = tiny_config(base, write_tutoring_file(folder, 8), folder / "runs", max_steps=2, save_steps=2,
                         eval_steps=2, pedagogy_sample=0, retention_sample=0)
    return kind, base, train(config).run_dir.path


@pytest.mark.parametrize("family", FAMILIES, indirect=True)
def test_lora_targets_map_to_each_familys_modules(family):
    """The guide's q/k/v/o and the MLP reach every family's own module names (Phi-3's fused projections)."""
    _, _, run = family
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    targets = set(config["target_modules"])
    expected = {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"} if family[0] == "phi3" else {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert targets == expected
    from safetensors.torch import load_file

    saved = sum(t.numel() for t in load_file(run / "adapter" / "adapter_model.safetensors").values())
    assert json.loads((run / "summary.json").read_text())["trainable_parameters"] == saved


@pytest.mark.parametrize("family", FAMILIES, indirect=True)
def test_llama_cpp_replies_as_transformers_does_and_exports_and_serves(family, tmp_path):
    """train → Tutor on llama.cpp (greedy reply equal to transformers + PEFT, persona and key in the family's
    template) → ``edulora export --dtype f32`` (llama.cpp on the file replies as the merged model) →
    ``serve --backend auto`` picks llama.cpp."""
    from edulora.cli import main
    from edulora.inference.convert import convert_model
    from edulora.inference.llamacpp import LlamaCpp, choose_backend
    from edulora.tutor import Tutor

    kind, base, run = family
    f32 = convert_model(base, tmp_path / "base-f32.gguf", "f32", for_edulora=True)
    fast = Tutor.load(run, backend="llamacpp", gguf=f32)
    exact = Tutor.load(run, precision="fp32")
    sampling = Sampling(max_new_tokens=12, repetition_penalty=1.0)
    question = dict(grade_level="middle_school", teaching_style="socratic", answer="56")
    replies = [t.ask("What is 7 times 8?", sampling=sampling, **question).text for t in (fast, exact)]
    assert replies[0] == replies[1]
    with fast.base(), exact.base():
        assert fast.ask("Hi", sampling=sampling).text == exact.ask("Hi", sampling=sampling).text
    # Stricter than equal tokens: every top-4 log-probability along llama.cpp's greedy path agrees with the
    # PEFT forward (f32 weights and KV cache: the bound tests/test_llamacpp.py holds the Llama path to).
    from edulora.inference.parity import greedy_log_prob_gaps

    ids = exact.tokenizer(exact.format.render(exact.question("What is 7 times 8?")), add_special_tokens=False)
    with exact.active() as network:
        for adapter in ("default", None):
            _, gaps = greedy_log_prob_gaps(fast.model, network, ids["input_ids"], adapter, 12,
                                           adapter_names=[adapter or "__base__"])
            assert gaps and max(gaps) < 1e-3, (kind, adapter, max(gaps))

    out = tmp_path / "tutor.gguf"
    # The tiny Qwen2 reads the packaged tokenizer through Qwen2's tokenizer class, whose split rule llama.cpp's
    # converter does not know by its hash: an export (unlike edulora's own files) then has to be told.
    pre = ["--tokenizer-pre", "qwen2"] if kind == "qwen2" else []
    assert main(["export", str(run), "--out", str(out), "--dtype", "f32", *pre]) == 0
    # Ollama: ChatML is written out; other families' chat templates travel inside the GGUF file.
    assert out.stat().st_mode & 0o044 == 0o044  # readable as any new file is, not mkstemp's 0600
    modelfile = (tmp_path / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./tutor.gguf\n") and "PARAMETER stop" in modelfile
    assert ("TEMPLATE" in modelfile) == (kind in ("llama", "llama-bias", "qwen2", "qwen3"))
    ids = exact.tokenizer(exact.format.render(exact.question("What is 7 times 8?")), add_special_tokens=False)
    got = [Request(ids["input_ids"], sampling, None)]
    LlamaCpp(out, {}, parallel=1, context=512, exact_cache=True).decode(exact.tokenizer, got)
    assert got[0].output == exact.ask("What is 7 times 8?", sampling=sampling).text

    lines: list[str] = []
    assert choose_backend("auto", str(base), [run / "adapter"], lines.append) == "llamacpp", lines
    _serve_and_ask(run)


def _serve_and_ask(run: Path) -> None:
    """What ``edulora serve --backend auto`` starts once llama.cpp is chosen: the base converted (f16, cached)
    and the adapter as a GGUF LoRA; /health reports llama.cpp and a chat completion comes back."""
    import httpx

    from edulora.serving.llamacpp_engine import load_llamacpp_engine
    from edulora.serving.router import Router
    from edulora.serving.server import TutorServer
    from edulora.serving.service import TutorService

    engine = load_llamacpp_engine([("math", run)], max_batch=2, default_max_tokens=8).start()
    server = TutorServer(TutorService(engine, Router([], use_embeddings=False)), port=0).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.get("/health").json()["backend"] == "llamacpp"
            body = {"model": "math", "messages": [{"role": "user", "content": "What is 7 times 8?"}], "max_tokens": 8}
            reply = client.post("/v1/chat/completions", json=body)
            assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] > 0
    finally:
        server.stop()
        engine.stop()


@pytest.mark.parametrize("kind", ["mistral", "gemma3"])
def test_a_gguf_base_is_served_as_it_is_with_the_adapter_on_top(kind, packaged_model_dir, tmp_path):
    """A base given as a .gguf file (as models are published for llama.cpp): training reads it through
    transformers, llama.cpp decodes the file itself, and the adapter's GGUF LoRA matches its tensor names."""
    from conftest import write_tutoring_file
    from test_training import tiny_config

    from edulora.inference.convert import convert_model
    from edulora.inference.llamacpp import base_gguf
    from edulora.training import train
    from edulora.tutor import Tutor

    folder = build_family(kind, tmp_path / "hf", packaged_model_dir)
    published = convert_model(folder, tmp_path / f"{kind}-f32.gguf", "f32")
    config = tiny_config(published, write_tutoring_file(tmp_path, 8), tmp_path / "runs", max_steps=2, save_steps=2,
                         eval_steps=2, pedagogy_sample=0, retention_sample=0)
    run = train(config).run_dir.path
    assert base_gguf(str(published)) == published
    sampling = Sampling(max_new_tokens=12, repetition_penalty=1.0)
    fast, exact = Tutor.load(run, backend="llamacpp"), Tutor.load(run, precision="fp32")
    replies = [t.ask("What is 7 times 8?", sampling=sampling).text for t in (fast, exact)]
    assert replies[0] == replies[1]
