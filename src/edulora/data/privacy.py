"""Removing students' personal information from tutoring data before it is trained on.

Values are replaced by typed placeholders: [EMAIL], [PHONE], [URL], [ADDRESS], [STUDENT_ID],
[NAME], [SCHOOL], [NATIONAL_ID], [BIRTH_DATE] and [HANDLE]. Reports hold counts and line numbers
only: the original values are never kept, printed or logged, since the report itself may be shared.

The detectors (``edulora.data.pii``) lean towards keeping text: a tutoring dataset is full of
numbers ("what is 345 * 12", "the year 1492") and capitalized words ("May", "Rosa Parks", "I'm
Confused"), and scrubbing those would damage the data more than it protects anyone. So bare
numbers only count as a phone number or an ID next to a cue word ("call", "student ID"), dates
only as someone's birth date, and names are only taken from a roster or from the words around
them: self-introductions in several languages, relatives, titles, greetings and sign-offs.
How well that works is measured on our own message set: ``benchmarks/pii_recall.py``.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EduloraError
from .pii.names import find_names, name_pattern
from .pii.patterns import scrub_patterns, sub
from .pii.words import COMMON_CAPITALIZED
from .schema import Example, Record

PLACEHOLDERS = ("EMAIL", "PHONE", "URL", "ADDRESS", "STUDENT_ID", "NAME", "SCHOOL", "NATIONAL_ID", "BIRTH_DATE",
                "HANDLE")


@dataclass
class Roster:
    """Names to remove wherever they appear.

    A full name of two or more words matches in any case. A single word (a first or last
    name, or a one-word entry) must be capitalized; one that is also an ordinary word
    ("May", "Will") matches only mid-sentence, after a lower-case word or a comma, so that
    "Will you help?" and "In May, …" keep their words while "Thanks, Will!" loses the name.
    Parts of a multi-word name that are ordinary words only match within the full name.
    """

    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        full: set[str] = set()
        parts: set[str] = set()
        common: set[str] = set()
        for name in self.names:
            words = name.split()
            if not words:
                continue
            if len(words) > 1:
                full.add(" ".join(words))
            for word in words:
                if len(word) < 2:
                    continue
                capitalized = word[0].upper() + word[1:]
                if word.lower() not in COMMON_CAPITALIZED:
                    parts.add(capitalized)
                elif len(words) == 1:
                    common.add(capitalized)
        self._patterns: list[re.Pattern[str]] = []
        # Longest first, so "Ana Lopez" is one [NAME], not "[NAME] [NAME]".
        if full:
            self._patterns.append(re.compile(rf"(?<!\w)(?:{_alternation(full)})(?!\w)", re.IGNORECASE))
        if parts:
            self._patterns.append(re.compile(rf"(?<!\w)(?:{_alternation(parts)})(?!\w)"))
        if common:
            self._patterns.append(re.compile(rf"(?<=[a-z,;:]\s)(?:{_alternation(common)})(?!\w)"))

    def patterns(self) -> list[re.Pattern[str]]:
        return self._patterns


def _alternation(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


def load_roster(path: str | Path) -> Roster:
    """One name per line; blank lines and lines starting with '#' are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EduloraError(f"{path}: no such roster file") from None
    except UnicodeDecodeError:
        raise EduloraError(f"{path}: roster is not valid UTF-8; save it as UTF-8") from None
    except OSError as err:
        raise EduloraError(f"{path}: cannot read roster ({err.strerror})") from None
    names = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return Roster(names)


def intro_names(text: str) -> list[str]:
    """Names given in ``text`` by the words around them ("Hi, I'm Ana" → ["Ana"], "my mom Linda
    Okafor" → ["Linda Okafor"]), each once, in order of appearance."""
    return find_names(text)


class Scrubber:
    """Applies all patterns; ``names`` learned from introductions are removed everywhere
    in the same record (the tutor's "Good job, Ana!")."""

    def __init__(self, roster: Roster | None = None):
        self.roster = roster or Roster()

    def scrub_text(self, text: str, names: Iterable[str] = ()) -> tuple[str, Counter[str]]:
        """``text`` with every detected value replaced; ``names`` (found anywhere in the record)
        are replaced wherever they occur, with their distinctive parts ("Okafor" of "Linda Okafor")."""
        counts: Counter[str] = Counter()
        text = scrub_patterns(text, counts)
        for pattern in self.roster.patterns():
            text = sub(pattern, "NAME", text, counts)
        known = name_pattern(list(dict.fromkeys(n for n in names if n)))
        if known is not None:
            text = sub(known, "NAME", text, counts)
        return text, counts

    def scrub_record(self, record: Record) -> tuple[Record, Counter[str]]:
        """A scrubbed copy of ``record`` and the counts of what was replaced in it."""
        names = [n for text in _texts(record) for n in intro_names(text)]
        total: Counter[str] = Counter()

        def clean(value: Any) -> Any:
            if isinstance(value, str):
                new, counts = self.scrub_text(value, names)
                total.update(counts)
                return new
            if isinstance(value, list):
                return [clean(v) for v in value]
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            return value

        out = copy.deepcopy(record)
        if isinstance(out, Example):
            out.instruction = clean(out.instruction)
            out.response = clean(out.response)
            out.context = clean(out.context)
        else:
            for turn in out.turns:  # in place, so every other field of a turn (its train flag) is kept
                turn.content = clean(turn.content)
        out.metadata.extra = clean(out.metadata.extra)
        out.extra = clean(out.extra)
        return out, total


def _texts(record: Record) -> list[str]:
    if isinstance(record, Example):
        return [t for t in (record.instruction, record.context, record.response) if t]
    return [t.content for t in record.turns]


@dataclass
class ScrubReport:
    """What was replaced, by type and by line (or record number) — never the values."""

    counts: Counter[str] = field(default_factory=Counter)
    by_line: dict[int, Counter[str]] = field(default_factory=dict)
    records: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def records_changed(self) -> int:
        return len(self.by_line)

    def add(self, line: int, counts: Counter[str]) -> None:
        self.records += 1
        if counts:
            self.counts.update(counts)
            self.by_line.setdefault(line, Counter()).update(counts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "records_changed": self.records_changed,
            "counts": {k: self.counts.get(k, 0) for k in PLACEHOLDERS},
            "by_line": {str(line): dict(c) for line, c in sorted(self.by_line.items())},
        }

    def summary_lines(self, max_lines: int = 50) -> list[str]:
        """Human-readable summary: counts per type, then line numbers with the types found there."""
        kinds = ", ".join(f"{k} {self.counts[k]}" for k in PLACEHOLDERS if self.counts.get(k))
        out = [f"replaced {self.total} value(s) in {self.records_changed} of {self.records} record(s)"
               + (f": {kinds}" if kinds else "")]
        for line, counts in sorted(self.by_line.items())[:max_lines]:
            out.append(f"  line {line}: " + ", ".join(f"{k} {counts[k]}" for k in PLACEHOLDERS if counts.get(k)))
        if len(self.by_line) > max_lines:
            out.append(f"  … and {len(self.by_line) - max_lines} more line(s)")
        return out


def scrub_records(
    records: Iterable[Record], roster: Roster | Sequence[str] | str | Path | None = None,
    lines: Sequence[int] | None = None,
) -> tuple[list[Record], ScrubReport]:
    """Scrubbed copies of ``records`` and a report keyed by ``lines`` (default: record number from 1).

    ``roster`` may be a ``Roster``, a list of names, or the path of a roster file.
    """
    if roster is None or isinstance(roster, Roster):
        resolved = roster
    elif isinstance(roster, (str, Path)):
        resolved = load_roster(roster)
    else:
        resolved = Roster(list(roster))
    scrubber = Scrubber(resolved)
    report = ScrubReport()
    out: list[Record] = []
    for index, record in enumerate(records):
        clean, counts = scrubber.scrub_record(record)
        report.add(lines[index] if lines is not None else index + 1, counts)
        out.append(clean)
    return out, report


def scrub_text(text: str, roster: Roster | None = None) -> tuple[str, Counter[str]]:
    """Scrub one string (names introduced in it are removed throughout it)."""
    return Scrubber(roster).scrub_text(text, intro_names(text))


__all__ = [
    "COMMON_CAPITALIZED", "PLACEHOLDERS", "Roster", "ScrubReport", "Scrubber", "intro_names", "load_roster",
    "scrub_records", "scrub_text",
]
