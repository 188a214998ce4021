"""The feedback database and ``edulora feedback export``."""

from __future__ import annotations

import json
import sqlite3

from edulora.cli import main
from edulora.data.formats import validate_any
from edulora.errors import EduloraError
from edulora.serving.feedback import PROVENANCE, SCHEMA_VERSION, FeedbackItem, FeedbackStore, export_feedback

QUESTION = [{"role": "user", "content": "What is 3 times 4?"}]
META = {"subject": "mathematics", "grade_level": "elementary", "teaching_style": "socratic"}


def item(cid: str, reply: str, messages=QUESTION, status="approved", **kw) -> FeedbackItem:
    """A feedback row; approved unless told otherwise, since export takes approved rows only."""
    return FeedbackItem(completion_id=cid, model="math", messages=messages, reply=reply, adapter="math", **META,
                        status=status, **kw)


def content(record: dict) -> dict:
    """A record without the metadata saying who wrote and approved it (tested on its own)."""
    return {**record, "metadata": {k: v for k, v in record["metadata"].items() if k not in PROVENANCE}}


def fill(db) -> None:
    store = FeedbackStore(db)
    store.record(item("a", "It is 12.", rating=1))
    store.record(item("b", "It is 7.", rating=-1, comment="added instead of multiplied"))
    store.record(item("c", "Maybe 10?", correction="What is 3 + 3 + 3 + 3?"))
    store.record(item("d", "Cells divide.", messages=[*QUESTION, {"role": "assistant", "content": "12"},
                                                     {"role": "user", "content": "Why?"}], rating=1))
    store.record(item("e", "Unrated."))
    store.close()


def test_store_uses_wal_updates_in_place_and_survives_reopening(tmp_path):
    db = tmp_path / "fb.sqlite3"
    store = FeedbackStore(db)
    first = store.record(item("x", "It is 12.", rating=-1))
    assert store.record(item("x", "It is 12.", rating=1, comment="fine after all")) == first
    store.close()
    reopened = FeedbackStore(db)
    [saved] = list(reopened.items())
    assert (saved.rating, saved.comment, saved.subject) == (1, "fine after all", "mathematics")
    reopened.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_export_writes_schema_records_and_preference_pairs(tmp_path, capsys):
    db = tmp_path / "fb.sqlite3"
    fill(db)
    out, pairs = tmp_path / "sft.jsonl", tmp_path / "pairs.jsonl"
    assert main(["feedback", "export", "--out", str(out), "--db", str(db), "--pairs", str(pairs)]) == 0
    assert "5 feedback rows -> 3 SFT records" in capsys.readouterr().out
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert content(records[0]) == {"instruction": "What is 3 times 4?", "response": "It is 12.", "metadata": META}
    assert records[1]["response"] == "What is 3 + 3 + 3 + 3?"  # the teacher's correction, not the model's reply
    assert records[2]["messages"][-1] == {"role": "assistant", "content": "Cells divide."}
    assert validate_any(out).ok  # our own data checker accepts the export
    exported = [json.loads(line) for line in pairs.read_text().splitlines()]
    chosen_rejected = {(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in exported}
    assert chosen_rejected == {("What is 3 + 3 + 3 + 3?", "Maybe 10?"), ("It is 12.", "It is 7.")}
    assert all(p["prompt"] == QUESTION and content(p)["metadata"] == META for p in exported)


def test_export_without_a_database_is_a_clear_error(tmp_path, capsys):
    assert main(["feedback", "export", "--out", str(tmp_path / "o.jsonl"), "--db", str(tmp_path / "none.db")]) == 2
    assert "no feedback database" in capsys.readouterr().err


def test_export_scrubs_students_details_unless_raw(tmp_path, capsys):
    db = tmp_path / "fb.sqlite3"
    store = FeedbackStore(db)
    introduction = [{"role": "user", "content": "Hi, my name is Ana. Email me at ana.lopez@example.com: what is 3x4?"}]
    store.record(item("p", "Good question, Ana! Count 3 groups of 4.", messages=introduction, rating=1))
    store.close()
    out, raw = tmp_path / "sft.jsonl", tmp_path / "raw.jsonl"
    assert main(["feedback", "export", "--out", str(out), "--db", str(db)]) == 0
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    text = json.dumps(record)
    assert "Ana" not in text and "ana.lopez@example.com" not in text and "[EMAIL]" in text
    assert "3 personal details replaced" in capsys.readouterr().out
    assert main(["feedback", "export", "--out", str(raw), "--db", str(db), "--raw"]) == 0
    assert "ana.lopez@example.com" in raw.read_text() and "Good question, Ana!" in raw.read_text()


def test_export_keeps_the_key_and_skips_empty_replies(tmp_path):
    db = tmp_path / "fb.sqlite3"
    store = FeedbackStore(db)
    store.record(item("k", "How many groups of 4 are there?", rating=1, answer="12", solution="3 x 4 = 12"))
    store.record(item("empty", "   ", rating=1))
    store.close()
    out = tmp_path / "sft.jsonl"
    counts = export_feedback(db, out)
    assert (counts.rows, counts.sft) == (2, 1)
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert content(record)["metadata"] == {**META, "answer": "12", "solution": "3 x 4 = 12"}  # trains grounded, like it served
    assert validate_any(out).ok


def test_a_schema_1_database_gains_the_key_columns(tmp_path):
    db = tmp_path / "old.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE feedback (id INTEGER PRIMARY KEY, completion_id TEXT NOT NULL UNIQUE, "
                     "created_at REAL NOT NULL, updated_at REAL NOT NULL, adapter TEXT, model TEXT NOT NULL, "
                     "subject TEXT, grade_level TEXT, teaching_style TEXT, messages TEXT NOT NULL, "
                     "reply TEXT NOT NULL, rating INTEGER, comment TEXT, correction TEXT)")
        conn.execute("INSERT INTO feedback VALUES (1, 'old', 0, 0, 'math', 'math', NULL, NULL, NULL, ?, 'It is 12.', "
                     "1, NULL, NULL)", (json.dumps(QUESTION),))
        conn.execute("PRAGMA user_version=1")
    store = FeedbackStore(db)
    store.record(item("new", "Count by threes.", answer="12"))
    assert [(i.completion_id, i.answer) for i in store.items()] == [("old", None), ("new", "12")]
    store.close()


def test_export_never_replaces_a_device_or_invents_a_folder(tmp_path, capsys):
    db = tmp_path / "fb.sqlite3"
    fill(db)
    assert main(["feedback", "export", "--out", "/dev/null", "--db", str(db)]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert main(["feedback", "export", "--out", str(tmp_path / "no" / "such" / "sft.jsonl"), "--db", str(db)]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["feedback", "export", "--out", str(tmp_path / "sft.jsonl"), "--db", str(db), "--pairs", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err and not (tmp_path / "sft.jsonl").exists()


def test_only_approved_items_are_exported_unless_all(tmp_path, capsys):
    db = tmp_path / "fb.sqlite3"
    store = FeedbackStore(db)
    store.record(item("ok", "How many groups of 4 are there?", rating=1, status="pending"))
    store.record(item("no", "The Earth is flat.", rating=1, status="pending"))
    store.record(item("new", "Count the rows.", rating=1, status="pending"))
    rows = {i.completion_id: i.id for i in store.items()}
    store.review(rows["ok"], "approved", "ms-lee")
    store.review(rows["no"], "rejected", "ms-lee")
    store.close()
    out, everything = tmp_path / "sft.jsonl", tmp_path / "all.jsonl"
    assert main(["feedback", "export", "--out", str(out), "--db", str(db)]) == 0
    printed = capsys.readouterr().out
    assert "1 feedback rows -> 1 SFT records" in printed and "2 rows not approved, left out (--all" in printed
    text = out.read_text()
    assert "How many groups of 4" in text and "flat" not in text and "Count the rows" not in text
    assert main(["feedback", "export", "--out", str(everything), "--db", str(db), "--all"]) == 0
    assert "3 feedback rows -> 3 SFT records" in capsys.readouterr().out
    assert validate_any(out).ok and validate_any(everything).ok


def test_export_summary_names_what_was_left_out(tmp_path):
    db = tmp_path / "fb.sqlite3"
    store = FeedbackStore(db)
    store.record(item("a", "It is 12.", rating=1))
    store.record(item("b", "It is 13.", rating=1, status="pending"))
    store.close()
    counts = export_feedback(db, tmp_path / "sft.jsonl")
    assert (counts.rows, counts.sft, counts.unapproved) == (1, 1, 1)
    assert "1 rows not approved, left out (--all includes them)" in counts.summary("sft.jsonl", None, False)


def test_pairs_carry_the_flags_that_made_a_reply_the_rejected_one(tmp_path):
    db = tmp_path / "fb.sqlite3"
    wrong = [{"code": "wrong_answer", "label": "asserted a wrong answer", "evidence": "The answer is 7."}]
    store = FeedbackStore(db)
    store.record(item("w", "The answer is 7.", rating=-1, correction="What is 3 + 3 + 3 + 3?", flags=wrong,
                      answer="12"))
    store.record(item("g", "What do 3 groups of 4 make?", rating=1))
    store.close()
    pairs = tmp_path / "pairs.jsonl"
    export_feedback(db, tmp_path / "sft.jsonl", pairs)
    exported = [json.loads(line) for line in pairs.read_text().splitlines()]
    by_chosen = {p["chosen"][0]["content"]: p for p in exported}
    assert by_chosen["What is 3 + 3 + 3 + 3?"]["rejected_flags"] == wrong
    assert by_chosen["What do 3 groups of 4 make?"]["rejected"][0]["content"] == "The answer is 7."
    assert by_chosen["What do 3 groups of 4 make?"]["rejected_flags"] == wrong


def test_two_teachers_rate_one_reply_in_rows_of_their_own_and_export_it_once(tmp_path):
    db = tmp_path / "fb.sqlite3"
    store = FeedbackStore(db)
    first = store.record(item("r", "It is 12.", rating=1, teacher="ana"))
    second = store.record(item("r", "It is 12.", rating=1, teacher="ben"))
    assert first != second
    assert store.record(item("r", "It is 12.", rating=-1, teacher="ben")) == second  # ben changes only his own
    assert {i.teacher: i.rating for i in store.items()} == {"ana": 1, "ben": -1}
    store.record(item("r", "It is 12.", rating=1, teacher="ben"))
    store.close()
    out = tmp_path / "sft.jsonl"
    assert export_feedback(db, out).sft == 1  # the same record from two teachers is one record


def test_a_review_is_stored_and_a_later_change_by_the_rater_reopens_it(tmp_path):
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    row = store.record(item("x", "It is 12.", rating=-1, correction="What is 3 x 4?", status="pending"))
    reviewed = store.review(row, "approved", "ms-lee", correction="What are 3 groups of 4?")
    assert (reviewed.status, reviewed.reviewed_by, reviewed.correction) == ("approved", "ms-lee",
                                                                           "What are 3 groups of 4?")
    store.record(item("x", "It is 12.", rating=-1, correction="What are 3 groups of 4?", status="pending"))
    assert store.item(row).status == "approved"  # the same feedback again changes nothing
    store.record(item("x", "It is 12.", rating=1, correction="What are 3 groups of 4?", status="pending"))
    assert store.item(row).status == "pending"
    for bad in (lambda: store.review(row, "maybe", "ms-lee"), lambda: store.review(999, "approved", "ms-lee")):
        try:
            bad()
        except (EduloraError, KeyError):
            continue
        raise AssertionError("a bad review was accepted")
    store.close()


def test_a_schema_2_database_becomes_one_row_per_teacher(tmp_path):
    db = tmp_path / "v2.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE feedback (id INTEGER PRIMARY KEY, completion_id TEXT NOT NULL UNIQUE, "
                     "created_at REAL NOT NULL, updated_at REAL NOT NULL, adapter TEXT, model TEXT NOT NULL, "
                     "subject TEXT, grade_level TEXT, teaching_style TEXT, messages TEXT NOT NULL, "
                     "reply TEXT NOT NULL, rating INTEGER, comment TEXT, correction TEXT, answer TEXT, solution TEXT)")
        conn.execute("INSERT INTO feedback VALUES (7, 'old', 0, 0, 'math', 'math', NULL, NULL, NULL, ?, 'It is 12.', "
                     "1, 'ok', NULL, '12', NULL)", (json.dumps(QUESTION),))
        conn.execute("PRAGMA user_version=2")
    store = FeedbackStore(db)
    store.record(item("old", "It is 12.", rating=-1, teacher="ana"))  # the same reply, another teacher
    old, new = store.items()
    assert (old.id, old.teacher, old.rating, old.comment, old.answer, old.status) == (7, "", 1, "ok", "12", "pending")
    assert (new.teacher, new.rating) == ("ana", -1)
    store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_flags_name_what_a_teacher_should_correct():
    from edulora.data.schema import Metadata, TeachingStyle
    from edulora.serving.flags import reply_flags

    question = [{"role": "user", "content": "A rectangle is 4 cm wide and 7 cm long. How do I find its area?"}]
    socratic = Metadata(teaching_style=TeachingStyle.SOCRATIC, extra={"answer": "28"})

    def codes(reply, meta=socratic):
        return [f["code"] for f in reply_flags(reply, question, meta)]

    # The reply the issue saw: a wrong result stated outright, and no question left for the student.
    assert codes("Multiply the sides: 10 x 2 = 20. The answer is 80 cm^2.") == ["wrong_answer", "no_question"]
    assert codes("Multiply 4 by 7. The area is 28 square centimetres.") == ["reveals_answer", "no_question"]
    assert codes("What do you get when you multiply 4 by 7?") == []
    # Not Socratic: no question is fine.
    assert codes("The area is 28.", Metadata(extra={"answer": "28"})) == ["reveals_answer"]
    assert codes("   ") == []
    [flag] = reply_flags("The area is 28.", question, Metadata(extra={"answer": "28"}))
    assert flag == {"code": "reveals_answer", "label": "gave the answer away", "evidence": "The area is 28."}


# ----- who wrote and who approved each training example; every exported text scrubbed -----------------


def test_an_edited_better_reply_is_attributed_to_its_editor_not_its_first_author(tmp_path):
    db = tmp_path / "fb.sqlite3"
    store = FeedbackStore(db)
    row = store.record(item("x", "It is 7.", rating=-1, correction="What is 3 x 4?", status="pending", teacher="ana",
                            owner="ana"))
    assert store.item(row).correction_by == "ana"
    store.review(row, "approved", "ben", correction="  What is 3 x 4?  ")  # the same text: still Ana's
    assert store.item(row).correction_by == "ana"
    edited = store.review(row, "approved", "ben", correction="How many are 3 groups of 4?")
    assert (edited.correction_by, edited.reviewed_by) == ("ben", "ben")
    store.close()
    out, pairs = tmp_path / "sft.jsonl", tmp_path / "pairs.jsonl"
    export_feedback(db, out, pairs)
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    [pair] = [json.loads(line) for line in pairs.read_text().splitlines()]
    for meta in (record["metadata"], pair["metadata"]):
        assert (meta["written_by"], meta["approved_by"]) == ("ben", "ben")


def test_export_records_who_wrote_and_who_approved_each_example(tmp_path):
    db = tmp_path / "fb.sqlite3"
    store = FeedbackStore(db)
    good = store.record(item("g", "How many groups of 4?", rating=1, status="pending", teacher="ana", owner="ana"))
    again = store.record(item("g", "How many groups of 4?", rating=1, status="pending", teacher="cy", owner="ana"))
    fixed = store.record(item("c", "It is 7.", correction="Count 3 groups of 4.", status="pending", teacher="ana",
                              owner="ana"))
    for row in (good, again, fixed):
        store.review(row, "approved", "rita")
    store.close()
    out = tmp_path / "sft.jsonl"
    export_feedback(db, out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["metadata"]["written_by"] for r in records] == ["model:math", "ana"]
    assert records[0]["metadata"]["rated_by"] == "ana, cy"  # one record, both raters named
    assert {r["metadata"]["approved_by"] for r in records} == {"rita"}
    assert validate_any(out).ok


def test_export_scrubs_the_teachers_key_answer_and_solution(tmp_path):
    db = tmp_path / "fb.sqlite3"
    store = FeedbackStore(db)
    store.record(item("k", "What could you ask her?", rating=1, answer="call Fatima Khan at 555-123-4567",
                      solution="Fatima's email is fatima.k@example.com"))
    store.close()
    out = tmp_path / "sft.jsonl"
    export_feedback(db, out)
    text = out.read_text()
    for secret in ("Fatima", "Khan", "555-123-4567", "fatima.k@example.com"):
        assert secret not in text, text
    assert json.loads(text)["metadata"]["answer"] == "call [NAME] at [PHONE]"


def test_export_scrubs_names_in_a_teachers_better_reply(tmp_path):
    db = tmp_path / "fb.sqlite3"
    store = FeedbackStore(db)
    store.record(item("n", "It is 12.", rating=-1, correction="Hi Fatima Khan, how many groups of 4 are there?"))
    store.record(item("m", "It is 12.", rating=-1, correction="Fatima, can you count by fours?"))
    store.close()
    out, pairs = tmp_path / "sft.jsonl", tmp_path / "pairs.jsonl"
    export_feedback(db, out, pairs)
    for path in (out, pairs):
        assert "Fatima" not in path.read_text() and "Khan" not in path.read_text(), path.read_text()


def test_a_schema_3_database_gains_owners_and_authors(tmp_path):
    db = tmp_path / "v3.sqlite3"
    store = FeedbackStore(db)
    store.record(item("a", "It is 12.", rating=-1, correction="Count by fours.", teacher="ana"))
    store.close()
    with sqlite3.connect(db) as conn:  # back to schema 3: no owner, no author of the better reply
        conn.execute("ALTER TABLE feedback DROP COLUMN owner")
        conn.execute("ALTER TABLE feedback DROP COLUMN correction_by")
        conn.execute("PRAGMA user_version=3")
    store = FeedbackStore(db)
    [old] = store.items()
    assert (old.owner, old.correction_by) == ("ana", "ana")  # the rater received the reply: theirs
    assert [i.id for i in store.items(owner="ana")] == [old.id] and not list(store.items(owner="ben"))
    store.close()
