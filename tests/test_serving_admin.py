"""Adapters loaded and unloaded at run time (``/v1/admin/adapters``), on both backends, on the tiny model."""

from __future__ import annotations

import threading

import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from test_serving_support import tiny_runs  # noqa: E402,F401  (fixtures)

from edulora.generation import Sampling  # noqa: E402
from edulora.serving.router import Router  # noqa: E402
from edulora.serving.server import TutorServer  # noqa: E402
from edulora.serving.service import TutorService  # noqa: E402

KEY, TEACHER = "admin-key-1234", "teacher-token-5678"
QUESTION = [{"role": "user", "content": "What does the mitochondria do in a cell?"}]
GREEDY = Sampling(repetition_penalty=1.0)


def load(backend: str, adapters, tiny_llama, tmp_path_factory):
    if backend == "transformers":
        from edulora.serving.engine import load_engine

        return load_engine(adapters, precision="fp32", max_batch=4, max_queue=32, default_max_tokens=12).start()
    pytest.importorskip("xllamacpp")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edulora.export import write_gguf
    from edulora.serving.llamacpp_engine import load_llamacpp_engine

    gguf = tmp_path_factory.getbasetemp() / "admin-tiny-f32.gguf"
    if not gguf.is_file():  # f32: llama.cpp then computes what transformers does, so replies can be compared
        write_gguf(AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32),
                   AutoTokenizer.from_pretrained(tiny_llama), gguf, dtype="f32")
    return load_llamacpp_engine(adapters, base=str(tiny_llama), gguf=gguf, max_batch=4, max_queue=32,
                                default_max_tokens=12).start()


def reply(engine, model: str | None, max_tokens: int = 12) -> str:
    return engine.submit(QUESTION, model, GREEDY, max_tokens=max_tokens).text(timeout=120)


@pytest.mark.parametrize("backend", ["transformers", "llamacpp"])
def test_adapters_come_and_go_without_a_restart(backend, tiny_runs, tiny_llama, tmp_path_factory):
    both = load(backend, list(tiny_runs.items()), tiny_llama, tmp_path_factory)
    expected = {name: reply(both, name, 40) for name in ("math", "bio")}
    both.stop()
    engine = load(backend, [("math", tiny_runs["math"])], tiny_llama, tmp_path_factory)
    service = TutorService(engine, Router(list(engine.adapters.values()), use_embeddings=False), api_key=KEY,
                           teachers={"ada": TEACHER})
    server = TutorServer(service, "127.0.0.1", 0).start()
    admin = httpx.Client(base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
    try:
        body = {"name": "bio", "path": str(tiny_runs["bio"])}
        assert httpx.post(f"{server.url}/v1/admin/adapters", json=body).status_code == 401
        teacher = httpx.post(f"{server.url}/v1/admin/adapters", json=body,
                             headers={"Authorization": f"Bearer {TEACHER}"})
        assert teacher.status_code == 403 and teacher.json()["error"]["code"] == "admin_only"
        missing = admin.post("/admin/adapters", json={"name": "x", "path": str(tiny_llama / "nope")})
        assert missing.status_code == 400 and missing.json()["error"]["code"] == "invalid_adapter"

        added = admin.post("/admin/adapters", json=body)
        assert added.status_code == 200, added.text
        assert added.json()["id"] == "bio" and added.json()["subject"] == "biology"
        assert admin.post("/admin/adapters", json=body).status_code == 409
        assert "bio" in [m["id"] for m in admin.get("/models").json()["data"]]
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120)
        # The added adapter answers as it does when served from the start.
        got = client.chat.completions.create(model="bio", messages=QUESTION, max_tokens=40, temperature=0,
                                             extra_body={"repetition_penalty": 1.0})
        assert got.choices[0].message.content == expected["bio"]

        # Removing it while its reply streams: the reply completes unchanged, then the adapter is gone.
        stream = client.chat.completions.create(model="bio", messages=QUESTION, max_tokens=40, temperature=0,
                                                stream=True, extra_body={"repetition_penalty": 1.0})
        chunks = iter(stream)
        parts = [next(chunks).choices[0].delta.content or ""]
        removed: list[httpx.Response] = []
        remover = threading.Thread(target=lambda: removed.append(admin.delete("/admin/adapters/bio")))
        remover.start()
        parts += [c.choices[0].delta.content or "" for c in chunks if c.choices]
        remover.join(120)
        assert "".join(parts) == expected["bio"]
        assert removed[0].status_code == 200 and removed[0].json() == {"id": "bio", "object": "model", "deleted": True}
        assert "bio" not in [m["id"] for m in admin.get("/models").json()["data"]]
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="bio", messages=QUESTION, max_tokens=4)
        assert admin.delete("/admin/adapters/bio").status_code == 404
        # The adapter that stayed still answers as before; a removed name can be loaded again.
        assert reply(engine, "math", 40) == expected["math"]
        assert admin.post("/admin/adapters", json=body).status_code == 200
        assert reply(engine, "bio", 40) == expected["bio"]
        # With every adapter removed the base model still answers, as a server started without adapters does.
        base = reply(engine, None, 12)
        for name in ("bio", "math"):
            assert admin.delete(f"/admin/adapters/{name}").status_code == 200
        assert admin.get("/models").json()["data"][0]["kind"] == "base" and engine.adapters == {}
        assert reply(engine, None, 12) == base
    finally:
        server.stop()
        engine.stop()


@pytest.fixture(scope="module", params=["transformers", "llamacpp"])
def admin(request, tiny_runs, tiny_llama, tmp_path_factory):
    """A keyed server on ``backend`` serving ``math``, and an admin client for it."""
    engine = load(request.param, [("math", tiny_runs["math"])], tiny_llama, tmp_path_factory)
    server = TutorServer(TutorService(engine, Router(list(engine.adapters.values()), use_embeddings=False),
                                      api_key=KEY), "127.0.0.1", 0).start()
    client = httpx.Client(base_url=f"{server.url}/v1", headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
    yield server, client
    client.close()
    server.stop()
    engine.stop()


def damaged_copy(run, tmp_path, name: str):
    import shutil

    folder = shutil.copytree(run / "adapter", tmp_path / name)
    return folder


def test_a_truncated_safetensors_adapter_is_400_on_every_backend(admin, tiny_runs, tmp_path):
    _, client = admin
    folder = damaged_copy(tiny_runs["bio"], tmp_path, "truncated")
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    response = client.post("/admin/adapters", json={"path": str(folder), "name": "truncated"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_adapter", response.text
    assert "safetensors" in response.json()["error"]["message"]


def test_a_dora_adapter_is_refused_at_load_in_one_line(admin, tiny_runs, tmp_path):
    import json

    from edulora.errors import EduloraError
    from edulora.serving.engine import load_engine

    _, client = admin
    folder = damaged_copy(tiny_runs["bio"], tmp_path, "dora")
    config = folder / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "use_dora": True}))
    response = client.post("/admin/adapters", json={"path": str(folder), "name": "dora"})
    error = response.json()["error"]
    assert response.status_code == 400 and "DoRA" in error["message"] and "\n" not in error["message"]
    with pytest.raises(EduloraError, match="DoRA"):  # at start, too: before any request could fail on it
        load_engine([("math", tiny_runs["math"]), ("dora", folder)])


def test_admin_delete_answers_at_once_while_replies_finish(admin, tiny_runs):
    import time

    server, client = admin
    assert client.post("/admin/adapters", json={"name": "bio", "path": str(tiny_runs["bio"])}).status_code == 200
    engine = server.service.engine
    long = [engine.submit(QUESTION, "bio", GREEDY, max_tokens=200) for _ in range(2)]
    while not any(g.tokens for g in long):  # decoding has started
        time.sleep(0.01)
    began = time.monotonic()
    removed = client.delete("/admin/adapters/bio")
    took = time.monotonic() - began
    assert removed.status_code == 200 and removed.json()["deleted"] is True
    assert any(g.finish_reason is None for g in long), "the removal waited for the replies in flight"
    assert took < 2.0, took
    assert "bio" not in [m["id"] for m in client.get("/models").json()["data"]]
    assert all(g.text(timeout=120) for g in long)  # the replies accepted before still complete
    # The name can be taken again at once: the add waits for the old weights to be freed.
    assert client.post("/admin/adapters", json={"name": "bio", "path": str(tiny_runs["bio"])}).status_code == 200
    assert client.delete("/admin/adapters/bio").status_code == 200


def test_a_decoder_with_its_own_batching_reads_an_added_adapter_folder_once(tiny_runs, tiny_llama, monkeypatch):
    """``WorkerEngine.add_adapter`` checks the name again under its lock, on the spec it read, not a second read."""
    from transformers import AutoTokenizer

    from edulora.serving import engine as engine_module
    from edulora.serving.workers import WorkerEngine

    class Decoder(WorkerEngine):
        def _attach(self, spec):
            self.attached = spec

    reads = []
    find = engine_module.find_adapter
    monkeypatch.setattr(engine_module, "find_adapter", lambda *a, **k: reads.append(a) or find(*a, **k))
    decoder = Decoder(None, AutoTokenizer.from_pretrained(tiny_llama), "tiny", {}, context_limit=256,
                      base_model=str(tiny_llama))
    spec = decoder.add_adapter(tiny_runs["math"])
    assert len(reads) == 1 and decoder.attached is spec and decoder.adapters == {spec.name: spec}
    with pytest.raises(engine_module.AdapterConflict, match="already served"):
        decoder.add_adapter(tiny_runs["math"])
