"""``edulora serve --backend vllm``: edulora in front of a vLLM server, against a stand-in that speaks vLLM's API.

The stand-in serves ``/v1/models`` and streamed ``/v1/completions`` with token-id prompts as vLLM does,
and decodes greedily with the tiny model and the very adapters (PEFT, as vLLM loads them), streaming
each new token id (``return_token_ids``). It records every request, so the tests see what edulora sends.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

openai = pytest.importorskip("openai")

from fastapi import Request  # noqa: E402  (module level: the stand-in's handlers' annotations name it)
from test_serving_support import tiny_engine, tiny_runs  # noqa: E402,F401  (fixtures)

from edulora.cli import main  # noqa: E402
from edulora.data.schema import Metadata  # noqa: E402
from edulora.errors import EduloraError  # noqa: E402
from edulora.generation import PEFT_BASE, Sampling  # noqa: E402
from edulora.serving.router import Router  # noqa: E402
from edulora.serving.server import TutorServer  # noqa: E402
from edulora.serving.service import TutorService  # noqa: E402
from edulora.serving.vllm_engine import load_vllm_engine  # noqa: E402

KEY, TEACHER, UPSTREAM_KEY, BASE = "front-key-123", "teacher-token-456", "vllm-key-789", "tiny-base"
QUESTION = [{"role": "user", "content": "What is 7 times 8?"}]


class StandIn:
    """A vLLM-like server on a loopback port: its LoRA modules, the requests it got, failures on demand."""

    def __init__(self, model, modules: list[str]):
        import uvicorn
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

        self.model, self.modules, self.received, self.fail_next, self.runtime_lora = model, list(modules), [], 0, False
        self.copies: dict[str, str] = {}  # adapters loaded at run time, as copies of the model's own
        self.lock = threading.Lock()
        app = FastAPI()

        @app.get("/v1/models")
        def models(request: Request):
            self.received.append(("models", request.headers.get("authorization"), None))
            base = {"id": BASE, "object": "model", "owned_by": "vllm", "parent": None, "max_model_len": 2048}
            return {"object": "list", "data": [base] + [{"id": m, "object": "model", "owned_by": "vllm",
                                                         "parent": BASE} for m in self.modules]}

        @app.post("/v1/completions")
        async def completions(request: Request):
            body = await request.json()
            self.received.append(("completions", request.headers.get("authorization"), body))
            if self.fail_next:
                self.fail_next -= 1
                return JSONResponse({"error": {"message": "CUDA out of memory", "type": "InternalServerError",
                                               "code": 500}}, 500)
            if body["model"] not in [BASE, *self.modules]:
                return JSONResponse({"error": {"message": f"The model `{body['model']}` does not exist."}}, 404)
            assert body["stream"] is True and body["return_token_ids"] is True
            return StreamingResponse(self.stream(body), media_type="text/event-stream")

        @app.post("/v1/load_lora_adapter")
        async def load(request: Request):
            if not self.runtime_lora:  # vLLM has these routes only with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True
                return JSONResponse({"detail": "Not Found"}, 404)
            body = await request.json()
            self.modules.append(body["lora_name"])
            self.copies[body["lora_name"]] = "bio"  # the test adds a copy of bio's run
            return PlainTextResponse(f"Success: LoRA adapter '{body['lora_name']}' added successfully.")

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"

    def greedy(self, body) -> list[int]:
        import torch

        with self.lock, torch.inference_mode():
            out = self.model.generate(torch.tensor([body["prompt"]]), max_new_tokens=body["max_tokens"],
                                      do_sample=False, repetition_penalty=body["repetition_penalty"],
                                      eos_token_id=body["stop_token_ids"], pad_token_id=body["stop_token_ids"][0],
                                      adapter_names=[PEFT_BASE if body["model"] == BASE else
                                                     self.copies.get(body["model"], body["model"])])
        return out[0, len(body["prompt"]):].tolist()

    async def stream(self, body):
        tokens = self.greedy(body)
        for i, token in enumerate(tokens):
            last = i == len(tokens) - 1
            finish = ("stop" if token in body["stop_token_ids"] else "length") if last else None
            chunk = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": body["model"],
                     "choices": [{"index": 0, "text": f"<{token}>", "logprobs": None, "finish_reason": finish,
                                  "token_ids": [token]}]}
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"

    def completions(self) -> list[dict]:
        return [body for kind, _, body in self.received if kind == "completions"]

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def upstream(tiny_engine):
    stand_in = StandIn(tiny_engine.model, ["math", "bio"])
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="module")
def front(upstream, tiny_runs):
    engine = load_vllm_engine(list(tiny_runs.items()), upstream.url, UPSTREAM_KEY, max_batch=4,
                              default_max_tokens=16).start()
    service = TutorService(engine, Router(list(engine.adapters.values())), api_key=KEY,
                           teachers={"ana": TEACHER})
    server = TutorServer(service, "127.0.0.1", 0).start()
    yield server
    server.stop()
    engine.stop()


def client(server, key=KEY):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=60)


def test_prompt_is_formatted_here_with_the_key_and_sent_as_token_ids(front, upstream, tiny_engine):
    upstream.received.clear()
    key = {"answer": "56", "solution": "7 groups of 8 make 56"}
    reply = client(front).chat.completions.create(model="math", messages=QUESTION, max_tokens=12, metadata=key)
    [sent] = upstream.completions()
    expected = tiny_engine.encode(QUESTION, "math", Metadata(extra=key))
    assert sent["prompt"] == expected and sent["model"] == "math"
    assert "7 groups of 8 make 56" in tiny_engine.tokenizer.decode(expected)  # the key is in the prompt ...
    assert "56" not in json.dumps({k: v for k, v in sent.items() if k != "prompt"})  # ... and nowhere else
    # The tokens vLLM streams go through edulora's decoding: the reply equals the transformers engine's.
    local = tiny_engine.submit(QUESTION, "math", Sampling(repetition_penalty=tiny_engine.repetition_penalty),
                               max_tokens=12, key=Metadata(extra=key)).text(timeout=60)
    assert reply.choices[0].message.content == local and local.strip()
    assert reply.model == "math" and reply.model_extra["edulora"]["subject"] == "mathematics"


def test_streaming_reaches_the_client_and_the_base_is_vllms_base(front, upstream, tiny_engine):
    upstream.received.clear()
    chunks = list(client(front).chat.completions.create(model=tiny_engine.base_id, messages=QUESTION,
                                                        max_tokens=10, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    local = tiny_engine.submit(QUESTION, None, max_tokens=10).text(timeout=60)
    assert text == local and len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert [b["model"] for b in upstream.completions()] == [BASE]


def test_auto_routing_and_the_upstream_key(front, upstream):
    upstream.received.clear()
    reply = client(front).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "What does the mitochondria do in a cell?"}], max_tokens=4)
    assert reply.model == "bio" and [b["model"] for b in upstream.completions()] == ["bio"]
    assert {auth for _, auth, _ in upstream.received} == {f"Bearer {UPSTREAM_KEY}"}


def test_auth_and_teacher_tokens_are_still_enforced(front, upstream):
    upstream.received.clear()
    with pytest.raises(openai.AuthenticationError):
        client(front, "wrong-key-000").chat.completions.create(model="math", messages=QUESTION, max_tokens=4)
    assert upstream.completions() == []  # refused before anything reached vLLM
    assert client(front, TEACHER).chat.completions.create(model="math", messages=QUESTION, max_tokens=4).model == "math"


def test_an_upstream_failure_is_a_502_and_the_server_goes_on(front, upstream):
    upstream.fail_next = 1
    with pytest.raises(openai.APIStatusError) as caught:
        client(front).chat.completions.create(model="math", messages=QUESTION, max_tokens=4)
    assert caught.value.status_code == 502 and "CUDA out of memory" in caught.value.message
    upstream.fail_next = 1
    stream = client(front).chat.completions.create(model="math", messages=QUESTION, max_tokens=4, stream=True)
    with pytest.raises(openai.APIError) as caught:  # the stream's last event (its 200 was sent before decoding)
        list(stream)
    assert caught.value.body["code"] == "upstream_error" and "CUDA out of memory" in caught.value.message
    assert client(front).chat.completions.create(model="math", messages=QUESTION, max_tokens=4).choices[0].message


def test_adding_an_adapter_asks_vllm_to_load_it(front, upstream, tiny_runs, tmp_path):
    import shutil

    import httpx

    folder = tmp_path / "extra"
    shutil.copytree(tiny_runs["bio"], folder)
    add = {"path": str(folder), "name": "extra"}
    headers = {"Authorization": f"Bearer {KEY}"}
    refused = httpx.post(f"{front.url}/v1/admin/adapters", json=add, headers=headers, timeout=30)
    assert refused.status_code == 400 and "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in refused.json()["error"]["message"]
    upstream.runtime_lora = True
    assert httpx.post(f"{front.url}/v1/admin/adapters", json=add, headers=headers, timeout=30).status_code == 200
    assert "extra" in upstream.modules
    assert client(front).chat.completions.create(model="extra", messages=QUESTION, max_tokens=4).model == "extra"
    assert upstream.completions()[-1]["model"] == "extra"


def test_a_missing_lora_module_is_a_one_line_start_up_error(upstream, tiny_runs, capsys):
    partial = StandIn(upstream.model, ["math"])
    try:
        with pytest.raises(EduloraError, match="does not serve the LoRA module 'bio'"):
            load_vllm_engine(list(tiny_runs.items()), partial.url)
        code = main(["serve", "--backend", "vllm", "--vllm-url", partial.url, "--adapter", f"bio={tiny_runs['bio']}",
                     "--port", "0", "--no-feedback"])
    finally:
        partial.stop()
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1
    assert "does not serve the LoRA module 'bio'" in err and "--lora-modules bio=" in err
    assert main(["serve", "--backend", "vllm", "--port", "0"]) == 2  # no --vllm-url
    assert "--vllm-url" in capsys.readouterr().err
