"""Record lengths in tokens, for the dataset report: a cheap estimate or a real tokenizer.

Kept apart from ``quality.py`` (which re-exports these names): counting tokens may load a
tokenizer library, the other report sections are plain text processing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..errors import EduloraError
from .schema import Example, Record
from .similarity import record_text


def line_numbers(records: Sequence[Record], lines: Sequence[int] | None) -> list[int]:
    """The line each record starts on in its file: ``lines`` checked against ``records``, or 1, 2, … ."""
    if lines is None:
        return list(range(1, len(records) + 1))
    if len(lines) != len(records):
        raise ValueError("lines must give one line number per record")
    return list(lines)


class TokenCounter(Protocol):
    name: str
    estimate: bool

    def count(self, record: Record) -> int: ...


def _chat_messages(record: Record) -> list[dict[str, str]]:
    if isinstance(record, Example):
        prompt = record.instruction if not record.context else f"{record.instruction}\n\n{record.context}"
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": record.response}]
    return [{"role": t.role, "content": t.content} for t in record.turns]


class EstimateCounter:
    """Cheap token estimate: the larger of characters/4 and words×1.3, typical of English BPE
    vocabularies. Labelled as an estimate everywhere it is shown."""

    name = "estimate (max of chars/4, words×1.3)"
    estimate = True

    def count(self, record: Record) -> int:
        text = record_text(record)
        return math.ceil(max(len(text) / 4, len(text.split()) * 1.3))


class _FastTokenizerCounter:
    """A ``tokenizers`` tokenizer.json: exact token counts of the record's text, no chat template."""

    estimate = False

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        self.name = f"{path} (plain text, no chat template)"
        self._tok = Tokenizer.from_file(str(path))

    def count(self, record: Record) -> int:
        return len(self._tok.encode(record_text(record)).ids)


class _HFTokenizerCounter:
    """A transformers tokenizer; uses its chat template when it has one, as training would."""

    estimate = False

    def __init__(self, spec: str):
        from transformers import AutoTokenizer

        local = Path(spec).exists()
        self._tok = AutoTokenizer.from_pretrained(spec, local_files_only=True) if not local else AutoTokenizer.from_pretrained(spec)
        self._chat = bool(getattr(self._tok, "chat_template", None))
        self.name = f"{spec} ({'chat template' if self._chat else 'plain text'})"

    def count(self, record: Record) -> int:
        if self._chat:
            ids = self._tok.apply_chat_template(_chat_messages(record), tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            return len(ids)
        return len(self._tok(record_text(record))["input_ids"])


def load_token_counter(spec: str | None) -> TokenCounter:
    """``None`` → the estimate; a tokenizer.json file or a directory → that tokenizer;
    anything else is tried as a Hugging Face id from the local cache (nothing is downloaded)."""
    if spec is None:
        return EstimateCounter()
    path = Path(spec).expanduser()
    if not path.exists() and (path.is_absolute() or spec.startswith((".", "~")) or path.suffix == ".json"):
        raise EduloraError(f"cannot load tokenizer {spec!r}: no such file or directory")
    try:
        if path.is_file() and path.suffix == ".json":
            return _FastTokenizerCounter(path)
        if path.is_dir() and (path / "tokenizer.json").is_file() and not _has_chat_template(path):
            return _FastTokenizerCounter(path / "tokenizer.json")
        return _HFTokenizerCounter(spec)
    except ImportError as err:
        raise EduloraError(f"cannot load tokenizer {spec}: {err}") from None
    except Exception as err:  # tokenizer libraries raise many kinds; all mean "cannot use this"
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise EduloraError(f"cannot load tokenizer {spec!r}: {reason}") from None


def _has_chat_template(directory: Path) -> bool:
    if (directory / "chat_template.jinja").is_file() or (directory / "chat_template.json").is_file():
        return True
    config = directory / "tokenizer_config.json"
    if not config.is_file():
        return False
    try:
        return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError):
        return False


@dataclass
class LengthReport:
    tokenizer: str
    estimate: bool
    count: int
    min: int
    max: int
    mean: float
    percentiles: dict[str, int]
    max_length: int | None
    truncated: list[tuple[int, int]]  # (line, tokens) of records longer than max_length
    lengths: list[int] = field(repr=False, default_factory=list)


def lengths(records: Sequence[Record], lines: Sequence[int] | None = None, counter: TokenCounter | None = None,
            max_length: int | None = None) -> LengthReport:
    counter = counter or EstimateCounter()
    at = line_numbers(records, lines)
    values = [counter.count(r) for r in records]
    ordered = sorted(values)

    def pct(p: float) -> int:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))] if ordered else 0

    truncated = [(line, n) for line, n in zip(at, values) if max_length is not None and n > max_length]
    return LengthReport(
        tokenizer=counter.name, estimate=counter.estimate, count=len(values),
        min=ordered[0] if ordered else 0, max=ordered[-1] if ordered else 0,
        mean=sum(values) / len(values) if values else 0.0,
        percentiles={f"p{p}": pct(p) for p in (50, 90, 95, 99)},
        max_length=max_length, truncated=truncated, lengths=values,
    )
