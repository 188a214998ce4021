"""MathDial as published (Macina et al., Findings of EMNLP 2023) → edulora dialogues with the teacher's key.

Each MathDial item is a GSM8K word problem, a student's wrong solution, and a conversation in
which a human teacher guides an LLM-simulated student. It becomes one ``Dialogue``:

* a first student (user) turn with the problem and the student's attempt — what the teacher saw;
* the conversation's turns, split on ``|EOM|``: ``Teacher:`` turns are tutor (assistant) turns,
  the student's (``Student:`` or the student's name) are user turns. The move the teacher tagged
  a turn with (``(focus)``, ``(probing)``, ``(telling)``, ``(generic)``) is cut from the text and
  kept in ``metadata["moves"]``, one entry per assistant turn;
* the key: ``metadata.answer`` is the final value of the ground truth (its last line, plain or
  GSM8K's ``#### 10``), ``metadata.solution`` the worked text before it.

The chat tool sometimes recorded a message twice or sent one thought as two messages: repeated
messages are dropped and consecutive turns of one speaker are joined (their moves as
``"focus+telling"``), because a tutor turn is learned only as the reply to a student turn.
With ``exclude_telling`` a turn whose move includes ``telling`` stays in the conversation but is
marked ``train=False``: the tutor should learn to guide, not to give the answer away.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ..csvrows import iter_csv_rows
from ..io import SkipItem, convert_items
from ..jsonscan import iter_json_objects, looks_like_json
from ..schema import Dialogue, Metadata, RecordError, Turn
from .common import ImportItem, grade_from_number, number, require_object, strip_calculator_notes, text

MOVES = ("focus", "probing", "telling", "generic")
#: Columns (or JSON fields) without which an item cannot become a dialogue.
REQUIRED = ("question", "ground_truth", "student_incorrect_solution", "conversation")
#: Optional published fields kept in the metadata under their own names.
_TEXT_EXTRAS = ("student_profile", "teacher_described_confusion", "self-correctness")
_NUMBER_EXTRAS = ("scenario", "self-typical-confusion", "self-typical-interactions")

_SPEAKER = re.compile(r"\s*([A-Za-z][\w'-]*)\s*:\s*")
_MOVE = re.compile(r"\(\s*(" + "|".join(MOVES) + r")\s*\)\s*", re.IGNORECASE)
_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+"
_BARE_ANSWER = re.compile(rf"(?:####)?\s*\$?\s*({_NUMBER})\s*")
_GRADE = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?[\s-]*grade", re.IGNORECASE)


def split_ground_truth(ground_truth: str) -> tuple[str | None, str | None]:
    """``(solution, answer)`` from a GSM8K-style ground truth whose last line holds the final answer.

    ``"…= $803.\\n 803"`` and ``"…\\n#### 803"`` give ``("…= $803.", "803")``; thousands separators
    are dropped from the answer. When the last line says more than a number, the whole text is the
    solution and its last number the answer; ``answer`` is None when the last line has no number.
    """
    lines = [line.strip() for line in strip_calculator_notes(ground_truth).strip().splitlines()]
    if not lines or not lines[-1]:
        return None, None
    bare = _BARE_ANSWER.fullmatch(lines[-1])
    if bare:
        worked = "\n".join(lines[:-1]).strip()
        return worked or None, bare.group(1).replace(",", "")
    numbers = re.findall(_NUMBER, lines[-1].removeprefix("####"))
    return "\n".join(lines), numbers[-1].replace(",", "") if numbers else None


@dataclass
class _Speech:
    """Consecutive messages of one speaker, joined into one turn."""

    role: str
    texts: list[str]
    moves: list[str] = field(default_factory=list)

    @property
    def move(self) -> str | None:
        return "+".join(dict.fromkeys(self.moves)) or None


def _conversation_turns(conversation: str, problems: list[str]) -> list[tuple[str, str, str | None]]:
    """``(role, text, move)`` per non-empty ``|EOM|`` turn."""
    turns = []
    for number_, raw in enumerate(conversation.split("|EOM|"), start=1):
        if not raw.strip():
            continue  # a trailing separator
        speaker = _SPEAKER.match(raw)
        if speaker is None:
            problems.append(f"conversation turn {number_} does not start with 'Teacher:' or 'Student:': "
                            f"{raw.strip()[:60]!r}")
            continue
        body, move = raw[speaker.end():], None
        role = "assistant" if speaker.group(1).lower() == "teacher" else "user"
        if role == "assistant":
            tagged = _MOVE.match(body)
            if tagged:
                move, body = tagged.group(1).lower(), body[tagged.end():]
        body = strip_calculator_notes(body).strip()
        if body:  # the tool stored some teacher turns as a bare move tag with no message
            turns.append((role, body, move))
    return turns


def _joined(turns: list[tuple[str, str, str | None]]) -> list[_Speech]:
    speeches: list[_Speech] = []
    for role, body, move in turns:
        last = speeches[-1] if speeches else None
        if last is not None and last.role == role:
            if body == last.texts[-1]:
                continue  # the same message recorded twice
            last.texts.append(body)
        else:
            last = _Speech(role, [body])
            speeches.append(last)
        if move:
            last.moves.append(move)
    return speeches


def _qid(obj: dict, problems: list[str]) -> int | str | None:
    value = obj.get("qid")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        value = value.strip()
        return int(value) if value.isdigit() else value
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"field 'qid' must be an integer or a string, got {type(value).__name__}")
        return None
    return value


def _lines(value: str) -> str:
    return "\n".join(line.strip() for line in strip_calculator_notes(value).splitlines()).strip()


def mathdial_from_dict(obj: Any, exclude_telling: bool = False) -> Dialogue:
    """One MathDial item as a ``Dialogue``; ``RecordError`` lists every problem, ``SkipItem`` leaves it out."""
    obj = require_object(obj)
    problems: list[str] = []
    question, ground_truth, attempt, conversation = (text(obj, name, problems) for name in REQUIRED)
    extras: dict[str, Any] = {"source": "mathdial", "qid": _qid(obj, problems)}
    for name in _NUMBER_EXTRAS:
        extras[name] = number(obj, name, problems)
    for name in _TEXT_EXTRAS:
        extras[name] = text(obj, name, problems, required=False)
    solution = answer = None
    if ground_truth is not None:
        solution, answer = split_ground_truth(ground_truth)
        if answer is None:
            problems.append("field 'ground_truth' must end with the final answer on its last line (e.g. '#### 10')")
    turns = _conversation_turns(conversation, problems) if conversation is not None else []
    if conversation is not None and not problems and not any(role == "assistant" for role, _, _ in turns):
        problems.append("field 'conversation' has no teacher turn")
    if problems:
        raise RecordError(problems)

    opening = f"{_lines(question)}\n\nMy solution:\n{_lines(attempt)}"
    speeches = _joined([("user", opening, None), *turns])
    moves = [s.move for s in speeches if s.role == "assistant"]
    dialogue_turns = [Turn(s.role, "\n".join(s.texts),
                           train=not (exclude_telling and s.role == "assistant" and "telling" in s.moves))
                      for s in speeches]
    if not any(t.role == "assistant" and t.train for t in dialogue_turns):
        raise SkipItem("every teacher turn is 'telling' (excluded from training)")
    profile = extras["student_profile"]
    grade = _GRADE.search(profile) if profile else None
    key = {"answer": answer, **({"solution": solution} if solution else {})}
    metadata = Metadata(subject="mathematics", grade_level=grade_from_number(grade.group(1)) if grade else None,
                        extra={**key, **{k: v for k, v in extras.items() if v is not None}, "moves": moves})
    return Dialogue(turns=dialogue_turns, metadata=metadata)


def _check_header(columns: list[str]) -> str | None:
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        return (f"not a MathDial CSV: no column {', '.join(repr(m) for m in missing)}; "
                f"columns are: {', '.join(columns) or '(none)'}")
    return None


def iter_mathdial(path: str | Path, exclude_telling: bool = False) -> Iterator[ImportItem]:
    """Yield ``(line, Dialogue | Problem | Skipped)`` per item of a MathDial JSONL, JSON or CSV file."""
    items = iter_json_objects(path) if looks_like_json(path) else iter_csv_rows(path, _check_header)
    yield from convert_items(str(path), items, partial(mathdial_from_dict, exclude_telling=exclude_telling))


__all__ = ["MOVES", "iter_mathdial", "mathdial_from_dict", "split_ground_truth"]
