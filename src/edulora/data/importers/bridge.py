"""Bridge as published (Wang et al., NAACL 2024) → edulora dialogues ending with the expert's reply.

Each Bridge item is a moment of a real online math lesson (grades 1–8) where the student has just
made a mistake: ``c_h`` the conversation so far (its last turn is the student's), ``c_r`` what the
novice tutor answered, ``c_r_`` the expert teacher's rewrite of that answer, ``e`` the error the
expert saw, ``z_what`` the strategy chosen and ``z_why`` its intention. One item becomes one
``Dialogue``: the history, then the expert's reply as the last tutor turn.

* Only the expert's reply is a training target: the history's tutor turns are the novice's, so
  they stay as context with ``train=False``.
* Consecutive messages of one speaker (a chat sends a thought in bursts) are joined into one turn,
  and empty messages (images, stickers) are dropped.
* Items whose ``e`` is not one of the mistake types (the annotators also wrote "End session",
  "no error", "The student did not make a mistake." …) are left out as ``Skipped``, not mixed in:
  they are not remediation.
* Metadata: subject mathematics, the grade from the lesson code (``3.4B.Rounding…`` → grade 3),
  ``c_id``, ``lesson_topic``, ``error_type`` (e), ``strategy`` (z_what), ``intention`` (z_why) and
  ``novice_response`` (c_r), which pairs with the expert's reply for preference tuning.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..io import SkipItem, convert_items
from ..jsonscan import iter_json_objects
from ..schema import Dialogue, Metadata, RecordError, Turn
from .common import ImportItem, grade_from_number, require_object, text

#: Bridge's error types for a student mistake ("diagnose": the expert needed to ask first).
MISTAKE_TYPES = ("guess", "misinterpret", "careless", "right-idea", "imprecise", "not-sure", "diagnose")
_ROLES = {"tutor": "assistant", "student": "user"}
_LESSON_GRADE = re.compile(r"\s*(\d{1,2})\.")


def _messages(obj: dict, name: str, problems: list[str], roles: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(user, text)`` of the non-empty messages of a turn list such as ``c_h``."""
    value = obj.get(name)
    if not isinstance(value, list):
        problems.append(f"field '{name}' must be a list of turns, got {type(value).__name__}")
        return []
    out = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict):
            problems.append(f"{name}[{i}] must be an object")
            continue
        user, body = turn.get("user"), turn.get("text")
        if user not in roles:
            problems.append(f"{name}[{i}].user must be {' or '.join(repr(r) for r in roles)}, got {user!r}"[:200])
        elif not isinstance(body, str):
            problems.append(f"{name}[{i}].text must be a string, got {type(body).__name__}")
        elif body.strip():
            out.append((user, body.strip()))
    return out


def _joined(messages: list[tuple[str, str]], train: bool) -> list[Turn]:
    turns: list[Turn] = []
    for user, body in messages:
        role = _ROLES[user]
        if turns and turns[-1].role == role:
            turns[-1].content += "\n" + body
        else:
            turns.append(Turn(role, body, train=train or role != "assistant"))
    return turns


def bridge_from_dict(obj: Any) -> Dialogue:
    """One Bridge item as a ``Dialogue``; ``RecordError`` lists every problem, ``SkipItem`` leaves it out."""
    obj = require_object(obj)
    problems: list[str] = []
    history = _messages(obj, "c_h", problems, ("tutor", "student"))
    expert = _messages(obj, "c_r_", problems, ("tutor",))
    novice = _messages(obj, "c_r", problems, ("tutor",)) if obj.get("c_r") is not None else []
    error = text(obj, "e", problems)
    strategy = text(obj, "z_what", problems, required=False)
    intention = text(obj, "z_why", problems, required=False)
    lesson = text(obj, "lesson_topic", problems, required=False)
    c_id = obj.get("c_id")
    if c_id is not None and not isinstance(c_id, (str, int)):
        problems.append(f"field 'c_id' must be a string, got {type(c_id).__name__}")
    if not problems and not expert:
        problems.append("field 'c_r_' holds no expert reply")
    if problems:
        raise RecordError(problems)
    if error.lower() not in MISTAKE_TYPES:
        raise SkipItem(f"error type {error[:80]!r} is not a student mistake")
    turns = _joined(history, train=False)
    if not turns or turns[-1].role != "user":
        raise SkipItem("the history does not end with a student message for the expert to answer")
    turns.append(Turn("assistant", "\n".join(body for _, body in expert)))
    grade = _LESSON_GRADE.match(lesson) if lesson else None
    extra = {"source": "bridge", "c_id": c_id, "lesson_topic": lesson, "error_type": error, "strategy": strategy,
             "intention": intention, "novice_response": "\n".join(body for _, body in novice) or None}
    metadata = Metadata(subject="mathematics", grade_level=grade_from_number(grade.group(1)) if grade else None,
                        extra={k: v for k, v in extra.items() if v is not None})
    return Dialogue(turns=turns, metadata=metadata)


def iter_bridge(path: str | Path) -> Iterator[ImportItem]:
    """Yield ``(line, Dialogue | Problem | Skipped)`` per item of a Bridge JSON array (or JSONL) file."""
    yield from convert_items(str(path), iter_json_objects(path), bridge_from_dict)


__all__ = ["MISTAKE_TYPES", "bridge_from_dict", "iter_bridge"]
