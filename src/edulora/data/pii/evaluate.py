"""How much personal information the scrubber removes, measured on a labelled message set.

The set is JSON lines: ``{"text": "...", "pii": [{"type": "phone", "value": "020 7946 0958"}, …]}``;
a line with ``"pii": []`` is ordinary text that must come out unchanged. An item counts as
replaced only if none of its words survives anywhere it occurred ("Camila García" → "[NAME]
García" is a miss): the scrubbed text is compared word by word with the original, so each kept
word of the value is a leak. The set is our own invented messages (``tests/data/pii_messages.jsonl``
in a checkout), never real students'.

    .venv/bin/python benchmarks/pii_recall.py tests/data/pii_messages.jsonl [--show-misses]
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import EduloraError

# Placeholders and words are compared whole; each ideograph or syllable of a script written
# without spaces is a word of its own, so "王小明" leaks if any of its characters is kept.
_TOKEN = re.compile(r"\[[A-Z_]+\]|[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|\w+|[^\w\s]")


@dataclass(frozen=True)
class PiiItem:
    type: str
    value: str


@dataclass(frozen=True)
class PiiMessage:
    line: int
    text: str
    items: tuple[PiiItem, ...]


@dataclass
class PiiEvaluation:
    """Items replaced per type, and which ordinary messages the scrubber changed."""

    found: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    ordinary: int = 0
    changed: list[int] = field(default_factory=list)  # line numbers of ordinary messages that changed
    misses: list[tuple[int, PiiItem]] = field(default_factory=list)
    messages: int = 0

    @property
    def items(self) -> int:
        return sum(self.total.values())

    @property
    def replaced(self) -> int:
        return sum(self.found.values())

    @property
    def recall(self) -> float:
        return self.replaced / self.items if self.items else 1.0

    @property
    def false_positives(self) -> int:
        return len(self.changed)

    def summary_lines(self, show_misses: bool = False) -> list[str]:
        out = [f"recall {self.recall:.1%}: {self.replaced} of {self.items} PII items replaced "
               f"in {self.messages - self.ordinary} messages",
               f"false positives: {self.false_positives} of {self.ordinary} ordinary messages changed"]
        for kind in sorted(self.total):
            out.append(f"  {kind:<18} {self.found.get(kind, 0):>3}/{self.total[kind]:<3} "
                       f"{self.found.get(kind, 0) / self.total[kind]:.0%}")
        if show_misses:  # the set is invented, so its values may be printed
            out += [f"  missed line {line}: {item.type} {item.value!r}" for line, item in self.misses]
            out += [f"  changed line {line}" for line in self.changed]
        return out


def load_pii_set(path: str | Path) -> list[PiiMessage]:
    messages: list[PiiMessage] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise EduloraError(f"{path}: cannot read the PII set ({err})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            items = tuple(PiiItem(str(i["type"]), str(i["value"])) for i in row["pii"])
            text = row["text"]
        except (ValueError, KeyError, TypeError) as err:
            raise EduloraError(f"{path}:{number}: not a PII set row ({err})") from None
        for item in items:
            if item.value not in text:
                raise EduloraError(f"{path}:{number}: labelled value {item.value!r} is not in the text")
        messages.append(PiiMessage(number, text, items))
    return messages


def _kept_spans(original: str, scrubbed: str) -> list[tuple[int, int]]:
    """Character spans of the original's words that survive unchanged in ``scrubbed``."""
    before = list(_TOKEN.finditer(original))
    after = [m.group(0) for m in _TOKEN.finditer(scrubbed)]
    matcher = difflib.SequenceMatcher(None, [m.group(0) for m in before], after, autojunk=False)
    kept: list[tuple[int, int]] = []
    for tag, i1, i2, _, _ in matcher.get_opcodes():
        if tag == "equal":
            kept.extend(before[i].span() for i in range(i1, i2) if before[i].group(0)[0].isalnum()
                        or before[i].group(0)[0] == "_")
    return kept


def leaked(original: str, scrubbed: str, value: str) -> bool:
    """Whether any word of ``value``, wherever it occurs in ``original``, is still in ``scrubbed``."""
    kept = _kept_spans(original, scrubbed)
    for occurrence in re.finditer(re.escape(value), original):
        start, end = occurrence.span()
        if any(s < end and e > start for s, e in kept):
            return True
    return False


def evaluate_pii(messages: list[PiiMessage] | str | Path,
                 scrub: Callable[[str], str] | None = None) -> PiiEvaluation:
    """Scrub each message (by default with ``edulora.data.privacy.scrub_text``, no roster) and count."""
    if not isinstance(messages, list):
        messages = load_pii_set(messages)
    if scrub is None:
        from ..privacy import scrub_text

        def scrub(text: str) -> str:
            return scrub_text(text)[0]

    result = PiiEvaluation(messages=len(messages))
    for message in messages:
        out = scrub(message.text)
        if not message.items:
            result.ordinary += 1
            if out != message.text:
                result.changed.append(message.line)
            continue
        for item in message.items:
            result.total[item.type] = result.total.get(item.type, 0) + 1
            if leaked(message.text, out, item.value):
                result.misses.append((message.line, item))
            else:
                result.found[item.type] = result.found.get(item.type, 0) + 1
    return result


__all__ = ["PiiEvaluation", "PiiItem", "PiiMessage", "evaluate_pii", "leaked", "load_pii_set"]
