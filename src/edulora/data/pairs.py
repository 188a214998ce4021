"""Preference pairs: one conversation, a better tutor reply (``chosen``) and a worse one (``rejected``).

One format, written by ``edulora feedback export --pairs`` and ``edulora data pairs`` and read by
``training.method=dpo``. It is TRL's conversational preference format plus our metadata::

    {"prompt": [{"role": "user", "content": "What is 6 x 7?"}],
     "chosen": [{"role": "assistant", "content": "What do 6 groups of 7 make?"}],
     "rejected": [{"role": "assistant", "content": "It's 42."}],
     "metadata": {"subject": "mathematics", "teaching_style": "socratic", "answer": "42"},
     "rejected_flags": [...]}

Read leniently: ``prompt`` may be a plain question, ``messages`` may stand for the prompt, and
``chosen`` / ``rejected`` may be plain strings. The prompt holds the conversation only (it ends
with a student turn); the persona and the teacher's key come from ``metadata`` through
``PromptFormat`` at training time, exactly as for an SFT record. Other keys are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import EduloraError
from .io import Problem, ValidationResult, atomic_text_writer, collect_items, convert_items, count_items
from .jsonscan import iter_json_objects
from .problems import DataProblems
from .schema import Dialogue, Metadata, RecordError, Turn, checked_text, metadata_from_dict

PathLike = str | os.PathLike
_ROLES = ("system", "user", "assistant")
_NO_PAIRS = "file holds no preference pairs"


@dataclass
class PreferencePair:
    """A conversation ending with a student turn, and two tutor replies to it: ``chosen`` is the better."""

    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    metadata: Metadata = field(default_factory=Metadata)
    #: Other keys (``rejected_flags``, ``failures``, ``source`` …), kept so that nothing is lost on a round trip.
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"prompt": [dict(m) for m in self.prompt],
                               "chosen": [{"role": "assistant", "content": self.chosen}],
                               "rejected": [{"role": "assistant", "content": self.rejected}]}
        meta = self.metadata.to_dict()
        if meta:
            out["metadata"] = meta
        out.update(self.extra)
        return out

    def as_record(self) -> Dialogue:
        """The conversation with its chosen reply, as a training record (for held-out pedagogy probes)."""
        turns = [Turn(m["role"], m["content"]) for m in self.prompt] + [Turn("assistant", self.chosen)]
        return Dialogue(turns=turns, metadata=self.metadata)

    def prompt_key(self) -> str:
        """Identity of the conversation (not the replies), for splits that keep a prompt on one side."""
        return prompt_key(self.prompt)


def prompt_key(messages: Sequence[dict[str, str]]) -> str:
    """A stable key of a conversation's student and tutor turns (system turns and spacing left out)."""
    turns = [(m["role"], " ".join(m["content"].split())) for m in messages if m["role"] != "system"]
    return hashlib.sha256(json.dumps(turns, ensure_ascii=False).encode()).hexdigest()


def _messages(value: Any, name: str, problems: list[str]) -> list[dict[str, str]]:
    if isinstance(value, str):
        text = checked_text(f"field '{name}'", value, problems)
        return [{"role": "user", "content": text}] if text is not None else []
    if not isinstance(value, list) or not value:
        problems.append(f"field '{name}' must be a question or a non-empty list of messages")
        return []
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            problems.append(f"{name}[{i}] must be an object with a role of {', '.join(_ROLES)}")
            continue
        text = checked_text(f"{name}[{i}].content", message.get("content"), problems)
        if text is not None:
            out.append({"role": message["role"], "content": text})
    if out and out[-1]["role"] != "user":
        problems.append(f"field '{name}' must end with a user (student) turn, the one both replies answer")
    return out


def _reply(value: Any, name: str, problems: list[str]) -> str | None:
    """A reply as a string, or TRL's ``[{"role": "assistant", "content": …}]``."""
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], dict) or value[0].get("role") != "assistant":
            problems.append(f"field '{name}' must be a string or one assistant message")
            return None
        value = value[0].get("content")
    if value is None:
        problems.append(f"missing field '{name}'")
        return None
    return checked_text(f"field '{name}'", value, problems)


def pair_from_dict(obj: Any) -> PreferencePair:
    """A ``PreferencePair`` from one JSON object; raises ``RecordError`` listing every problem."""
    if not isinstance(obj, dict):
        raise RecordError([f"a pair must be a JSON object, got {type(obj).__name__}"])
    problems: list[str] = []
    name = "prompt" if "prompt" in obj else "messages"
    if name not in obj:
        problems.append("missing field 'prompt' (or 'messages'): the conversation both replies answer")
        prompt: list[dict[str, str]] = []
    else:
        prompt = _messages(obj[name], name, problems)
    chosen = _reply(obj.get("chosen"), "chosen", problems)
    rejected = _reply(obj.get("rejected"), "rejected", problems)
    if chosen is not None and rejected is not None and chosen.strip() == rejected.strip():
        problems.append("'chosen' and 'rejected' are the same reply: nothing to prefer")
    metadata = metadata_from_dict(obj.get("metadata"), problems)
    if problems:
        raise RecordError(problems)
    extra = {k: v for k, v in obj.items() if k not in (name, "chosen", "rejected", "metadata")}
    return PreferencePair(prompt, chosen, rejected, metadata, extra)


def iter_pairs(path: PathLike) -> Iterator[tuple[int, PreferencePair | Problem]]:
    """``(line, PreferencePair | Problem)`` for each object of a JSONL file (or JSON array), streamed."""
    # pair_from_dict never skips an item, so only pairs and problems come out.
    return convert_items(str(path), iter_json_objects(path), pair_from_dict)


def validate_pairs(path: PathLike) -> ValidationResult:
    """Check every pair of a file (streamed); ``.ok`` is False when it has problems or no pairs."""
    return count_items(path, iter_pairs(path), _NO_PAIRS)


def load_pairs(path: PathLike) -> list[PreferencePair]:
    """Every pair of a file, or ``DataProblems`` (each problem as FILE:LINE: message; exit 2 on the CLI)."""
    pairs, _, problems = collect_items(path, iter_pairs(path), _NO_PAIRS)
    if problems:
        raise DataProblems(path, problems)
    return pairs


def is_pair_file(path: PathLike) -> bool:
    """Whether a file's first object looks like a preference pair (has ``chosen`` and ``rejected``)."""
    try:
        for _, obj in iter_json_objects(path):
            return isinstance(obj, dict) and "chosen" in obj and "rejected" in obj
    except EduloraError:
        return False
    return False


def write_pairs(path: PathLike, pairs: Iterable[PreferencePair]) -> int:
    """Write pairs as JSONL, atomically; returns how many."""
    count = 0
    with atomic_text_writer(path) as handle:
        for pair in pairs:
            handle.write(json.dumps(pair.to_dict(), ensure_ascii=False) + "\n")
            count += 1
    return count


def split_pairs(pairs: Sequence[PreferencePair], eval_fraction: float, seed: int = 0
                ) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """A deterministic train/held-out split by conversation: pairs on one prompt stay on one side."""
    if eval_fraction <= 0:
        return list(pairs), []

    def draw(pair: PreferencePair) -> float:
        digest = hashlib.sha256(f"{seed}:{pair.prompt_key()}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    held = [p for p in pairs if draw(p) < eval_fraction]
    if not held and len(pairs) > 1:  # a tiny file still gets one held-out conversation
        first = min(pairs, key=draw).prompt_key()
        held = [p for p in pairs if p.prompt_key() == first]
    keys = {p.prompt_key() for p in held}
    return [p for p in pairs if p.prompt_key() not in keys], held
