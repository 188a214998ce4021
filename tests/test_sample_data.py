"""The packaged sample data teaches what the prompt asks: with the teacher's key given as private
material ("the student must work this out; never state the final answer"), the reference reply
guides the student and leaves the final answer to them."""

from __future__ import annotations

import pytest

from edulora.data import sample_data_path
from edulora.data.formats import load_records
from edulora.data.schema import Dialogue, Example
from edulora.evaluation.metrics import answer_correctness, answer_revealing
from edulora.evaluation.rates import record_history

#: Enough keyed records that the demo still trains the tutor on grounded (keyed) prompts.
MIN_KEYED_TUTORING = 150


def _reference_and_context(record: Example | Dialogue) -> tuple[str, dict]:
    """The reference reply and what ``answer_revealing`` should read it against: the problem of a
    single-turn example, the turns before the final tutor turn of a dialogue."""
    if isinstance(record, Example):
        return record.response, {"problem": record.instruction + " " + (record.context or "")}
    last = max(i for i, t in enumerate(record.turns) if t.role == "assistant")
    history = [("student" if t.role == "user" else "tutor", t.content)
               for t in record.turns[:last] if t.role != "system"]
    return record.turns[last].content, {"history": history}


@pytest.mark.parametrize("name", ["tutoring.jsonl", "dialogues.jsonl", "transcripts.csv"])
def test_keyed_sample_references_neither_reveal_nor_contradict_their_key(name: str) -> None:
    problems = []
    keyed = 0
    for line, record in enumerate(load_records(sample_data_path(name)), 1):
        answer = record.metadata.answer
        if not answer:
            continue
        keyed += 1
        reply, where = _reference_and_context(record)
        # As the brief reads it (the problem or the dialogue so far) and as the evaluation runner does.
        for context in (where, {"history": record_history(record)}):
            reveal = answer_revealing(reply, answer, **context)
            correct = answer_correctness(reply, answer, **context)
            if reveal.revealed or correct.score != 1.0:
                problems.append(f"{name}:{line} key {answer!r}: {reveal.reason} / {correct.reason}: "
                                f"{reveal.evidence or correct.evidence!r}")
                break
    assert keyed > 0
    assert not problems, "\n".join(problems)


def test_most_tutoring_samples_keep_their_key() -> None:
    records = load_records(sample_data_path("tutoring.jsonl"))
    keyed = [r for r in records if r.metadata.answer]
    assert len(keyed) >= MIN_KEYED_TUTORING, len(keyed)
    # No solution without a key: the evaluation would read a key from it (its final answer).
    assert all(r.metadata.answer for r in records if r.metadata.solution)


@pytest.mark.parametrize("config", ["default.yaml", "mathematics.yaml"])
def test_the_shipped_configs_train_on_the_one_packaged_copy(config):
    """The sample data exists once, inside the package; the configs (read from a checkout's root, like
    every relative path) name that copy, so there is no second one to drift from it."""
    from pathlib import Path

    from edulora.config import load_config

    root = Path(__file__).resolve().parents[1]
    train_file = load_config(root / "configs" / config).data.train_file
    assert (root / train_file).resolve() == sample_data_path("tutoring.jsonl").resolve()
    assert not (root / "examples" / "data").exists()
