"""From a record to tokens: the prompt format, label masking and batching.

``PromptFormat`` owns every prompt string: the template (the model's chat template or the
guide's ``### Instruction:`` one), the tutor persona built from the metadata, and the teacher's
key. Training, evaluation, the demo and the server all go through it, so a tuned tutor is always
asked in exactly the shape it was trained on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .data.schema import Dialogue, Example, Metadata, Record
from .errors import EduloraError

IGNORE_INDEX = -100  # label value PyTorch's cross-entropy skips

Message = dict[str, Any]

TEMPLATES = ("chat", "instruction")

def persona(meta: Metadata) -> str | None:
    """A tutor persona built from the metadata, so one adapter can serve several grades and styles."""
    if meta.subject is None and meta.grade_level is None and meta.teaching_style is None:
        return None
    subject = f"{meta.subject.replace('_', ' ')} " if meta.subject else ""
    audience = f" for {meta.grade_level.label} students" if meta.grade_level else ""
    style = f" Teach in a {meta.teaching_style.label} style." if meta.teaching_style else ""
    return f"You are a patient {subject}tutor{audience}.{style}"


def answer_key_text(meta: Metadata) -> str | None:
    """The teacher's key as private material: the tutor guides toward it and never states it.

    A 135M model cannot be the problem solver; given the key it can learn to steer the student to
    the right result instead of inventing one, and to keep the result for the student to find.
    """
    if meta.answer is None and meta.solution is None:
        return None
    parts = ["Teacher's key (private: the student must work this out; never state the final answer)."]
    if meta.answer is not None:
        parts.append(f"Final answer: {meta.answer}.")
    if meta.solution is not None:
        parts.append(f"Worked solution: {meta.solution.strip()}")
    return " ".join(parts)


def _instruction_prompt(messages: Sequence[Message]) -> str:
    """The guide's template; earlier turns and the persona go into the Context section."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    *history, last = turns
    context_lines = system + [f"{'Student' if m['role'] == 'user' else 'Tutor'}: {m['content']}" for m in history]
    context = "\n".join(context_lines)
    text = f"### Instruction: {last['content']}\n"
    if context:
        text += f"### Context: {context}\n"
    return text + "### Response: "


@dataclass(frozen=True)
class PromptFormat:
    """How a tutor is prompted: template, persona switch, teacher's key switch, and the tokenizer that renders it."""

    tokenizer: Any
    #: ``chat`` (the model's chat template) or ``instruction`` (the guide's ``### Instruction:`` template).
    template: str = "chat"
    #: Put subject / grade level / teaching style in a system prompt, so one adapter can serve several.
    system_prompt: bool = True
    #: Give the tutor the record's key (``metadata.answer`` / ``metadata.solution``) as private material.
    answer_key: bool = True

    @classmethod
    def create(cls, tokenizer, template: str = "auto", system_prompt: bool = True,
               answer_key: bool = True) -> PromptFormat:
        """``auto`` means the model's own chat template when it has one (chat models learn faster in their own format)."""
        has_chat = bool(getattr(tokenizer, "chat_template", None))
        if template == "auto":
            template = "chat" if has_chat else "instruction"
        elif template not in TEMPLATES:
            raise EduloraError(f"prompt template {template!r}: use auto, chat or instruction")
        elif template == "chat" and not has_chat:
            raise EduloraError("data.template is 'chat' but this tokenizer has no chat template; use 'instruction'")
        return cls(tokenizer, template, system_prompt, answer_key)

    def system_text(self, meta: Metadata) -> str | None:
        parts = [persona(meta) if self.system_prompt else None, answer_key_text(meta) if self.answer_key else None]
        return "\n".join(p for p in parts if p) or None

    def with_persona(self, messages: Sequence[Message], metadata: Metadata | None = None) -> list[Message]:
        """The conversation with the persona (and key) as its system turn.

        A conversation that brings its own system turn keeps it; the key is then added to it, since
        the tutor needs the key whatever persona the caller chose.
        """
        out = [dict(m) for m in messages]
        meta = metadata or Metadata()
        if any(m["role"] == "system" for m in out):
            key = answer_key_text(meta) if self.answer_key else None
            if key:
                first = next(m for m in out if m["role"] == "system")
                first["content"] = f"{first['content']}\n{key}"
            return out
        system = self.system_text(meta)
        return [{"role": "system", "content": system}, *out] if system else out

    def messages(self, record: Record) -> list[Message]:
        """The conversation a record stands for, ending with the tutor's reply.

        A dialogue turn marked ``train=False`` (e.g. an imported "telling" move) keeps that mark, so
        it stays in the context but is not learned from.
        """
        if isinstance(record, Example):
            question = record.instruction if not record.context else f"{record.instruction}\n\n{record.context}"
            messages = [{"role": "user", "content": question}, {"role": "assistant", "content": record.response}]
        else:
            messages = [{"role": t.role, "content": t.content, **({} if getattr(t, "train", True) else {"train": False})}
                        for t in record.turns]
        return self.with_persona(messages, record.metadata)

    def question(self, question: str, context: str | None = None, metadata: Metadata | None = None) -> list[Message]:
        """The prompt for a new question, shaped exactly like a training record without its reply."""
        example = Example(instruction=question, response="-", context=context, metadata=metadata or Metadata())
        return self.messages(example)[:-1]

    def prompt_and_reference(self, record: Record) -> tuple[list[Message], str]:
        """The conversation up to the record's last tutor turn, and that turn (the reference reply)."""
        messages = self.messages(record)
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None or last == 0 or messages[last - 1]["role"] != "user":
            raise EduloraError("record has no tutor turn that answers a student turn")
        return messages[:last], messages[last]["content"]

    @cached_property
    def system_role(self) -> bool:
        """Whether the chat template shows a system turn. Some refuse one (Gemma 2, Mistral's alternating
        roles) and some drop it silently; the persona and the teacher's key must reach the model either way."""
        probe = [{"role": "system", "content": "edulora-system-probe"}, {"role": "user", "content": "hi"}]
        try:
            text = self.tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        except Exception:  # a template refuses with jinja's TemplateError or its own raise_exception
            return False
        return "edulora-system-probe" in text

    def chat_messages(self, messages: Sequence[Message]) -> list[Message]:
        """``messages`` as the chat template takes them: without a system role, the system text opens the
        first user turn (as the families without one do in their own templates)."""
        plain = [{"role": m["role"], "content": m["content"]} for m in messages]
        if self.system_role or not any(m["role"] == "system" for m in plain):
            return plain
        system = "\n".join(m["content"] for m in plain if m["role"] == "system")
        rest = [m for m in plain if m["role"] != "system"]
        first = next((i for i, m in enumerate(rest) if m["role"] == "user"), None)
        if first is None:
            return [{"role": "user", "content": system}, *rest]
        rest[first] = {"role": "user", "content": f"{system}\n\n{rest[first]['content']}"}
        return rest

    def render(self, messages: Sequence[Message]) -> str:
        """Text the model sees before it writes the next tutor turn (messages must end with a user turn)."""
        if not messages or messages[-1]["role"] != "user":
            raise ValueError("a prompt must end with a user message")
        if self.template == "chat":
            return self.tokenizer.apply_chat_template(self.chat_messages(messages), tokenize=False,
                                                      add_generation_prompt=True)
        return _instruction_prompt(messages)

    def _turn_text(self, messages: Sequence[Message], prompt: str) -> str:
        """The tutor turn exactly as the template writes it after ``prompt`` (what the next turn's prompt
        starts from)."""
        if self.template == "chat":
            full = self.tokenizer.apply_chat_template(self.chat_messages(messages), tokenize=False)
            if not full.startswith(prompt):
                raise EduloraError("this chat template does not render a conversation as a prefix of its "
                                   "continuation; use data.template=instruction")
            return full[len(prompt):]
        return messages[-1]["content"]

    def _reply_text(self, messages: Sequence[Message], prompt: str) -> str:
        """The tutor turn as it is learned after ``prompt``: the template's text, ending with EOS."""
        return self._learned(self._turn_text(messages, prompt))

    def _learned(self, reply: str) -> str:
        eos = self.tokenizer.eos_token
        if self.template != "chat":
            return reply + (eos or "")
        # Templates differ on whether the turn ends with EOS; the model must learn to stop, so make sure it does.
        if eos and eos not in reply:
            reply = reply.rstrip("\n") + eos
        return reply

    def completion(self, prompt: Sequence[Message], reply: str) -> str:
        """The tutor turn ``reply`` as the template writes it after ``render(prompt)``, ending with EOS:
        what preference tuning scores, so a pair is seen exactly as an SFT record's reply is trained."""
        text = self._reply_text([*prompt, {"role": "assistant", "content": reply}], self.render(prompt))
        eos = self.tokenizer.eos_token
        # Nothing after the end of the turn: TRL adds an EOS to a completion that does not end with one.
        return text.rstrip() if eos and text.rstrip().endswith(eos) else text

    def encode(self, record: Record, max_length: int) -> EncodedExample:
        """Token ids with labels on tutor text only; every tutor turn of a dialogue is learned from.

        The key, when there is one, sits in the prompt and so never in the labels. Text longer than
        ``max_length`` loses its oldest tokens first (the reply is kept), which matches what a
        reader of the conversation needs most: the latest turns.
        """
        messages = self.messages(record)
        ids: list[int] = []
        labels: list[int] = []
        consumed = previous = ""
        for end, message in enumerate(messages):
            if message["role"] != "assistant" or end == 0 or messages[end - 1]["role"] != "user":
                continue
            prompt = self.render(messages[:end])
            turn = self._turn_text(messages[: end + 1], prompt)
            reply = self._learned(turn)
            # Chat templates extend the text turn by turn, except where a turn's ending depends on what
            # follows (Phi-3 writes EOS only after the last turn): the next prompt then continues from where
            # it and the text so far part. The guide's template has no multi-turn form, so each of its tutor
            # turns restates the history in its Context section.
            shared = len(os.path.commonprefix([consumed, prompt])) if self.template == "chat" else 0
            new_prompt = prompt[shared:] if consumed and shared >= len(previous) else prompt
            prompt_ids = self.tokenizer(new_prompt, add_special_tokens=False)["input_ids"]
            reply_ids = self.tokenizer(reply, add_special_tokens=False)["input_ids"]
            ids += prompt_ids + reply_ids
            learned = message.get("train", True)
            labels += [IGNORE_INDEX] * len(prompt_ids) + (list(reply_ids) if learned else [IGNORE_INDEX] * len(reply_ids))
            # The next prompt continues the template's own text (Gemma's turn ends "<end_of_turn>\n", not EOS).
            consumed, previous = prompt + turn, prompt
        if not ids:
            raise EduloraError("record has no tutor turn that answers a student turn")
        learned_at = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
        truncated = len(ids) > max_length
        if truncated and learned_at:
            start = max(0, learned_at[-1] + 1 - max_length)
            ids, labels = ids[start: start + max_length], labels[start: start + max_length]
        elif truncated:
            ids, labels = ids[-max_length:], labels[-max_length:]
        return EncodedExample(ids, labels, truncated)


@dataclass
class EncodedExample:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def trainable_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def collate_examples(examples: Sequence[EncodedExample], pad_token_id: int, packing: bool = True,
                     pad_to_multiple_of: int = 1) -> dict:
    """One micro-batch as tensors.

    With ``packing`` the examples are laid end to end in a single row: no padding is computed
    at all, and a micro-batch holds as many examples (and about as many tokens) as the guide's
    padded batch, so memory and optimizer semantics stay those of ``batch_size`` examples.
    Without it, each example gets its own right-padded row (the guide's layout).

    ``position_ids`` restart at 0 for each example; with no attention mask and no KV cache,
    transformers turns them into a block-diagonal causal mask, so examples never attend to
    each other. Padded rows need no mask at all: padding sits after the real tokens, which a
    causal model never lets them see, and its labels are ignored. Rows without a mask keep
    PyTorch's fused causal attention kernel, which on a CPU is faster than a packed row's
    materialized block mask (benchmarks/history/benchmarks-2026-12.md). ``pad_to_multiple_of`` rounds the row width up,
    so batches share a few shapes and the math libraries reuse their compiled kernels.
    """
    import torch

    groups = [list(examples)] if packing else [[e] for e in examples]
    rows = [(sum((e.input_ids for e in g), []), sum((e.labels for e in g), []),
             sum((list(range(len(e.input_ids))) for e in g), [])) for g in groups]
    width = max(len(ids) for ids, _, _ in rows)
    width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids, labels, positions = [], [], []
    for ids, labs, pos in rows:
        pad = width - len(ids)
        input_ids.append(ids + [pad_token_id] * pad)
        labels.append(labs + [IGNORE_INDEX] * pad)
        positions.append(pos + list(range(len(pos), len(pos) + pad)))  # one causal run: no mask needed
    labels_t = torch.tensor(labels)
    # Labels shifted here once, so the loss and the Trainer's token count agree on what is predicted.
    shift = torch.full_like(labels_t, IGNORE_INDEX)
    shift[:, :-1] = labels_t[:, 1:]
    return {
        "input_ids": torch.tensor(input_ids),
        "position_ids": torch.tensor(positions),
        "labels": labels_t,
        "shift_labels": shift,
        "real_tokens": torch.tensor(sum(len(ids) for ids, _, _ in rows)),  # throughput: padding is not work done
    }
