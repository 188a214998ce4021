"""The answer a student should reach, and where a tutor's reply states an answer.

``extract_final_answer`` reads the teacher's key out of a worked solution, ``answer_from_history``
computes it from the tutor's last arithmetic question; ``answer_statement`` finds the clause of a
reply that asserts the answer (not an operand, not a rejected value, not a question), and
``correction_statement`` the clause that asserts a correction when no answer is known. The
metrics in ``metrics.py`` build on these.
"""

from __future__ import annotations

import re

from .numbers import find_numbers, parse_number, question_answer, same_number
from .text import STOPWORDS, History, clauses, is_question, parse_history, split_sentences, words

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
# Where a text states a value
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



def answer_spans(text: str, answer: str) -> list[tuple[int, int]]:
    """Where ``text`` writes ``answer``: as a number (any spelling) or as words (plural allowed)."""
    value = parse_number(answer)
    if value is not None:
        # A written fraction "2/3" is a calculation to do unless the answer itself is a fraction.
        fraction_answer = bool(re.search(r"\d\s*/\s*\d", answer))
        return [
            (m.start, m.end)
            for m in find_numbers(text)
            if same_number(m, value) and (fraction_answer or not m.fraction)
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


def states_at(sentence: str, start: int, end: int) -> bool:
    """Whether the value at ``sentence[start:end]`` is asserted, not an operand, rejected or compared with."""
    before, after = sentence[:start], sentence[end:]
    if _OPERAND_AFTER.match(after) or _OPERAND_BEFORE.search(before):
        return False
    if re.search(r"\d\s*,\s*\d+\s*,\s*$", before):  # "15, 14, 13, 12": counting aloud, not a result
        return False
    return not _REJECTED_BEFORE.search(before)



def answer_statement(reply: str, answer: str, turns: list[tuple[str, str]], problem: str | None) -> tuple[str | None, bool]:
    """The clause of ``reply`` that asserts ``answer`` (None when none does), and whether a
    question of the reply asks about it instead.

    ``turns`` is the conversation before the reply (``parse_history``); ``problem`` the text that
    poses the problem (its givens are no answer unless written as a result).
    """
    # When the answer is also one of the problem's givens, a bare mention most likely refers to
    # the given ("the $50 represents …"); only a mention written as a result counts.
    answer_is_given = bool(problem and answer_spans(problem, answer))
    student_said = any(answer_spans(text, answer) for role, text in turns if role == "student")
    asked = False
    for sentence in clauses(reply):
        for start, end in answer_spans(sentence, answer):
            if not states_at(sentence, start, end):
                continue
            if is_question(sentence):
                asked = True
                continue
            if answer_is_given and not _RESULT_BEFORE.search(sentence[:start]):
                continue
            clause = re.split(r"[,;:]", sentence[:start])[-1]
            if student_said and _STUDENTS_OWN.search(clause):
                continue
            return sentence, asked
    return None, asked


def already_said(answer: str, turns: list[tuple[str, str]]) -> bool:
    """Whether the conversation already reached ``answer``: the student's last turn concludes with
    it, or a tutor turn after the opening one (which poses the problem) asserted it."""
    students = [text for role, text in turns if role == "student"]
    if students:
        last = split_sentences(students[-1])
        spans = answer_spans(last[-1], answer) if last else []
        values = find_numbers(last[-1]) if last else []
        if spans and (not values or values[-1].end == spans[-1][1] or parse_number(answer) is None):
            return True
    for role, text in turns[1:]:
        if role != "tutor":
            continue
        for sentence in split_sentences(text):
            if not is_question(sentence) and any(states_at(sentence, s, e) for s, e in answer_spans(sentence, answer)):
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



def correction_statement(reply: str, turns: list[tuple[str, str]]) -> str | None:
    """The clause of ``reply`` asserting a correction, for answers we cannot compute: in so many
    words ("is called a pentagon", "the correct answer is …") or as "X, not Y" where Y is what the
    student answered last."""
    said = student_answer(turns)
    rejects_said = None
    if said:  # "… 420, not 520": something asserted in place of the student's answer
        before = r"\w[^,]*?,?\s+(?:not|instead of|rather than)\s+(?:an?\s+|the\s+)?"
        rejects_said = re.compile(before + re.escape(said) + r"(?!\w|\.\d)", re.IGNORECASE)
    for sentence in clauses(reply):
        if is_question(sentence):
            continue
        if _CORRECTION.search(sentence) or (rejects_said and rejects_said.search(sentence)):
            return sentence
    return None


def student_answer(turns: list[tuple[str, str]]) -> str | None:
    """What the student answered last: the last number of their last turn, else its content words
    when they are few ("a octogon" -> "octogon"); None for a longer turn."""
    students = [text for role, text in turns if role == "student"]
    if not students:
        return None
    numbers = find_numbers(students[-1])
    if numbers:
        return students[-1][numbers[-1].start : numbers[-1].end]
    content = [w for w in words(students[-1]) if w not in STOPWORDS]
    return " ".join(content) if 0 < len(content) <= 3 else None
