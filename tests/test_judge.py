"""The MRBench judge: parsing messy replies, and a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edulora.errors import EduloraError
from edulora.evaluation.judge import (
    DIMENSIONS,
    Judge,
    build_messages,
    chat_url,
    judge_means,
    label_score,
    parse_judgment,
    parse_single,
)

GOOD = {"mistake_identification": "Yes", "mistake_location": "To some extent",
        "revealing_of_the_answer": "No", "providing_guidance": "Yes", "actionability": "Yes",
        "coherence": "Yes", "tutor_tone": "Encouraging", "human_likeness": "To some extent"}


def test_parses_json_inside_code_fences_and_prose():
    text = "Sure! Here is my rating:\n```json\n" + json.dumps(GOOD, indent=1) + "\n```\nHope this helps."
    assert parse_judgment(text) == GOOD


def test_parses_loose_keys_labels_and_nesting():
    text = json.dumps({"ratings": {"Mistake Identification": {"label": "yes", "reason": "…"},
                                   "Revealing of the Answer": "Yes, but the answer is incorrect",
                                   "guidance": "partially", "Tone": "neutral.", "human-likeness": True}})
    labels = parse_judgment(text)
    assert labels["mistake_identification"] == "Yes"
    assert labels["revealing_of_the_answer"] == "Yes (but the answer is incorrect)"
    assert labels["providing_guidance"] == "To some extent"
    assert labels["tutor_tone"] == "Neutral"
    assert labels["human_likeness"] == "Yes"
    assert labels["coherence"] is None


def test_parses_dimension_label_lines():
    text = ("My assessment:\n1. **Mistake identification**: Yes\n- Mistake location: No\n"
            "Revealing of the answer - Yes (and the answer is correct)\nTutor tone: Offensive\nCoherence: maybe")
    labels = parse_judgment(text)
    assert labels["mistake_identification"] == "Yes" and labels["mistake_location"] == "No"
    assert labels["revealing_of_the_answer"] == "Yes (and the answer is correct)"
    assert labels["tutor_tone"] == "Offensive"
    assert labels["coherence"] is None  # not one of the labels


@pytest.mark.parametrize("text", ["", "I cannot rate this.", "{not json", "```\n```", "[1, 2, 3]"])
def test_garbage_gives_no_labels(text):
    assert parse_judgment(text) == {dim: None for dim in DIMENSIONS}


def test_scores_and_means():
    assert label_score("tutor_tone", "Neutral") == 0.5 and label_score("coherence", None) is None
    means = judge_means([GOOD, {**GOOD, "providing_guidance": "No"}, {}])
    assert means["judge_providing_guidance"] == 0.5
    assert means["judge_tutor_tone"] == 1.0 and means["judge_revealing_of_the_answer"] == 0.0


def test_prompt_names_every_dimension_and_label():
    content = build_messages([("student", "Is it 12?")], "Let's check together.")[1]["content"]
    for dim, (labels, _) in DIMENSIONS.items():
        assert dim in content and all(label in content for label in labels)
    assert chat_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    with pytest.raises(EduloraError):
        chat_url("localhost:8000")


class FakeJudge:
    """Serves scripted replies: each item is a reply text or an HTTP status code; the last repeats."""

    def __init__(self, script):
        self.script = list(script)
        self.calls: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.calls.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                item = owner.script.pop(0) if len(owner.script) > 1 else owner.script[0]
                if isinstance(item, int):
                    self.send_response(item)
                    self.end_headers()
                    return
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": item}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    servers = []

    def start(*script):
        server = FakeJudge(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _judge(url, tmp_path, **kw):
    return Judge(url, "fake-model", **{"api_key": "k", "timeout_s": 5, "retries": 3, "cache_dir": tmp_path / "cache",
                                       **kw})


def test_judges_and_caches_on_disk(fake, tmp_path, monkeypatch):
    monkeypatch.delenv("EDULORA_JUDGE_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = fake("```json\n" + json.dumps(GOOD) + "\n```")
    history = [("student", "What is 3 x 4?")]
    assert _judge(server.url, tmp_path).judge_reply(history, "What do 3 groups of 4 make?") == GOOD
    assert len(server.calls) == 1
    call = server.calls[0]
    assert call["path"] == "/v1/chat/completions" and call["body"]["model"] == "fake-model"
    assert call["auth"] == "Bearer k"
    # A new Judge (a rerun) reads the disk cache: no request at all.
    again = _judge(server.url, tmp_path)
    assert again.judge_reply(history, "What do 3 groups of 4 make?") == GOOD
    assert again.requests == 0 and len(server.calls) == 1
    # Another judge model is another cache key.
    other = Judge(server.url, "other-model", cache_dir=tmp_path / "cache")
    other.judge_reply(history, "What do 3 groups of 4 make?")
    assert len(server.calls) == 2
    assert server.calls[1]["auth"] is None  # no key: no Authorization header (a local judge needs none)


def test_unlabelled_dimensions_are_asked_one_at_a_time(fake, tmp_path):
    # The eight-label reply only gives the tone; the seven others are asked separately, in order.
    singles = ["Yes, the tutor spots it.", "**No**", "Yes, but the answer is wrong.", "To some extent.",
               '{"actionability": "no"}', "I think the answer is: yes", "Sounds natural, so Yes."]
    server = fake("Tutor tone: Neutral", *singles)
    labels = _judge(server.url, tmp_path).judge_reply([("student", "Is it 7?")], "How many groups are there?")
    assert labels == {"mistake_identification": "Yes", "mistake_location": "No",
                      "revealing_of_the_answer": "Yes (but the answer is incorrect)",
                      "providing_guidance": "To some extent", "actionability": "No", "coherence": "Yes",
                      "tutor_tone": "Neutral", "human_likeness": "Yes"}
    assert len(server.calls) == 8
    first, second = server.calls[0]["body"], server.calls[1]["body"]
    assert first["max_tokens"] == 400 and second["max_tokens"] == 16
    assert "mistake in the student's response" in second["messages"][1]["content"]
    assert "Answer with exactly one of: Yes | To some extent | No." in second["messages"][1]["content"]
    assert "tutor_tone" not in json.dumps([c["body"] for c in server.calls[1:]])


def test_single_answers_name_a_label_anywhere_in_the_first_line():
    assert parse_single("tutor_tone", "The tone is encouraging overall.\nNeutral") == "Encouraging"
    assert parse_single("revealing_of_the_answer", "No, it does not.") == "No"
    assert parse_single("coherence", "Excellent job! Great work.") is None
    assert parse_single("coherence", "") is None


def test_a_judge_that_never_answers_leaves_labels_empty_and_uncached(fake, tmp_path):
    server = fake("I cannot judge this.")
    judge = _judge(server.url, tmp_path)
    assert judge.judge_reply([], "Hello") == {dim: None for dim in DIMENSIONS}
    assert len(server.calls) == 1 + len(DIMENSIONS)
    judge.judge_reply([], "Hello")
    assert len(server.calls) == 2 * (1 + len(DIMENSIONS))  # nothing was cached


def test_server_errors_are_retried(fake, tmp_path):
    server = fake(500, 429, json.dumps(GOOD))
    assert _judge(server.url, tmp_path).judge_reply([], "x") == GOOD
    assert len(server.calls) == 3


def test_a_judge_failing_every_attempt_is_a_user_error(fake, tmp_path):
    server = fake(503)
    with pytest.raises(EduloraError, match="after 2 attempt.*HTTP 503"):
        _judge(server.url, tmp_path, retries=2).judge_reply([], "x")
    assert len(server.calls) == 2


def test_refusal_and_unreachable_server_are_user_errors(fake, tmp_path):
    server = fake(401)
    with pytest.raises(EduloraError, match="HTTP 401"):
        _judge(server.url, tmp_path).judge_reply([], "x")
    assert len(server.calls) == 1  # a bad key is not retried
    dead = FakeJudge(["unused"])
    dead.close()
    with pytest.raises(EduloraError, match="judge unreachable"):
        _judge(dead.url, tmp_path).judge_reply([], "x")
