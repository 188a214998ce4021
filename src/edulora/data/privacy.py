"""Removing students' personal information from tutoring data before it is trained on.

Values are replaced by typed placeholders: [EMAIL], [PHONE], [URL], [ADDRESS],
[STUDENT_ID] and [NAME]. Reports hold counts and line numbers only: the original values
are never kept, printed or logged, since the report itself may be shared.

The patterns lean towards keeping text: a tutoring dataset is full of numbers ("what is
345 * 12", "the year 1492") and capitalized words ("May", "I'm Confused"), and scrubbing
those would damage the data more than it protects anyone. So bare numbers only count as a
phone number or student ID next to a cue word ("call", "student ID"), and names are only
taken from a roster or from a self-introduction ("my name is …", "I'm …", "call me …").
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EduloraError
from .schema import Example, Record

PLACEHOLDERS = ("EMAIL", "PHONE", "URL", "ADDRESS", "STUDENT_ID", "NAME")

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")

_TLDS = "com|org|net|edu|gov|io|co|uk|us|ca|au|de|fr|info|biz|me|ly|app|dev|ai|tv"
# A bare domain needs a lower-case TLD, so a missing space after a full stop ("said so.Me")
# is not taken for a web address.
_URL = re.compile(
    r"(?i:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"']+"
    rf"|\b[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:{_TLDS})\b(?:/[^\s<>\"']*)?"
)

# Separated groups (555-123-4567, (555) 123 4567, +44 20 7946 0958); a run of digits alone is
# a math answer far more often than a phone number, so it needs a cue word (see _PHONE_CUED).
_PHONE = re.compile(
    r"(?<![\w.+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?!\d|[.-]\d)"
    r"|(?<![\w.+])\+\d{1,3}(?:[\s.-]\d{2,5}){2,4}(?!\d|[.-]\d)"
)
_PHONE_CUED = re.compile(
    r"(?i:\b(?:call|text|phone|cell|mobile|tel|telephone|my\s+(?:phone\s+|cell\s+)?number\s+is|reach\s+me\s+at)"
    r"\b[^\d\n]{0,12}?)"
    r"(?<!\d)(\d{7,11})(?![\d.,]\d|\d)"
)

_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|"
    r"Terrace|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq)"
)
# The street name words must be capitalized (or ordinals like 5th): "3 apples on the way"
# is a math problem, "12 Oak Way" an address.
_ADDRESS = re.compile(
    r"\b\d{1,6}\s+(?:(?:[A-Z][A-Za-z'.-]*|\d{1,3}(?:st|nd|rd|th))\s+){1,4}"
    + _STREET_SUFFIX
    + r"\b\.?(?:,?\s+(?:Apt|Apartment|Unit|Suite|#)\.?\s*\w+)?"
    r"(?:,\s*[A-Z][A-Za-z .'-]+,\s*[A-Z]{2}(?:\s+\d{5}(?:-\d{4})?)?)?"
    r"|\bP\.?\s?O\.?\s+Box\s+\d+\b",
)

_STUDENT_ID = re.compile(
    r"(?i:\b(?:student|school|learner|pupil)\s*(?:id|i\.d\.|number|no\.?|#)|\bid\s*(?:number|no\.?|#)|\bid\b\s*[:#]"
    r"|\broll\s*(?:number|no\.?))"
    r"\s*(?:is\s*)?[:#]?\s*([A-Za-z]{0,3}-?\d{4,12})\b"
    r"|\b([A-Z]{1,2}\d{6,10})\b"
)

# Words that follow "I'm" capitalized without being names ("I'm Confused", "I'm Not sure").
COMMON_CAPITALIZED = frozenset("""
a an the not so very really just still also only too here there back home done ready sorry sure unsure
confused lost stuck fine good ok okay great happy sad tired bored new trying working learning going
doing thinking wondering studying struggling having getting looking waiting asking writing reading
finished excited worried scared nervous afraid curious interested glad able unable in on at from with
about almost always never still kind of like pretty bit little more less late early in-between hungry
january february march april may june july august september october november december monday tuesday
wednesday thursday friday saturday sunday will can shall might must would could should did does was is
am are be been being have has had do doing english spanish french american canadian british math science
in-grade grade year student teacher your you he she they we it this that what when where why how which
who one two three four five six seven eight nine ten first second third fourth fifth sixth seventh eighth
ninth tenth eleventh twelfth hi hello hey thanks thank yes no please because but and or if then than
""".split())

_NAME_WORD = r"[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?"
# Self-introductions: "my name is Ana", "I'm Ana Lopez", "call me Ana". "my name is" also
# takes a lower-case name, since children often type names that way.
_INTRO = re.compile(
    rf"(?i:\bmy\s+name\s+is|\bmy\s+name's|\bname\s*:)\s+(?P<any>{_NAME_WORD}(?:\s+{_NAME_WORD}){{0,2}}|[a-z]+)"
    rf"|(?i:\bI['’]?m|\bI\s+am|\bcall\s+me)\s+(?P<cap>{_NAME_WORD}(?:\s+{_NAME_WORD}){{0,2}})"
)


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


def _sub(pattern: re.Pattern[str], label: str, text: str, counts: Counter[str],
         keep: Callable[[str], bool] | None = None) -> str:
    """Replace each match by ``[label]``; with capture groups, only the first group that matched.

    ``keep(value)`` may veto a match (e.g. too few digits for a phone number).
    """

    def replace(match: re.Match[str]) -> str:
        group = next((g for g in range(1, (pattern.groups or 0) + 1) if match.group(g)), 0)
        if keep is not None and keep(match.group(group)):
            return match.group(0)
        counts[label] += 1
        start, end = match.span(group)
        whole, offset = match.group(0), match.start()
        return whole[: start - offset] + f"[{label}]" + whole[end - offset:]

    return pattern.sub(replace, text)


def _not_phone_length(value: str) -> bool:
    digits = sum(c.isdigit() for c in value)
    return not 7 <= digits <= 15


def _trim_url(text: str, counts: Counter[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        value = match.group(0)
        trailing = len(value) - len(value.rstrip(".,;:!?)]}'\""))
        counts["URL"] += 1
        return "[URL]" + (value[len(value) - trailing:] if trailing else "")

    return _URL.sub(replace, text)


def intro_names(text: str) -> list[str]:
    """Names people give for themselves in ``text`` ("Hi, I'm Ana" → ["Ana"])."""
    found: list[str] = []
    for match in _INTRO.finditer(text):
        value = match.group("any") or match.group("cap")
        words = value.split()
        # Keep leading words up to the first ordinary word: "Ana And" → "Ana".
        kept: list[str] = []
        for word in words:
            if word.lower() in COMMON_CAPITALIZED:
                break
            kept.append(word)
        if kept and not (match.group("cap") and kept[0].endswith(("ing", "ed")) and len(kept[0]) > 4):
            found.append(" ".join(kept))
    return found


class Scrubber:
    """Applies all patterns; ``names`` learned from introductions are removed everywhere
    in the same record (the tutor's "Good job, Ana!")."""

    def __init__(self, roster: Roster | None = None):
        self.roster = roster or Roster()

    def scrub_text(self, text: str, names: Iterable[str] = ()) -> tuple[str, Counter[str]]:
        counts: Counter[str] = Counter()
        text = _sub(_EMAIL, "EMAIL", text, counts)
        text = _trim_url(text, counts)
        text = _sub(_ADDRESS, "ADDRESS", text, counts)
        text = _sub(_PHONE, "PHONE", text, counts, keep=_not_phone_length)
        text = _sub(_PHONE_CUED, "PHONE", text, counts)
        text = _sub(_STUDENT_ID, "STUDENT_ID", text, counts)
        for pattern in self.roster.patterns():
            text = _sub(pattern, "NAME", text, counts)
        known = sorted({n for n in names if n}, key=len, reverse=True)
        if known:
            alternatives = "|".join(re.escape(n) for n in known)
            text = _sub(re.compile(rf"(?<![\w\[])(?:{alternatives})(?![\w\]])"), "NAME", text, counts)
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
    "PLACEHOLDERS", "Roster", "ScrubReport", "Scrubber", "intro_names", "load_roster", "scrub_records", "scrub_text",
]
