"""The replies students received, kept beside the feedback so that their teacher can rate and correct them.

A reply asked with a student's token (``--student TEACHER=TOKEN``) is written, once it is complete, to
the ``received`` table of the feedback database: the conversation, the reply, its pedagogy flags, the
teacher's key and the answering adapter's metadata, under the teacher's name (``owner``). Only the
client holding a reply's ``feedback_token`` can rate it through ``/v1/feedback``, and a student's client
never rates; this table is how the teacher reaches what their students actually saw. Like the
feedback rows, it stays on the server's machine: no student's name is asked for or stored, and
``edulora feedback export`` scrubs personal details from whatever a teacher's rating turns into
training data. The newest ``limit`` replies are kept; older ones are dropped as new ones arrive.

SQLite in WAL mode, as the feedback store, on a connection of its own to the same file.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .database import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS received (
    completion_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,       -- the student's teacher (their --student TEACHER name)
    created_at REAL NOT NULL,
    info TEXT NOT NULL,        -- JSON: who answered (model, adapter, subject, grade level, style); no feedback token
    messages TEXT NOT NULL,    -- JSON: the conversation the reply answered
    reply TEXT NOT NULL,
    flags TEXT NOT NULL,       -- JSON: the reply's pedagogy flags
    answer TEXT,               -- the teacher's key the tutor was given
    solution TEXT
);
CREATE INDEX IF NOT EXISTS received_by_owner ON received (owner, created_at);
CREATE INDEX IF NOT EXISTS received_by_time ON received (created_at);
"""

#: What a reply's ``info`` keeps: who answered it and how; the feedback token (the client's secret) is not kept.
INFO_KEYS = ("model", "adapter", "kind", "subject", "grade_level", "teaching_style")


@dataclass(frozen=True)
class ReceivedReply:
    """One reply a student received, as the server produced it."""

    completion_id: str
    owner: str
    created_at: float
    info: dict[str, Any]
    messages: list[dict[str, str]]
    reply: str
    flags: list[dict[str, Any]]
    answer: str | None = None
    solution: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"completion_id": self.completion_id, "owner": self.owner, "created_at": self.created_at,
                **self.info, "messages": self.messages, "reply": self.reply, "flags": self.flags,
                "answer": self.answer, "solution": self.solution}


def _setup(db: sqlite3.Connection) -> None:
    # WAL with NORMAL stays consistent on a crash and loses at most the last replies on a power cut;
    # FULL would sync the disk once per reply a student receives.
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_SCHEMA)


class ReceivedLog(Database):
    """The ``received`` table of the feedback database at ``path`` (one connection, serialized by a lock)."""

    def __init__(self, path: str | Path, limit: int = 100_000):
        super().__init__(path, _setup)
        self.limit = limit

    def add(self, reply: ReceivedReply) -> None:
        """Keep ``reply``; the oldest beyond ``limit`` go."""
        row = (reply.completion_id, reply.owner, reply.created_at or time.time(),
               json.dumps({k: reply.info.get(k) for k in INFO_KEYS}, ensure_ascii=False),
               json.dumps(reply.messages, ensure_ascii=False), reply.reply,
               json.dumps(reply.flags, ensure_ascii=False), reply.answer, reply.solution)
        with self._connect() as db, db:  # the second: committed, or rolled back on an error
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO received VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            # Through the time index: the oldest row still kept is found without reading the table.
            db.execute("DELETE FROM received WHERE created_at <= "
                       "(SELECT created_at FROM received ORDER BY created_at DESC LIMIT 1 OFFSET ?)", (self.limit,))

    def replies(self, owner: str | None = None, completion_id: str | None = None,
                most: int = 1000) -> list[ReceivedReply]:
        """The newest ``most`` kept replies, newest first: ``owner``'s students' only when given (None: everyone's)."""
        given = {**({"owner": owner} if owner is not None else {}),
                 **({"completion_id": completion_id} if completion_id is not None else {})}
        where = " AND ".join(f"{k} = ?" for k in given)
        with self._connect() as db:
            rows = db.execute(f"SELECT completion_id, owner, created_at, info, messages, reply, flags, answer, "
                              f"solution FROM received {'WHERE ' + where if where else ''} "
                              "ORDER BY created_at DESC, rowid DESC LIMIT ?", [*given.values(), most]).fetchall()
        return [ReceivedReply(cid, who, at, json.loads(info), json.loads(messages), reply, json.loads(flags),
                              answer, solution)
                for cid, who, at, info, messages, reply, flags, answer, solution in rows]

    def get(self, completion_id: str) -> ReceivedReply | None:
        found = self.replies(completion_id=completion_id)
        return found[0] if found else None
