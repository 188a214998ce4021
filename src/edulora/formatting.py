"""From a record to tokens: prompt templates, label masking and packing.

One function, ``render_prompt``, owns the prompt text for both training and generation, so the
tuned tutor is always asked its question in exactly the shape it was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .data.schema import Example, Metadata, Record
from .errors import EduloraError

IGNORE_INDEX = -100  # label value PyTorch's cross-entropy skips

Message = dict[str, str]


def resolve_template(template: str, tokenizer) -> str:
    """``auto`` means the model's own chat template when it has one (chat models learn faster in their own format)."""
    if template == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "instruction"
    if template == "chat" and not getattr(tokenizer, "chat_template", None):
        raise EduloraError("data.template is 'chat' but this tokenizer has no chat template; use 'instruction'")
    return template


def system_prompt(meta: Metadata) -> str | None:
    """A tutor persona built from the metadata, so one adapter can serve several grades and styles."""
    if meta.subject is None and meta.grade_level is None and meta.teaching_style is None:
        return None
    subject = f"{meta.subject.replace('_', ' ')} " if meta.subject else ""
    audience = f" for {meta.grade_level.label} students" if meta.grade_level else ""
    style = f" Teach in a {meta.teaching_style.label} style." if meta.teaching_style else ""
    return f"You are a patient {subject}tutor{audience}.{style}"


def record_messages(record: Record, with_system: bool = True) -> list[Message]:
    """The conversation a record stands for, ending with the tutor's reply."""
    if isinstance(record, Example):
        question = record.instruction if not record.context else f"{record.instruction}\n\n{record.context}"
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": record.response}]
    else:
        messages = [{"role": t.role, "content": t.content} for t in record.turns]
    if with_system and not any(m["role"] == "system" for m in messages):
        persona = system_prompt(record.metadata)
        if persona:
            messages.insert(0, {"role": "system", "content": persona})
    return messages


def question_messages(question: str, context: str | None = None, metadata: Metadata | None = None,
                      with_system: bool = True) -> list[Message]:
    """The prompt for a new question, shaped exactly like a training record without its reply."""
    example = Example(instruction=question, response="-", context=context, metadata=metadata or Metadata())
    return record_messages(example, with_system)[:-1]


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


def render_prompt(messages: Sequence[Message], tokenizer, template: str) -> str:
    """Text the model sees before it writes the next tutor turn (messages must end with a user turn)."""
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("a prompt must end with a user message")
    if template == "chat":
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return _instruction_prompt(messages)


def _reply_text(messages: Sequence[Message], tokenizer, template: str, prompt: str) -> str:
    """The tutor turn as the template writes it after ``prompt``, including the end-of-turn marker."""
    if template == "chat":
        full = tokenizer.apply_chat_template(list(messages), tokenize=False)
        if not full.startswith(prompt):
            raise EduloraError("this chat template does not render a conversation as a prefix of its continuation; "
                               "use data.template=instruction")
        reply = full[len(prompt):]
        # Templates differ on whether the turn ends with EOS; the model must learn to stop, so make sure it does.
        if tokenizer.eos_token and tokenizer.eos_token not in reply:
            reply = reply.rstrip("\n") + tokenizer.eos_token
        return reply
    return messages[-1]["content"] + (tokenizer.eos_token or "")


@dataclass
class EncodedExample:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def trainable_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def encode_record(record: Record, tokenizer, template: str, max_length: int, with_system: bool = True) -> EncodedExample:
    """Token ids with labels on tutor text only; every tutor turn of a dialogue is learned from.

    Text longer than ``max_length`` loses its oldest tokens first (the reply is kept), which
    matches what a reader of the conversation needs most: the latest turns.
    """
    messages = record_messages(record, with_system)
    ids: list[int] = []
    labels: list[int] = []
    consumed = ""
    for end, message in enumerate(messages):
        if message["role"] != "assistant" or end == 0 or messages[end - 1]["role"] != "user":
            continue
        prompt = render_prompt(messages[:end], tokenizer, template)
        reply = _reply_text(messages[: end + 1], tokenizer, template, prompt)
        # Chat templates extend the text turn by turn; the guide's template has no multi-turn form,
        # so each of its tutor turns restates the history in its Context section.
        new_prompt = prompt[len(consumed):] if prompt.startswith(consumed) else prompt
        prompt_ids = tokenizer(new_prompt, add_special_tokens=False)["input_ids"]
        reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"]
        ids += prompt_ids + reply_ids
        labels += [IGNORE_INDEX] * len(prompt_ids) + list(reply_ids)
        consumed = prompt + reply
    if not ids:
        raise EduloraError("record has no tutor turn that answers a student turn")
    truncated = len(ids) > max_length
    if truncated:
        last_reply = max(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
        start = max(0, last_reply + 1 - max_length)
        ids, labels = ids[start : start + max_length], labels[start : start + max_length]
    return EncodedExample(ids, labels, truncated)


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
    materialized block mask (docs/benchmarks.md). ``pad_to_multiple_of`` rounds the row width up,
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
