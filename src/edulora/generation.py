"""The one decoder: batched tutor replies with a KV cache, for notebooks, evaluation, the demo and the server.

``decode`` runs a batch of :class:`Request` rows token by token. Each row chooses its next token
through transformers' logits processors (repetition penalty, temperature, top-p) applied to that
row's own real tokens only, never to padding, so a reply does not depend on what else shared its
batch; and the server's streaming engine calls the very same loop, so what a teacher sees served
is what ``Tutor.reply`` and ``edulora eval`` produce. Rows leave the batch as soon as they finish
(a short answer never pays for a long neighbour), and rows may use different LoRA adapters in
one forward pass (PEFT's ``adapter_names``).
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import torch

#: PEFT's reserved adapter name for "no adapter" in a mixed-adapter batch.
PEFT_BASE = "__base__"


@dataclass
class Sampling:
    """How a reply is decoded; one set of rules for every caller (``Tutor``, ``edulora eval``, the server)."""

    max_new_tokens: int = 200
    #: 0 means greedy decoding (deterministic); above 0, sampling with ``top_p``.
    temperature: float = 0.0
    top_p: float = 1.0
    #: Small models loop without it; 1.1 is mild enough not to distort explanations.
    repetition_penalty: float = 1.1
    #: Text that ends the reply where it first appears (not included), as in OpenAI's ``stop``.
    stop: tuple[str, ...] = ()
    #: Seed for sampling; None draws a fresh one per reply.
    seed: int | None = None


def logits_processors(sampling: Sampling):
    """transformers' processors for these rules, in the order ``generate`` applies them."""
    from transformers import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
                              TopPLogitsWarper)

    processors = LogitsProcessorList()
    if sampling.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(sampling.repetition_penalty))
    if sampling.temperature > 0:
        if sampling.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(sampling.temperature))
        if sampling.top_p < 1.0:
            processors.append(TopPLogitsWarper(sampling.top_p))
    return processors


def stop_token_ids(tokenizer) -> list[int]:
    """End-of-turn tokens of the common chat templates, plus EOS."""
    ids = {tokenizer.eos_token_id}
    vocab = tokenizer.get_vocab()
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
        if token in vocab:
            ids.add(tokenizer.convert_tokens_to_ids(token))
    return sorted(i for i in ids if i is not None)


@dataclass
class Reply:
    text: str
    #: New tokens generated (the end-of-turn token not counted).
    tokens: int
    #: Wall time of the batch the reply was decoded in.
    seconds: float
    finish_reason: str = "stop"


class Request:
    """One row to decode. Subclasses (the server's streaming generation) override ``emit``/``finish``/``cancelled``.

    ``adapter`` names the PEFT adapter for this row in a mixed batch; None runs the model as it is
    (its active adapter, or none inside ``disable_adapter``).
    """

    def __init__(self, prompt_ids: Sequence[int], sampling: Sampling, adapter: str | None = None):
        self.prompt_ids = list(prompt_ids)
        self.sampling = sampling
        self.adapter = adapter
        #: The reply so far (what ``emit`` received).
        self.output = ""
        self.tokens = 0
        #: Prompt tokens the decoder took from its cache instead of evaluating (llama.cpp's slots keep one).
        self.cached_tokens = 0
        self.finish_reason: str | None = None

    @property
    def cancelled(self) -> bool:
        return False

    def emit(self, text: str) -> None:
        """Text that is now certain (never taken back by a later token or stop string)."""
        self.output += text

    def finish(self, reason: str) -> None:
        self.finish_reason = reason


class CountedRequest(Request):
    """A request that ticks a progress bar when it finishes: with many replies in flight together (llama.cpp's
    continuous batching, a batch of rows) finishing is the only point at which progress exists."""

    def __init__(self, prompt_ids: Sequence[int], sampling: Sampling, adapter: str | None = None, bar=None):
        super().__init__(prompt_ids, sampling, adapter)
        self.bar = bar

    def finish(self, reason: str) -> None:
        super().finish(reason)
        if self.bar is not None:
            self.bar.update(1)


class StopStrings:
    """Where a reply's stop strings cut it, and how much of its end may still turn into one.

    Both checks run on every new token, so each is linear in the stop strings' length: finding
    one is ``str.find`` from where a match could still begin, and the longest end of the text that
    starts a stop string comes from one Knuth-Morris-Pratt pass over the text's last characters
    (trying every length against ``startswith`` would cost the square of that length per token).
    """

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.longest = max((len(s) for s in self.stops), default=0)
        # fallback[i]: length of the longest proper prefix of stop[: i + 1] that is also its suffix.
        self._fallback = [self._prefix_function(s) for s in self.stops]

    @staticmethod
    def _prefix_function(stop: str) -> list[int]:
        fallback, k = [0] * len(stop), 0
        for i in range(1, len(stop)):
            while k and stop[i] != stop[k]:
                k = fallback[k - 1]
            if stop[i] == stop[k]:
                k += 1
            fallback[i] = k
        return fallback

    def find(self, text: str, start: int = 0) -> int:
        """Index of the first stop string in ``text`` that begins at or after ``start``, or -1."""
        hits = [i for i in (text.find(s, start) for s in self.stops) if i >= 0]
        return min(hits, default=-1)

    def pending(self, text: str, end: int) -> int:
        """Length of the longest ``text[:end]`` ending that is the start (not all) of a stop string."""
        held = 0
        for stop, fallback in zip(self.stops, self._fallback, strict=True):
            matched = 0  # characters of ``stop`` matched by the text read so far
            for char in text[max(0, end - len(stop) + 1): end]:
                while matched and char != stop[matched]:
                    matched = fallback[matched - 1]
                if char == stop[matched]:
                    matched += 1
            held = max(held, matched)
        return held


class Row:
    """Decoding state of one request: stop ids and strings, length limit, streamed text.

    Public because every engine (PyTorch here, llama.cpp, vLLM) feeds its tokens through it, so a
    reply ends and streams the same way whichever backend decoded it."""

    def __init__(self, request: Request, decode_text, stop_ids: set[int], on: torch.device):
        self.request = request
        self.sampling = request.sampling
        self.decode_text = decode_text
        self.stop_ids = stop_ids
        self.processors = logits_processors(self.sampling)
        # Prompt and reply tokens of this row only, for the repetition penalty.
        self.ids = torch.empty(len(request.prompt_ids) + self.sampling.max_new_tokens + 1, dtype=torch.long, device=on)
        self.ids[: len(request.prompt_ids)] = torch.tensor(request.prompt_ids, dtype=torch.long)
        self.length = len(request.prompt_ids)
        self.tokens: list[int] = []
        self.emitted = 0
        self.stops = StopStrings(self.sampling.stop)
        self.searched = 0  # stop strings cannot start before this index: each token's check is linear
        self.generator: torch.Generator | None = None
        if self.sampling.temperature > 0:
            self.generator = torch.Generator(device=on)
            self.generator.manual_seed(self.sampling.seed if self.sampling.seed is not None
                                       else int.from_bytes(uuid.uuid4().bytes[:8], "little"))

    def choose(self, logits: torch.Tensor) -> int:
        scores = self.processors(self.ids[None, : self.length], logits[None])[0]
        if self.generator is None:
            return int(torch.argmax(scores))
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def advance(self, token: int) -> bool:
        """Take one decoded token; emit the text that is now certain; True when the row is finished."""
        request = self.request
        if request.cancelled:
            request.finish("cancelled")
            return True
        if token in self.stop_ids:
            return self.finish(self.decode_text(self.tokens), "stop")
        self.tokens.append(token)
        self.ids[self.length] = token
        self.length += 1
        request.tokens = len(self.tokens)
        text = self.decode_text(self.tokens)
        cut = self.stops.find(text, self.searched)
        if cut >= 0:
            return self.finish(text[:cut], "stop")
        if len(self.tokens) >= self.sampling.max_new_tokens:
            return self.finish(text, "length")
        # Hold back what may still change: a half-decoded UTF-8 character, or the start of a stop string.
        safe = len(text.rstrip("\ufffd"))
        self.searched = max(0, safe - self.stops.longest)
        self._send(text, safe - self.stops.pending(text, safe))
        return False

    def _send(self, text: str, upto: int) -> None:
        start = max(self.emitted, len(text) - len(text.lstrip()))  # a reply never starts with blank space
        if upto > start and text.strip():
            self.request.emit(text[start:upto])
            self.emitted = upto

    def finish(self, text: str, reason: str) -> bool:
        """End the row with ``text`` as the whole reply (its unsent part is emitted first)."""
        self._send(text.rstrip(), len(text.rstrip()))
        self.request.finish(reason)
        return True


def _forward_options(model) -> tuple[bool, str]:
    """Whether the network can compute logits for the last position only, and its KV-cache argument name."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    accepted = inspect.signature(base.forward).parameters
    # transformers 5.x renamed ``past_key_values`` to ``cache`` in some architectures.
    return "logits_to_keep" in accepted, "cache" if "cache" in accepted else "past_key_values"


@torch.inference_mode()
def decode(model, tokenizer, requests: Sequence[Request], decode_text=None) -> int:
    """Decode every request to its end; returns the number of forward steps taken.

    ``decode_text`` turns a row's tokens into text (the server passes a thread-safe one).
    """
    decode_text = decode_text or (lambda tokens: tokenizer.decode(tokens, skip_special_tokens=True))
    on = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop_ids = set(stop_token_ids(tokenizer))
    logits_to_keep, cache_arg = _forward_options(model)
    mixed = any(r.adapter is not None for r in requests) and hasattr(model, "peft_config")
    width = max(len(r.prompt_ids) for r in requests)
    ids = torch.full((len(requests), width), pad_id, dtype=torch.long, device=on)
    mask = torch.zeros((len(requests), width), dtype=torch.long, device=on)
    for i, r in enumerate(requests):
        ids[i, width - len(r.prompt_ids):] = torch.tensor(r.prompt_ids, device=on)
        mask[i, width - len(r.prompt_ids):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift real positions
    rows = [Row(r, decode_text, stop_ids, on) for r in requests]
    cache, steps = None, 0
    while rows:
        extra: dict = {"logits_to_keep": 1} if logits_to_keep else {}
        if mixed:
            extra["adapter_names"] = [r.request.adapter or PEFT_BASE for r in rows]
        extra[cache_arg] = cache
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **extra)
        cache = getattr(out, cache_arg)
        logits = out.logits[:, -1, :].float()
        steps += 1
        keep, tokens = [], []
        for i, row in enumerate(rows):
            token = row.choose(logits[i])
            if not row.advance(token):
                keep.append(i)
                tokens.append(token)
        last = positions[:, -1:]
        if len(keep) < len(rows):
            if not keep:
                break
            index = torch.tensor(keep, device=on)
            cache.batch_select_indices(index)
            mask, last = mask[index], last[index]
            rows = [rows[i] for i in keep]
        ids = torch.tensor(tokens, device=on).unsqueeze(1)
        mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
        positions = last + 1
    return steps


def generate(model, tokenizer, prompts: Sequence[str], sampling: Sampling | None = None,
             batch_size: int = 8, desc: str = "generating replies") -> list[Reply]:
    """One reply per rendered prompt (see ``PromptFormat.render``), decoded in batches of ``batch_size``.

    Every long wait that decodes (pedagogy and drift probes, the base's replay answers, evaluation replies)
    comes through here, so one progress bar, counted in replies, covers them all. It ticks as each reply
    ends, not once per batch: a batch of 64 rows (the base's replay answers) runs for tens of seconds."""
    from .progress import bar

    sampling = sampling or Sampling()
    replies: list[Reply] = []
    shown = bar(desc=desc, total=len(prompts), unit="reply")
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start: start + batch_size]
        requests = [CountedRequest(tokenizer(p, add_special_tokens=False)["input_ids"], sampling, bar=shown)
                    for p in chunk]
        began = time.perf_counter()
        decode(model, tokenizer, requests)
        seconds = time.perf_counter() - began
        replies += [Reply(r.output.strip(), r.tokens, seconds, r.finish_reason or "stop") for r in requests]
    shown.close()
    return replies

