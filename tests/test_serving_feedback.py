"""The feedback database and ``edulora feedback export``."""

from __future__ import annotations

import json
import sqlite3

from edulora.cli import main
from edulora.data.formats import validate_any
from edulora.serving.feedback import FeedbackItem, FeedbackStore

QUESTION = [{"role": "user", "content": "What is 3 times 4?"}]
META = {"subject": "mathematics", "grade_level": "elementary", "teaching_style": "socratic"}


def item(cid: str, reply: str, messages=QUESTION, **kw) -> FeedbackItem:
    return FeedbackItem(completion_id=cid, model="math", messages=messages, reply=reply, adapter="math", **META, **kw)


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
