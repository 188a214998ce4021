"""The OpenAI-compatible API, exercised with the official ``openai`` client on a loopback port."""

from __future__ import annotations

import http.client
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

openai = pytest.importorskip("openai")

from test_serving_support import request_as, tiny_engine, tiny_runs  # noqa: E402,F401  (fixtures)

from edulora.errors import EduloraError  # noqa: E402
from edulora.generation import Sampling  # noqa: E402
from edulora.serving.engine import Engine  # noqa: E402
from edulora.serving.feedback import FeedbackStore  # noqa: E402
from edulora.serving.router import Router  # noqa: E402
from edulora.serving.server import TutorServer  # noqa: E402
from edulora.serving.service import TutorService  # noqa: E402

KEY = "test-key-123"
QUESTION = [{"role": "user", "content": "What is 7 times 8?"}]


@pytest.fixture(scope="module")
def server(tiny_engine, tmp_path_factory):
    db = tmp_path_factory.mktemp("feedback") / "feedback.sqlite3"
    service = TutorService(tiny_engine, Router(list(tiny_engine.adapters.values())), FeedbackStore(db), api_key=KEY)
    httpd = TutorServer(service, "127.0.0.1", 0).start()
    yield httpd
    httpd.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60)


def raw(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request(method, path, body=body, headers={"Authorization": f"Bearer {KEY}", **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else None


def ask(client, model: str, messages=QUESTION, **kw):
    return client.chat.completions.create(model=model, messages=messages, max_tokens=kw.pop("max_tokens", 8), **kw)


def test_non_streaming_reply_names_its_adapter(client):
    response = client.chat.completions.with_raw_response.create(model="math", messages=QUESTION, max_tokens=8)
    assert response.headers["x-edulora-adapter"] == "math"
    completion = response.parse()
    assert completion.model == "math"
    assert completion.object == "chat.completion"
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert 0 < completion.usage.completion_tokens <= 8 and completion.usage.prompt_tokens > 0
    info = completion.model_extra["edulora"]
    assert (info["subject"], info["grade_level"], info["teaching_style"]) == ("mathematics", "middle_school",
                                                                             "socratic")


def test_adapters_and_base_answer_differently(client, tiny_engine):
    answers = {m: ask(client, m).choices[0].message.content for m in ("math", "bio", tiny_engine.base_id)}
    assert len(set(answers.values())) == 3


def test_streaming_matches_non_streaming(client):
    full = ask(client, "bio", max_tokens=10).choices[0].message.content
    stream = ask(client, "bio", max_tokens=10, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].model_extra["edulora"]["adapter"] == "bio"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals in (["length"], ["stop"])
    assert chunks[-1].usage.completion_tokens > 0 and all(c.model == "bio" for c in chunks)


def test_stream_ends_with_done(server):
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=30)
    body = json.dumps({"model": "math", "messages": QUESTION, "max_tokens": 4, "stream": True})
    conn.request("POST", "/v1/chat/completions", body=body,
                 headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.getheader("Content-Type").startswith("text/event-stream")
    events = [line for line in response.read().decode().split("\n\n") if line]
    assert events[-1] == "data: [DONE]" and all(e.startswith("data: ") for e in events)


def test_model_listing_carries_metadata(client, tiny_engine):
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {tiny_engine.base_id, "math", "bio", "auto"}
    bio = models["bio"].model_extra
    assert (bio["subject"], bio["grade_level"], bio["teaching_style"]) == ("biology", "high_school", "step_by_step")
    assert models[tiny_engine.base_id].model_extra["kind"] == "base"
    assert client.models.retrieve("math").model_extra["subject"] == "mathematics"


def test_stop_sequence_cuts_the_reply(client):
    full = ask(client, "math", max_tokens=12).choices[0].message.content
    stop = full[6:9]
    cut = ask(client, "math", max_tokens=12, stop=[stop])
    assert cut.choices[0].message.content == full[: full.find(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_seed_makes_sampling_repeatable(client):
    def sample(seed):
        return ask(client, "bio", max_tokens=8, temperature=1.0, top_p=0.9, seed=seed).choices[0].message.content

    assert sample(7) == sample(7)
    assert len({sample(s) for s in (1, 2, 3)}) > 1


def test_auto_routes_by_subject(client):
    def route(question):
        completion = ask(client, "auto", [{"role": "user", "content": question}], max_tokens=2)
        assert completion.model_extra["edulora"]["routed"] is True
        return completion.model

    assert route("How do plants use photosynthesis to turn sunlight into sugar?") == "bio"
    assert route("What is 12 times 12? Show me how to multiply.") == "math"


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": 3}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 10**9}, "max_tokens"),
    ({"stop": [1, 2]}, "stop"),
    ({"n": 2}, "n"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, "messages"),
    ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
])
def test_bad_parameters_are_400_with_openai_error_body(client, kwargs, param):
    messages = kwargs.pop("messages", QUESTION)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="math", messages=messages, **kwargs)
    error = caught.value.body
    assert error["param"] == param and error["message"] and error["type"] == "invalid_request_error"


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as caught:
        ask(client, "../../etc/passwd")
    assert caught.value.body["code"] == "model_not_found"


def test_prompt_over_the_context_limit_is_400(client, tiny_engine):
    long = "1," * tiny_engine.context_limit  # digits and commas are a token each
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "bio", [{"role": "user", "content": long}])
    assert caught.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):  # fits, but not with the reply asked for
        ask(client, "bio", max_tokens=tiny_engine.context_limit)


def test_malformed_requests_get_json_errors_and_the_server_lives(server, client):
    for body in (b"{not json", b"[1, 2]", b"\xff\xfe", b'{"model": "math", "messages": "hi"}'):
        status, payload = post(server, "/v1/chat/completions", body)
        assert status == 400 and set(payload["error"]) == {"message", "type", "param", "code"}
    # Refused from the header alone: a huge body is never read into memory.
    status, payload = raw(server, "POST", "/v1/chat/completions", b"{}", {"Content-Length": str(2 << 20)})
    assert status == 413 and payload["error"]["code"] == "body_too_large"
    assert raw(server, "GET", "/v1/nothing")[0] == 404
    assert raw(server, "DELETE", "/v1/models")[0] == 404
    assert ask(client, "math").choices[0].message.content  # still serving


def test_api_key_is_required(server):
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    status, payload = raw(server, "GET", "/v1/models", headers={"Authorization": ""})
    assert status == 401 and payload["error"]["code"] == "invalid_api_key"
    status, health = raw(server, "GET", "/health", headers={"Authorization": ""})
    assert status == 200 and health["status"] == "ok"


def test_non_loopback_host_needs_a_key(tiny_engine):
    with pytest.raises(EduloraError, match="--api-key"):
        TutorServer(TutorService(tiny_engine, Router([])), "0.0.0.0", 0)


def test_full_queue_answers_429(tiny_engine):
    # An engine that is never started keeps its queue full: back-pressure, not unbounded growth.
    stalled = Engine(tiny_engine.model, tiny_engine.tokenizer, tiny_engine.base_id, tiny_engine.adapters, max_queue=1)
    httpd = TutorServer(TutorService(stalled, Router([])), "127.0.0.1", 0).start()
    try:
        stalled.submit(QUESTION, "math")  # takes the only slot
        client = openai.OpenAI(base_url=f"{httpd.url}/v1", api_key="unused", max_retries=0, timeout=10)
        with pytest.raises(openai.RateLimitError) as caught:
            ask(client, "math")
        assert caught.value.response.headers["retry-after"] == "1"
    finally:
        stalled.stop(timeout=1)
        httpd.stop()


def test_parallel_requests_across_adapters_match_solo_answers(client, tiny_engine):
    questions = ["What is 7 times 8?", "Why do leaves change colour?", "Explain long division.",
                 "What is a cell membrane?", "How many sides does a hexagon have?", "What do enzymes do?"]
    jobs = [(model, q) for q in questions for model in ("math", "bio", tiny_engine.base_id)]
    solo = {job: ask(client, job[0], [{"role": "user", "content": job[1]}], max_tokens=10).choices[0].message.content
            for job in jobs}
    before = tiny_engine.stats.mixed_batches
    work = jobs * 2  # 36 requests in flight at once

    def run(job):
        completion = ask(client, job[0], [{"role": "user", "content": job[1]}], max_tokens=10)
        return completion.model, completion.choices[0].message.content

    with ThreadPoolExecutor(len(work)) as pool:
        results = list(pool.map(run, work))
    for job, (model, text) in zip(work, results):
        assert model == job[0] and text == solo[job], job
    assert tiny_engine.stats.mixed_batches > before  # different adapters really shared forward passes


def test_engine_matches_transformers_generate(tiny_engine, tiny_runs):
    """Our one decoder (served and offline) against transformers' own ``generate`` with the same rules."""
    from edulora.generation import stop_token_ids
    from edulora.tutor import Tutor

    tutor = Tutor.load(tiny_runs["math"], precision="fp32")
    messages = tiny_engine.prompt_messages(QUESTION, "math")
    ids = tutor.tokenizer(tutor.format.render(messages), add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = tutor.model.generate(input_ids=ids, max_new_tokens=12, do_sample=False, repetition_penalty=1.1,
                               top_k=None, top_p=None, temperature=None, eos_token_id=stop_token_ids(tutor.tokenizer),
                               pad_token_id=tutor.tokenizer.pad_token_id)
    expected = tutor.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
    assert tiny_engine.submit(QUESTION, "math", max_tokens=12).text().strip() == expected
    assert tutor.reply([QUESTION], Sampling(max_new_tokens=12))[0].text == expected


# ----- the teacher's key --------------------------------------------------------------------------

KEY_METADATA = {"answer": "56", "solution": "Seven groups of eight make 56."}


def test_teachers_key_reaches_the_prompt_only_when_sent(client, tiny_engine):
    from edulora.data.schema import Metadata

    key = Metadata(extra=dict(KEY_METADATA))
    system = tiny_engine.prompt_messages(QUESTION, "math", key)[0]
    assert system["role"] == "system" and "Final answer: 56" in system["content"]
    assert "Seven groups of eight make 56." in system["content"]
    prompt = tiny_engine.tokenizer.decode(tiny_engine.encode(QUESTION, "math", key))
    assert "Final answer: 56" in prompt and "Seven groups" in prompt
    assert "56" not in json.dumps(tiny_engine.prompt_messages(QUESTION, "math"))
    # Over HTTP the key travels as the request's metadata; the prompt the engine decoded from holds it.
    keyed = ask(client, "math", metadata=KEY_METADATA)
    plain = ask(client, "math")
    assert keyed.usage.prompt_tokens == len(tiny_engine.encode(QUESTION, "math", key))
    assert plain.usage.prompt_tokens == len(tiny_engine.encode(QUESTION, "math")) < keyed.usage.prompt_tokens
    # The key is never echoed back. The feedback token is random text that may contain "56" by chance.
    echoed = {k: v for k, v in keyed.model_extra["edulora"].items() if k != "feedback_token"}
    assert "56" not in json.dumps(echoed) and "Seven groups" not in json.dumps(keyed.model_extra["edulora"])


def test_a_bad_key_is_400(client):
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "math", metadata={"answer": 56})
    assert caught.value.body["param"] == "metadata.answer"


# ----- feedback refers to replies this server produced ----------------------------------------------

def post(server, path: str, body: dict | bytes):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw(server, "POST", path, data, {"Content-Type": "application/json"})


def test_feedback_rates_a_served_reply_with_the_servers_record(server, client):
    completion = ask(client, "math", metadata=KEY_METADATA)
    token = completion.model_extra["edulora"]["feedback_token"]
    # What a client claims the conversation and reply were is ignored: the server stores its own.
    forged = {"completion_id": completion.id, "feedback_token": token, "rating": 1, "comment": "good",
              "messages": [{"role": "user", "content": "Is the Earth flat?"}], "reply": "Yes, it is flat."}
    status, payload = post(server, "/v1/feedback", forged)
    assert status == 200 and payload["stored"] is True
    [item] = [i for i in server.service.feedback.items() if i.completion_id == completion.id]
    assert item.messages == QUESTION and item.reply == completion.choices[0].message.content
    assert (item.rating, item.comment, item.adapter, item.subject) == (1, "good", "math", "mathematics")
    assert (item.answer, item.solution) == (KEY_METADATA["answer"], KEY_METADATA["solution"])


def test_feedback_for_an_invented_reply_or_with_another_token_is_refused(server, client):
    completion = ask(client, "math")
    status, payload = post(server, "/v1/feedback", {"completion_id": "chatcmpl-invented", "feedback_token": "x",
                                                    "rating": 1})
    assert status == 404 and payload["error"]["code"] == "completion_not_found"
    status, payload = post(server, "/v1/feedback", {"completion_id": completion.id, "feedback_token": "guess",
                                                    "rating": -1})
    assert status == 403 and payload["error"]["code"] == "invalid_feedback_token"
    status, payload = post(server, "/v1/feedback", {"completion_id": completion.id, "rating": 1})
    assert status == 400 and payload["error"]["param"] == "feedback_token"
    assert all(i.completion_id != completion.id for i in server.service.feedback.items())


# ----- hardening: what the HTTP stack must refuse or survive ----------------------------------------

def test_lone_surrogates_are_400_not_500(server):
    chat = b'{"model": "math", "messages": [{"role": "user", "content": "hi \\ud800"}]}'
    feedback = b'{"completion_id": "\\udc00", "feedback_token": "x", "rating": 1}'
    for path, body in (("/v1/chat/completions", chat), ("/v1/feedback", feedback)):
        status, payload = post(server, path, body)
        assert status == 400 and payload["error"]["code"] == "invalid_json", path


def test_head_and_options_are_answered(server):
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("HEAD", "/health")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b"" and response.getheader("Content-Type")
    conn.request("OPTIONS", "/v1/chat/completions")
    response = conn.getresponse()
    response.read()
    assert response.status == 204 and "POST" in response.getheader("Allow")
    conn.close()


@pytest.mark.parametrize("stop", [["a", "b", "c", "d", "e"], ["x" * 101], [""]])
def test_stop_strings_are_bounded(client, stop):
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "math", stop=stop)
    assert caught.value.body["param"] == "stop"


@pytest.mark.parametrize("headers", [
    b"Content-Length: 2\r\nContent-Length: 3\r\n",
    b"Content-Length: +2\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n",
])
def test_ambiguous_framing_is_refused(server, headers):
    import socket

    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + KEY.encode()
                     + b"\r\n" + headers + b"\r\n{}")
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 400"), status_line


def _wait_for(condition, seconds: float = 30.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_cancels_its_generation(server, tiny_engine, stream):
    import socket

    before, batches = tiny_engine.stats.cancelled, tiny_engine.stats.batches
    body = json.dumps({"model": "math", "messages": QUESTION, "max_tokens": 1800, "stream": stream}).encode()
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
                     + b"\r\n\r\n" + body)
        if stream:
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # the reply has started
        else:
            assert _wait_for(lambda: tiny_engine.stats.batches > batches)  # its decoding has started
    assert _wait_for(lambda: tiny_engine.stats.cancelled > before), "the generation ran on after its client left"


def test_a_burst_gets_replies_or_429_never_resets(tiny_engine):
    # A small queue so the burst overflows it: every client must still get an HTTP answer.
    engine = Engine(tiny_engine.model, tiny_engine.tokenizer, tiny_engine.base_id, tiny_engine.adapters,
                    max_batch=4, max_queue=8).start()
    httpd = TutorServer(TutorService(engine, Router([])), "127.0.0.1", 0).start()
    body = json.dumps({"model": "math", "messages": QUESTION, "max_tokens": 4})

    def one(_):
        conn = http.client.HTTPConnection(*httpd.address, timeout=120)
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        status = conn.getresponse().status
        conn.close()
        return status

    try:
        with ThreadPoolExecutor(90) as pool:
            statuses = list(pool.map(one, range(90)))
    finally:
        httpd.stop()
        engine.stop()
    assert set(statuses) == {200, 429}, statuses


def test_the_key_is_checked_before_the_body_is_read(server):
    import socket

    with socket.create_connection(server.address, timeout=10) as sock:
        # Headers promise a body that never comes: only a server that has not waited for it can answer.
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n")
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 401"), status_line


def test_remembered_replies_are_bounded_by_size(tiny_engine, tmp_path):
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    service = TutorService(tiny_engine, Router([]), store, remember_chars=100)
    chats = [service.chat("math", [{"role": "user", "content": f"Question {i}?" + " pad" * 10}], Sampling())
             for i in range(3)]
    for chat in chats:
        service.complete(chat, chat.generation.text())
    token = chats[-1].info["feedback_token"]
    assert service.rate(chats[-1].generation.id, token, rating=1) > 0  # the newest is still there
    with pytest.raises(LookupError):
        service.rate(chats[0].generation.id, chats[0].info["feedback_token"], rating=1)  # the oldest is forgotten
    store.close()


# ----- the teacher's workbench: per-conversation settings, flags, teachers, review ------------------

TEACHERS = {"ana": "token-of-ana-0001", "ben": "token-of-ben-0002"}


@pytest.fixture(scope="module")
def staff_server(tiny_engine, tmp_path_factory):
    """A server where each teacher has a token of their own (no shared API key); Ben reviews everyone's feedback."""
    db = tmp_path_factory.mktemp("staff") / "feedback.sqlite3"
    service = TutorService(tiny_engine, Router(list(tiny_engine.adapters.values())), FeedbackStore(db),
                           teachers=dict(TEACHERS), reviewers=frozenset({"ben"}))
    httpd = TutorServer(service, "127.0.0.1", 0).start()
    yield httpd
    httpd.stop()


def as_teacher(server, name: str, method: str, path: str, body: dict | None = None):
    return request_as(server, TEACHERS[name], method, path, body)


def test_conversation_grade_level_and_style_replace_the_adapters(client, tiny_engine):
    from edulora.data.schema import GradeLevel, Metadata, TeachingStyle

    override = Metadata(grade_level=GradeLevel.ELEMENTARY, teaching_style=TeachingStyle.STEP_BY_STEP)
    system = tiny_engine.prompt_messages(QUESTION, "math", override)[0]["content"]
    assert "elementary school students" in system and "step-by-step style" in system
    assert "middle school" not in system and "socratic" not in system  # the adapter's own persona is replaced
    reply = ask(client, "math", metadata={"grade_level": "grade 2", "teaching_style": "Step by step"})
    info = reply.model_extra["edulora"]
    assert (info["grade_level"], info["teaching_style"]) == ("elementary", "step_by_step")
    assert reply.usage.prompt_tokens == len(tiny_engine.encode(QUESTION, "math", override))
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "math", metadata={"grade_level": "kindergarten teacher"})
    assert caught.value.body["param"] == "metadata.grade_level"


def test_every_reply_carries_its_pedagogy_flags_streamed_or_not(server, client, tiny_engine):
    from edulora.data.schema import Metadata, TeachingStyle
    from edulora.serving.flags import reply_flags

    meta = Metadata(teaching_style=TeachingStyle.SOCRATIC, extra={"answer": "56"})
    plain = ask(client, "math", metadata={"answer": "56"})
    text = plain.choices[0].message.content
    assert plain.model_extra["edulora"]["flags"] == reply_flags(text, QUESTION, meta)
    stream = client.chat.completions.create(model="math", messages=QUESTION, max_tokens=8, stream=True,
                                            metadata={"answer": "56"})
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    [last] = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert streamed == text and last.model_extra["edulora"]["flags"] == reply_flags(streamed, QUESTION, meta)


def test_another_teacher_cannot_overwrite_a_rating(staff_server):
    status, reply = as_teacher(staff_server, "ana", "POST", "/v1/chat/completions",
                               {"model": "math", "messages": QUESTION, "max_tokens": 8})
    assert status == 200
    rating = {"completion_id": reply["id"], "feedback_token": reply["edulora"]["feedback_token"]}
    assert as_teacher(staff_server, "ana", "POST", "/v1/feedback", {**rating, "rating": 1, "comment": "fine"})[0] == 200
    # Ben saw the reply too (same screen, same token): his rating is his own row, not a change to Ana's.
    status, payload = as_teacher(staff_server, "ben", "POST", "/v1/feedback", {**rating, "rating": -1})
    assert status == 200 and payload["teacher"] == "ben"
    rows = {i.teacher: i for i in staff_server.service.feedback.items() if i.completion_id == reply["id"]}
    assert (rows["ana"].rating, rows["ana"].comment, rows["ben"].rating) == (1, "fine", -1)
    assert rows["ana"].reply == rows["ben"].reply == reply["choices"][0]["message"]["content"]
    # Without the reply's token nobody rates it, and without a teacher's token nobody gets in at all.
    assert as_teacher(staff_server, "ben", "POST", "/v1/feedback",
                      {**rating, "feedback_token": "stolen-id-only", "rating": 1})[0] == 403
    assert raw(staff_server, "POST", "/v1/feedback", json.dumps({**rating, "rating": 1}).encode())[0] == 401


def test_review_approves_edits_and_rejects_under_the_reviewers_name(staff_server):
    status, reply = as_teacher(staff_server, "ana", "POST", "/v1/chat/completions",
                               {"model": "math", "messages": [{"role": "user", "content": "What is 6 times 7?"}],
                                "max_tokens": 8, "metadata": {"answer": "42"}})
    body = {"completion_id": reply["id"], "feedback_token": reply["edulora"]["feedback_token"], "rating": -1,
            "correction": "How many is six groups of seven?"}
    forged = {"flags": [], "status": "approved", "teacher": "ben", "reply": "Forty-two."}  # none of it is the client's
    row = as_teacher(staff_server, "ana", "POST", "/v1/feedback", {**body, **forged})[1]["id"]
    assert raw(staff_server, "GET", "/v1/feedback")[0] == 401  # the review view is behind a token
    status, listing = as_teacher(staff_server, "ben", "GET", "/v1/feedback?status=pending")
    [item] = [i for i in listing["data"] if i["id"] == row]
    assert (item["teacher"], item["status"], item["answer"]) == ("ana", "pending", "42")
    assert item["flags"] == reply["edulora"]["flags"] and item["reply"] == reply["choices"][0]["message"]["content"]
    status, approved = as_teacher(staff_server, "ben", "POST", f"/v1/feedback/{row}/review",
                                  {"status": "approved", "correction": "What do six groups of seven make?"})
    assert status == 200 and (approved["status"], approved["reviewed_by"]) == ("approved", "ben")
    assert approved["correction"] == "What do six groups of seven make?"
    assert row in [i["id"] for i in as_teacher(staff_server, "ana", "GET", "/v1/feedback?status=approved")[1]["data"]]
    # Ana changes her feedback after the review: what was approved is not what is there, so it waits again.
    as_teacher(staff_server, "ana", "POST", "/v1/feedback", {**body, "correction": "Count by sevens."})
    assert staff_server.service.feedback.item(row).status == "pending"
    status, error = as_teacher(staff_server, "ben", "POST", f"/v1/feedback/{row}/review", {"status": "maybe"})
    assert status == 400 and error["error"]["param"] == "status"
    assert as_teacher(staff_server, "ben", "POST", "/v1/feedback/999999/review", {"status": "rejected"})[0] == 404
    assert as_teacher(staff_server, "ben", "GET", "/v1/feedback?status=lost")[0] == 400


def test_teacher_tokens_must_be_well_formed():
    from edulora.serving.service import parse_teachers

    assert parse_teachers(["ana=token-of-ana-0001"]) == {"ana": "token-of-ana-0001"}
    for bad in (["ana"], ["=token-of-ana-0001"], ["ana=short"], ["ana=token-of-ana-0001", "ana=token-of-ana-0002"],
                ["ana=token-of-ana-0001", "ben=token-of-ana-0001"], ["api-key=token-of-ana-0001"]):
        with pytest.raises(EduloraError):
            parse_teachers(bad)
    with pytest.raises(EduloraError):
        parse_teachers(["ana=same-as-the-api-key"], api_key="same-as-the-api-key")


# ----- 5xx a client could cause: each is a 4xx with OpenAI's error body -------------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_a_seed_outside_64_bits_is_400_streamed_or_not(client, stream):
    for seed in (1 << 64, -(1 << 63) - 1):
        with pytest.raises(openai.BadRequestError) as caught:
            ask(client, "math", seed=seed, temperature=0.8, stream=stream)
        assert caught.value.body["param"] == "seed"
    for seed in ((1 << 64) - 1, -(1 << 63)):  # the ends of the range still sample
        assert ask(client, "math", seed=seed, temperature=0.8, max_tokens=2).choices[0].message.content


def test_a_review_id_past_sqlites_range_is_400_not_500(server):
    for row in (1 << 63, -(1 << 63) - 1, 10 ** 30):
        status, payload = post(server, f"/v1/feedback/{row}/review", {"status": "approved"})
        assert status == 400 and payload["error"]["param"] == "row", row
    status, payload = post(server, f"/v1/feedback/{(1 << 63) - 1}/review", {"status": "approved"})
    assert status == 404 and payload["error"]["code"] == "feedback_not_found"


def test_head_on_get_routes_answers_like_get(server):
    for path in ("/v1/models", "/v1/models/math", "/v1/feedback", "/health", "/"):
        status, payload = raw(server, "HEAD", path)
        assert (status, payload) == (200, None), path


def test_options_names_every_method_of_the_path(server):
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("OPTIONS", "/v1/feedback")
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 204 and set(response.getheader("Allow").split(", ")) == {"GET", "HEAD", "POST"}


def test_a_boolean_rating_or_n_is_400_as_the_strict_types_promise(server, client):
    completion = ask(client, "math")
    token = completion.model_extra["edulora"]["feedback_token"]
    status, payload = post(server, "/v1/feedback", {"completion_id": completion.id, "feedback_token": token,
                                                    "rating": True})
    assert status == 400 and payload["error"]["param"] == "rating"
    assert all(i.completion_id != completion.id for i in server.service.feedback.items())
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "math", n=True)
    assert caught.value.body["param"] == "n"


def test_a_response_format_that_is_not_honoured_is_refused(client):
    for fmt in ({"type": "json_object"}, {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}):
        with pytest.raises(openai.BadRequestError) as caught:
            ask(client, "math", response_format=fmt)
        assert caught.value.body["param"] == "response_format"
    assert ask(client, "math", response_format={"type": "text"}).choices[0].message.content
