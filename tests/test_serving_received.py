"""A teacher rates and corrects the replies their students received, from the review page's API."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from test_serving_support import tiny_engine, tiny_runs  # noqa: F401  (fixtures)

from edulora.errors import EduloraError
from edulora.serving.app import create_app
from edulora.serving.feedback import FeedbackStore, export_feedback
from edulora.serving.guard import OriginGuard, served_hosts
from edulora.serving.received import ReceivedLog, ReceivedReply
from edulora.serving.roles import Roles
from edulora.serving.router import Router
from edulora.serving.service import TutorService

KEY = "the-api-key-0001"
TOKENS = {"ana": "token-of-ana-0001", "ben": "token-of-ben-0002", "rita": "token-of-rita-0003",
          "ana's student": "token-of-anas-class-1", "ben's student": "token-of-bens-class-2", "admin": KEY}
QUESTION = "I'm Zoe Park. What is 6 times 7?"


def _service(engine, db) -> TutorService:
    roles = Roles.parse(["ana=token-of-ana-0001", "ben=token-of-ben-0002", "rita=token-of-rita-0003:reviewer"],
                        ["ana=token-of-anas-class-1", "ben=token-of-bens-class-2"], KEY)
    return TutorService(engine, Router([]), FeedbackStore(db), KEY, roles.teachers, reviewers=roles.reviewers,
                        students=roles.students)


def _client(service: TutorService) -> TestClient:
    """The app behind the same Host/Origin guard ``TutorServer`` puts in front of it on loopback."""
    guarded = OriginGuard(create_app(service), served_hosts("127.0.0.1", 8000, ()))
    return TestClient(guarded, base_url="http://127.0.0.1:8000")


@pytest.fixture(scope="module")
def school(tiny_engine, tmp_path_factory):
    db = tmp_path_factory.mktemp("received") / "feedback.sqlite3"
    service = _service(tiny_engine, db)
    with _client(service) as client:
        yield client, service, db


def call(client, who: str, method: str, path: str, body: dict | None = None, **headers: str):
    response = client.request(method, path, json=body, headers={"Authorization": f"Bearer {TOKENS[who]}", **headers})
    return response.status_code, response.json() if response.content else None


def ask(client, who: str, text: str = QUESTION) -> dict:
    status, reply = call(client, who, "POST", "/v1/chat/completions",
                         {"model": "math", "messages": [{"role": "user", "content": text}], "max_tokens": 4})
    assert status == 200, reply
    return reply


def listed(client, who: str) -> list[str]:
    status, listing = call(client, who, "GET", "/v1/received")
    assert status == 200, listing
    return [r["completion_id"] for r in listing["data"]]


def test_a_teacher_sees_what_their_students_received_and_no_one_elses(school):
    client, _, _ = school
    anas, bens, own = ask(client, "ana's student"), ask(client, "ben's student"), ask(client, "ana")
    ana = listed(client, "ana")
    assert anas["id"] in ana and bens["id"] not in ana and own["id"] not in ana  # only students' replies are kept
    assert bens["id"] in listed(client, "ben") and anas["id"] not in listed(client, "ben")
    assert {anas["id"], bens["id"]} <= set(listed(client, "rita")) and anas["id"] in listed(client, "admin")
    entry = next(r for r in call(client, "ana", "GET", "/v1/received")[1]["data"] if r["completion_id"] == anas["id"])
    assert entry["messages"] == [{"role": "user", "content": QUESTION}] and entry["owner"] == "ana"
    assert entry["reply"] == anas["choices"][0]["message"]["content"] and entry["model"] == "math"
    assert entry["mine"] is None and "feedback_token" not in json.dumps(entry)
    assert anas["edulora"]["feedback_token"] not in json.dumps(call(client, "rita", "GET", "/v1/received")[1])


def test_students_cannot_list_or_rate_received_replies(school):
    client, _, _ = school
    reply = ask(client, "ana's student")
    status, error = call(client, "ana's student", "GET", "/v1/received")
    assert status == 403 and error["error"]["code"] == "students_chat_only"
    status, error = call(client, "ana's student", "POST", f"/v1/received/{reply['id']}/feedback", {"rating": 1})
    assert status == 403 and error["error"]["code"] == "students_chat_only"
    status, _ = client.get("/v1/received").status_code, None
    assert status == 401


def test_the_teacher_rates_and_corrects_and_it_is_exported_once_approved(school, tmp_path):
    client, service, db = school
    reply = ask(client, "ana's student")
    path = f"/v1/received/{reply['id']}/feedback"
    status, error = call(client, "ben", "POST", path, {"rating": 1})
    assert status == 403 and error["error"]["code"] == "not_your_conversation"
    status, stored = call(client, "ana", "POST", path, {"rating": -1, "correction": "What is 6 groups of 7?"})
    assert status == 200 and stored["teacher"] == "ana"
    item = service.feedback.item(stored["id"])
    assert (item.owner, item.teacher, item.messages[0]["content"], item.status) == ("ana", "ana", QUESTION, "pending")
    assert item.reply == reply["choices"][0]["message"]["content"]
    mine = next(r["mine"] for r in call(client, "ana", "GET", "/v1/received")[1]["data"]
                if r["completion_id"] == reply["id"])
    assert mine == {"id": stored["id"], "rating": -1, "comment": None, "correction": "What is 6 groups of 7?",
                    "status": "pending", "reviewed_by": None}
    assert call(client, "ana", "POST", f"/v1/feedback/{stored['id']}/review", {"status": "approved"})[0] == 200
    export_feedback(db, tmp_path / "sft.jsonl")
    records = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    corrected = [r for r in records if r.get("response") == "What is 6 groups of 7?"]
    assert corrected and "Zoe" not in json.dumps(corrected)  # scrubbed on export, as every feedback item
    assert corrected[0]["metadata"]["written_by"] == "ana"


@pytest.mark.parametrize("who, path, body, status, code", [
    ("ana", "/v1/received/no-such-reply/feedback", {"rating": 1}, 404, "completion_not_found"),
    ("ana", "/v1/received/x/feedback", {"rating": 5}, 400, None),
    ("ana", "/v1/received/x/feedback", {"rating": True}, 400, None),
    ("ana", "/v1/received/" + "x" * 201 + "/feedback", {"rating": 1}, 400, None),
])
def test_bad_requests_are_4xx(school, who, path, body, status, code):
    client, _, _ = school
    got, error = call(client, who, "POST", path, body)
    assert got == status and (code is None or error["error"]["code"] == code)


def test_the_host_and_origin_guard_applies(school):
    client, _, _ = school
    assert call(client, "ana", "GET", "/v1/received", Origin="http://evil.example")[0] == 403
    assert call(client, "ana", "GET", "/v1/received", Host="evil.example")[0] == 403


def test_received_replies_outlive_a_restart(school, tiny_engine):
    client, _, db = school
    reply = ask(client, "ana's student")
    with _client(_service(tiny_engine, db)) as again:
        assert reply["id"] in listed(again, "ana")
        assert call(again, "ana", "POST", f"/v1/received/{reply['id']}/feedback", {"rating": 1})[0] == 200


def test_only_the_newest_replies_are_kept(tmp_path):
    log = ReceivedLog(tmp_path / "feedback.sqlite3", limit=2)
    for i in range(3):
        log.add(ReceivedReply(f"c{i}", "ana", 100.0 + i, {"model": "m", "feedback_token": "secret"},
                              [{"role": "user", "content": f"q{i}"}], f"r{i}", []))
    assert [r.completion_id for r in log.replies()] == ["c2", "c1"]
    assert log.replies("ben") == [] and "feedback_token" not in log.get("c2").info


def test_both_handles_on_the_database_refuse_a_file_that_is_not_one_in_one_line(tmp_path):
    """``FeedbackStore`` and ``ReceivedLog`` open the file the same way (``serving.database``)."""
    bad = tmp_path / "feedback.sqlite3"
    bad.write_bytes(b"a teacher's notes, not SQLite\n" * 200)
    for handle in (FeedbackStore, ReceivedLog):
        with pytest.raises(EduloraError, match=rf"^{bad}: not a usable feedback database \(file is not a database\)$"):
            handle(bad)
    assert bad.read_bytes() == b"a teacher's notes, not SQLite\n" * 200  # never written over
