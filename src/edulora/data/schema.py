"""The educational record: ``Example`` (one question, one tutor reply) and ``Dialogue``.

The guide's record is ``{"instruction", "context", "response", "metadata": {"subject",
"grade_level", "teaching_style"}}``. Teachers write grade levels and styles in many ways
("Middle School", "grade 7", "middle_school"), so those are normalized to one vocabulary
here; a value we cannot place is reported to the user instead of being dropped.

A record may carry the teacher's key in its metadata: ``answer`` (the final answer the student
should reach) and ``solution`` (a worked solution). Tutors are shown the key but must not state it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class GradeLevel(str, Enum):
    ELEMENTARY = "elementary"
    MIDDLE_SCHOOL = "middle_school"
    HIGH_SCHOOL = "high_school"
    COLLEGE = "college"
    ADULT = "adult"

    @property
    def label(self) -> str:
        return _GRADE_LABELS[self]

    @property
    def band(self) -> tuple[float, float]:
        """US school grades (0 = kindergarten) this level is written for; the one table every module uses.

        Adult learners read at any level, so their band is open: nothing is too easy or too hard.
        """
        return _GRADE_BANDS[self]


_GRADE_BANDS: dict[GradeLevel, tuple[float, float]] = {
    GradeLevel.ELEMENTARY: (0, 5),
    GradeLevel.MIDDLE_SCHOOL: (6, 8),
    GradeLevel.HIGH_SCHOOL: (9, 12),
    GradeLevel.COLLEGE: (13, 16),
    GradeLevel.ADULT: (0, math.inf),
}

_GRADE_LABELS = {
    GradeLevel.ELEMENTARY: "elementary school",
    GradeLevel.MIDDLE_SCHOOL: "middle school",
    GradeLevel.HIGH_SCHOOL: "high school",
    GradeLevel.COLLEGE: "college",
    GradeLevel.ADULT: "adult learner",
}


class TeachingStyle(str, Enum):
    SOCRATIC = "socratic"
    STEP_BY_STEP = "step_by_step"
    ANALOGY_BASED = "analogy_based"
    DIRECT_INSTRUCTION = "direct_instruction"
    INQUIRY_BASED = "inquiry_based"
    MISCONCEPTION_CORRECTION = "misconception_correction"

    @property
    def label(self) -> str:
        return self.value.replace("_", "-") if self is TeachingStyle.STEP_BY_STEP else self.value.replace("_", " ")


def _key(text: str) -> str:
    """Case-, space- and punctuation-insensitive lookup key: 'Middle-School ' -> 'middleschool'."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


_GRADE_ALIASES: dict[str, GradeLevel] = {
    **{_key(g.value): g for g in GradeLevel},
    **{_key(a): GradeLevel.ELEMENTARY for a in ("elementary school", "primary", "primary school", "k-5", "k5", "grade school", "elem")},
    **{_key(a): GradeLevel.MIDDLE_SCHOOL for a in ("middle", "junior high", "junior high school", "intermediate", "6-8", "ms")},
    **{_key(a): GradeLevel.HIGH_SCHOOL for a in ("high", "secondary", "secondary school", "9-12", "hs")},
    **{_key(a): GradeLevel.COLLEGE for a in ("university", "undergraduate", "undergrad", "higher education")},
    **{_key(a): GradeLevel.ADULT for a in ("adult learner", "adult education", "professional")},
}

_STYLE_ALIASES: dict[str, TeachingStyle] = {
    **{_key(s.value): s for s in TeachingStyle},
    **{_key(a): TeachingStyle.SOCRATIC for a in ("socratic method", "socratic questioning", "guided questioning")},
    **{_key(a): TeachingStyle.STEP_BY_STEP for a in ("step by step", "stepwise", "worked example", "scaffolded")},
    **{_key(a): TeachingStyle.ANALOGY_BASED for a in ("analogy", "analogies", "analogical", "metaphor")},
    **{_key(a): TeachingStyle.DIRECT_INSTRUCTION for a in ("direct", "explicit instruction", "lecture", "explanation")},
    **{_key(a): TeachingStyle.INQUIRY_BASED for a in ("inquiry", "discovery", "discovery learning", "inquiry learning")},
    **{_key(a): TeachingStyle.MISCONCEPTION_CORRECTION for a in ("misconception", "misconceptions", "error correction", "conceptual change")},
}

SUBJECT_ALIASES: dict[str, str] = {
    "math": "mathematics", "maths": "mathematics", "mathematics": "mathematics", "algebra": "mathematics",
    "geometry": "mathematics", "arithmetic": "mathematics",
    "biology": "biology", "bio": "biology", "life science": "biology",
    "chemistry": "chemistry", "chem": "chemistry",
    "physics": "physics",
    "earth science": "earth_science", "earth_science": "earth_science", "geology": "earth_science",
    "history": "history", "social studies": "history", "world history": "history",
    "geography": "geography",
    "english": "english", "ela": "english", "language arts": "english", "english language arts": "english",
    "literature": "english", "writing": "english", "grammar": "english",
    "computer science": "computer_science", "cs": "computer_science", "programming": "computer_science",
    "computer_science": "computer_science",
    "economics": "economics", "civics": "civics", "art": "art", "music": "music",
}
KNOWN_SUBJECTS = sorted(set(SUBJECT_ALIASES.values()))


def parse_grade_level(value: str) -> GradeLevel:
    """Map a teacher's wording to a ``GradeLevel``; 'grade 7' and '7th grade' map by US grade bands.

    Raises ValueError naming the known values when the wording cannot be placed.
    """
    found = _GRADE_ALIASES.get(_key(value))
    if found is not None:
        return found
    number = re.fullmatch(r"\s*(?:grade\s*)?(k|\d{1,2})(?:st|nd|rd|th)?(?:\s*grade)?\s*", value.lower())
    if number:
        n = 0 if number.group(1) == "k" else int(number.group(1))
        if 0 <= n <= 5:
            return GradeLevel.ELEMENTARY
        if 6 <= n <= 8:
            return GradeLevel.MIDDLE_SCHOOL
        if 9 <= n <= 12:
            return GradeLevel.HIGH_SCHOOL
    raise ValueError(f"unknown grade_level {value!r} (known: {', '.join(g.value for g in GradeLevel)}, or 'grade N')")


def parse_teaching_style(value: str) -> TeachingStyle:
    found = _STYLE_ALIASES.get(_key(value))
    if found is None:
        raise ValueError(f"unknown teaching_style {value!r} (known: {', '.join(s.value for s in TeachingStyle)})")
    return found


def normalize_subject(value: str) -> str:
    """Canonical subject name; subjects are open-ended, so unknown ones are kept (lower-cased)."""
    cleaned = " ".join(value.strip().lower().replace("_", " ").split())
    return SUBJECT_ALIASES.get(cleaned, cleaned.replace(" ", "_"))


@dataclass
class Metadata:
    """Who the reply is for and how it teaches. Every field is optional."""

    subject: str | None = None
    grade_level: GradeLevel | None = None
    teaching_style: TeachingStyle | None = None
    #: Other metadata keys (e.g. ``answer``, ``misconception``, ``topic``), kept as given.
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.subject is not None:
            out["subject"] = self.subject
        if self.grade_level is not None:
            out["grade_level"] = self.grade_level.value
        if self.teaching_style is not None:
            out["teaching_style"] = self.teaching_style.value
        out.update(self.extra)
        return out

    @property
    def answer(self) -> str | None:
        """The final answer the student should reach, when the record carries one."""
        value = self.extra.get("answer")
        return None if value is None else str(value)

    @property
    def solution(self) -> str | None:
        """A worked solution from the teacher's key, when the record carries one."""
        value = self.extra.get("solution")
        return None if value is None else str(value)


@dataclass
class Example:
    """One tutoring exchange: the student's instruction (+ optional context) and the tutor's response."""

    instruction: str
    response: str
    context: str | None = None
    metadata: Metadata = field(default_factory=Metadata)
    #: Unknown top-level keys, kept so that a convert/scrub round trip loses nothing.
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"instruction": self.instruction}
        if self.context is not None:
            out["context"] = self.context
        out["response"] = self.response
        meta = self.metadata.to_dict()
        if meta:
            out["metadata"] = meta
        out.update(self.extra)
        return out


@dataclass
class Turn:
    role: str  # "system" | "user" | "assistant"
    content: str
    #: False for a tutor turn that stays in the conversation as context but is not learned from
    #: (e.g. a MathDial teacher "telling" the answer). Written as ``"train": false`` in messages.
    train: bool = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if not self.train:
            out["train"] = False
        return out


@dataclass
class Dialogue:
    """A multi-turn tutoring conversation; every assistant turn is a tutor reply to learn from."""

    turns: list[Turn]
    metadata: Metadata = field(default_factory=Metadata)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"messages": [t.to_dict() for t in self.turns]}
        meta = self.metadata.to_dict()
        if meta:
            out["metadata"] = meta
        out.update(self.extra)
        return out


Record = Example | Dialogue


#: A field longer than this is almost surely a broken export (a whole book in one cell), not a tutor reply.
MAX_FIELD_CHARS = 20_000


class RecordError(ValueError):
    """A record that does not fit the schema; ``messages`` lists every problem found in it."""

    def __init__(self, messages: list[str]):
        super().__init__("; ".join(messages))
        self.messages = messages


def checked_text(label: str, value: Any, problems: list[str], required: bool = True) -> str | None:
    """``value`` if it is a string of a usable length (not blank when required); else None and a problem naming ``label``."""
    if not isinstance(value, str):
        problems.append(f"{label} must be a string, got {type(value).__name__}")
        return None
    if required and not value.strip():
        problems.append(f"{label} is empty")
        return None
    if len(value) > MAX_FIELD_CHARS:
        problems.append(f"{label} is {len(value):,} characters long (limit {MAX_FIELD_CHARS:,})")
        return None
    return value


def _text_field(obj: dict, name: str, problems: list[str], required: bool) -> str | None:
    if name not in obj or obj[name] is None:
        if required:
            problems.append(f"missing field '{name}'")
        return None
    return checked_text(f"field '{name}'", obj[name], problems, required)


#: Metadata keys that hold the teacher's key; a number is kept as its text ("12", "2.5").
KEY_FIELDS = ("answer", "solution")


def _key_field(name: str, value: Any, problems: list[str]) -> str | None:
    """The teacher's key value as text, or None (and a problem) when it is not usable.

    An empty or non-scalar key would silently turn a grounded record into an ungrounded one,
    so it is refused instead of dropped.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        problems.append(f"metadata.{name} must be a non-empty string or a number, got {type(value).__name__}")
        return None
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"metadata.{name} must be a finite number, got {value!r}")
        return None
    return checked_text(f"metadata.{name}", value if isinstance(value, str) else str(value), problems)


def metadata_from_dict(raw: Any, problems: list[str]) -> Metadata:
    """Parse and normalize metadata, appending a message to ``problems`` for each bad value."""
    if raw is None:
        return Metadata()
    if not isinstance(raw, dict):
        problems.append(f"field 'metadata' must be an object, got {type(raw).__name__}")
        return Metadata()
    meta = Metadata(extra={k: v for k, v in raw.items() if k not in ("subject", "grade_level", "teaching_style")})
    for name, parse in (("subject", normalize_subject), ("grade_level", parse_grade_level), ("teaching_style", parse_teaching_style)):
        value = raw.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            problems.append(f"metadata.{name} must be a non-empty string, got {value!r}"[:200])
            continue
        try:
            setattr(meta, name, parse(value))
        except ValueError as err:
            problems.append(f"metadata: {err}")
    for name in KEY_FIELDS:
        if raw.get(name) is not None:
            text = _key_field(name, raw[name], problems)
            if text is None:
                del meta.extra[name]
            else:
                meta.extra[name] = text
    return meta


def parse_metadata(values: dict[str, Any], where: str = "metadata") -> Metadata:
    """Subject / grade level / style (and the key) from loose values, normalized; a bad value is an error
    (``EduloraError`` naming ``where``), never silently dropped. Empty values count as absent."""
    from ..errors import EduloraError

    problems: list[str] = []
    meta = metadata_from_dict({k: v for k, v in values.items() if v not in (None, "")}, problems)
    if problems:
        raise EduloraError(f"{where}: " + "; ".join(problems))
    return meta


def example_from_dict(obj: Any) -> Example:
    """Build an ``Example`` from the guide's JSON record; raises ``RecordError`` listing every problem."""
    if not isinstance(obj, dict):
        raise RecordError([f"a record must be a JSON object, got {type(obj).__name__}"])
    problems: list[str] = []
    instruction = _text_field(obj, "instruction", problems, required=True)
    response = _text_field(obj, "response", problems, required=True)
    context = _text_field(obj, "context", problems, required=False)
    metadata = metadata_from_dict(obj.get("metadata"), problems)
    if problems:
        raise RecordError(problems)
    extra = {k: v for k, v in obj.items() if k not in ("instruction", "context", "response", "metadata")}
    return Example(instruction=instruction, response=response, context=context or None, metadata=metadata, extra=extra)


_ROLES = ("system", "user", "assistant")


def dialogue_from_dict(obj: Any) -> Dialogue:
    """Build a ``Dialogue`` from ``{"messages": [{"role", "content"}…], "metadata": {…}}``."""
    if not isinstance(obj, dict):
        raise RecordError([f"a record must be a JSON object, got {type(obj).__name__}"])
    problems: list[str] = []
    messages = obj.get("messages")
    turns: list[Turn] = []
    if not isinstance(messages, list) or not messages:
        problems.append("field 'messages' must be a non-empty list")
    else:
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                problems.append(f"messages[{i}] must be an object")
                continue
            role, content, train = msg.get("role"), msg.get("content"), msg.get("train", True)
            if not isinstance(train, bool):
                problems.append(f"messages[{i}].train must be true or false, got {train!r}"[:200])
            elif not train and role != "assistant":
                problems.append(f"messages[{i}].train: only assistant turns can be marked not to train on")
            elif role not in _ROLES:
                problems.append(f"messages[{i}].role must be one of {', '.join(_ROLES)}, got {role!r}"[:200])
            elif not isinstance(content, str) or not content.strip():
                problems.append(f"messages[{i}].content must be a non-empty string")
            elif len(content) > MAX_FIELD_CHARS:
                problems.append(f"messages[{i}].content is {len(content):,} characters long (limit {MAX_FIELD_CHARS:,})")
            else:
                turns.append(Turn(role, content, train))
        if turns and not any(t.role == "assistant" for t in turns):
            problems.append("dialogue has no assistant (tutor) turn to learn from")
        elif turns and not any(t.role == "assistant" and t.train for t in turns):
            problems.append("dialogue has no assistant (tutor) turn to learn from (every one is marked train: false)")
    metadata = metadata_from_dict(obj.get("metadata"), problems)
    if problems:
        raise RecordError(problems)
    extra = {k: v for k, v in obj.items() if k not in ("messages", "metadata")}
    return Dialogue(turns=turns, metadata=metadata, extra=extra)


def record_from_dict(obj: Any) -> Record:
    """An ``Example`` or, for objects with ``messages``, a ``Dialogue``."""
    if isinstance(obj, dict) and "messages" in obj:
        return dialogue_from_dict(obj)
    return example_from_dict(obj)
