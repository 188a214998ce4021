"""Per-message transcript exports → one edulora ``Dialogue`` per conversation.

Tutoring platforms export a chat as one row per message: a conversation id, who spoke, what they
wrote and when (a timestamp or a turn number), as CSV or as JSON lines. This reader puts the rows of
each conversation back together:

* Columns are found by their usual names (``conversation_id``, ``session_id``, ``speaker``, ``role``,
  ``message``, ``created_at``, ``turn`` … see ``COLUMN_GUESSES``) unless ``column_map`` names them
  (``{"conversation": "chat", "role": "who", "text": "msg", "order": "sent"}``).
* Messages are put in order by the order column (all numbers, or all ISO 8601 timestamps, per
  conversation), else kept in file order; ties keep file order.
* A speaker becomes the student (``user``) or the tutor (``assistant``) by role words
  (``STUDENT_WORDS``, ``TUTOR_WORDS``, also as the first word: "Tutor (Ms Rivera)", "student_482"),
  or by the names given in ``speakers`` / ``column_map`` (``tutor="Ms Rivera|Coach Lee"``);
  ``system`` notices ("Alex joined") are left out. Any other speaker is a problem at its first line,
  since guessing who is the tutor would teach the model the student's words.
* Consecutive messages of one speaker (a chat sends a thought in bursts) become one turn; empty
  messages (an image, a sticker) are dropped.
* Metadata (subject, grade level, teaching style and the teacher's key ``answer``/``solution``, and
  ``metadata.KEY`` columns) is the first non-empty value of its column in the conversation, or comes
  from a side file with one row per conversation id, whose values win. The conversation id is kept
  as ``metadata.conversation_id`` so that a record can be traced back to the platform (and a split
  can keep a conversation on one side with ``--group-by conversation_id``).
* Personal information is scrubbed by default (``edulora.data.privacy``), since exports are raw
  student chats; the speaker names given in ``speakers`` are removed from the text as well.
* A conversation with no tutor reply to a student message (an abandoned session) is ``Skipped``.

Conversations are assembled in memory (one row per message), so the file is read whole.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...errors import EduloraError
from ..csvrows import iter_csv_rows
from ..io import Problem, Skipped, collect_items
from ..jsonscan import iter_json_objects, looks_like_json
from ..problems import DataProblems
from ..schema import MAX_FIELD_CHARS, Dialogue, Turn, metadata_from_dict
from .common import ImportItem

if TYPE_CHECKING:  # the scrubber's patterns load only when a transcript is read
    from ..privacy import Roster, Scrubber

PathLike = str | os.PathLike

#: ``column_map`` fields naming the columns of a message row.
TRANSCRIPT_FIELDS = ("conversation", "role", "text", "order")
#: ``column_map`` fields whose value is speaker names (``"Ms Rivera|Coach Lee"``), not a column.
SPEAKER_FIELDS = ("student", "tutor", "skip")
#: Metadata fields read from columns of the same name (or mapped ones), per conversation.
META_FIELDS = ("subject", "grade_level", "teaching_style", "answer", "solution")

#: Column names tried, in this order (case-insensitively), for each field the map leaves out.
COLUMN_GUESSES: dict[str, tuple[str, ...]] = {
    "conversation": ("conversation_id", "conversation", "session_id", "session", "thread_id", "thread",
                     "chat_id", "dialogue_id", "dialog_id", "lesson_id"),
    "role": ("role", "speaker", "sender", "author", "speaker_role", "sender_role", "from", "user_type"),
    "text": ("text", "message", "content", "body", "message_text", "msg", "utterance"),
    "order": ("timestamp", "time", "created_at", "sent_at", "datetime", "date", "turn", "turn_number",
              "turn_index", "index", "seq", "sequence", "position", "message_index"),
    "subject": ("subject",),
    "grade_level": ("grade_level", "grade"),
    "teaching_style": ("teaching_style", "style"),
    "answer": ("answer",),
    "solution": ("solution",),
}

STUDENT_WORDS = ("student", "learner", "user", "pupil", "human", "child", "kid")
TUTOR_WORDS = ("tutor", "teacher", "assistant", "instructor", "bot", "ai", "coach", "mentor", "expert")
SKIP_WORDS = ("system",)
_ROLE_OF = {**{w: "user" for w in STUDENT_WORDS}, **{w: "assistant" for w in TUTOR_WORDS},
            **{w: "skip" for w in SKIP_WORDS}}
_SPEAKER_ROLE = {"student": "user", "tutor": "assistant", "skip": "skip"}
_FIRST_WORD = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True)
class TranscriptOptions:
    """How to read a transcript export besides its columns (those are ``column_map``'s).

    ``speakers`` maps a speaker value (as in the file, any case) to ``"student"``, ``"tutor"`` or
    ``"skip"``; ``metadata_file`` is a CSV or JSONL file with one row per conversation id; ``scrub``
    False keeps personal information (only for data that is already clean); ``roster`` adds names
    to remove.
    """

    speakers: Mapping[str, str] = field(default_factory=dict)
    metadata_file: PathLike | None = None
    scrub: bool = True
    roster: Roster | None = None


def looks_like_transcript(columns: Iterable[str]) -> bool:
    """True for the columns (or JSON keys) of a per-message export: a conversation, speaker and text
    column, and none of the single-record fields (so an edulora CSV is never taken for one)."""
    names = {c.strip().lower() for c in columns}
    if names & {"instruction", "response", "messages", "conversations"}:
        return False
    return all(names & set(COLUMN_GUESSES[f]) for f in ("conversation", "role", "text"))


def split_column_map(column_map: Mapping[str, str] | None,
                     speakers: Mapping[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """``(field → column, speaker (lower case) → user/assistant/skip)`` from ``column_map`` and ``speakers``."""
    columns: dict[str, str] = {}
    roles: dict[str, str] = {}
    for key, value in (column_map or {}).items():
        if key in SPEAKER_FIELDS:
            roles.update({n.strip().lower(): _SPEAKER_ROLE[key] for n in value.split("|") if n.strip()})
        elif key in TRANSCRIPT_FIELDS or key in META_FIELDS or key.startswith("metadata."):
            columns[key] = value
        else:
            raise EduloraError(f"--map {key}=…: not a transcript field (known: {', '.join(TRANSCRIPT_FIELDS)}, "
                               f"{', '.join(META_FIELDS)}, metadata.KEY, and {', '.join(SPEAKER_FIELDS)}=NAME)")
    for name, kind in (speakers or {}).items():
        if kind not in _SPEAKER_ROLE:
            raise EduloraError(f"speaker {name!r}: say student, tutor or skip, not {kind!r}")
        roles[name.strip().lower()] = _SPEAKER_ROLE[kind]
    return columns, roles


def _resolve(columns: list[str], explicit: Mapping[str, str], fields: Iterable[str], required: Iterable[str],
             hint: str = "conversation=…,role=…,text=…,order=…",
             optional: Iterable[str] = ()) -> tuple[dict[str, str], str | None]:
    """Field → column among ``columns``, and a message when a required or mapped column is missing.

    A mapped column of a field in ``optional`` may be missing (metadata a side file may hold instead)."""
    by_lower = {c.lower(): c for c in columns}
    found: dict[str, str] = {}
    missing = []
    for name in fields:
        if name in explicit:
            if explicit[name] in columns:
                found[name] = explicit[name]
            elif name not in optional:
                missing.append(f"'{explicit[name]}' (for {name})")
            continue
        guess = next((by_lower[g] for g in COLUMN_GUESSES.get(name, ()) if g in by_lower), None)
        if guess is not None:
            found[name] = guess
        elif name in required:
            missing.append(f"{name} column (tried {', '.join(COLUMN_GUESSES[name][:4])}…)")
    found.update({f: c for f, c in explicit.items() if f.startswith("metadata.") and c in columns})
    found.update({c: c for c in columns if c.startswith("metadata.") and c not in found.values()})
    if not missing:
        return found, None
    return found, (f"no {'; no '.join(missing)}; columns are: {', '.join(columns) or '(none)'}; "
                   f"name them with --map {hint}")


def _rows(path: PathLike) -> Iterator[tuple[int, dict[str, Any] | Problem]]:
    """``(line, row)`` of a CSV or JSON (lines or array) file; a non-object JSON item is a problem."""
    if not looks_like_json(path):
        yield from iter_csv_rows(path)
        return
    for line, obj in iter_json_objects(path):
        if not isinstance(obj, (dict, Problem)):
            obj = Problem(str(path), line, f"a message must be a JSON object, got {type(obj).__name__}")
        yield line, obj


def _cell(row: Mapping[str, Any], column: str | None) -> str | None:
    """A cell as stripped text (JSON numbers as their text); None when absent, null or blank."""
    value = row.get(column) if column else None
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value).strip() or None


def _order_key(value: str) -> tuple[str, Any] | None:
    """``(kind, sortable)`` for a turn number or an ISO 8601 timestamp; None when it is neither."""
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        return ("number", number) if math.isfinite(number) else None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return "timestamp without a time zone", moment
    return "timestamp with a time zone", moment.timestamp()


def _speaker_role(speaker: str, roles: Mapping[str, str]) -> str | None:
    key = speaker.lower()
    if key in roles:
        return roles[key]
    if key in _ROLE_OF:
        return _ROLE_OF[key]
    first = _FIRST_WORD.match(key)  # "Tutor (Ms Rivera)", "student_482", "AI tutor" is taken below
    return _ROLE_OF.get(first.group(0)) if first else None


@dataclass
class _Conversation:
    line: int
    messages: list[tuple[tuple[str, Any] | None, int, str, str]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    broken: bool = False


def _check_meta(name: str, field_name: str, value: str, line: int, problems: list[Problem]) -> bool:
    """True when ``value`` is a usable metadata value; else a problem at ``name:line``."""
    found: list[str] = []
    key = field_name[len("metadata."):] if field_name.startswith("metadata.") else field_name
    metadata_from_dict({key: value}, found)
    problems.extend(Problem(name, line, message) for message in found)
    return not found


def _meta_values(name: str, line: int, row: Mapping[str, Any], columns: Mapping[str, str],
                 problems: list[Problem]) -> dict[str, str]:
    values = {}
    for field_name, column in columns.items():
        if field_name in META_FIELDS or field_name.startswith("metadata."):
            value = _cell(row, column)
            if value is not None and _check_meta(name, field_name, value, line, problems):
                values[field_name] = value
    return values


def read_metadata_file(path: PathLike, explicit: Mapping[str, str],
                       problems: list[Problem]) -> dict[str, dict[str, str]]:
    """Conversation id → metadata values from a side file (CSV or JSONL, one row per conversation)."""
    name = str(path)
    fields = ("conversation", *META_FIELDS)
    wanted = {f: c for f, c in explicit.items() if f in fields or f.startswith("metadata.")}
    columns: dict[str, str] | None = None
    by_id: dict[str, dict[str, str]] = {}
    first_line: dict[str, int] = {}
    for line, row in _rows(path):
        if isinstance(row, Problem):
            problems.append(row)
            continue
        if columns is None:
            # The side file's id column may be named otherwise than the transcript's: then it is guessed.
            if wanted.get("conversation") not in row:
                wanted.pop("conversation", None)
            columns, missing = _resolve(list(row), wanted, fields, ("conversation",), "conversation=COLUMN",
                                        optional=META_FIELDS)
            if missing:
                problems.append(Problem(name, line, missing))
                return {}
        conversation = _cell(row, columns["conversation"])
        if conversation is None:
            problems.append(Problem(name, line, f"empty conversation id (column '{columns['conversation']}')"))
        elif conversation in by_id:
            problems.append(Problem(name, line, f"conversation {conversation!r} is listed twice "
                                                f"(first at line {first_line[conversation]})"))
        else:
            by_id[conversation] = _meta_values(name, line, row, columns, problems)
            first_line[conversation] = line
    return by_id


def iter_transcripts(path: PathLike, column_map: Mapping[str, str] | None = None,
                     options: TranscriptOptions | None = None) -> Iterator[ImportItem]:
    """Yield problems (by line), then ``(line, Dialogue | Skipped)`` per conversation, in the order
    the conversations first appear; ``line`` is the line of a conversation's first message."""
    options = options or TranscriptOptions()
    explicit, roles = split_column_map(column_map, options.speakers)
    name = str(path)
    problems: list[Problem] = []
    conversations: dict[str, _Conversation] = {}
    unknown: dict[str, list[int]] = {}  # speaker → [first line, messages]
    columns: dict[str, str] | None = None
    for line, row in _rows(path):
        if isinstance(row, Problem):
            problems.append(row)
            continue
        if columns is None:
            columns, missing = _resolve(list(row), explicit, (*TRANSCRIPT_FIELDS, *META_FIELDS),
                                        ("conversation", "role", "text"),
                                        optional=META_FIELDS if options.metadata_file else ())
            if missing:  # a CSV header is line 1; JSON has none, its first object names the keys
                problems.append(Problem(name, line if looks_like_json(path) else 1, missing))
                break
        _read_row(name, line, row, columns, roles, conversations, unknown, problems)
    side = read_metadata_file(options.metadata_file, explicit, problems) if options.metadata_file else {}
    for speaker, (line, count) in unknown.items():
        problems.append(Problem(name, line, f"unknown speaker {speaker!r} ({count} message(s)); say who it is with "
                                            f"--map tutor={speaker!r} or --map student={speaker!r}"[:300]))
    for problem in sorted(problems, key=lambda p: (p.path != name, p.line)):
        yield problem.line, problem
    scrubber = _scrubber(options, roles) if options.scrub else None
    for conversation_id, conversation in conversations.items():
        if not conversation.broken:
            yield conversation.line, _dialogue(name, conversation_id, conversation, side.get(conversation_id),
                                               scrubber)


def _read_row(name: str, line: int, row: Mapping[str, Any], columns: Mapping[str, str], roles: Mapping[str, str],
              conversations: dict[str, _Conversation], unknown: dict[str, list[int]],
              problems: list[Problem]) -> None:
    """File one message row under its conversation (or a problem at its line)."""
    conversation_id = _cell(row, columns["conversation"])
    if conversation_id is None:
        problems.append(Problem(name, line, f"empty conversation id (column '{columns['conversation']}')"))
        return
    conversation = conversations.setdefault(conversation_id, _Conversation(line))
    count = len(problems)
    speaker = _cell(row, columns["role"])
    role = _speaker_role(speaker, roles) if speaker else None
    if speaker is None:
        problems.append(Problem(name, line, f"empty speaker (column '{columns['role']}')"))
    elif role is None:
        unknown.setdefault(speaker, [line, 0])[1] += 1
        conversation.broken = True
    raw = row.get(columns["text"])
    if raw is not None and not isinstance(raw, str):
        problems.append(Problem(name, line, f"field '{columns['text']}' must be a string, got {type(raw).__name__}"))
    elif raw is not None and len(raw) > MAX_FIELD_CHARS:
        problems.append(Problem(name, line, f"message is {len(raw):,} characters long (limit {MAX_FIELD_CHARS:,})"))
    key = None
    if "order" in columns:
        value = _cell(row, columns["order"])
        key = _order_key(value) if value else None
        if key is None:
            problems.append(Problem(name, line, f"order value {value!r} (column '{columns['order']}') is not a "
                                                "number or an ISO 8601 timestamp (2024-03-05T14:02:11)"[:300]))
    metadata = _meta_values(name, line, row, columns, problems)
    if len(problems) > count:
        conversation.broken = True
        return
    for field_name, value in metadata.items():
        conversation.metadata.setdefault(field_name, value)
    if role not in (None, "skip") and raw and raw.strip():
        conversation.messages.append((key, line, role, raw.strip()))


def _dialogue(name: str, conversation_id: str, conversation: _Conversation, side: Mapping[str, str] | None,
              scrubber: Scrubber | None) -> Dialogue | Problem | Skipped:
    kinds = {key[0] for key, *_ in conversation.messages if key is not None}
    if len(kinds) > 1:
        return Problem(name, conversation.line, f"conversation {conversation_id!r} mixes order values: "
                                                f"{' and '.join(sorted(kinds))}; use one kind")
    messages = sorted(conversation.messages, key=lambda m: (m[0][1] if m[0] else 0, m[1]))
    turns: list[Turn] = []
    for _, _, role, text in messages:
        if turns and turns[-1].role == role:
            turns[-1].content += "\n" + text
        else:
            turns.append(Turn(role, text))
    if not any(t.role == "assistant" and i and turns[i - 1].role == "user" for i, t in enumerate(turns)):
        return Skipped(name, conversation.line, f"conversation {conversation_id!r} has no tutor reply to a student message")
    if any(len(t.content) > MAX_FIELD_CHARS for t in turns):
        return Problem(name, conversation.line, f"conversation {conversation_id!r}: a merged turn is over "
                                                f"{MAX_FIELD_CHARS:,} characters")
    values = {**conversation.metadata, **(side or {})}
    raw = {(k[len("metadata."):] if k.startswith("metadata.") else k): v for k, v in values.items()}
    problems: list[str] = []
    metadata = metadata_from_dict({"conversation_id": conversation_id, **raw}, problems)
    dialogue = Dialogue(turns=turns, metadata=metadata)
    return scrubber.scrub_record(dialogue)[0] if scrubber else dialogue


def _scrubber(options: TranscriptOptions, roles: Mapping[str, str]) -> Scrubber:
    """A scrubber whose roster adds the people named as speakers (not role words such as "Tutor")."""
    from ..privacy import Roster, Scrubber

    names = list(options.roster.names) if options.roster else []
    return Scrubber(Roster(names + [n for n in roles if n not in _ROLE_OF]))


def import_transcripts(path: PathLike, column_map: Mapping[str, str] | None = None, *,
                       speakers: Mapping[str, str] | None = None, metadata_file: PathLike | None = None,
                       scrub: bool = True, roster: Roster | None = None,
                       skipped: list[Skipped] | None = None) -> list[Dialogue]:
    """One ``Dialogue`` per conversation of a per-message export (CSV or JSON lines), in file order.

    ``column_map`` names columns (``conversation``, ``role``, ``text``, ``order``, metadata fields)
    and may list speakers (``tutor="Ms Rivera|Coach Lee"``), as ``--map`` does; ``speakers`` maps
    speaker values to ``student``/``tutor``/``skip``. Conversations without a tutor reply go to
    ``skipped`` when given. Raises ``DataProblems`` listing every ``FILE:LINE`` problem.
    """
    options = TranscriptOptions(speakers=dict(speakers or {}), metadata_file=metadata_file, scrub=scrub, roster=roster)
    items = []
    for line, item in iter_transcripts(path, column_map, options):
        if isinstance(item, Skipped):
            if skipped is not None:
                skipped.append(item)
        else:
            items.append((line, item))
    dialogues, _, problems = collect_items(path, items, "file holds no conversations")
    if problems:
        raise DataProblems(path, problems)
    return dialogues


__all__ = ["COLUMN_GUESSES", "META_FIELDS", "SPEAKER_FIELDS", "STUDENT_WORDS", "TRANSCRIPT_FIELDS", "TUTOR_WORDS",
           "TranscriptOptions", "import_transcripts", "iter_transcripts", "looks_like_transcript",
           "read_metadata_file", "split_column_map"]
