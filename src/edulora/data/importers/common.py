"""What the dataset importers share: field checks (the item loop and ``Skipped`` live in ``..io``)."""

from __future__ import annotations

import math
import re
from typing import Any

from ..io import Problem, Skipped
from ..schema import GradeLevel, Record, RecordError, checked_text, parse_grade_level

ImportItem = tuple[int, Record | Problem | Skipped]


def require_object(obj: Any) -> dict:
    if not isinstance(obj, dict):
        raise RecordError([f"a record must be a JSON object, got {type(obj).__name__}"])
    return obj


def text(obj: dict, name: str, problems: list[str], required: bool = True) -> str | None:
    """A string field, stripped; a missing, blank (when required), non-string or huge one is a problem."""
    value = obj.get(name)
    if value is None:
        if required:
            problems.append(f"missing field '{name}'")
        return None
    checked = checked_text(f"field '{name}'", value, problems, required)
    if checked is None or not checked.strip():
        return None
    return checked.strip()


def number(obj: dict, name: str, problems: list[str]) -> int | float | None:
    """An optional numeric field; CSV gives numbers as text ("4.0"), so numeric text is read too."""
    value = obj.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            problems.append(f"field '{name}' must be a number, got {value!r}"[:200])
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        problems.append(f"field '{name}' must be a number, got {value!r}"[:200])
        return None
    return int(value) if float(value).is_integer() else value


def grade_from_number(grade: str) -> GradeLevel | None:
    """The grade level of a US school grade number ('7' → middle school), None beyond grade 12."""
    try:
        return parse_grade_level(f"grade {grade}")
    except ValueError:
        return None


_GSM8K_CALCULATOR = re.compile(r"<<[^<>\n]*>>")


def strip_calculator_notes(value: str) -> str:
    """Drop GSM8K's calculator annotations ``<<8*0.8=6.4>>``: tool traces, not what a person wrote."""
    return _GSM8K_CALCULATOR.sub("", value)


__all__ = ["ImportItem", "grade_from_number", "number", "require_object", "strip_calculator_notes", "text"]
