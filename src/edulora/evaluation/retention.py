"""Retention: how far an adapter has drifted from its base model on requests that are not tutoring.

A tutor adapter should add teaching behaviour and keep what the base model could already do:
answer a plain question, follow an instruction, write a sentence, in the languages it handled.
Small models lose this easily (over-trained LoRA runs on 135M models collapse into repetition),
so every evaluation and every training run measures it on a fixed set of general prompts
(``sample_data/retention.jsonl``, written for this project; a user's file can replace it).

Two measures, both per model:

- **Drift** (the score): the base model answers each prompt greedily; along that continuation
  we compare, token by token, the tuned model's next-token distribution with the base's, as
  KL(tuned ‖ base) in nats, averaged over the continuation's tokens, then over prompts, with a
  bootstrap interval over prompts. Measured on the *base's* continuations (not the tuned model's)
  so that every adapter is scored on the same token positions, on text the base considers
  normal; the KL rather than the tuned model's loss on that text because the loss mixes drift
  with the base's own uncertainty (a prompt the base itself finds hard would read as drift),
  while the KL is exactly 0 for an adapter that changes nothing.
- **Degeneration** of the tuned model's own greedy replies to the same prompts: distinct-2,
  the longest repeated word span, and the share of replies that are empty or loop.

Replies are decoded as everywhere in edulora (greedy, repetition penalty 1.1, ``Sampling``), so
what is measured is what a user would see.

Which backend decodes what: the base's continuations, the token rows the KL is taken along, are
always decoded by the PyTorch network (greedy, adapters off), the same network whose logits give
the KL; llama.cpp would decode them from its quantized GGUF, whose greedy text is not the PyTorch
base's, and the drift would then depend on the backend and no longer match what training logs.
Each adapter's own replies (degeneration) are what a user is served, so ``measure`` takes them from a
``speaker``, the same tutor on the evaluation's backend (llama.cpp on a CPU), when one is given. The
base's own replies are its continuations, already decoded greedily by the PyTorch network with the same
settings: decoding them again on llama.cpp cost the demo 13 s on two cores for 40 prompts, and the two
backends' greedy replies differ only where near-tied tokens round differently (docs/serving.md, "The
llama.cpp backend: how close it is to the reference").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data.schema import Record
from ..errors import EduloraError
from ..formatting import PromptFormat
from ..generation import Sampling
from ..progress import bar
from .rates import bootstrap_ci, rate
from .results import Retention

#: A reply whose longest repeated word span reaches this many words is counted as looping: in a
#: reply of a few dozen words, repeating six words in a row is a loop, not a turn of phrase.
DEGENERATE_SPAN = 6
#: Upper bounds (nats per token) of the drift readings; rules of thumb from the tiny and 135M runs'
#: scale, documented in docs/evaluation.md, not a published standard.
READINGS = (
    (0.02, "negligible: answers general requests almost exactly as the base model does"),
    (0.1, "small: wording changes a little on general requests; what the base knew is kept"),
    (0.5, "moderate: general requests are answered noticeably differently; read a few replies"),
    (float("inf"), "large: the adapter has moved far from the base on general requests; "
                   "knowledge and fluency outside tutoring may be lost"),
)
_WORD = re.compile(r"\w+")
#: Rows decoded together for the base's continuations. With its adapters off the network keeps one row of
#: logits per prompt while decoding, so more rows cost little memory (SmolLM2-135M in fp32: 40 rows peaked
#: 95 MiB above 8 rows) and each step reads the weights once for all of them: 40 prompts took 10-12 s in
#: one batch against 22-24 s in batches of 8 (benchmarks/history/benchmarks-2026-12.md). Replies with an adapter on stay in
#: ``batch_size`` rows: in bf16 with fp32 LoRA weights, 40 rows peaked 1.8 GiB above 8.
BASE_DECODE_ROWS = 64


def drift_reading(drift: float) -> str:
    """The drift score in plain words."""
    return next(text for bound, text in READINGS if drift < bound)


def retention_records(path: str | Path | None = None, limit: int | None = None) -> list[Record]:
    """The general prompts: a user's file (any supported format) or our packaged ``retention.jsonl``."""
    from ..data.formats import load_records
    from ..data.samples import sample_data_path

    records = load_records(path if path else sample_data_path("retention.jsonl"))
    if not records:
        raise EduloraError(f"{path}: no retention prompts")
    return records[:limit] if limit else records


# --------------------------------------------------------------------------------------------
# Repetition (pure functions over text)
# --------------------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def distinct_n(text: str, n: int = 2) -> float:
    """Unique word n-grams over all word n-grams (1.0 for text too short to repeat one)."""
    tokens = words(text)
    grams = [tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def longest_repeat(text: str) -> int:
    """Length in words of the longest word sequence occurring at two different places (overlap allowed)."""
    tokens = words(text)
    best = 0
    # previous[j]: length of the common run ending at (i - 1, j); a self-alignment, O(n²) on short replies.
    previous = [0] * (len(tokens) + 1)
    for i in range(1, len(tokens) + 1):
        current = [0] * (len(tokens) + 1)
        for j in range(i + 1, len(tokens) + 1):
            if tokens[i - 1] == tokens[j - 1]:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def is_degenerate(text: str) -> bool:
    """Empty, or looping (a repeated span of ``DEGENERATE_SPAN`` words or more)."""
    return not words(text) or longest_repeat(text) >= DEGENERATE_SPAN


# --------------------------------------------------------------------------------------------
# Drift (the models)
# --------------------------------------------------------------------------------------------


class RetentionProbe:
    """Fixed general prompts, the base's greedy continuations of them, and the measures against those.

    The continuations are decoded once per network (with its adapters off) and reused for every
    adapter and, during training, for every evaluation, so each later drift costs two forward
    passes over the same rows and no decoding.
    """

    def __init__(self, records: Sequence[Record], fmt: PromptFormat, max_new_tokens: int = 48,
                 batch_size: int = 8, source: str = ""):
        self.format = fmt
        self.messages = [fmt.prompt_and_reference(r)[0] for r in records]
        self.prompts = [fmt.render(m) for m in self.messages]
        self.sampling = Sampling(max_new_tokens=max_new_tokens, temperature=0.0)
        self.batch_size = batch_size
        self.source = source
        #: id(network) -> (prompt ids, continuation ids, base replies); one entry per loaded base.
        self._references: dict[int, tuple[list[list[int]], list[list[int]], list[str]]] = {}

    def references(self, tutor) -> tuple[list[list[int]], list[list[int]], list[str]]:
        """Prompt token ids, the base's continuation token ids and its reply texts."""
        key = id(tutor.model)
        if key not in self._references:
            base_replies = self.replies(tutor.as_base(), max(self.batch_size, BASE_DECODE_ROWS))
            tokenize = self.format.tokenizer
            prompt_ids = [tokenize(p, add_special_tokens=False)["input_ids"] for p in self.prompts]
            continuation = [tokenize(text, add_special_tokens=False)["input_ids"] for text in base_replies]
            self._references[key] = (prompt_ids, continuation, base_replies)
        return self._references[key]

    def replies(self, tutor, rows: int | None = None) -> list[str]:
        """``tutor``'s greedy replies to the prompts, decoded ``rows`` at a time (default ``batch_size``)."""
        from ..generation import generate

        with tutor.active() as model:
            return [r.text for r in generate(model, tutor.tokenizer, self.prompts, self.sampling,
                                             rows or self.batch_size, desc="drift probe")]

    def kl_per_prompt(self, tutor) -> tuple[list[float], int]:
        """Mean per-token KL(tuned ‖ base) for each prompt with a non-empty continuation, and the token count."""
        prompt_ids, continuation, _ = self.references(tutor)
        rows = [(p, c) for p, c in zip(prompt_ids, continuation, strict=True) if c]
        if tutor.is_base or not rows:
            return [0.0] * len(rows), sum(len(c) for _, c in rows)
        values: list[float] = []
        # Two forward passes and a full-vocabulary KL per row: 58 s for the demo's 40 prompts on the loaded
        # 2-core machine (one thread), the longest silent wait of its evaluation before this bar.
        for start in bar(range(0, len(rows), self.batch_size), desc="drift probe: KL", unit="batch"):
            values += _batch_kl(tutor, rows[start: start + self.batch_size])
        return values, sum(len(c) for _, c in rows)

    def drift(self, tutor) -> float:
        """The mean of ``kl_per_prompt``: what training logs as ``eval_drift`` at each evaluation."""
        values, _ = self.kl_per_prompt(tutor)
        return sum(values) / len(values) if values else 0.0

    def measure(self, tutor, confidence: float = 0.95, resamples: int = 1000, seed: int = 0,
                speaker=None) -> Retention:
        """Drift with its interval, and the degeneration of the tutor's own replies: an adapter's generated by
        ``speaker`` (the same tutor loaded again, e.g. on llama.cpp by ``edulora.tutor.on_llamacpp``) when
        given, else by ``tutor``; the base's are its continuations (see the module's docstring)."""
        values, tokens = self.kl_per_prompt(tutor)
        if not values:
            raise EduloraError("retention: the base model gave an empty reply to every general prompt; "
                               "nothing to measure drift on")
        centre, low, high = bootstrap_ci(values, resamples, seed, confidence)
        if tutor.is_base:  # the base's greedy replies are its continuations, decoded already
            own = self.references(tutor)[2]
        elif speaker is not None and speaker.model is not tutor.model:
            own = [r.text for r in speaker.generate(self.messages, self.sampling, self.batch_size, desc="drift probe")]
        else:
            own = self.replies(tutor)
        return Retention(
            drift=centre, low=low, high=high, n=len(values), tokens=tokens, reading=drift_reading(centre),
            distinct_2=sum(distinct_n(t) for t in own) / len(own),
            longest_repeat=sum(longest_repeat(t) for t in own) / len(own),
            degenerate=rate(sum(is_degenerate(t) for t in own), len(own), confidence), data=self.source)


def _batch_kl(tutor, rows: Sequence[tuple[list[int], list[int]]]) -> list[float]:
    """Per-row mean KL over the continuation positions: one forward with the adapter, one without."""
    import torch
    import torch.nn.functional as F

    pad = tutor.tokenizer.pad_token_id if tutor.tokenizer.pad_token_id is not None else 0
    width = max(len(p) + len(c) for p, c in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (p, c) in enumerate(rows):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c)
        mask[i, : len(p) + len(c)] = 1  # right padding: real tokens keep their positions
    # Logits at position t predict token t + 1: the continuation's tokens are predicted from len(p) - 1 on.
    spans = [(len(p) - 1, len(p) - 1 + len(c)) for p, c in rows]

    def log_probs(tutor_view) -> list[Any]:
        with torch.inference_mode(), tutor_view.active() as model:
            on = next(model.parameters()).device
            logits = model(input_ids=ids.to(on), attention_mask=mask.to(on)).logits
            return [F.log_softmax(logits[i, a:b].float(), dim=-1) for i, (a, b) in enumerate(spans)]

    tuned, base = log_probs(tutor), log_probs(tutor.as_base())
    # kl_div(input, target) is KL(target ‖ input): here KL(tuned ‖ base) per position, summed over the vocabulary.
    return [float(F.kl_div(b, t, log_target=True, reduction="none").sum(-1).mean()) for t, b in zip(tuned, base)]


def measure_retention(tutor, records: Sequence[Record] | None = None, max_new_tokens: int = 48,
                      confidence: float = 0.95, seed: int = 0) -> Retention:
    """One tutor's drift from its base (its adapter disabled) on general prompts: ``records`` or our set.

    ``el.measure_retention(el.Tutor.load("runs/algebra")).reading`` says it in words; ``el.evaluate``
    measures the same for every model it compares.
    """
    chosen = list(records) if records is not None else retention_records()
    source = "edulora retention.jsonl" if records is None else "given records"
    return RetentionProbe(chosen, tutor.format, max_new_tokens, source=source).measure(tutor, confidence, seed=seed)
