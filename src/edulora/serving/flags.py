"""Pedagogy flags on one served reply: what a teacher should look at before it becomes training data.

Each flag comes from edulora's own metrics (``edulora.evaluation.metrics``), the same ones the
evaluation reports use, so what the page flags and what the evaluation counts cannot disagree:

* ``reveals_answer``: the reply gives the final answer away (``answer_revealing``);
* ``wrong_answer``: the reply asserts a final answer other than the teacher's key
  (``answer_correctness``; only with a key, since an inferred answer is a guess);
* ``no_question``: a Socratic tutor that leaves the student nothing to answer (``asks_question``).

With the learned judges (``edulora.evaluation.judges``, as ``edulora eval`` reports them), their verdicts
join the rule flags: ``judged_reveals_answer`` ("may reveal the answer"), ``judged_little_guidance`` and
``judged_not_actionable``, each with the judge's probability (``probability``; ``evidence`` says it). They
are computed once, when the reply is finished, and stored with its feedback, not at each page view.

Flags are plain dicts (``code``, ``label``, ``evidence``) because they travel as JSON: in the
reply's ``edulora`` block, in the feedback database and in exported preference pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..data.schema import Metadata, TeachingStyle
from ..evaluation.metrics import answer_metrics, asks_question
from ..evaluation.mining import JUDGED_FAILURES
from ..formatting import Message

if TYPE_CHECKING:
    from ..evaluation.judges import Judges

Flag = dict[str, Any]

#: What each flag means, as the teacher page and the review view write it.
LABELS = {
    "reveals_answer": "gave the answer away",
    "wrong_answer": "asserted a wrong answer",
    "no_question": "asked no question (Socratic)",
    "judged_reveals_answer": "may reveal the answer",
    "judged_little_guidance": "little guidance",
    "judged_not_actionable": "leaves the student nothing to do",
}
#: The judges' flags: code -> (dimension, the verdict that raises it), the verdicts pair mining fails a reply
#: for (``mining.JUDGED_FAILURES``). One code is not mining's name for it: feedback databases already store it.
JUDGED_FLAGS = {{"judged_no_guidance": "judged_little_guidance"}.get(kind, kind): failing
                for kind, failing in JUDGED_FAILURES.items()}


def _flag(code: str, evidence: str | None = None) -> Flag:
    return {"code": code, "label": LABELS[code], "evidence": evidence}


def reply_flags(reply: str, messages: Sequence[Message], meta: Metadata | None = None,
                judges: Judges | None = None) -> list[Flag]:
    """The flags ``reply`` earns as the answer to ``messages`` (the conversation, ending with the student).

    ``meta`` is what the tutor was asked to be: its teaching style and the teacher's key. With ``judges``,
    their flags (``judged_flags``) follow the rules'.
    """
    meta = meta or Metadata()
    if not reply.strip():
        return []
    history = [m for m in messages if m["role"] != "system"]
    answer, solution = meta.answer, meta.solution
    keyed = bool((answer or "").strip() or (solution or "").strip())
    flags: list[Flag] = []
    reveal, correctness = answer_metrics(reply, answer=answer, history=history, reference=solution)
    # With a key, a wrong final answer is its own, more precise flag; without one, any asserted answer is telling.
    if reveal.revealed and (reveal.correct is not False or not keyed):
        flags.append(_flag("reveals_answer", reveal.evidence))
    if keyed and correctness.score == 0.0:
        flags.append(_flag("wrong_answer", correctness.evidence))
    if meta.teaching_style is TeachingStyle.SOCRATIC and not asks_question(reply):
        flags.append(_flag("no_question"))
    return flags + (judged_flags(reply, history, solution or answer, judges) if judges is not None else [])


def judged_flags(reply: str, history: Sequence[Message], key: str | None, judges: Judges) -> list[Flag]:
    """The judges' flags on ``reply`` after ``history`` (``key``: the teacher's solution or answer): each
    dimension whose verdict is the one ``JUDGED_FLAGS`` names, with the judge's probability of it."""
    from ..evaluation.judges import JudgeInput

    [verdict] = judges.predict([JudgeInput(reply, list(history), key)])
    flags = []
    for code, (dimension, label) in JUDGED_FLAGS.items():
        if verdict[dimension].label == label:
            probability = verdict[dimension].probability
            flags.append({**_flag(code, f"learned judge, probability {probability:.2f}"), "probability": probability})
    return flags
