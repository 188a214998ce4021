"""Educational metrics of a tutor reply: pure functions over strings.

Every metric takes the reply (plus the reference, metadata values or conversation history it
needs) and returns a float in [0, 1] or a small frozen dataclass whose ``score`` is in [0, 1]
and whose other fields explain the score. Nothing here loads a model: ``outcome_alignment``
takes an ``embed`` callable, and ``edulora.evaluation.embeddings.embed`` is the real one.

docs/evaluation.md defines each metric and gives the agreement of ``answer_revealing`` and
``providing_guidance`` with MRBench's human labels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import textstat

from ..data.schema import GradeLevel, TeachingStyle, parse_grade_level, parse_teaching_style

# --------------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------------

# A sentence ends at . ! ? (plus closing quotes/brackets) followed by space, or at a line break.
# Decimal points ("0.67") never split because no space follows them.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+|\s*\n\s*")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, without empty ones."""
    return [s.strip() for s in _SENTENCE_BREAK.split(text) if s and s.strip()]


_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lower-case alphabetic words of ``text`` (apostrophes kept inside words: "don't")."""
    return _WORD.findall(text.lower().replace("’", "'"))


#: English function words: never a key concept, never a sign that two texts share a topic.
_STOPWORDS = frozenset(
    """a about above after again against all almost also am an and any are as at be because been before being below
    between both but by can could did do does doing done down during each either else even ever every few for from
    further get gets got had has have having he her here hers herself him himself his how however i if in into is it
    its itself just let lets me might more most much must my myself no nor not now of off on once one only or other
    our ours ourselves out over own per quite rather really same shall she should so some such than that the their
    theirs them themselves then there these they this those through thus to too under until up upon us very was we
    were what when where whether which while who whom whose why will with within without would yet you your yours
    yourself yourselves s t don't doesn't didn't isn't aren't wasn't weren't can't couldn't won't wouldn't shouldn't
    it's that's there's let's i'm you're we're they're i've you've we've i'll you'll we'll i'd you'd we'd""".split()
)


def _phrase_pattern(phrases: Sequence[str]) -> re.Pattern[str]:
    """One regex matching any of ``phrases`` as whole words, case-insensitively.

    Inside a phrase a space matches any run of spaces, "…" up to six words ("think of … as"
    matches "think of the cell as") and an apostrophe either apostrophe ("let's", "let’s").
    """
    gap = r"(?:[\w'’-]+\s+){0,6}?"
    bodies = []
    for phrase in phrases:
        body, previous = "", None
        for token in phrase.split():
            if token == "…":
                body += r"\s+" + gap
            else:
                piece = re.escape(token).replace("'", "['’]")
                body += piece if previous in (None, "…") else r"\s+" + piece
            previous = token
        bodies.append(body)
    return re.compile(r"(?<![\w'’])(?:" + "|".join(bodies) + r")(?![\w'’])", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# Numbers: "12", "12.0", "$1,260", "25%", "3/4", "1 1/2", "twelve", "twenty-five"
# --------------------------------------------------------------------------------------------

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

_NUMBER = re.compile(
    r"(?P<digits>(?<![\w.])(?:(?P<whole>\d+)\s+)?(?P<int>\d{1,3}(?:,\d{3})+|\d+|(?=\.\d))(?P<frac>\.\d+)?"
    r"(?:/(?P<den>\d+)(?![\d.]))?(?!\w))"
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
    mentions = find_numbers(text)
    if len(mentions) != 1:
        return None
    m = mentions[0]
    rest = (text[: m.start] + " " + text[m.end :]).lower()
    rest = re.sub(r"[-−$€£%=:.,()\s]|\b[a-z]\b", " ", rest)
    return m.value if len(rest.split()) <= 2 else None


def _same_number(mention: NumberMention, answer: float) -> bool:
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
# Conversation history
# --------------------------------------------------------------------------------------------

_ROLE_PREFIX = re.compile(r"(?:^|\n|\s{2,}|\u00a0)\s*(Tutor|Teacher|Assistant|Student|User|Learner)\s*:", re.IGNORECASE)
_TUTOR_ROLES = {"tutor", "teacher", "assistant", "system"}

#: A conversation: "Tutor: …\nStudent: …" text, or a sequence of (role, text) pairs, chat
#: messages ``{"role", "content"}`` or objects with ``.role``/``.content`` (``schema.Turn``).
History = str | Sequence[object] | None


def parse_history(history: History) -> list[tuple[str, str]]:
    """``history`` as ``("tutor" | "student", text)`` turns, oldest first."""
    if not history:
        return []
    if isinstance(history, str):
        marks = list(_ROLE_PREFIX.finditer(history))
        if not marks:
            return [("student", history.strip())]
        turns = []
        for i, m in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(history)
            role = "tutor" if m.group(1).lower() in _TUTOR_ROLES else "student"
            text = history[m.end() : end].replace("\u00a0", " ").strip()
            if text:
                turns.append((role, text))
        return turns
    turns = []
    for item in history:
        if isinstance(item, tuple):
            role, text = item
        elif isinstance(item, dict):  # chat "messages": {"role": …, "content": …}
            role, text = item.get("role"), item.get("content")
        else:  # edulora.data.schema.Turn and the like
            role, text = getattr(item, "role", None), getattr(item, "content", None)
        if text:
            turns.append(("tutor" if str(role).lower() in _TUTOR_ROLES else "student", str(text)))
    return turns


# --------------------------------------------------------------------------------------------
# The answer the student should reach
# --------------------------------------------------------------------------------------------

_NOT_AVAILABLE = {"", "n/a", "na", "none", "not available", "unknown", "-"}


def extract_final_answer(solution: str | None) -> str | None:
    """The final answer of a worked solution, or None when it has none.

    Looked for, in order: a GSM8K "#### 12" line, a LaTeX ``\\boxed{12}``, "the answer is 12",
    a last line that is only a value ("12", "$12", "pentagon"), the last number of the last line.
    """
    if solution is None or solution.strip().lower() in _NOT_AVAILABLE:
        return None
    text = solution.strip()
    for pattern in (r"####\s*(.+?)\s*$", r"\\boxed\{([^{}]+)\}", r"\banswer is:?\s*([^\n.]+?)\s*\.?\s*$"):
        found = re.findall(pattern, text, re.IGNORECASE | re.MULTILINE)
        if found:
            return _value_of(found[-1].strip())
    last = [line.strip() for line in text.splitlines() if line.strip()][-1]
    if parse_number(last) is not None or len(last.split()) <= 3:
        return last
    numbers = find_numbers(last)
    return last[numbers[-1].start : numbers[-1].end] if numbers else None


def _value_of(answer: str) -> str:
    """"3 apples in total" -> "3": a stated answer with a number in more words is that number."""
    numbers = find_numbers(answer)
    if parse_number(answer) is None and len(numbers) == 1:
        return answer[numbers[0].start : numbers[0].end]
    return answer


def _evaluate(expr: str) -> float | None:
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
                return _format_number(operation(float(found.group(1)), float(found.group(2))))
            except ZeroDivisionError:
                return None
    for found in reversed(list(_EXPRESSION.finditer(question))):
        value = _evaluate(found.group(0))
        if value is not None:
            return _format_number(value)
    return None


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def answer_from_history(history: History) -> str | None:
    """The answer to the tutor's latest arithmetic question, when the conversation ends on one.

    Only the tutor turns since the student last spoke before the final student turn are read,
    newest first: that is the question the student is answering.
    """
    turns = parse_history(history)
    while turns and turns[-1][0] == "student":
        turns.pop()
    while turns and turns[-1][0] == "tutor":
        found = question_answer(turns.pop()[1])
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------------------------
# Answer revealing
# --------------------------------------------------------------------------------------------

_ARTICLES = {"a", "an", "the"}
_OPERATOR = r"(?:[-+*/×÷]|(?<=[\d\s])x(?=[\s\d(])|\btimes\b|\bplus\b|\bminus\b|\bdivided by\b|\bmultiplied by\b|\bby\b)"
# "15 * 84", "$15/hour x 84": the value is an operand of a calculation, not its result.
_OPERAND_AFTER = re.compile(r"^\s*(?:%|/?[a-z]+)?\s*" + _OPERATOR + r"\s*\(?\s*[$\d]", re.IGNORECASE)
_OPERAND_BEFORE = re.compile(
    r"(?:" + _OPERATOR + r"|\b(?:multiply|multiplying|multiplied|add|adding|added|subtract|subtracting|subtracted|divide|"
    r"dividing|divided|from|product of|sum of|"
    r"difference between))\s*\(?\s*[$€£]?$",
    re.IGNORECASE,
)
# "…, not 12", "instead of 12", "more than 12": the value is being rejected or compared with.
_REJECTED_BEFORE = re.compile(
    r"\b(?:not|instead of|rather than|than|isn't|aren't|wasn't|never|n't)\s+(?:(?:an?|the|just|exactly|quite|really|"
    r"equal to|equals?|be|get|getting)\s+)*[$€£]?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class AnswerReveal:
    """Whether a reply gives away the final answer; ``score`` is 1.0 when it does."""

    revealed: bool
    #: The answer looked for: as given, or inferred from the tutor's last arithmetic question.
    answer: str | None
    #: The sentence that gives the answer away, when one does.
    evidence: str | None
    #: Why: "states the answer", "only asks about the answer", "answer already in the conversation",
    #: "answer not stated", "states a correction" or "no answer known".
    reason: str

    @property
    def score(self) -> float:
        return 1.0 if self.revealed else 0.0


def _clauses(text: str) -> list[str]:
    """Sentences further cut at ";" and at a spaced dash, so that "Pentagons have five sides;
    how many does a hexagon have?" yields a statement and a question."""
    return [c.strip() for s in split_sentences(text) for c in re.split(r";|\s[-–—]\s", s) if c.strip()]


def _is_question(sentence: str) -> bool:
    return sentence.rstrip(" \"'”’)*").endswith("?")


def _answer_spans(text: str, answer: str) -> list[tuple[int, int]]:
    """Where ``text`` writes ``answer``: as a number (any spelling) or as words (plural allowed)."""
    value = parse_number(answer)
    if value is not None:
        # A written fraction "2/3" is a calculation to do unless the answer itself is a fraction.
        fraction_answer = bool(re.search(r"\d\s*/\s*\d", answer))
        return [
            (m.start, m.end)
            for m in find_numbers(text)
            if _same_number(m, value) and (fraction_answer or not m.fraction)
        ]
    tokens = [t for t in re.findall(r"[a-z]+|\d+(?:\.\d+)?", answer.lower()) if t not in _ARTICLES]
    if not tokens:
        return []
    body = r"\W+".join(re.escape(t) for t in tokens)
    return [(m.start(), m.end()) for m in re.finditer(rf"(?<![\w-]){body}(?:s|es)?(?![\w-])", text, re.IGNORECASE)]


# "= 12", "is 12", "we get 12", "equals about 12": the value is given as a result.
_RESULT_BEFORE = re.compile(
    r"(?:=|\b(?:is|are|was|be|equals?|equal to|get|gets|got|gives?|giving|makes?|totals?|totaling|answer)\b)\s*"
    r"(?:(?:actually|really|just|simply|exactly|only|approximately|about|around|roughly|us|you|a total of)\s+)*[$€£]?$",
    re.IGNORECASE,
)
# "you found 12", "you're right that … 12": the value is the student's own, handed back to them.
_STUDENTS_OWN = re.compile(
    r"\byou(?:'ve| have)?\s+(?:\w+ly\s+)?(?:said|say|found|calculated|got|wrote|figured|stated|mentioned|worked out|"
    r"computed|concluded)\b|\byou(?:'re| are) (?:correct|right) (?:that|about)\b",
    re.IGNORECASE,
)


def _states_at(sentence: str, start: int, end: int) -> bool:
    """Whether the value at ``sentence[start:end]`` is asserted, not an operand, rejected or compared with."""
    before, after = sentence[:start], sentence[end:]
    if _OPERAND_AFTER.match(after) or _OPERAND_BEFORE.search(before):
        return False
    if re.search(r"\d\s*,\s*\d+\s*,\s*$", before):  # "15, 14, 13, 12": counting aloud, not a result
        return False
    return not _REJECTED_BEFORE.search(before)


def answer_revealing(
    reply: str,
    answer: str | None = None,
    history: History = None,
    reference: str | None = None,
    problem: str | None = None,
) -> AnswerReveal:
    """Does ``reply`` give away the final answer the student should reach?

    The answer is ``answer`` when given, else the final answer of ``reference`` (a worked
    solution; see ``extract_final_answer``), else the value of the tutor's last arithmetic
    question in ``history`` ("What is 24-15?"). The reply reveals it when one of its declarative
    clauses writes the answer (any number spelling: "12", "12.0", "$12", "twelve", "0.67" for
    2/3; or the answer's words, plural allowed) as an asserted value, i.e. not

    - inside a question: "Is it 12?" asks the student to check, as MRBench's annotators read it;
    - as an operand ("12 x 3", "divide 12 by 4") or in a count ("10, 11, 12, …");
    - rejected or compared with ("not 12", "instead of 12", "more than 12");
    - when the answer is also a given of the ``problem`` (default: the opening turn of
      ``history``), other than as a result ("= 12", "is 12", "we get 12");
    - as the student's own value handed back ("you found 12 …", "you're right that … 12");

    and the conversation had not already reached it: the student's last turn ends on it (so
    repeating it confirms, it does not reveal) or a later tutor turn asserted it.

    With no answer known, the reply reveals when it asserts a correction: "the correct answer
    is …", "… is called …", "… is actually …", or "X, not Y" where Y is the student's last answer.
    """
    if answer is None and reference is not None:
        answer = extract_final_answer(reference)
    if answer is None:
        answer = answer_from_history(history)
    turns = parse_history(history)
    if answer is None or not answer.strip():
        return _correction_reveal(reply, turns)
    if problem is None and turns:
        problem = turns[0][1]
    # When the answer is also one of the problem's givens, a bare mention most likely refers to
    # the given ("the $50 represents …"); only a mention written as a result counts.
    answer_is_given = bool(problem and _answer_spans(problem, answer))
    student_said = any(_answer_spans(text, answer) for role, text in turns if role == "student")
    asked = False
    for sentence in _clauses(reply):
        for start, end in _answer_spans(sentence, answer):
            if not _states_at(sentence, start, end):
                continue
            if _is_question(sentence):
                asked = True
                continue
            if answer_is_given and not _RESULT_BEFORE.search(sentence[:start]):
                continue
            clause = re.split(r"[,;:]", sentence[:start])[-1]
            if student_said and _STUDENTS_OWN.search(clause):
                continue
            if _already_said(answer, turns):
                return AnswerReveal(False, answer, None, "answer already in the conversation")
            return AnswerReveal(True, answer, sentence, "states the answer")
    return AnswerReveal(False, answer, None, "only asks about the answer" if asked else "answer not stated")


def _already_said(answer: str, turns: list[tuple[str, str]]) -> bool:
    """Whether the conversation already reached ``answer``: the student's last turn concludes with
    it, or a tutor turn after the opening one (which poses the problem) asserted it."""
    students = [text for role, text in turns if role == "student"]
    if students:
        last = split_sentences(students[-1])
        spans = _answer_spans(last[-1], answer) if last else []
        values = find_numbers(last[-1]) if last else []
        if spans and (not values or values[-1].end == spans[-1][1] or parse_number(answer) is None):
            return True
    for role, text in turns[1:]:
        if role != "tutor":
            continue
        for sentence in split_sentences(text):
            if not _is_question(sentence) and any(_states_at(sentence, s, e) for s, e in _answer_spans(sentence, answer)):
                return True
    return False


# Wordings that assert what the right answer is, for replies whose answer we cannot compute.
_CORRECTION = re.compile(
    r"\b(?:is|are) (?:actually |really |also )?called\b"
    r"|\b(?:correct|right|final) (?:answer|term|word|name|product|sum|total|difference|quotient|value|result|number|"
    r"place|spelling)\b[^.?!]{0,40}?\b(?:is|are|would be|should be|will be|=)\s+(?![Nn]ot\b)\S"
    r"|\bthe answer (?:is|would be|should be|will be)\s+(?!not\b|incorrect\b|wrong\b|close\b|right\b|correct\b)\S"
    r"|\b(?:is|are|equals|get|gets|gives(?: us)?|makes) actually\b|\bactually (?:is|are|equals|get|gives?|makes)\b",
    re.IGNORECASE,
)


def _correction_reveal(reply: str, turns: list[tuple[str, str]]) -> AnswerReveal:
    """Answer revealing when the answer is unknown: the reply asserts the correction itself, either
    in so many words ("is called a pentagon", "the correct answer is …") or as "X, not Y" where Y
    is what the student answered last."""
    said = _student_answer(turns)
    rejects_said = None
    if said:  # "… 420, not 520": something asserted in place of the student's answer
        before = r"\w[^,]*?,?\s+(?:not|instead of|rather than)\s+(?:an?\s+|the\s+)?"
        rejects_said = re.compile(before + re.escape(said) + r"(?!\w|\.\d)", re.IGNORECASE)
    for sentence in _clauses(reply):
        if _is_question(sentence):
            continue
        if _CORRECTION.search(sentence) or (rejects_said and rejects_said.search(sentence)):
            return AnswerReveal(True, None, sentence, "states a correction")
    return AnswerReveal(False, None, None, "no answer known")


def _student_answer(turns: list[tuple[str, str]]) -> str | None:
    """What the student answered last: the last number of their last turn, else its content words
    when they are few ("a octogon" -> "octogon"); None for a longer turn."""
    students = [text for role, text in turns if role == "student"]
    if not students:
        return None
    numbers = find_numbers(students[-1])
    if numbers:
        return students[-1][numbers[-1].start : numbers[-1].end]
    content = [w for w in words(students[-1]) if w not in _STOPWORDS]
    return " ".join(content) if 0 < len(content) <= 3 else None


# --------------------------------------------------------------------------------------------
# Providing guidance
# --------------------------------------------------------------------------------------------

# Words every tutor reply uses whatever the problem; sharing them with the conversation is no sign of relevance.
_TUTOR_FILLER = frozenset(
    """great good nice well job try tried trying effort work working right wrong correct incorrect close answer
    answers question questions think thinking look looking take taking again together keep practice practicing
    remember sure make makes made see seems seem like way step steps problem problems mistake mistakes calculation
    calculations understand understanding point points awesome excellent done let's okay ok yes thanks thank""".split()
)

# A hint names what to look at or use; "let's try again" or "double-check" only says to look again.
_HINT = _phrase_pattern([
    "remember", "recall", "think about", "consider", "notice", "keep in mind", "don't forget", "do not forget",
    "make sure", "pay attention", "focus on", "start with", "start by", "first", "the key", "hint", "note that",
])
_VAGUE_PROMPT = _phrase_pattern([
    "try", "try again", "let's", "let us", "double-check", "double check", "re-check", "recheck", "revisit",
    "re-examine", "reexamine", "reconsider", "rethink", "go back", "look at", "take a look", "take a closer look",
    "take another look", "check",
])
_ERROR_EXPLANATION = _phrase_pattern([
    "mistake", "error", "forgot", "forget", "missed", "instead of", "rather than", "already", "represents",
    "means", "should be", "should have", "need to", "needs to", "have to", "must", "because", "since",
    "not quite", "doesn't", "don't need", "isn't", "misunderstanding", "confused", "mixed up", "double count",
    "mix-up",
])
# Chat-transcript markers inside a reply: the model went on to write other turns, off the lesson.
_TRANSCRIPT = re.compile(r"###|\b(?:User|Assistant|Tutor response)\s*(?:\(|:)", re.IGNORECASE)
#: Below this share of its content terms found in the conversation, a reply is off-topic.
#: Low on purpose: an on-topic reply brings new words (the hint) and short dialogues share few.
MIN_ON_TOPIC_SHARE = 0.1
_QUESTION_START = re.compile(
    r"^\W*(?:so\s+|and\s+|but\s+|now\s+|then\s+)?(?:how|what|why|which|where|when|who|can|could|do|does|did|is|are|would|"
    r"will|should|shall)\b",
    re.IGNORECASE,
)


def _asks(sentence: str) -> bool:
    """A question, with or without its "?", or a calculation left open for the student ("243 - 80 =")."""
    return _is_question(sentence) or bool(_QUESTION_START.match(sentence)) or bool(re.search(r"=\s*[.?]*\s*$", sentence))


@dataclass(frozen=True)
class Guidance:
    """Whether a reply guides the student; ``label`` is MRBench's "Yes" / "To some extent" / "No"."""

    label: str
    score: float
    #: Share of the reply's content terms (words and numbers) that occur in the conversation.
    on_topic: float
    hints: tuple[str, ...] = ()
    explanations: tuple[str, ...] = ()
    #: Questions that carry problem content (a number or a content word), not "Any questions?".
    pointed_questions: int = 0
    vague_prompts: tuple[str, ...] = ()


def _content_terms(text: str) -> set[str]:
    terms = {lemma(w) for w in words(text) if w not in _STOPWORDS and w not in _TUTOR_FILLER and len(w) > 2}
    terms |= {_format_number(m.value) for m in find_numbers(text)}
    return terms


_GUIDANCE_SCORE = {"Yes": 1.0, "To some extent": 0.5, "No": 0.0}


def providing_guidance(reply: str, history: History = None, answer_revealed: bool | None = None) -> Guidance:
    """Does ``reply`` guide the student towards the solution (MRBench's "Providing Guidance")?

    Guidance is a specific hint ("remember …", "think about …", "first …"), an explanation of
    the error ("you forgot …", "… instead of …", "because …") or a pointed question about the
    problem ("What do you get when you multiply 9 by 8?", or an open "243 - 80 ="). A vague
    prompt ("let's try again", "double-check", "take a closer look") or praise is none.

    - "No": off-topic (under ``MIN_ON_TOPIC_SHARE`` of its content terms occur in the
      conversation, or it goes on to write other chat turns), or neither guidance nor the answer;
    - "To some extent": the answer given away (``answer_revealed``) without any guidance, or a
      single hint or explanation (no pointed question) wrapped in a vague prompt or the answer;
    - "Yes": otherwise — a pointed question, two kinds of guidance, or one on its own.

    ``score`` is 1.0 / 0.5 / 0.0 for the three labels.
    """
    topic = _content_terms(" ".join(text for _, text in parse_history(history)))
    own = _content_terms(reply)
    on_topic = len(own & topic) / len(own) if topic and own else 1.0
    hints = tuple(m.group(0).lower() for m in _HINT.finditer(reply))
    vague = tuple(m.group(0).lower() for m in _VAGUE_PROMPT.finditer(reply))
    explanations = tuple(m.group(0).lower() for m in _ERROR_EXPLANATION.finditer(reply))
    pointed = sum(
        1 for s in split_sentences(reply) if _asks(s) and (find_numbers(s) or (_content_terms(s) & (topic or own)))
    )
    specific = bool(hints) + bool(explanations) + bool(pointed)
    if on_topic < MIN_ON_TOPIC_SHARE or _TRANSCRIPT.search(reply) or not (specific or answer_revealed):
        label = "No"
    elif specific == 0 or (specific == 1 and not pointed and (vague or answer_revealed)):
        label = "To some extent"
    else:
        label = "Yes"
    return Guidance(label, _GUIDANCE_SCORE[label], round(on_topic, 4), hints, explanations, pointed, vague)


# --------------------------------------------------------------------------------------------
# Explanation clarity
# --------------------------------------------------------------------------------------------

#: Sentences longer than this many words are hard to follow for most learners.
LONG_SENTENCE_WORDS = 30


@dataclass(frozen=True)
class Clarity:
    """Readability of a reply; ``score`` combines the three measures below (see ``explanation_clarity``)."""

    score: float
    flesch_reading_ease: float
    mean_sentence_length: float
    long_sentence_fraction: float


def explanation_clarity(reply: str) -> Clarity:
    """How easy the reply is to read: 0.5·ease + 0.3·length + 0.2·(1 − long).

    - ease: Flesch reading ease (textstat) divided by 100 and clipped to [0, 1]
      (100 = very easy; 30 and below = academic prose);
    - length: 1.0 while sentences average at most 20 words, falling linearly to 0 at 40;
    - long: the fraction of sentences longer than ``LONG_SENTENCE_WORDS`` words.

    An empty reply scores 0.
    """
    sentences = [s for s in split_sentences(reply) if words(s)]
    if not sentences:
        return Clarity(0.0, 0.0, 0.0, 0.0)
    lengths = [len(words(s)) for s in sentences]
    mean_length = sum(lengths) / len(lengths)
    ease = float(textstat.flesch_reading_ease(reply))
    long_fraction = sum(n > LONG_SENTENCE_WORDS for n in lengths) / len(lengths)
    length_score = _clip((40 - mean_length) / 20)
    score = 0.5 * _clip(ease / 100) + 0.3 * length_score + 0.2 * (1 - long_fraction)
    return Clarity(round(score, 4), round(ease, 2), round(mean_length, 2), round(long_fraction, 4))


def _clip(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return max(low, min(high, value))


# --------------------------------------------------------------------------------------------
# Grade-level fit
# --------------------------------------------------------------------------------------------

#: US school grades each band reads at (0 = kindergarten); adult learners read at any level.
GRADE_BANDS: dict[GradeLevel, tuple[float, float]] = {
    GradeLevel.ELEMENTARY: (0, 5),
    GradeLevel.MIDDLE_SCHOOL: (6, 8),
    GradeLevel.HIGH_SCHOOL: (9, 12),
    GradeLevel.COLLEGE: (13, 16),
    GradeLevel.ADULT: (0, math.inf),
}
#: Grades outside the band at which the fit reaches 0.
GRADE_TOLERANCE = 4.0


@dataclass(frozen=True)
class GradeFit:
    """How well the reading level of a reply suits the declared grade band."""

    score: float
    estimated_grade: float
    band: tuple[float, float]
    #: Grades between the estimate and the nearest end of the band (0 inside it).
    distance: float


def readability_grade(text: str) -> float:
    """US grade needed to read ``text``: mean of Flesch–Kincaid, Coleman–Liau and ARI, clipped to [0, 20].

    Three formulas are averaged because each alone swings on short texts (FK counts syllables,
    the other two letters).
    """
    grades = (
        textstat.flesch_kincaid_grade(text),
        textstat.coleman_liau_index(text),
        textstat.automated_readability_index(text),
    )
    return _clip(sum(grades) / 3, 0.0, 20.0)


def grade_level_fit(reply: str, grade_level: GradeLevel | str) -> GradeFit:
    """1.0 when ``readability_grade(reply)`` lies in the band of ``grade_level`` (elementary K–5,
    middle_school 6–8, high_school 9–12, college 13–16, adult any), falling linearly with the
    distance to the band to 0 at ``GRADE_TOLERANCE`` grades away.

    ``grade_level`` may be a ``GradeLevel`` or any wording ``parse_grade_level`` accepts.
    A reply without words scores 0.
    """
    if not isinstance(grade_level, GradeLevel):
        grade_level = parse_grade_level(grade_level)
    low, high = GRADE_BANDS[grade_level]
    if not words(reply):
        return GradeFit(0.0, 0.0, (low, high), 0.0)
    grade = readability_grade(reply)
    distance = max(low - grade, grade - high, 0.0)
    return GradeFit(round(_clip(1 - distance / GRADE_TOLERANCE), 4), round(grade, 2), (low, high), round(distance, 2))


# --------------------------------------------------------------------------------------------
# Concept coverage
# --------------------------------------------------------------------------------------------


def lemma(word: str) -> str:
    """A crude English lemma: plural endings stripped ("cells" -> "cell", "bodies" -> "body",
    "boxes" -> "box"), other words unchanged. Words of four letters or fewer are left alone
    ("gas", "bus", "this")."""
    w = word.lower()
    if len(w) <= 4 or w.endswith(("ss", "us", "is", "ous")):
        return w
    if w.endswith("ies"):
        return w[:-3] + "y"
    if w.endswith(("ches", "shes", "xes", "zes", "sses")):
        return w[:-2]
    if w.endswith("s"):
        return w[:-1]
    return w


def key_concepts(text: str) -> set[str]:
    """The content words of ``text``: lower-cased, stopwords and words under three letters
    dropped, plurals lemmatized. These stand in for the reference's key concepts."""
    return {lemma(w) for w in words(text) if w not in _STOPWORDS and len(w) >= 3}


@dataclass(frozen=True)
class Coverage:
    """Which key concepts of the reference the reply mentions; ``score`` is the fraction covered."""

    score: float
    covered: tuple[str, ...]
    missing: tuple[str, ...]


def concept_coverage(reply: str, reference: str) -> Coverage:
    """Fraction of ``key_concepts(reference)`` that also occur in the reply (after the same
    lemmatization). A reference without content words is trivially covered (1.0)."""
    wanted = key_concepts(reference)
    if not wanted:
        return Coverage(1.0, (), ())
    present = {lemma(w) for w in words(reply)}
    covered = tuple(sorted(wanted & present))
    missing = tuple(sorted(wanted - present))
    return Coverage(round(len(covered) / len(wanted), 4), covered, missing)


# --------------------------------------------------------------------------------------------
# Learning-outcome alignment
# --------------------------------------------------------------------------------------------

#: Turns texts into vectors, one per text (``edulora.evaluation.embeddings.embed`` is MiniLM).
Embedder = Callable[[list[str]], Sequence[Sequence[float]]]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two vectors; 0.0 when either is all zeros."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


@dataclass(frozen=True)
class Alignment:
    """Semantic closeness of the reply to the reference answer (and to the context when given)."""

    score: float
    reference_similarity: float
    context_similarity: float | None = None


def outcome_alignment(reply: str, reference: str, context: str | None = None, embed: Embedder | None = None) -> Alignment:
    """Cosine similarity of sentence embeddings (all-MiniLM-L6-v2 unless ``embed`` is given).

    ``score`` = max(0, cos(reply, reference)), or with a context
    0.75·max(0, cos(reply, reference)) + 0.25·max(0, cos(reply, context)): the reference carries
    the learning outcome, the context only checks the reply stays on the lesson's material.
    """
    if embed is None:
        from .embeddings import embed as minilm  # loads MiniLM on first use, only when no embedder is given

        embed = minilm
    texts = [reply, reference] + ([context] if context else [])
    vectors = embed(texts)
    to_reference = cosine(vectors[0], vectors[1])
    if not context:
        return Alignment(round(max(0.0, to_reference), 4), round(to_reference, 4))
    to_context = cosine(vectors[0], vectors[2])
    score = 0.75 * max(0.0, to_reference) + 0.25 * max(0.0, to_context)
    return Alignment(round(score, 4), round(to_reference, 4), round(to_context, 4))


# --------------------------------------------------------------------------------------------
# Engagement
# --------------------------------------------------------------------------------------------

_INVITATIONS = _phrase_pattern([
    "try", "give it a try", "have a go", "can you", "could you", "what do you think", "let's", "let us",
    "how would you", "why do you think", "your turn", "see if you can", "would you like", "want to try",
    "how about you", "what if you",
])
_UNDERSTANDING_CHECKS = _phrase_pattern([
    "does that make sense", "does this make sense", "do you understand", "can you explain", "could you explain",
    "explain in your own words", "in your own words", "can you tell me why", "is that clear", "is this clear",
    "are you following", "any questions", "what did you notice", "how did you get", "can you show me",
    "what part is confusing", "do you see why",
])


@dataclass(frozen=True)
class Engagement:
    """How the reply involves the student; ``score`` is the mean of the three 0/1 signals."""

    score: float
    questions: int
    invitations: tuple[str, ...]
    understanding_checks: tuple[str, ...]


def engagement(reply: str) -> Engagement:
    """Mean of three signals, each 0 or 1: the reply asks the student a question (a sentence
    ending in "?"), invites them to act ("try", "can you", "let's", "what do you think", …) and
    checks their understanding ("does that make sense", "can you explain", …).

    Phrases match as whole words: "try" is not found in "country" or "entry".
    """
    questions = sum(_is_question(s) for s in split_sentences(reply))
    invitations = tuple(m.group(0).lower() for m in _INVITATIONS.finditer(reply))
    checks = tuple(m.group(0).lower() for m in _UNDERSTANDING_CHECKS.finditer(reply))
    score = (bool(questions) + bool(invitations) + bool(checks)) / 3
    return Engagement(round(score, 4), questions, invitations, checks)


# --------------------------------------------------------------------------------------------
# Teaching-style adherence
# --------------------------------------------------------------------------------------------

_STEP_MARKERS = re.compile(
    r"(?im)^\s*(?:\d+[.):]|step\s+\d+|[-*•])\s+|\b(?:first(?:ly)?|second(?:ly)?|third(?:ly)?|then|next|after that|"
    r"finally|lastly|last)\b"
)
_ANALOGY = _phrase_pattern([
    "like a", "like an", "like the", "just like", "think of … as", "similar to", "imagine", "as if", "is like",
    "are like", "compared to", "compare it to", "picture", "the same way", "just as", "kind of like",
])
_NAMES_MISCONCEPTION = _phrase_pattern([
    "common mistake", "common misconception", "misconception", "many people think", "many students think",
    "people often think", "you might think", "it's a myth", "it is a myth", "a myth", "it's easy to think",
    "a lot of people", "it may seem", "it might seem", "it's tempting", "mistake", "confuse", "not true",
])
_CORRECTS = _phrase_pattern([
    "actually", "in fact", "in reality", "the truth is", "correct", "really", "instead", "rather", "but",
    "however",
])
_DEFINITION = re.compile(
    r"\b(?:is|are) (?:defined as|called|known as)\b|\brefers? to\b|\bmeans\b|\bis (?:a|an|the) \w+|\bare \w+ that\b"
    r"|\bformula\b|\brule\b",
    re.IGNORECASE,
)
_INQUIRY = _phrase_pattern([
    "investigate", "explore", "experiment", "predict", "prediction", "observe", "hypothesis", "hypothesize",
    "what would happen if", "what happens if", "what happens when", "find out", "test", "measure", "design",
    "what do you notice", "what patterns", "how could we", "how might we", "why do you think", "wonder",
    "let's see what", "gather", "compare",
])


@dataclass(frozen=True)
class StyleAdherence:
    """How well a reply follows its declared teaching style; ``evidence`` lists what was found."""

    score: float
    style: TeachingStyle
    evidence: tuple[str, ...] = ()


def style_adherence(
    reply: str, style: TeachingStyle | str, answer: str | None = None, history: History = None
) -> StyleAdherence:
    """Score in [0, 1] for ``style``:

    - socratic: 0 when the reply reveals the answer (``answer_revealing``); else 1.0 with at
      least one guiding question, 0.3 without;
    - step_by_step: ordered steps — numbered/bulleted lines or first/then/next/finally —
      min(1, markers / 3);
    - analogy_based: 1.0 with an explicit comparison ("like a", "think of … as", "similar to",
      "imagine"), else 0;
    - misconception_correction: 0.5 for naming the wrong idea ("common mistake", "many people
      think", "it's a myth", or a "not X" contrast) + 0.5 for correcting it ("actually",
      "in fact", "instead", "but");
    - direct_instruction: 1.0 with a definition-style statement ("X is a …", "means",
      "refers to", "is defined as", a formula or rule) in a declarative sentence, 0.5 for
      declarative explanation without one, 0 for a reply made only of questions;
    - inquiry_based: 0.5 for proposing an investigation ("what would happen if", "predict",
      "explore", "find out", …) + 0.5 for leaving a question to explore.

    An empty reply scores 0 in every style.
    """
    if not isinstance(style, TeachingStyle):
        style = parse_teaching_style(style)
    if not reply.strip():
        return StyleAdherence(0.0, style)
    sentences = split_sentences(reply)
    questions = [s for s in sentences if _is_question(s)]
    statements = [s for s in sentences if not _is_question(s)]

    def found(pattern: re.Pattern[str], text: str = reply) -> tuple[str, ...]:
        return tuple(m.group(0).strip().lower() for m in pattern.finditer(text))

    if style is TeachingStyle.SOCRATIC:
        reveal = answer_revealing(reply, answer=answer, history=history)
        if reveal.revealed or (answer is None and re.search(r"\bthe answer is\b", " ".join(statements), re.I)):
            return StyleAdherence(0.0, style, ("states the answer",))
        return StyleAdherence(1.0 if questions else 0.3, style, tuple(questions[:3]))
    if style is TeachingStyle.STEP_BY_STEP:
        markers = found(_STEP_MARKERS)
        return StyleAdherence(round(min(1.0, len(markers) / 3), 4), style, markers)
    if style is TeachingStyle.ANALOGY_BASED:
        comparisons = found(_ANALOGY)
        return StyleAdherence(1.0 if comparisons else 0.0, style, comparisons)
    if style is TeachingStyle.MISCONCEPTION_CORRECTION:
        names = found(_NAMES_MISCONCEPTION) + found(re.compile(r"\bnot\b[^.?!]{1,60}?\bbut\b", re.I))
        corrects = found(_CORRECTS)
        return StyleAdherence(0.5 * bool(names) + 0.5 * bool(corrects), style, names + corrects)
    if style is TeachingStyle.DIRECT_INSTRUCTION:
        definitions = found(_DEFINITION, " ".join(statements))
        score = 1.0 if definitions else (0.5 if statements else 0.0)
        return StyleAdherence(score, style, definitions)
    investigations = found(_INQUIRY)
    return StyleAdherence(0.5 * bool(investigations) + 0.5 * bool(questions), style, investigations)
