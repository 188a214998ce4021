"""Preference pairs from a tutor's own mistakes: sample replies, score them, pair a failing one with a good one.

For each training prompt the tutor writes ``samples`` replies (seeded sampling, so a run is
repeatable); each is scored with the pedagogy metrics — gave the answer away (leak), asserted a
wrong answer, did not keep its teaching style, gave no guidance — and, when given, by the learned
judges (``evaluation.judges``): a reply they are at least ``JUDGE_THRESHOLD`` sure reveals the answer,
gives no guidance or leaves the student nothing to do fails too, and the pair records their
probability under ``judged``. The worst failing reply becomes
``rejected``; ``chosen`` is the record's reference reply when it passes the same checks, else the
first passing sample. Held-out records are never sampled: any training record whose conversation
also appears in ``held_out`` (e.g. a run's eval.jsonl) is dropped before anything is generated.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..data.pairs import PreferencePair, prompt_key
from ..data.schema import Record
from ..generation import Request, Sampling, decode
from .cuts import open_turns
from .metrics import providing_guidance, style_adherence
from .rates import record_history, reply_pedagogy

if TYPE_CHECKING:
    from .judges import Judgement, Judges

#: Failure kinds, most serious first: the rejected reply is the one whose worst failure ranks first.
FAILURES = ("leak", "incorrect_answer", "judged_reveals_answer", "off_style", "no_guidance", "judged_no_guidance",
            "judged_not_actionable")
#: The judges' failures: kind -> (dimension, the label that fails); the server's judged flags are these too.
JUDGED_FAILURES = {"judged_reveals_answer": ("revealing_of_the_answer", "Yes"),
                   "judged_no_guidance": ("providing_guidance", "No"),
                   "judged_not_actionable": ("actionability", "No")}
#: A judge's verdict fails a reply only when its probability of the failing label is at least this: the
#: judges err (MODEL_CARD.md), and a good reply rejected teaches the tutor the wrong thing.
JUDGE_THRESHOLD = 0.8
#: Style adherence under this is "off style" (socratic without a question scores 0.3, a leak 0).
STYLE_PASS = 0.5


@dataclass
class MinedPairs:
    pairs: list[PreferencePair]
    #: Rejected replies per failure kind (a reply may count under several).
    failures: Counter = field(default_factory=Counter)
    prompts: int = 0
    #: Training records left out because their conversation is in the held-out set.
    held_out_skipped: int = 0
    #: Prompts where every sample passed (nothing to learn) or none did and the reference failed too.
    all_passed: int = 0
    none_passed: int = 0
    #: Whether the learned judges failed replies too (``judged_*`` kinds).
    judged: bool = False

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {self.failures[k]}" for k in FAILURES if self.judged or k not in JUDGED_FAILURES)
        return (f"{self.prompts} prompts -> {len(self.pairs)} pairs (rejected for: {kinds}); "
                f"{self.all_passed} prompts had no failing reply, {self.none_passed} no passing one; "
                f"{self.held_out_skipped} records left out (in the held-out set)")


def judged_failures(verdict: Mapping[str, Judgement], threshold: float = JUDGE_THRESHOLD) -> dict[str, float]:
    """The judges' failures in ``verdict`` (one reply's), each with the probability of its failing label."""
    found = {kind: verdict[dim].probabilities.get(label, 0.0) for kind, (dim, label) in JUDGED_FAILURES.items()}
    return {kind: p for kind, p in found.items() if p >= threshold}


def failures(reply: str, record: Record, verdict: Mapping[str, Judgement] | None = None,
             threshold: float = JUDGE_THRESHOLD) -> list[str]:
    """What is wrong with ``reply`` as the tutor's answer to ``record``, most serious first (empty: it passes);
    ``verdict``: the judges' on the reply, whose sure failures (``judged_failures``) count too."""
    meta = record.metadata
    history = record_history(record)
    scored = reply_pedagogy(reply, record, history)
    found = []
    if scored.reveal.revealed:
        found.append("leak")
    if scored.correctness.score == 0.0:
        found.append("incorrect_answer")
    if meta.teaching_style is not None and style_adherence(reply, meta.teaching_style, meta.answer,
                                                           history).score < STYLE_PASS:
        found.append("off_style")
    if providing_guidance(reply, history, scored.reveal.revealed).label == "No":
        found.append("no_guidance")
    found += judged_failures(verdict, threshold) if verdict else []
    return sorted(found, key=FAILURES.index)


def _severity(found: list[str]) -> tuple:
    return tuple(kind not in found for kind in FAILURES)  # sorts the most serious failures first


def mine_pairs(tutor, records: Sequence[Record], *, samples: int = 4, seed: int = 0, temperature: float = 0.8,
               max_new_tokens: int = 200, held_out: Sequence[Record] = (), batch_size: int = 8,
               progress: bool = False, judges: Judges | None = None,
               judge_threshold: float = JUDGE_THRESHOLD) -> MinedPairs:
    """Pairs (failing sample rejected, reference or passing sample chosen) from ``tutor``'s replies to ``records``.

    Keyed dialogues are asked at each tutor turn where the student has not reached the key yet
    (``cuts.open_turns``), where a leak is possible. With ``judges``, samples and references are also
    failed by the judges' sure verdicts (``judged_failures``). Deterministic for a given ``seed``.
    """
    from ..progress import bar as progress_bar

    banned = {prompt_key(tutor.format.prompt_and_reference(r)[0]) for r in open_turns(held_out)}
    candidates = [(r, tutor.format.prompt_and_reference(r)) for r in open_turns(records)]
    allowed = [(r, prompt) for r, prompt in candidates if prompt_key(prompt[0]) not in banned]
    kept, prompts = [r for r, _ in allowed], [prompt for _, prompt in allowed]
    result = MinedPairs([], held_out_skipped=len(candidates) - len(kept), prompts=len(kept), judged=judges is not None)
    bar = progress_bar(total=len(kept), desc="mining pairs", unit="prompt", enabled=progress)
    per_batch = max(1, batch_size // samples)
    for start in range(0, len(kept), per_batch):
        chunk = range(start, min(start + per_batch, len(kept)))
        # One seed per (record, sample), so a reply does not depend on what shared its batch.
        requests = [Request(tutor.tokenizer(tutor.format.render(prompts[i][0]), add_special_tokens=False)["input_ids"],
                            Sampling(max_new_tokens=max_new_tokens, temperature=temperature,
                                     seed=seed * 1_000_003 + i * samples + j))
                    for i in chunk for j in range(samples)]
        with tutor.active() as model:
            decode(model, tutor.tokenizer, requests)
        replies = [[r.output.strip() for r in requests[n * samples:(n + 1) * samples]] for n in range(len(chunk))]
        verdicts = _judged(judges, [kept[i] for i in chunk], [prompts[i][1] for i in chunk], replies)
        for n, i in enumerate(chunk):
            _pair(kept[i], prompts[i], replies[n], result, verdicts[n], judge_threshold)
        bar.update(len(chunk))
    bar.close()
    return result


def _judged(judges: Judges | None, records: list[Record], references: list[str], replies: list[list[str]]
            ) -> list[dict[str, Mapping[str, Judgement]]]:
    """Per record, reply text -> the judges' verdict, for its samples and its reference (one embedding pass)."""
    if judges is None:
        return [{} for _ in records]
    from .judges import judge_records

    texts = [[*dict.fromkeys([*samples, reference])] for samples, reference in zip(replies, references, strict=True)]
    flat = [(text, record) for record, group in zip(records, texts, strict=True) for text in group if text]
    verdicts = iter(judge_records([t for t, _ in flat], [r for _, r in flat], judges=judges) or [{}] * len(flat))
    return [{text: next(verdicts) for text in group if text} for group in texts]


def _pair(record: Record, prompt: tuple[list[dict], str], replies: list[str], result: MinedPairs,
          verdicts: Mapping[str, Mapping[str, Judgement]], threshold: float) -> None:
    scored = [(reply, failures(reply, record, verdicts.get(reply), threshold)) for reply in replies if reply]
    failing = sorted((s for s in scored if s[1]), key=lambda s: _severity(s[1]))
    if not failing:
        result.all_passed += 1
        return
    messages, reference = prompt
    passing = [reply for reply, found in scored if not found]
    chosen = (reference if not failures(reference, record, verdicts.get(reference), threshold)
              else (passing[0] if passing else None))
    if chosen is None:
        result.none_passed += 1
        return
    rejected, found = failing[0]
    result.failures.update(found)
    conversation = [m for m in messages if m["role"] != "system"]  # persona and key come from metadata
    extra = {"failures": found, "source": "mined"}
    judged = judged_failures(verdicts[rejected], threshold) if verdicts.get(rejected) else {}
    if judged:  # why it was rejected, in the judges' words: kind -> their probability
        extra["judged"] = judged
    result.pairs.append(PreferencePair(conversation, chosen, rejected, record.metadata, extra))


def mine_run_pairs(run: str, data: str | None, out: str, *, samples: int = 4, seed: int = 0, temperature: float = 0.8,
                   max_new_tokens: int = 200, limit: int | None = None, progress: bool = True,
                   overwrite: bool = False, judged: bool | None = None) -> MinedPairs:
    """``edulora data pairs``: mine pairs with a run's adapter on ``data`` (default: the run's training
    file), leaving out every conversation of the run's held-out set, and write them to ``out`` (an
    existing ``out`` only with ``overwrite``). The learned judges fail replies too when ``judged``, by
    default when the sentence-embedding model they read is installed."""
    from ..data.formats import load_records
    from ..data.pairs import write_pairs
    from ..data.outputs import check_outputs
    from ..errors import EduloraError
    from ..rundir import RunDir
    from ..tutor import Tutor
    from .judges import ready_judges

    run_dir = RunDir.open(run)
    source = data or run_dir.read_data_info().get("train_file")
    if not source:
        raise EduloraError(f"{run}: the run names no training file; pass --data")
    check_outputs({"--data": source, "the run's eval set": run_dir.eval_file}, {"--out": out}, overwrite=overwrite)
    records = load_records(source)[:limit]
    tutor = Tutor.load(run)
    judges = ready_judges(required=bool(judged)) if judged is not False else None
    result = mine_pairs(tutor, records, samples=samples, seed=seed, temperature=temperature,
                        max_new_tokens=max_new_tokens, held_out=run_dir.eval_records(), progress=progress,
                        judges=judges)
    write_pairs(out, result.pairs)
    return result
