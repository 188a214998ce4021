"""Roles on the server: students chat only, a teacher sees only their own conversations, reviewers see all."""

from __future__ import annotations

import json

import pytest

from test_serving_support import request_as, tiny_engine, tiny_runs  # noqa: F401  (fixtures)

from edulora.errors import EduloraError
from edulora.serving.feedback import FeedbackStore
from edulora.serving.roles import Roles
from edulora.serving.router import Router
from edulora.serving.server import TutorServer
from edulora.serving.service import TutorService

KEY = "the-api-key-0001"
TOKENS = {"ana": "token-of-ana-0001", "ben": "token-of-ben-0002", "rita": "token-of-rita-0003",
          "ana's student": "token-of-anas-class-1", "admin": KEY}
PRIVATE = "I'm Zoe Park, call me at 555-123-4567. What is 6 times 7?"


@pytest.fixture(scope="module")
def school(tiny_engine, tmp_path_factory):
    """Ana and Ben teach, Rita reviews, Ana's class has a student token."""
    db = tmp_path_factory.mktemp("roles") / "feedback.sqlite3"
    roles = Roles.parse(["ana=token-of-ana-0001", "ben=token-of-ben-0002", "rita=token-of-rita-0003:reviewer"],
                        ["ana=token-of-anas-class-1"], KEY)
    service = TutorService(tiny_engine, Router([]), FeedbackStore(db), KEY, roles.teachers,
                           reviewers=roles.reviewers, students=roles.students)
    httpd = TutorServer(service, "127.0.0.1", 0).start()
    yield httpd
    httpd.stop()


def call(server, who: str, method: str, path: str, body: dict | None = None):
    return request_as(server, TOKENS[who], method, path, body)


def rated(server, asker: str, rater: str, text: str = PRIVATE) -> tuple[dict, int]:
    """A reply to ``asker``'s question, rated by ``rater`` with a better reply: (the reply, its feedback row)."""
    status, reply = call(server, asker, "POST", "/v1/chat/completions",
                         {"model": "math", "messages": [{"role": "user", "content": text}], "max_tokens": 4})
    assert status == 200, reply
    status, stored = call(server, rater, "POST", "/v1/feedback",
                          {"completion_id": reply["id"], "feedback_token": reply["edulora"]["feedback_token"],
                           "rating": -1, "correction": "What is 6 groups of 7?"})
    assert status == 200, stored
    return reply, stored["id"]


def test_one_teacher_cannot_read_another_teachers_rated_conversation(school):
    _, row = rated(school, "ana", "ana")
    status, listing = call(school, "ben", "GET", "/v1/feedback")
    assert status == 200 and row not in [i["id"] for i in listing["data"]]
    assert PRIVATE not in json.dumps(listing)
    assert row in [i["id"] for i in call(school, "ana", "GET", "/v1/feedback")[1]["data"]]


def test_one_teacher_cannot_approve_another_teachers_rows(school):
    _, row = rated(school, "ana", "ana")
    status, error = call(school, "ben", "POST", f"/v1/feedback/{row}/review",
                         {"status": "approved", "correction": "Ben's words"})
    assert status == 404 and error["error"]["code"] == "feedback_not_found"  # as unknown as a missing row
    item = school.service.feedback.item(row)
    assert (item.status, item.reviewed_by, item.correction) == ("pending", None, "What is 6 groups of 7?")
    status, own = call(school, "ana", "POST", f"/v1/feedback/{row}/review", {"status": "approved"})
    assert status == 200 and (own["status"], own["reviewed_by"]) == ("approved", "ana")


def test_one_teacher_cannot_rate_another_teachers_conversation(school):
    reply, _ = rated(school, "ana", "ana")
    status, error = call(school, "ben", "POST", "/v1/feedback",
                         {"completion_id": reply["id"], "feedback_token": reply["edulora"]["feedback_token"],
                          "rating": 1})
    assert status == 403 and error["error"]["code"] == "not_your_conversation"


def test_a_student_token_opens_the_chat_only(school):
    assert call(school, "ana's student", "GET", "/v1/models")[0] == 200
    reply, row = rated(school, "ana", "ana")
    for method, path, body in [
            ("GET", "/v1/feedback", None),
            ("POST", "/v1/feedback", {"completion_id": reply["id"], "rating": 1,
                                      "feedback_token": reply["edulora"]["feedback_token"]}),
            ("POST", f"/v1/feedback/{row}/review", {"status": "approved"}),
            ("POST", "/v1/admin/adapters", {"path": "/nowhere"}),
            ("DELETE", "/v1/admin/adapters/math", None)]:
        status, error = call(school, "ana's student", method, path, body)
        assert status == 403 and error["error"]["type"] == "permission_error", (method, path, error)
    assert "math" in school.service.engine.adapters and school.service.feedback.item(row).status == "pending"


def test_a_students_conversation_is_their_teachers_to_rate_and_review(school):
    reply, row = rated(school, "ana's student", "ana", "Tell me how to find 6 times 7.")
    assert school.service.feedback.item(row).owner == "ana"
    assert row not in [i["id"] for i in call(school, "ben", "GET", "/v1/feedback")[1]["data"]]
    assert call(school, "ben", "POST", "/v1/feedback",
                {"completion_id": reply["id"], "feedback_token": reply["edulora"]["feedback_token"],
                 "rating": 1})[0] == 403
    assert call(school, "ana", "POST", f"/v1/feedback/{row}/review", {"status": "rejected"})[0] == 200


def test_a_reviewer_reads_and_approves_every_teachers_rows(school):
    _, anas = rated(school, "ana", "ana")
    _, bens = rated(school, "ben", "ben")
    for who in ("rita", "admin"):
        listed = [i["id"] for i in call(school, who, "GET", "/v1/feedback")[1]["data"]]
        assert {anas, bens} <= set(listed)
    status, approved = call(school, "rita", "POST", f"/v1/feedback/{anas}/review",
                            {"status": "approved", "correction": "How many is six sevens?"})
    assert status == 200 and (approved["reviewed_by"], approved["correction_by"]) == ("rita", "rita")
    assert call(school, "rita", "POST", "/v1/admin/adapters", {"path": "/nowhere"})[0] == 403  # reviewing only


def test_student_and_reviewer_tokens_must_be_well_formed():
    roles = Roles.parse(["ana=token-of-ana-0001:reviewer", "ben=tok=en-of-ben-02"], ["ben=token-of-bens-class"])
    assert roles.teachers == {"ana": "token-of-ana-0001", "ben": "tok=en-of-ben-02"}
    assert roles.reviewers == {"ana"} and roles.students == {"token-of-bens-class": "ben"}
    for teachers, students in ([["ana=token-of-ana-0001"], ["zed=token-of-zeds-class"]],  # no such teacher
                               [["ana=token-of-ana-0001"], ["ana=short"]],
                               [["ana=token-of-ana-0001"], ["ana=token-of-ana-0001"]],  # a teacher's token
                               [["ana=token-of-ana-0001"], ["ana=token-of-class-01", "ana=token-of-class-01"]],
                               [["ana=short:reviewer"], []]):
        with pytest.raises(EduloraError):
            Roles.parse(teachers, students)


def test_who_holds_a_token_is_known_from_the_roles_read_once_at_start():
    """``identify`` reads the callers built when the service was created: the same caller, not a new one per request."""
    from edulora.serving.roles import API_KEY, LOCAL, Caller

    roles = Roles.parse(["ana=token-of-ana-0001", "rita=token-of-rita-0003:reviewer"], ["ana=token-of-anas-class-1"],
                        KEY)
    service = TutorService(None, Router([]), None, KEY, roles.teachers, reviewers=roles.reviewers,
                           students=roles.students)
    assert service.identify(KEY) is API_KEY
    assert service.identify(TOKENS["ana"]) == Caller("ana", "teacher")
    assert service.identify(TOKENS["rita"]) == Caller("rita", "reviewer")
    assert service.identify(TOKENS["ana's student"]) == Caller("ana", "student")
    assert service.identify(TOKENS["ana"]) is service.identify(TOKENS["ana"])
    assert all(service.identify(token) is None for token in ("token-of-ana-000", "", None))
    assert TutorService(None, Router([])).identify(None) is LOCAL
