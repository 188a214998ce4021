"""Numbers in text and the arithmetic of simple questions: pure functions over strings.

``find_numbers`` reads every spelling a tutor uses ("12", "$1,260", "3/4", "twenty-five");
``question_answer`` computes what an arithmetic question asks for ("What is 24-15?").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass


_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}


def _alternatives(names: Sequence[str]) -> str:
    return "(?:" + "|".join(sorted(names, key=len, reverse=True)) + ")"


# Number words as English composes them: "seven", "twenty-five", "three hundred and five",
# "two thousand four hundred" — and not "two and three" or "five six seven" (those are lists).
_UNIT_WORD = _alternatives(list(_UNITS))
_DIGIT_WORD = _alternatives([w for w, v in _UNITS.items() if 1 <= v <= 9])
_BELOW_100 = rf"(?:{_alternatives(list(_TENS))}(?:[\s-]+{_DIGIT_WORD})?|{_UNIT_WORD})"
_BELOW_1000 = rf"(?:{_BELOW_100}\s+hundred(?:\s+(?:and\s+)?{_BELOW_100})?|{_BELOW_100})"
_NUMBER_WORDS = rf"{_BELOW_1000}(?:\s+(?:thousand|million|billion)(?:,?\s+(?:and\s+)?{_BELOW_1000})?)*"

# A unit written against the digits ("30cm²", "5kg") still ends the number; other letters
# ("3rd", "2x", "x2") make it no number at all.
_ATTACHED_UNIT = r"(?:mm|cm|km|m|kg|mg|g|ml|min|hrs?|ft|mi|lbs?|oz|mph)[²³]?(?!\w)"
_NUMBER = re.compile(
    r"(?P<digits>(?<![\w.])(?:(?P<whole>\d+)\s+)?(?P<int>\d{1,3}(?:,\d{3})+|\d+|(?=\.\d))(?P<frac>\.\d+)?"
    rf"(?:/(?P<den>\d+)(?!\d|\.\d))?(?:(?!\w)|(?={_ATTACHED_UNIT})))"
    rf"|(?P<words>\b{_NUMBER_WORDS}\b)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class NumberMention:
    """A number written in a text, with its position there."""

    value: float
    start: int
    end: int
    #: Digits after the decimal point as written ("0.67" -> 2); 0 for integers, fractions and words.
    decimals: int = 0
    #: Written as a fraction ("3/4", "1 1/2").
    fraction: bool = False


def _words_value(text: str) -> float:
    total, current = 0, 0
    for token in re.split(r"[\s-]+", text.lower()):
        if token in _UNITS:
            current += _UNITS[token]
        elif token in _TENS:
            current += _TENS[token]
        elif token == "hundred":
            current = max(current, 1) * 100
        elif token in _SCALES:
            total += max(current, 1) * _SCALES[token]
            current = 0
    return float(total + current)


def find_numbers(text: str) -> list[NumberMention]:
    """Every number in ``text``: digits (with thousands commas, decimals, fractions) or English words.

    A leading minus sign counts only where it cannot be subtraction ("-3", "= -3", but not "5 -3").
    """
    found: list[NumberMention] = []
    for m in _NUMBER.finditer(text):
        if m.group("words"):
            if m.group("words").lower() == "one":  # mostly a pronoun or determiner: "this one", "one more try"
                continue
            found.append(NumberMention(_words_value(m.group("words")), m.start(), m.end()))
            continue
        whole, den = m.group("whole"), m.group("den")
        frac = m.group("frac") or ""
        value = float((m.group("int").replace(",", "") or "0") + frac)
        start = m.start()
        if den is not None:
            if float(den) == 0:
                continue
            value = value / float(den)
            if whole is not None:
                if value >= 1:  # "2 3/4" is a mixed number only when 3/4 is a proper fraction
                    found.append(NumberMention(float(whole), m.start(), m.start() + len(whole)))
                    start = m.start("int")
                else:
                    value += float(whole)
        elif whole is not None:  # "12 15": two numbers, not one
            found.append(NumberMention(float(whole), m.start(), m.start() + len(whole)))
            start = m.start("int")
        before = text[:start].rstrip()
        if before.endswith(("-", "−")) and not re.search(r"[\d)]\s*[-−]$", before):
            value = -value
        found.append(NumberMention(value, start, m.end(), decimals=len(frac) - 1 if frac else 0, fraction=den is not None))
    return found


def parse_number(text: str) -> float | None:
    """The value of ``text`` when it is one number, give or take a currency sign, % or a unit word.

    "12", "12.0", "$12", "12 apples", "twelve", "3/4", "x = 5" give a value; "2 and 3", "blue" give None.
    """
    # "28 cm^2", "9.8 m/s^2": the power belongs to the unit, it is not a second number.
    text = re.sub(r"(?<=[a-zA-Z])\^-?\d\b", "", text)
    mentions = find_numbers(text)
    if len(mentions) != 1:
        return None
    m = mentions[0]
    rest = (text[: m.start] + " " + text[m.end :]).lower()
    rest = re.sub(r"[-−$€£%=:.,()\s]|\b[a-z]\b", " ", rest)
    return m.value if len(rest.split()) <= 2 else None


def same_number(mention: NumberMention, answer: float) -> bool:
    """Whether ``mention`` writes ``answer``: exactly, or rounded/truncated to the decimals shown.

    "0.67" and "0.666" both write 2/3; "1" does not write 1.5, and "12" writes "12.0".
    """
    if math.isclose(mention.value, answer, rel_tol=1e-9, abs_tol=1e-9):
        return True
    if mention.decimals and not float(answer).is_integer():
        scale = 10**mention.decimals
        shown = (round(answer * scale) / scale, math.trunc(answer * scale) / scale)
        return any(math.isclose(mention.value, v, rel_tol=1e-12, abs_tol=1e-12) for v in shown)
    return False


# --------------------------------------------------------------------------------------------
# Arithmetic: the value an arithmetic question asks for
# --------------------------------------------------------------------------------------------


def evaluate_expression(expr: str) -> float | None:
    """Value of an arithmetic expression of numbers, + - * x × / ÷ and parentheses; None if malformed."""
    tokens = re.findall(r"\d+(?:\.\d+)?|[-+*/x×÷()]", expr.replace(",", ""))
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def atom() -> float:
        token = take()
        if token == "(":
            value = additive()
            if take() != ")":
                raise ValueError(expr)
            return value
        if token == "-":
            return -atom()
        return float(token)

    def multiplicative() -> float:
        value = atom()
        while peek() in ("*", "x", "×", "/", "÷"):
            op, rhs = take(), atom()
            value = value / rhs if op in ("/", "÷") else value * rhs
        return value

    def additive() -> float:
        value = multiplicative()
        while peek() in ("+", "-"):
            op, rhs = take(), multiplicative()
            value = value + rhs if op == "+" else value - rhs
        return value

    try:
        value = additive()
    except (ValueError, IndexError, ZeroDivisionError):
        return None
    return value if pos == len(tokens) else None


_N = r"(\d+(?:\.\d+)?)"
_EXPRESSION = re.compile(r"\(?\s*\d+(?:\.\d+)?\s*\)?(?:\s*[-+*/x×÷]\s*\(?\s*\d+(?:\.\d+)?\s*\)?)+")
_WORDED_OPERATIONS: list[tuple[re.Pattern[str], Callable[[float, float], float]]] = [
    (re.compile(rf"\bproduct (?:value )?of {_N} and {_N}", re.I), lambda a, b: a * b),
    (re.compile(rf"\bmultiply {_N} (?:by|and|with) {_N}", re.I), lambda a, b: a * b),
    (re.compile(rf"\b{_N} times {_N}", re.I), lambda a, b: a * b),
    (re.compile(rf"\bsum of {_N} and {_N}", re.I), lambda a, b: a + b),
    (re.compile(rf"\badd {_N} (?:and|to) {_N}", re.I), lambda a, b: a + b),
    (re.compile(rf"\b{_N} plus {_N}", re.I), lambda a, b: a + b),
    (re.compile(rf"\bdifference (?:between|of) {_N} and {_N}", re.I), lambda a, b: abs(a - b)),
    (re.compile(rf"\bsubtract {_N} from {_N}", re.I), lambda a, b: b - a),
    (re.compile(rf"\b{_N} minus {_N}", re.I), lambda a, b: a - b),
    (re.compile(rf"\bdivide {_N} by {_N}", re.I), lambda a, b: a / b),
    (re.compile(rf"\b{_N} divided by {_N}", re.I), lambda a, b: a / b),
    (
        re.compile(rf"\bhow many times (?:does |do |can |will )?{_N} (?:go|goes|fit|fits) in(?:to)? {_N}", re.I),
        lambda a, b: float(b // a),
    ),
]


def question_answer(question: str) -> str | None:
    """The value asked for by an arithmetic question ("What is 24-15?", "product of 9 and 8"), else None."""
    for pattern, operation in _WORDED_OPERATIONS:
        found = pattern.search(question)
        if found:
            try:
                return format_number(operation(float(found.group(1)), float(found.group(2))))
            except ZeroDivisionError:
                return None
    for found in reversed(list(_EXPRESSION.finditer(question))):
        value = evaluate_expression(found.group(0))
        if value is not None:
            return format_number(value)
    return None


def format_number(value: float) -> str:
    """``12.0`` -> "12", ``0.75`` -> "0.75": how a computed value is written back as an answer."""
    return str(int(value)) if float(value).is_integer() else repr(value)

