"""Per-model pedagogy rates with 95% intervals: leak rate, incorrect-answer rate, question rate.

``pedagogy_rates(replies, records)`` is what an evaluation reports per model and what training
can call at each evaluation to choose a checkpoint by pedagogy. Importing this module loads no
model and no deep-learning library: the metrics are regular expressions over strings.

- ``leak_rate``: share of replies that give a final answer away, right or wrong (``answer_revealing``),
  among the replies that had an answer to withhold: a teacher's key (``metadata.answer`` or the final
  answer of ``metadata.solution``), or a computable one (the tutor's last arithmetic question, or the
  student's problem when it is plain arithmetic: "What is 3 x 4?"). A reply with nothing to withhold,
  e.g. a direct-instruction or analogy explanation of what a radian is, is not a leak: explaining is
  its job. Its ``n`` is therefore the number of such replies, not of all replies;
- ``all_replies_leak_rate(scored)``: the former definition over every reply, which also
  counts corrections and definitions asserted where no answer was known; kept for comparison only;
- ``incorrect_answer_rate``: share of replies to records with a key (``metadata.answer`` or
  ``metadata.solution``) that assert a final answer other than the key (``answer_correctness``);
- ``question_rate``: share of replies that ask the student a question (a sentence ending in "?").
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from ..data.schema import Record
from ..formatting import PromptFormat
from .metrics import AnswerCorrectness, AnswerReveal, answer_metrics
from .numbers import question_answer
from .results import EvalResult, Rate
from .text import is_question, split_sentences

#: The rates ``pedagogy_rates`` reports, in report order.
RATES = ("leak_rate", "incorrect_answer_rate", "question_rate")


def record_history(record: Record) -> list[tuple[str, str]]:
    """The conversation before the record's last tutor turn, as ``("student" | "tutor", text)``
    turns: what the tutor's reply answers, as the prompt format lays the record out (without the
    persona, the key or any system turn of the data)."""
    messages, _ = PromptFormat(tokenizer=None, system_prompt=False, answer_key=False).prompt_and_reference(record)
    return [("student" if x["role"] == "user" else "tutor", x["content"]) for x in messages if x["role"] != "system"]


@dataclass(frozen=True)
class ReplyPedagogy:
    """The answer metrics of one reply and whether it asks a question: what the rates count."""

    reveal: AnswerReveal
    correctness: AnswerCorrectness
    asks_question: bool

    @property
    def withholds(self) -> bool:
        """Whether the reply had an answer to withhold (a key or a computable answer): only then can it leak."""
        return self.reveal.answer is not None


def reply_pedagogy(reply: str, record: Record, history: list[tuple[str, str]] | None = None) -> ReplyPedagogy:
    """``reply`` scored against ``record``'s key (``metadata.answer``, else the final answer of
    ``metadata.solution``) and conversation (``record_history`` unless ``history`` is given).

    Without a key or a tutor's arithmetic question, a student's opening problem that is plain arithmetic
    ("What is 3 x 4?") still has an answer to withhold, so whether the reply states it is what counts as a
    leak there; the correctness stays unscored (a computed value is not the teacher's key)."""
    meta = record.metadata
    history = record_history(record) if history is None else history
    reveal, correctness = answer_metrics(reply, answer=meta.answer, history=history, reference=meta.solution)
    if reveal.answer is None and meta.answer is None and meta.solution is None and history and history[0][0] == "student":
        computed = question_answer(history[0][1])
        if computed is not None:
            reveal = answer_metrics(reply, answer=computed, history=history)[0]
    return ReplyPedagogy(reveal, correctness, asks_question=any(is_question(s) for s in split_sentences(reply)))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n``.

    Wilson rather than the textbook normal interval (p ± z·√(p(1−p)/n)) because the rates that
    matter are near 0 on a few dozen replies: at 0 leaks in 50 replies the normal interval is
    [0, 0], claiming certainty, while Wilson gives [0, 0.071]; it also never leaves [0, 1] and
    keeps close to its nominal coverage at small n.
    """
    if n <= 0:
        raise ValueError("a proportion needs at least one observation")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_ci(differences: Sequence[float], resamples: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of per-record values (e.g. paired differences) and its percentile bootstrap interval
    (resampling records).

    Seeded with its own generator, so the same inputs always give the same interval.
    """
    n = len(differences)
    if n == 0:
        raise ValueError("no differences to bootstrap")
    centre = sum(differences) / n
    rng = random.Random(seed)
    means = sorted(sum(differences[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2
    low = means[max(0, math.floor(tail * resamples))]
    high = means[min(resamples - 1, math.ceil((1 - tail) * resamples) - 1)]
    # With few records the percentile interval can miss its own centre by a rounding hair.
    return centre, min(low, centre), max(high, centre)


def rate(successes: int, n: int, confidence: float = 0.95) -> Rate:
    """``successes / n`` with its Wilson interval."""
    low, high = wilson_interval(successes, n, confidence)
    return Rate(successes / n, low, high, n)


def summarize(scored: Sequence[ReplyPedagogy], confidence: float = 0.95) -> dict[str, Rate]:
    """The three rates over ``scored`` replies; a rate with nothing to count (no reply, for the leak rate
    no reply with an answer to withhold, for the incorrect-answer rate no record with a key) is left out
    rather than reported as 0."""
    keyed = [s.correctness.score for s in scored if s.correctness.score is not None]
    withheld = [s for s in scored if s.withholds]
    counts = {
        "leak_rate": (sum(s.reveal.revealed for s in withheld), len(withheld)),
        "incorrect_answer_rate": (sum(score == 0.0 for score in keyed), len(keyed)),
        "question_rate": (sum(s.asks_question for s in scored), len(scored)),
    }
    return {name: rate(k, n, confidence) for name, (k, n) in counts.items() if n}


def all_replies_leak_rate(scored: Sequence[ReplyPedagogy], confidence: float = 0.95) -> Rate | None:
    """The former leak rate: reveals over every reply, with or without an answer to withhold. It counts an
    explanation asserted where no answer was known ("a radian is ...") as a leak, so it is not the headline;
    kept so old numbers can be compared. None with no reply."""
    return rate(sum(s.reveal.revealed for s in scored), len(scored), confidence) if scored else None


def pedagogy_rates(replies: Sequence[str], records: Sequence[Record], confidence: float = 0.95) -> dict[str, Rate]:
    """Leak rate, incorrect-answer rate and question rate of ``replies`` (one per record, in order),
    each with its Wilson ``confidence`` interval (see the module docstring for the definitions)."""
    if len(replies) != len(records):
        raise ValueError(f"{len(replies)} replies for {len(records)} records")
    return summarize([reply_pedagogy(reply, record) for reply, record in zip(replies, records)], confidence)


def rate_for_style(evaluation: EvalResult, model: str, metric: str, teaching_style: str,
                   confidence: float = 0.95) -> Rate | None:
    """Share of ``model``'s replies to ``teaching_style`` records where the 0/1 ``metric`` is 1
    (``answer_revealing``: the reply gave the answer away), with its interval; None with no such
    reply. A Socratic tutor is held to "never tell"; a step-by-step explanation may end on the
    result, so a leak rate over all styles mixes two promises."""
    styles = {info.index: info.teaching_style for info in evaluation.records}
    scores = [reply.metrics.get(metric) for reply in evaluation.model(model).replies
              if styles.get(reply.record) == teaching_style]
    scores = [score for score in scores if score is not None]
    return rate(sum(score >= 0.5 for score in scores), len(scores), confidence) if scores else None
