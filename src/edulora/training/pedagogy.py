"""Pedagogy during training: at each evaluation the tutor answers a fixed sample of held-out records,
and the replies are scored for what a teacher cares about (answer given away, wrong answer asserted,
a question asked, style kept). Checkpoints can be chosen by these instead of by the loss alone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..data.schema import Record
from ..errors import EduloraError
from ..formatting import PromptFormat
from ..generation import Sampling, generate

#: The learned judges' measures (``evaluation.judges``), named as in an evaluation's rates: the share of the
#: probe's replies judged "Yes" on noticing the student's mistake, guiding, leaving the student something
#: to do, and giving the answer away; whether a higher value is better.
JUDGED = {"judged_mistake_identification_rate": True, "judged_providing_guidance_rate": True,
          "judged_actionability_rate": True, "judged_revealing_of_the_answer_rate": False}
#: Measures that ``training.selection.select_by`` may name and whether a higher value is better.
HIGHER_IS_BETTER = {"leak_rate": False, "incorrect_answer_rate": False, "style_adherence": True, **JUDGED}
#: Score of an evaluation whose measure is further than the tolerance from the best seen: above any eval loss.
OUT_OF_BAND = 1e2


def score_replies(replies: Sequence[str], records: Sequence[Record]) -> dict[str, float]:
    """Leak, incorrect-answer and question rates and the mean style adherence of ``replies`` to ``records``.

    A measure that applies to none of the records (no key, no teaching style) is left out.
    """
    from ..evaluation.metrics import style_adherence
    from ..evaluation.rates import pedagogy_rates

    scores = {name: rate.value for name, rate in pedagogy_rates(replies, records).items() if rate.n}
    styled = [style_adherence(reply, r.metadata.teaching_style, answer=r.metadata.answer).score
              for reply, r in zip(replies, records) if r.metadata.teaching_style is not None]
    if styled:
        scores["style_adherence"] = sum(styled) / len(styled)
    return scores


def judged_scores(replies: Sequence[str], records: Sequence[Record], judges) -> dict[str, float]:
    """``JUDGED``: the share of ``replies`` the learned ``judges`` label "Yes" on each dimension (none
    when the embedder is a stand-in the heads cannot read, as ``judges.judge_records`` decides)."""
    from ..evaluation.judges import judge_records, judged_rates

    verdicts = judge_records(replies, records, judges=judges)
    return {name: rate.value for name, rate in judged_rates(verdicts).items()}


def measured(select_by: str, rates: dict[str, float]) -> float:
    """The measure ``select_by`` names among an evaluation's ``rates``."""
    if select_by in JUDGED and select_by not in rates:
        raise EduloraError(f"training.selection.select_by={select_by}: the learned judges gave no verdict "
                           "on the held-out replies")
    if select_by not in rates:
        raise EduloraError(f"training.selection.select_by={select_by}: no held-out reply could be scored for it "
                           "(does the evaluation data carry metadata.answer / teaching_style?)")
    return rates[select_by]


def badness(select_by: str, value: float) -> float:
    """A value of the measure ``select_by`` as "lower is better" (flipped where higher is better)."""
    return 1.0 - value if HIGHER_IS_BETTER[select_by] else value


def within_band(badness_: float, best: float, tolerance: float) -> bool:
    """Whether a measure this bad counts as equal to the best seen (a rounding margin for rates like 1/12)."""
    return badness_ <= best + tolerance + 1e-9


def selection_score(badness_: float, eval_loss: float, best: float, tolerance: float = 0.0) -> float:
    """Lower is better. ``best`` is the lowest badness seen so far (this evaluation's included).

    Within ``tolerance`` of it the score is the eval loss: a dozen replies cannot tell 0 leaks from 1,
    so among such evaluations the loss decides. Further away it is ``OUT_OF_BAND`` plus the badness,
    worse than any evaluation within the band.
    """
    return eval_loss if within_band(badness_, best, tolerance) else OUT_OF_BAND + badness_


def applies(select_by: str, record: Record) -> bool:
    """Whether a record can show ``select_by``: leaks and wrong answers need the key, adherence a style."""
    if select_by in ("leak_rate", "incorrect_answer_rate"):
        return record.metadata.answer is not None
    if select_by == "style_adherence":
        return record.metadata.teaching_style is not None
    return True


class PedagogyProbe:
    """A fixed, seeded sample of held-out records and the prompts the tutor answers for them.

    Keyed dialogues are asked at every tutor turn where the student has not reached the key yet
    (``evaluation.cuts.open_turns``: where telling is possible), and the sample is drawn among the
    records the selection measure applies to (e.g. those with a key for ``leak_rate``), so a small
    sample still measures what chooses the checkpoint.

    The learned judges (``JUDGED``) score the replies too when ``judged`` is True, or by default when the
    sentence-embedding model they read is installed (always when ``select_by`` is a judged measure). The
    judges and MiniLM are loaded here, once per run, not at each evaluation.
    """

    def __init__(self, records: Sequence[Record], fmt: PromptFormat, size: int, max_new_tokens: int, seed: int = 0,
                 select_by: str = "eval_loss", tolerance: int = 0, judged: bool | None = None):
        from ..evaluation.cuts import open_turns
        from ..evaluation.judges import ready_judges  # here: the judges bring numpy

        pool = [r for r in open_turns(records) if applies(select_by, r)]
        if not pool:
            raise EduloraError(f"training.selection.select_by={select_by} needs held-out records "
                               + ("with a teaching_style" if select_by == "style_adherence" else "with metadata.answer"))
        indices = sorted(random.Random(seed).sample(range(len(pool)), min(size, len(pool))))
        self.records = [pool[i] for i in indices]
        self.format = fmt
        self.prompts = [fmt.render(fmt.prompt_and_reference(r)[0]) for r in self.records]
        self.sampling = Sampling(max_new_tokens=max_new_tokens)
        #: ``tolerance`` replies as a rate: measures this close to the best count as equal when choosing.
        self.tolerance = tolerance / len(self.records)
        required = select_by in JUDGED or bool(judged)
        self.judges = ready_judges(required) if required or judged is None else None

    def replies(self, model) -> list[str]:
        was_training = model.training
        model.eval()
        try:
            # 8 rows: with the adapter on, larger batches cost much memory (bf16: 40 rows peaked 1.8 GiB above 8;
            # benchmarks/history/benchmarks-2026-12.md, "The demo on an AVX-512 CPU").
            out = generate(model, self.format.tokenizer, self.prompts, self.sampling, batch_size=8,
                           desc="pedagogy probe")
        finally:
            model.train(was_training)
        return [r.text for r in out]

    def score(self, replies: Sequence[str]) -> dict[str, float]:
        """The rule measures (``score_replies``) and, with judges, the judged ones of replies to ``records``."""
        judged = judged_scores(replies, self.records, self.judges) if self.judges is not None else {}
        return score_replies(replies, self.records) | judged

    def measure(self, model) -> dict[str, float]:
        return self.score(self.replies(model))
