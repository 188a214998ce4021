"""Where a dialogue is evaluated: at its last tutor turn, or at every turn where the tutor could still tell.

A tutoring dialogue's last tutor turn often follows the student's own correct answer, where
"giving the answer away" is no longer possible. MathDial's Telling@k counts a dialogue in which
the teacher states the final answer before the student does; the honest place to measure a
tutor's leak rate is therefore every tutor turn that answers a student who has not reached the
key yet. ``open_turns`` cuts each keyed dialogue there.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..data.schema import Dialogue, Record
from .answers import already_said
from .text import parse_history

#: How a record is evaluated: ``last`` (its last tutor turn), ``open`` (see ``open_turns``), or ``auto``
#: (``open`` where the data holds multi-turn dialogues, else ``last``; ``resolve_turns``).
TURNS = ("auto", "last", "open")


def open_turns(records: Sequence[Record]) -> list[Record]:
    """Each keyed dialogue cut after every tutor turn that answers a student still short of the key.

    Records without a key (``metadata.answer``) and single-turn examples are kept as they are.
    """
    out: list[Record] = []
    for record in records:
        answer = record.metadata.answer
        if not isinstance(record, Dialogue) or answer is None:
            out.append(record)
            continue
        turns = record.turns
        for end, turn in enumerate(turns):
            if turn.role != "assistant" or end == 0 or turns[end - 1].role != "user":
                continue
            history = parse_history([t for t in turns[:end] if t.role != "system"])
            if already_said(answer, history):
                break  # from here on, stating the answer confirms what the student found
            out.append(Dialogue(turns=list(turns[: end + 1]), metadata=record.metadata, extra=record.extra))
    return out


def resolve_turns(records: Sequence[Record], turns: str) -> str:
    """``turns`` as ``last`` or ``open``: ``auto`` is ``open`` when any record is a dialogue with several tutor
    turns, where the last turn alone often follows the student's own answer and so cannot show telling."""
    if turns not in TURNS:
        raise ValueError(f"turns must be one of {', '.join(TURNS)}")
    if turns != "auto":
        return turns
    multi = any(isinstance(r, Dialogue) and sum(t.role == "assistant" for t in r.turns) > 1 for r in records)
    return "open" if multi else "last"


def cut(records: Sequence[Record], turns: str) -> list[Record]:
    """The records at the turns ``turns`` names (``auto`` resolved by ``resolve_turns``)."""
    return open_turns(records) if resolve_turns(records, turns) == "open" else list(records)
