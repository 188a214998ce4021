"""Batched tutor replies with a KV cache, prompted exactly as in training (``formatting.render_prompt``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .formatting import Message, render_prompt


@dataclass
class Sampling:
    """How the next token is chosen; shared by offline generation and the server's requests."""

    #: 0 means greedy decoding (deterministic); above 0, sampling with ``top_p``.
    temperature: float = 0.0
    top_p: float = 1.0
    #: Small models loop without it; 1.1 is mild enough not to distort explanations.
    repetition_penalty: float = 1.1
    seed: int | None = None


@dataclass
class GenerationSettings(Sampling):
    max_new_tokens: int = 200


@dataclass
class Reply:
    text: str
    new_tokens: int
    seconds: float


def stop_token_ids(tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
        token_id = tokenizer.convert_tokens_to_ids(token) if token in tokenizer.get_vocab() else None
        if token_id is not None:
            ids.add(token_id)
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def generate_replies(model, tokenizer, conversations: Sequence[Sequence[Message]], template: str,
                     settings: GenerationSettings | None = None, batch_size: int = 8) -> list[Reply]:
    """One reply per conversation (each ending with a user turn), generated in left-padded batches."""
    settings = settings or GenerationSettings()
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    on = next(model.parameters()).device
    tokenizer.padding_side = "left"  # generation appends on the right, so padding must sit on the left
    prompts = [render_prompt(c, tokenizer, template) for c in conversations]
    replies: list[Reply] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        encoded = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(on)
        sampling = settings.temperature > 0
        began = time.perf_counter()
        output = model.generate(
            **encoded, max_new_tokens=settings.max_new_tokens, do_sample=sampling,
            temperature=settings.temperature if sampling else None, top_p=settings.top_p if sampling else None,
            top_k=None, repetition_penalty=settings.repetition_penalty, eos_token_id=stop_token_ids(tokenizer),
            pad_token_id=tokenizer.pad_token_id, use_cache=True)
        seconds = time.perf_counter() - began
        new = output[:, encoded["input_ids"].shape[1]:]
        for row in new:
            stops = set(stop_token_ids(tokenizer)) | {tokenizer.pad_token_id}
            length = next((i for i, t in enumerate(row.tolist()) if t in stops), len(row))
            text = tokenizer.decode(row[:length], skip_special_tokens=True).strip()
            replies.append(Reply(text, length, seconds))
    return replies
