"""No single request can stall the others: linear stop-string checks, token budgets per request and per batch."""

from __future__ import annotations

import random
import time

import pytest
import torch

from test_serving_support import launch_serve, tiny_engine, tiny_runs  # noqa: F401  (fixtures)

from edulora.generation import Request, Sampling, StopStrings, Row


def _held_back_by_definition(text: str, end: int, stops: list[str]) -> int:
    """The longest end of ``text[:end]`` that starts (but is not all of) a stop string, tried length by length."""
    return max((k for s in stops for k in range(1, min(len(s), end + 1)) if s.startswith(text[end - k: end])),
               default=0)


def test_stop_string_hold_back_matches_its_definition():
    rng = random.Random(0)
    for _ in range(3000):
        stops = ["".join(rng.choice("ab") for _ in range(rng.randint(1, 8))) for _ in range(rng.randint(1, 4))]
        text = "".join(rng.choice("abc") for _ in range(rng.randint(0, 20)))
        end = rng.randint(0, len(text))
        assert StopStrings(stops).pending(text, end) == _held_back_by_definition(text, end, stops), (stops, text, end)
        first = [i for i in (text.find(s, 0) for s in stops) if i >= 0]
        assert StopStrings(stops).find(text) == min(first, default=-1)


def test_holding_back_a_stop_string_is_linear_in_its_length():
    # A stop string that never completes: every character of the reply could be where it begins.
    long_stop = "a" * 300_000 + "b"
    request = Request([1, 2, 3], Sampling(max_new_tokens=10, stop=(long_stop,)))
    row = Row(request, lambda tokens: "a" * (150_000 * len(tokens)), set(), torch.device("cpu"))
    began = time.perf_counter()
    for token in (5, 6, 7):
        assert not row.advance(token)
    # Linear: ~750k character steps, well under a second; trying each length is ~10^11 steps (~10 s here).
    assert time.perf_counter() - began < 2.5
    assert request.output == "a" * 150_000  # the last 300,000 characters may still turn into the stop string


# --------------------------------------------------------------------------- over HTTP, on loopback


openai = pytest.importorskip("openai")

from edulora.serving.engine import Engine  # noqa: E402
from edulora.serving.router import Router  # noqa: E402
from edulora.serving.server import TutorServer  # noqa: E402
from edulora.serving.service import TutorService  # noqa: E402

QUESTION = [{"role": "user", "content": "What is 7 times 8?"}]


def _engine(tiny_engine, **options) -> Engine:  # noqa: F811
    return Engine(tiny_engine.model, tiny_engine.tokenizer, tiny_engine.base_id, tiny_engine.adapters, **options)


@pytest.fixture
def budget_server(tiny_engine):  # noqa: F811
    engine = _engine(tiny_engine, max_request_tokens=200, max_batch_tokens=400).start()
    httpd = TutorServer(TutorService(engine, Router([])), "127.0.0.1", 0).start()
    yield httpd
    httpd.stop()
    engine.stop()


def test_a_request_over_the_token_budget_is_400_naming_the_limit(budget_server):
    client = openai.OpenAI(base_url=f"{budget_server.url}/v1", api_key="unused", max_retries=0, timeout=60)
    long = [{"role": "user", "content": "1," * 300}]  # digits and commas are a token each
    for messages, max_tokens in ((long, None), (QUESTION, 190)):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="math", messages=messages, max_tokens=max_tokens)
        error = caught.value.body
        assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
        assert "this server allows 200 tokens per request (prompt plus reply)" in error["message"], error
    reply = client.chat.completions.create(model="math", messages=QUESTION, max_tokens=4)
    assert reply.usage.prompt_tokens + reply.usage.completion_tokens <= 200  # within the budget: answered


def test_a_long_prompt_is_batched_apart_from_short_ones(tiny_engine):  # noqa: F811
    engine = _engine(tiny_engine, max_batch=8)  # not started yet: everything below waits in the queue
    big = engine.submit([{"role": "user", "content": "1," * 400}], "math", max_tokens=8)
    small = [engine.submit([{"role": "user", "content": f"What is {i} + {i}?"}], "bio", max_tokens=8)
             for i in range(3)]
    row = max(len(g.prompt_ids) for g in small) + 8
    # Room for the long request alone, or for the three short ones; not for the long one with any other.
    engine.max_batch_tokens = max(len(big.prompt_ids) + 8, 3 * row)
    assert 2 * (len(big.prompt_ids) + 8) > engine.max_batch_tokens
    engine.start()
    try:
        assert big.text(timeout=120) is not None and all(g.text(timeout=120) is not None for g in small)
    finally:
        engine.stop()
    assert (engine.stats.batches, engine.stats.largest_batch) == (2, 3)
    assert engine.pending == 0


def test_long_stop_strings_do_not_slow_another_request(tiny_engine):  # noqa: F811
    engine = _engine(tiny_engine, max_batch=8).start()
    httpd = TutorServer(TutorService(engine, Router([])), "127.0.0.1", 0).start()
    client = openai.OpenAI(base_url=f"{httpd.url}/v1", api_key="unused", max_retries=0, timeout=120)

    def other_request_latency(stop: list[str] | None) -> float:
        """How long a short request takes while a long one (with ``stop``) is being decoded."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            long = pool.submit(client.chat.completions.create, model="math", messages=QUESTION, max_tokens=60,
                               stop=stop)
            while engine.stats.batches == before[0]:  # the long reply is decoding
                time.sleep(0.01)
            began = time.perf_counter()
            client.chat.completions.create(model="bio", messages=QUESTION, max_tokens=4)
            latency = time.perf_counter() - began
            long.result()
        before[0] = engine.stats.batches
        return latency

    try:
        before = [engine.stats.batches]
        plain = other_request_latency(None)
        # As many stop strings as the API allows, each as long as it allows, none of which ever matches.
        stopped = other_request_latency([c * 100 for c in "§¶†‡"])
    finally:
        httpd.stop()
        engine.stop()
    assert stopped < 2 * plain + 1.0, (plain, stopped)


# --------------------------------------------------------------------------- set on the command line


def test_serve_refuses_a_batch_budget_below_the_request_budget(capsys):
    from edulora.cli import main

    assert main(["serve", "--max-request-tokens", "0"]) == 2
    assert "--max-request-tokens" in capsys.readouterr().err
    assert main(["serve", "--max-request-tokens", "4096", "--max-batch-tokens", "1000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edulora: error: --max-batch-tokens (1000) must be at least --max-request-tokens (4096)")
    assert len(err.splitlines()) == 1


def test_edulora_serve_applies_its_request_budget(tiny_runs, tmp_path):  # noqa: F811
    import signal

    process, url = launch_serve("--adapter", f"math={tiny_runs['math']}", "--port", "0", "--precision", "fp32",
                                "--backend", "transformers", "--no-feedback", "--max-request-tokens", "64",
                                "--max-batch-tokens", "128")
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=30)
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="math", messages=[{"role": "user", "content": "1," * 80}])
        assert "this server allows 64 tokens per request" in caught.value.body["message"]
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "Traceback" not in rest, rest
