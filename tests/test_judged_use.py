"""The learned judges where pedagogy is scored outside an evaluation: DPO pair mining and the teacher page's flags.

The judges are the shipped ones reading the packaged MiniLM; replies are written so that a teacher would
agree with the verdict asserted (telling, a bare "Good job!", a guiding question).
"""

import pytest

from edulora.data.schema import record_from_dict
from edulora.evaluation.judges import judge_records, load_judges
from edulora.evaluation.mining import JUDGE_THRESHOLD, JUDGED_FAILURES, failures, judged_failures, mine_pairs

from test_serving_support import request_as, tiny_engine, tiny_runs  # noqa: F401  (fixtures)

TELLING = "6 x 7 is 42, so the answer is 42."
PRAISE = "Good job!"
GUIDING = "Let's check: what is 6 x 6, and what do you add to get 6 x 7?"


def keyed(question: str = "What is 6 x 7? I think it is 48.", answer: str = "42"):
    return record_from_dict({"messages": [{"role": "user", "content": question},
                                          {"role": "assistant", "content": "What is 6 x 6, and what is one more 6?"}],
                             "metadata": {"answer": answer, "subject": "mathematics"}})


def verdicts(*replies: str):
    record = keyed()
    return dict(zip(replies, judge_records(list(replies), [record] * len(replies)), strict=True))


def test_a_reply_the_judges_are_sure_fails_is_a_failure_with_its_probability():
    judged = verdicts(TELLING, PRAISE, GUIDING)
    record = keyed()
    telling = judged_failures(judged[TELLING])
    assert "judged_reveals_answer" in telling and telling["judged_reveals_answer"] >= JUDGE_THRESHOLD
    assert {"judged_no_guidance", "judged_not_actionable"} <= set(judged_failures(judged[PRAISE]))
    assert judged_failures(judged[GUIDING]) == {}
    # Rules and judges together, most serious first; without a verdict only the rules speak.
    assert failures(TELLING, record, judged[TELLING])[:2] == ["leak", "judged_reveals_answer"]
    assert not set(failures(PRAISE, record)) & set(JUDGED_FAILURES)
    assert set(failures(PRAISE, record, judged[PRAISE])) >= {"judged_no_guidance", "judged_not_actionable"}
    # A verdict less sure than the threshold does not fail the reply.
    unsure = judged[PRAISE]["providing_guidance"].probabilities["No"]
    assert "judged_no_guidance" not in judged_failures(judged[PRAISE], threshold=unsure + 1e-4)


def test_mined_pairs_record_why_the_judges_rejected_a_reply(tiny_runs):  # noqa: F811
    from edulora.tutor import Tutor

    tutor = Tutor.load(tiny_runs["math"])
    records = [keyed(f"What is 6 x {n}? I think it is {6 * n + 1}.", str(6 * n)) for n in range(3, 9)]
    judges = load_judges()
    mined = mine_pairs(tutor, records, samples=2, max_new_tokens=8, judges=judges)
    plain = mine_pairs(tutor, records, samples=2, max_new_tokens=8)
    assert mined.judged and "judged_no_guidance" in mined.summary()
    assert not plain.judged and "judged_" not in plain.summary()
    by_judges = [p for p in mined.pairs if set(p.extra["failures"]) & set(JUDGED_FAILURES)]
    assert by_judges, "the tiny model's random replies give no guidance the judges can see"
    for pair in by_judges:
        # The recorded reason is the judges' own verdict on the rejected reply, above the threshold.
        record = next(r for r in records if r.metadata.answer == pair.metadata.answer)
        [verdict] = judge_records([pair.rejected], [record], judges=judges)
        assert pair.extra["judged"] == pytest.approx(judged_failures(verdict), abs=1e-3)
        assert set(pair.extra["judged"]) == set(pair.extra["failures"]) & set(JUDGED_FAILURES)
    for pair in plain.pairs:
        assert "judged" not in pair.extra and not set(pair.extra["failures"]) & set(JUDGED_FAILURES)


def test_the_teacher_pages_flags_carry_the_judges_verdicts_beside_the_rules():
    from edulora.data.schema import Metadata
    from edulora.serving.flags import LABELS, reply_flags

    question = [{"role": "user", "content": "What is 6 x 7? I think it is 48."}]
    meta, judges = Metadata(extra={"answer": "42"}), load_judges()

    def codes(reply, with_judges=True):
        return {f["code"]: f for f in reply_flags(reply, question, meta, judges if with_judges else None)}

    telling = codes(TELLING)
    assert {"reveals_answer", "judged_reveals_answer"} <= set(telling)  # the rule's flag and the judge's, side by side
    flag = telling["judged_reveals_answer"]
    assert flag["label"] == LABELS["judged_reveals_answer"] == "may reveal the answer"
    assert 0.5 <= flag["probability"] <= 1 and f"{flag['probability']:.2f}" in flag["evidence"]
    assert {"judged_little_guidance", "judged_not_actionable"} <= set(codes(PRAISE))
    assert not [c for c in codes(GUIDING) if c.startswith("judged_")]
    assert not [c for c in codes(TELLING, with_judges=False) if c.startswith("judged_")]


def test_judged_flags_are_computed_once_when_the_reply_is_stored_not_per_review(tiny_engine, tmp_path):  # noqa: F811
    from edulora.evaluation.judges import Judges
    from edulora.serving.feedback import FeedbackStore
    from edulora.serving.flags import judged_flags
    from edulora.serving.router import Router
    from edulora.serving.server import TutorServer
    from edulora.serving.service import TutorService

    class Counted(Judges):
        calls = 0

        def predict(self, *args, **kwargs):
            Counted.calls += 1
            return super().predict(*args, **kwargs)

    shipped = load_judges()
    judges = Counted(shipped.heads, shipped.scaling, shipped.info)
    store = FeedbackStore(tmp_path / "feedback.sqlite3")
    service = TutorService(tiny_engine, Router(list(tiny_engine.adapters.values()), use_embeddings=False), store,
                           judges=judges)
    server = TutorServer(service, "127.0.0.1", 0).start()
    try:
        messages = [{"role": "user", "content": "What is 6 times 7?"}]
        asked = {"model": "math", "messages": messages, "max_tokens": 8, "metadata": {"answer": "42"}}
        status, reply = request_as(server, "", "POST", "/v1/chat/completions", asked)
        assert status == 200 and Counted.calls == 1
        flags = reply["edulora"]["flags"]
        judged = [f for f in flags if f["code"].startswith("judged_")]
        text = reply["choices"][0]["message"]["content"]
        assert judged and judged == judged_flags(text, messages, "42", shipped)  # random text guides nobody
        rating = {"completion_id": reply["id"], "feedback_token": reply["edulora"]["feedback_token"], "rating": -1}
        assert request_as(server, "", "POST", "/v1/feedback", rating)[0] == 200
        for _ in range(2):  # the review page reads the stored verdicts
            [item] = request_as(server, "", "GET", "/v1/feedback")[1]["data"]
            assert item["flags"] == flags
        assert Counted.calls == 1
    finally:
        server.stop()
        store.close()
