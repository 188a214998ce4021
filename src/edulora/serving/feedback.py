"""Teachers' ratings and corrections of tutor replies, kept in SQLite, exported as training data.

One row per reply and teacher (keyed by completion id and the teacher's name), updated in place
when that teacher changes the rating or adds a comment or a better reply; another teacher's
rating of the same reply is a row of its own, so no one overwrites anyone else's. SQLite in WAL
mode lets the server write while an export reads, and the file survives restarts. The
conversation, the reply, its pedagogy flags, the teacher's key and the subject, grade level and
teaching style are the server's record of the reply it produced (see ``TutorService.rate``),
never taken from the browser.

Nothing becomes training data unreviewed: each row is ``pending`` until a teacher approves it
(optionally editing the better reply) or rejects it in the review view, and a rater's later
change sends it back to ``pending``. Export takes approved rows only unless told ``include_all``.

Each row also knows whose conversation it is (``owner``: the teacher whose token, or whose
student's token, asked; the server shows a teacher only their own) and who wrote the better reply
as it stands (``correction_by``: a reviewer who edits it becomes its author). Exported records say
who wrote and who approved them in their metadata (``written_by``, ``rated_by``, ``approved_by``).

Export turns the rows into two files:

* SFT records in the project's data schema: a corrected reply (the teacher's version) or a
  reply rated good (1), as ``{"instruction", "response", "metadata"}`` for a single question or
  ``{"messages", "metadata"}`` for a conversation with history;
* preference pairs in edulora's pair format (``edulora.data.pairs``: TRL's conversational format,
  ``{"prompt": [messages], "chosen": [assistant], "rejected": [assistant], "metadata"}``, which
  ``training.method=dpo`` trains on): teacher's correction over the model's
  reply, and a reply rated good over one rated bad in the same conversation; ``rejected_flags`` lists the
  pedagogy flags the rejected reply carried (why it lost).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.io import atomic_text_writer
from ..data.outputs import check_outputs
from ..data.pairs import PreferencePair
from ..data.privacy import Scrubber, intro_names
from ..data.schema import Dialogue, Example, Turn, parse_metadata
from ..errors import EduloraError
from .database import Database

SCHEMA_VERSION = 4

#: A review's outcomes; only ``approved`` rows are exported by default.
STATUSES = ("pending", "approved", "rejected")

_COLUMNS = ("completion_id", "teacher", "created_at", "updated_at", "adapter", "model", "subject", "grade_level",
            "teaching_style", "messages", "reply", "rating", "comment", "correction", "answer", "solution", "flags",
            "status", "reviewed_by", "reviewed_at", "owner", "correction_by")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    completion_id TEXT NOT NULL,
    teacher TEXT NOT NULL DEFAULT '',  -- who rated: a teacher token's name, 'api-key' or 'local' ('' before schema 3)
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
    correction TEXT,           -- the teacher's better reply (as edited in review)
    answer TEXT,               -- the teacher's key the tutor was given (schema 2)
    solution TEXT,
    flags TEXT NOT NULL DEFAULT '[]',         -- JSON: pedagogy flags computed on the reply (schema 3)
    status TEXT NOT NULL DEFAULT 'pending',   -- pending / approved / rejected
    reviewed_by TEXT,
    reviewed_at REAL,
    owner TEXT NOT NULL DEFAULT '',  -- whose conversation: who asked, or whose student did (schema 4)
    correction_by TEXT,              -- who wrote the better reply as it stands (schema 4)
    UNIQUE (completion_id, teacher)
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
    #: Who rated; each teacher has a row of their own for the same reply.
    teacher: str = ""
    #: Pedagogy flags the server computed on the reply (``flags.reply_flags``).
    flags: list[dict[str, Any]] = field(default_factory=list)
    status: str = "pending"
    reviewed_by: str | None = None
    #: Whose conversation it is: the teacher who asked, or whose student did ('' when unknown: reviewers only).
    owner: str = ""
    #: Who wrote the better reply as it stands (its rater, or the reviewer who last edited it).
    correction_by: str | None = None
    #: The database row (None until stored).
    id: int | None = None

    @property
    def metadata(self) -> dict[str, str]:
        raw = {"subject": self.subject, "grade_level": self.grade_level, "teaching_style": self.teaching_style,
               "answer": self.answer, "solution": self.solution}
        return {k: v for k, v in raw.items() if v}

    def provenance(self, corrected: bool) -> dict[str, str]:
        """Who wrote the exported reply and who approved it: the better reply's author, or the model
        whose reply the rater called good."""
        raw = {"written_by": self.correction_by if corrected else f"model:{self.model}",
               "rated_by": None if corrected else self.teacher,
               "approved_by": self.reviewed_by if self.status == "approved" else None}
        return {k: v for k, v in raw.items() if v}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an older table to schema 4 (``_migrate_3`` first, then ``_migrate_4``)."""
    _migrate_3(db)
    columns = {row[1] for row in db.execute("PRAGMA table_info(feedback)")}
    if "owner" not in columns:
        # Schema 3 knew only the rater, who received the reply: the conversation is taken to be theirs,
        # and so is a better reply it holds.
        db.execute("BEGIN IMMEDIATE")
        db.execute("ALTER TABLE feedback ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
        db.execute("ALTER TABLE feedback ADD COLUMN correction_by TEXT")
        db.execute("UPDATE feedback SET owner = teacher, "
                   "correction_by = CASE WHEN correction IS NULL OR teacher = '' THEN NULL ELSE teacher END")
        db.execute("COMMIT")


def _migrate_3(db: sqlite3.Connection) -> None:
    """Bring a schema 1 or 2 table to schema 3: one row per reply becomes one row per reply and teacher.

    SQLite cannot drop the old UNIQUE(completion_id), so the table is copied; old rows keep an
    unknown teacher ('') and wait for review like new ones.
    """
    columns = {row[1] for row in db.execute("PRAGMA table_info(feedback)")}
    if "teacher" in columns:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for name in ("answer", "solution"):
            if name not in columns:  # schema 1: no key columns yet
                db.execute(f"ALTER TABLE feedback ADD COLUMN {name} TEXT")
        db.execute("ALTER TABLE feedback RENAME TO feedback_old")
        db.execute(_SCHEMA)
        kept = ("id", "completion_id", "created_at", "updated_at", "adapter", "model", "subject", "grade_level",
                "teaching_style", "messages", "reply", "rating", "comment", "correction", "answer", "solution")
        db.execute(f"INSERT INTO feedback ({', '.join(kept)}) SELECT {', '.join(kept)} FROM feedback_old")
        db.execute("DROP TABLE feedback_old")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class FeedbackStore(Database):
    """A thread-safe handle on the feedback database (one connection, serialized by a lock)."""

    def __init__(self, path: str | Path):
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        super().__init__(path, self._setup)

    def _setup(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise EduloraError(f"{self.path}: written by a newer edulora (schema {version}); upgrade edulora")
        db.executescript(_SCHEMA)
        _migrate(db)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def record(self, item: FeedbackItem) -> int:
        """Insert or update one teacher's feedback on one reply; returns its row id.

        A new row takes the item's ``status`` (the server's are ``pending``); a change to the rating,
        comment or better reply sends a reviewed row back to ``pending``: what was approved is not
        what is there any more.
        """
        now = time.time()
        values = {**{k: getattr(item, k) for k in _COLUMNS if hasattr(item, k)}, "created_at": now,
                  "updated_at": now, "messages": json.dumps(item.messages, ensure_ascii=False),
                  "flags": json.dumps(item.flags, ensure_ascii=False), "comment": item.comment or None,
                  "correction": item.correction or None, "reviewed_at": None,
                  "correction_by": (item.correction_by or item.teacher) if item.correction else None}
        with self._lock:
            self._db.execute(
                f"""INSERT INTO feedback ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})
                   ON CONFLICT(completion_id, teacher) DO UPDATE SET updated_at=excluded.updated_at,
                       rating=excluded.rating, comment=excluded.comment, correction=excluded.correction,
                       correction_by=CASE WHEN correction IS excluded.correction THEN correction_by
                                          ELSE excluded.correction_by END,
                       status=CASE WHEN rating IS excluded.rating AND comment IS excluded.comment
                                    AND correction IS excluded.correction THEN status ELSE 'pending' END""",
                [values[k] for k in _COLUMNS])
            return self._db.execute("SELECT id FROM feedback WHERE completion_id = ? AND teacher = ?",
                                    (item.completion_id, item.teacher)).fetchone()[0]

    def review(self, row: int, status: str, reviewer: str, correction: str | None = None, *,
               owner: str | None = None) -> FeedbackItem:
        """Approve, reject (or reopen) row ``row``; ``correction`` not None replaces the better reply ("" removes it),
        and a changed one is the reviewer's from then on. ``owner`` given: only a row of that owner's
        conversations (``KeyError`` otherwise, as for a row that does not exist)."""
        if status not in STATUSES:
            raise EduloraError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        with self._lock:
            sets, args = "status = ?, reviewed_by = ?, reviewed_at = ?", [status, reviewer, time.time()]
            if correction is not None:
                text = correction.strip() or None
                # Columns on the right are the old row's: an unchanged text keeps its author.
                sets += (", correction_by = CASE WHEN correction IS ? THEN correction_by ELSE ? END"
                         ", correction = ?")
                args += [text, reviewer if text else None, text]
            where, keys = ("id = ?", [row]) if owner is None else ("id = ? AND owner = ?", [row, owner])
            if self._db.execute(f"UPDATE feedback SET {sets} WHERE {where}", [*args, *keys]).rowcount == 0:
                raise KeyError(row)
        return self.item(row)

    def _select(self, where: str = "", args: Sequence[Any] = ()) -> list[FeedbackItem]:
        names = ("id", "completion_id", "model", "messages", "reply", "adapter", "subject", "grade_level",
                 "teaching_style", "rating", "comment", "correction", "answer", "solution", "teacher", "flags",
                 "status", "reviewed_by", "owner", "correction_by")
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(names)} FROM feedback {where} ORDER BY id", args).fetchall()
        items = []
        for row in rows:
            values = dict(zip(names, row))
            values["messages"], values["flags"] = json.loads(values["messages"]), json.loads(values["flags"])
            items.append(FeedbackItem(**values))
        return items

    def items(self, status: str | None = None, owner: str | None = None) -> Iterator[FeedbackItem]:
        """Every row, oldest first; only those with ``status`` and of ``owner``'s conversations when given."""
        given = {**({"status": status} if status else {}), **({"owner": owner} if owner is not None else {})}
        where = " AND ".join(f"{k} = ?" for k in given)
        yield from self._select(f"WHERE {where}" if where else "", list(given.values()))

    def item(self, row: int) -> FeedbackItem:
        found = self._select("WHERE id = ?", (row,))
        if not found:
            raise KeyError(row)
        return found[0]

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]


def sft_record(item: FeedbackItem, response: str) -> dict[str, Any]:
    """The reply as a training record in our schema (round-tripped through it, so it validates), with who
    wrote and who approved it in its metadata."""
    corrected = bool(item.correction) and response == item.correction
    meta = parse_metadata({**item.metadata, **item.provenance(corrected)}, "feedback metadata")
    turns = [m for m in item.messages if m["role"] != "system"]
    if len(turns) == 1:
        return Example(instruction=turns[0]["content"], response=response, metadata=meta).to_dict()
    dialogue = [Turn(m["role"], m["content"]) for m in item.messages] + [Turn("assistant", response)]
    return Dialogue(turns=dialogue, metadata=meta).to_dict()


#: Metadata saying who wrote, rated and approved a record: not part of what makes two records the same.
PROVENANCE = ("written_by", "rated_by", "approved_by")


def _unique(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records in order without repeats: two teachers approving the same reply make one record, not two,
    which names both (``"ana, ben"``)."""
    seen: dict[str, dict[str, Any]] = {}
    for record in records:
        meta = record.get("metadata", {})
        same = {**record, "metadata": {k: v for k, v in meta.items() if k not in PROVENANCE}}
        key = json.dumps(same, sort_keys=True, ensure_ascii=False)
        kept = seen.setdefault(key, record)
        if kept is not record:
            for name in PROVENANCE:
                names = [n for v in (kept["metadata"].get(name), meta.get(name)) if v for n in v.split(", ")]
                if names:
                    kept["metadata"][name] = ", ".join(dict.fromkeys(names))
    return list(seen.values())


def preference_pairs(items: list[FeedbackItem]) -> list[dict[str, Any]]:
    """Chosen-over-rejected pairs; ``rejected_flags`` are the pedagogy flags of the reply that lost."""
    pairs: list[dict[str, Any]] = []

    def pair(item: FeedbackItem, chosen: str, rejected: FeedbackItem) -> None:
        # The one pair format (edulora.data.pairs), so `train … training.method=dpo` reads what is written here.
        flags = [{k: f.get(k) for k in ("code", "label", "evidence")} for f in rejected.flags]
        meta = parse_metadata({**item.metadata, **item.provenance(chosen == item.correction)})
        pairs.append(PreferencePair(item.messages, chosen, rejected.reply, meta, {"rejected_flags": flags}).to_dict())

    for item in items:
        if item.correction and item.correction.strip() and item.correction.strip() != item.reply.strip():
            pair(item, item.correction, item)
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
                    pair(g, g.reply, b)
    return _unique(pairs)


def scrubbed(item: FeedbackItem, scrubber: Scrubber) -> tuple[FeedbackItem, int]:
    """The item with students' personal details replaced by placeholders, and how many were replaced.

    A name a student introduces anywhere in the conversation is replaced everywhere in it (the
    tutor's "Good job, Ana!" too). Every text that export writes is scrubbed: the teacher's key
    (``answer`` / ``solution``, exported as metadata) as much as the conversation.
    """
    texts = [m["content"] for m in item.messages] + [item.reply, item.correction or "", item.comment or "",
                                                     item.answer or "", item.solution or ""]
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
                               comment=clean(item.comment), answer=clean(item.answer),
                               solution=clean(item.solution),
                               flags=[{**f, "evidence": clean(f.get("evidence"))} for f in item.flags])
    return item, replaced


@dataclass
class ExportCounts:
    sft: int
    pairs: int
    rows: int
    #: Personal details replaced by placeholders (0 with ``raw``).
    replaced: int = 0
    #: Rows left out because no teacher approved them (0 with ``include_all``).
    unapproved: int = 0

    def summary(self, out: object, pairs_out: object | None, raw: bool) -> str:
        return (f"{self.rows} feedback rows -> {self.sft} SFT records in {out}"
                + (f", {self.pairs} preference pairs in {pairs_out}" if pairs_out else "")
                + ("; students' text kept as written (--raw)" if raw else f"; {self.replaced} personal details replaced")
                + (f"; {self.unapproved} rows not approved, left out (--all includes them)" if self.unapproved else ""))


def default_feedback_db() -> Path:
    from ..modeling import cache_dir

    return cache_dir() / "feedback.sqlite3"


def export_feedback(db: str | Path | None, out: str | Path, pairs_out: str | Path | None = None, *,
                    raw: bool = False, include_all: bool = False, overwrite: bool = False) -> ExportCounts:
    """SFT records (replies rated good, or corrected) to ``out``, preference pairs to ``pairs_out``.

    Only rows a teacher approved in the review view, unless ``include_all`` (pending and rejected
    ones too). ``db`` None is the default database. Students' personal details (names, e-mail,
    phone, addresses, IDs) are scrubbed unless ``raw`` (a teacher's own review; never train on that).
    Existing outputs are replaced only with ``overwrite``; the database itself never is.
    """
    path = Path(db or default_feedback_db()).expanduser()
    # SQLite keeps recent ratings in files beside the database until it folds them in: inputs too.
    sidecars = {f"--db's {suffix} file": f"{path}{suffix}" for suffix in ("-wal", "-shm", "-journal")}
    check_outputs({"--db": path, **sidecars}, {"--out": out, "--pairs": pairs_out}, overwrite=overwrite)
    if not path.is_file():
        raise EduloraError(f"{path}: no feedback database (serve with --feedback-db to collect one)")
    store = FeedbackStore(path)
    try:
        items = list(store.items())
    finally:
        store.close()
    unapproved = 0 if include_all else sum(i.status != "approved" for i in items)
    items = items if include_all else [i for i in items if i.status == "approved"]
    replaced = 0
    if not raw:
        scrubber = Scrubber()
        cleaned = [scrubbed(i, scrubber) for i in items]
        items, replaced = [i for i, _ in cleaned], sum(n for _, n in cleaned)
    # An empty reply teaches nothing (and is not a valid record).
    sft = _unique([sft_record(i, i.correction if i.correction else i.reply) for i in items
                   if (i.correction and i.correction.strip()) or (i.rating == 1 and i.reply.strip())])
    with atomic_text_writer(out) as handle:
        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in sft)
    pairs = preference_pairs(items)
    if pairs_out is not None:
        with atomic_text_writer(pairs_out) as handle:
            handle.writelines(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)
    return ExportCounts(len(sft), len(pairs), len(items), replaced, unapproved)
