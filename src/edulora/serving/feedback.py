"""Teachers' ratings and corrections of tutor replies, kept in SQLite, exported as training data.

One row per reply (keyed by its completion id), updated in place when the teacher changes the
rating or adds a comment or a better reply. SQLite in WAL mode lets the server write while an
export reads, and the file survives restarts. The conversation, the reply, the teacher's key and
the adapter's subject, grade level and teaching style are the server's record of the reply it
produced (see ``TutorService.rate``), never taken from the browser.

Export turns the rows into two files:

* SFT records in the project's data schema: a corrected reply (the teacher's version) or a
  reply rated 👍, as ``{"instruction", "response", "metadata"}`` for a single question or
  ``{"messages", "metadata"}`` for a conversation with history;
* preference pairs in TRL's conversational format, ``{"prompt": [messages], "chosen":
  [assistant], "rejected": [assistant], "metadata"}``: teacher's correction over the model's
  reply, and a 👍 reply over a 👎 reply to the same conversation.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.io import atomic_text_writer
from ..data.pipelines import check_output_file
from ..data.privacy import Scrubber, intro_names
from ..data.schema import Dialogue, Example, Turn, parse_metadata
from ..errors import EduloraError

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    completion_id TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    adapter TEXT,              -- adapter name; NULL for the base model
    model TEXT NOT NULL,       -- the model id the API answered as
    subject TEXT,
    grade_level TEXT,
    teaching_style TEXT,
    messages TEXT NOT NULL,    -- JSON: the conversation the reply answered (ends with a user turn)
    reply TEXT NOT NULL,
    rating INTEGER,            -- 1 (good), -1 (bad) or NULL (not rated)
    comment TEXT,
    correction TEXT,           -- the teacher's better reply
    answer TEXT,               -- the teacher's key the tutor was given (schema 2)
    solution TEXT
);
"""


@dataclass
class FeedbackItem:
    completion_id: str
    model: str
    messages: list[dict[str, str]]
    reply: str
    adapter: str | None = None
    subject: str | None = None
    grade_level: str | None = None
    teaching_style: str | None = None
    rating: int | None = None
    comment: str | None = None
    correction: str | None = None
    #: The teacher's key the reply was written with; exported, so training sees the same key.
    answer: str | None = None
    solution: str | None = None

    @property
    def metadata(self) -> dict[str, str]:
        raw = {"subject": self.subject, "grade_level": self.grade_level, "teaching_style": self.teaching_style,
               "answer": self.answer, "solution": self.solution}
        return {k: v for k, v in raw.items() if v}


class FeedbackStore:
    """A thread-safe handle on the feedback database (one connection, serialized by a lock)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise EduloraError(f"{self.path}: written by a newer edulora (schema {version}); upgrade edulora")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(feedback)")}
            for name in ("answer", "solution"):
                if name not in columns:  # a schema-1 database: no key columns yet
                    self._db.execute(f"ALTER TABLE feedback ADD COLUMN {name} TEXT")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as err:
            raise EduloraError(f"{self.path}: not a usable feedback database ({err})") from None
        self._lock = threading.Lock()

    def record(self, item: FeedbackItem) -> int:
        """Insert or update the feedback for one reply; returns its row id."""
        now = time.time()
        with self._lock:
            self._db.execute(
                """INSERT INTO feedback (completion_id, created_at, updated_at, adapter, model, subject, grade_level,
                       teaching_style, messages, reply, rating, comment, correction, answer, solution)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(completion_id) DO UPDATE SET updated_at=excluded.updated_at, rating=excluded.rating,
                       comment=excluded.comment, correction=excluded.correction""",
                (item.completion_id, now, now, item.adapter, item.model, item.subject, item.grade_level,
                 item.teaching_style, json.dumps(item.messages, ensure_ascii=False), item.reply, item.rating,
                 item.comment or None, item.correction or None, item.answer, item.solution))
            return self._db.execute("SELECT id FROM feedback WHERE completion_id = ?",
                                    (item.completion_id,)).fetchone()[0]

    def items(self) -> Iterator[FeedbackItem]:
        with self._lock:
            rows = self._db.execute(
                "SELECT completion_id, model, messages, reply, adapter, subject, grade_level, teaching_style, rating, "
                "comment, correction, answer, solution FROM feedback ORDER BY id").fetchall()
        for row in rows:
            yield FeedbackItem(row[0], row[1], json.loads(row[2]), *row[3:])

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def sft_record(item: FeedbackItem, response: str) -> dict[str, Any]:
    """The reply as a training record in our schema (round-tripped through it, so it validates)."""
    meta = parse_metadata(item.metadata, "feedback metadata")
    turns = [m for m in item.messages if m["role"] != "system"]
    if len(turns) == 1:
        return Example(instruction=turns[0]["content"], response=response, metadata=meta).to_dict()
    dialogue = [Turn(m["role"], m["content"]) for m in item.messages] + [Turn("assistant", response)]
    return Dialogue(turns=dialogue, metadata=meta).to_dict()


def preference_pairs(items: list[FeedbackItem]) -> list[dict[str, Any]]:
    pairs: list[dict[str, Any]] = []

    def pair(item: FeedbackItem, chosen: str, rejected: str) -> None:
        pairs.append({"prompt": item.messages, "chosen": [{"role": "assistant", "content": chosen}],
                      "rejected": [{"role": "assistant", "content": rejected}], "metadata": item.metadata})

    for item in items:
        if item.correction and item.correction.strip() and item.correction.strip() != item.reply.strip():
            pair(item, item.correction, item.reply)
    # Replies to the very same conversation, one rated up and one down, also say which is better.
    by_prompt: dict[str, list[FeedbackItem]] = {}
    for item in items:
        by_prompt.setdefault(json.dumps(item.messages, sort_keys=True), []).append(item)
    for group in by_prompt.values():
        good = [i for i in group if i.rating == 1]
        bad = [i for i in group if i.rating == -1]
        for g in good:
            for b in bad:
                if g.reply.strip() and b.reply.strip() and g.reply.strip() != b.reply.strip():
                    pair(g, g.reply, b.reply)
    return pairs


def scrubbed(item: FeedbackItem, scrubber: Scrubber) -> tuple[FeedbackItem, int]:
    """The item with students' personal details replaced by placeholders, and how many were replaced.

    A name a student introduces anywhere in the conversation is replaced everywhere in it (the
    tutor's "Good job, Ana!" too).
    """
    texts = [m["content"] for m in item.messages] + [item.reply, item.correction or "", item.comment or ""]
    names = [n for text in texts for n in intro_names(text)]
    replaced = 0

    def clean(text: str | None) -> str | None:
        nonlocal replaced
        if not text:
            return text
        text, counts = scrubber.scrub_text(text, names)
        replaced += sum(counts.values())
        return text

    item = dataclasses.replace(item, messages=[{**m, "content": clean(m["content"])} for m in item.messages],
                               reply=clean(item.reply) or "", correction=clean(item.correction),
                               comment=clean(item.comment))
    return item, replaced


@dataclass
class ExportCounts:
    sft: int
    pairs: int
    rows: int
    #: Personal details replaced by placeholders (0 with ``raw``).
    replaced: int = 0

    def summary(self, out: object, pairs_out: object | None, raw: bool) -> str:
        return (f"{self.rows} feedback rows -> {self.sft} SFT records in {out}"
                + (f", {self.pairs} preference pairs in {pairs_out}" if pairs_out else "")
                + ("; students' text kept as written (--raw)" if raw else f"; {self.replaced} personal details replaced"))


def default_feedback_db() -> Path:
    from ..modeling import cache_dir

    return cache_dir() / "feedback.sqlite3"


def export_feedback(db: str | Path | None, out: str | Path, pairs_out: str | Path | None = None, *,
                    raw: bool = False) -> ExportCounts:
    """SFT records (rated 👍 or corrected replies) to ``out``, preference pairs to ``pairs_out``.

    ``db`` None is the default database. Students' personal details (names, e-mail, phone,
    addresses, IDs) are scrubbed unless ``raw`` (a teacher's own review; never train on that).
    """
    for target in (out, pairs_out):
        if target is not None:
            check_output_file(target)  # never replace a device, a pipe or a folder; never invent folders
    path = Path(db or default_feedback_db()).expanduser()
    if not path.is_file():
        raise EduloraError(f"{path}: no feedback database (serve with --feedback-db to collect one)")
    store = FeedbackStore(path)
    try:
        items = list(store.items())
    finally:
        store.close()
    replaced = 0
    if not raw:
        scrubber = Scrubber()
        cleaned = [scrubbed(i, scrubber) for i in items]
        items, replaced = [i for i, _ in cleaned], sum(n for _, n in cleaned)
    # An empty reply teaches nothing (and is not a valid record).
    sft = [sft_record(i, i.correction if i.correction else i.reply) for i in items
           if (i.correction and i.correction.strip()) or (i.rating == 1 and i.reply.strip())]
    with atomic_text_writer(out) as handle:
        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in sft)
    pairs = preference_pairs(items)
    if pairs_out is not None:
        with atomic_text_writer(pairs_out) as handle:
            handle.writelines(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)
    return ExportCounts(len(sft), len(pairs), len(items), replaced)
