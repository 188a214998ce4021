"""The feedback database and ``edulora feedback export``."""

from __future__ import annotations

import json
import sqlite3

from edulora.cli import main
from edulora.data.formats import validate_any
from edulora.serving.feedback import FeedbackItem, FeedbackStore, export_feedback

QUESTION = [{"role": "user", "content": "What is 3 times 4?"}]
META = {"subject": "mathematics", "grade_level": "elementary", "teaching_style": "socratic"}


def item(cid: str, reply: str, messages=QUESTION, status="approved", **kw) -> FeedbackItem:
    """A feedback row; approved unless told otherwise, since export takes approved rows only."""
    return FeedbackItem(completion_id=cid, model="math", messages=messages, reply=reply, adapter="math", **META,
                        status=status, **kw)


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
    assert main(["feedback", "export", str(out), "--db", str(db), "--pairs", str(pairs)]) == 0
    assert "5 feedback rows -> 3 SFT records" in capsys.readouterr().out
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0] == {"instruction": "What is 3 times 4?", "response": "It is 12.", "metadata": META}
    assert records[1]["response"] == "What is 3 + 3 + 3 + 3?"  # the teacher's correction, not the model's reply
    assert records[2]["messages"][-1] == {"role": "assistant", "content": "Cells divide."}
    assert validate_any(out).ok  # our own data checker accepts the export
    exported = [json.loads(line) for line in pairs.read_text().splitlines()]
    chosen_rejected = {(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in exported}
    assert chosen_rejected == {("What is 3 + 3 + 3 + 3?", "Maybe 10?"), ("It is 12.", "It is 7.")}
    assert all(p["prompt"] == QUESTION and p["metadata"] == META for p in exported)


def test_export_without_a_database_is_a_clear_error(tmp_path, capsys):
    assert main(["feedback", "export", str(tmp_path / "o.jsonl"), "--db", str(tmp_path / "none.db")]) == 2
    assert "no feedback database" in capsys.readouterr().err


def test_export_scrubs_students_details_unless_raw(tmp_path, capsys):
    db = tmp_path / "fb.sqlite3"
    store = FeedbackStore(db)
    introduction = [{"role": "user", "content": "Hi, my name is Ana. Email me at ana.lopez@example.com: what is 3x4?"}]
    store.record(item("p", "Good question, Ana! Count 3 groups of 4.", messages=introduction, rating=1))
    store.close()
    out, raw = tmp_path / "sft.jsonl", tmp_path / "raw.jsonl"
    assert main(["feedback", "export", str(out), "--db", str(db)]) == 0
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    text = json.dumps(record)
    assert "Ana" not in text and "ana.lopez@example.com" not in text and "[EMAIL]" in text
    assert "3 personal details replaced" in capsys.readouterr().out
    assert main(["feedback", "export", str(raw), "--db", str(db), "--raw"]) == 0
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
    assert record["metadata"] == {**META, "answer": "12", "solution": "3 x 4 = 12"}  # trains grounded, like it served
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
    assert main(["feedback", "export", "/dev/null", "--db", str(db)]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert main(["feedback", "export", str(tmp_path / "no" / "such" / "sft.jsonl"), "--db", str(db)]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["feedback", "export", str(tmp_path / "sft.jsonl"), "--db", str(db), "--pairs", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err and not (tmp_path / "sft.jsonl").exists()
