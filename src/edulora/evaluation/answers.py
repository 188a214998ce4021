"""The answer a student should reach, and where a tutor's reply states an answer.

``extract_final_answer`` reads the teacher's key out of a worked solution, ``answer_from_history``
computes it from the tutor's last arithmetic question; ``answer_statement`` finds the clause of a
reply that asserts the answer (not an operand, not a rejected value, not a question), and
``correction_statement`` the clause that asserts a correction when no answer is known. The
metrics in ``metrics.py`` build on these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .numbers import find_numbers, parse_number, question_answer, same_number
from .text import STOPWORDS, History, clauses, is_question, lemma, parse_history, split_sentences, words

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
    # "240 miles (from the first 4 hours) plus 540 …": an aside does not end the calculation.
    after = re.sub(r"^(\s*(?:%|/?[a-z]+)?)\s*\([^()]*\)", r"\1", after, flags=re.IGNORECASE)
    if _OPERAND_AFTER.match(after) or _OPERAND_BEFORE.search(before):
        return False
    # "= 3^6": a power's base or exponent, not a value; a unit's power ("80 cm^2") has the unit in between.
    if after.startswith("^") or before.endswith("^"):
        return False
    if re.search(r"\d\s*,\s*\d+\s*,\s*$", before):  # "15, 14, 13, 12": counting aloud, not a result
        return False
    return not _REJECTED_BEFORE.search(before)



# "1. Subtract 4 …", "Step 2: divide …": the number that opens a line of a list numbers the step.
_LIST_MARKER = re.compile(r"(?im)^[ \t]*(?:(?:step|part)[ \t]+)?\d{1,2}[.):][ \t]+(?=\S)")


def without_list_markers(reply: str) -> str:
    """``reply`` without the numbers of its enumerated steps, so that "2. Divide by 3." does not
    state the answer 2. Only where the reply is a list (two or more markers, or "Step N"): a
    reply "12. Well done!" that starts a line with the answer still states it."""
    markers = _LIST_MARKER.findall(reply)
    if len(markers) >= 2 or any(m.strip()[:1].isalpha() for m in markers):
        return _LIST_MARKER.sub("", reply)
    return reply


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
    counted = _counted_nouns(problem) if parse_number(answer) is not None else None
    asked = False
    for sentence in clauses(without_list_markers(reply)):
        for start, end in answer_spans(sentence, answer):
            if not states_at(sentence, start, end):
                continue
            if is_question(sentence) or _EMBEDDED_QUESTION.search(sentence[:start]):
                asked = True
                continue
            if counted and _counts_other(sentence[end:], *counted):
                continue
            if answer_is_given and not _RESULT_BEFORE.search(sentence[:start]):
                continue
            clause = re.split(r"[,;:]", sentence[:start])[-1]
            if student_said and _STUDENTS_OWN.search(clause):
                continue
            return sentence, asked
    return None, asked


# "imagine how much sunlight it gets", "count how many syllables …": an indirect question asks
# about the value it names; it does not assert it.
_EMBEDDED_QUESTION = re.compile(r"\bhow (?:much|many)\s+(?:\w+\s+){0,2}$", re.IGNORECASE)


def _counted_nouns(problem: str | None) -> tuple[set[str], set[str]] | None:
    """For a "how many X" problem: (X as lemmas, lemmas of the other nouns the problem names)."""
    if not problem or not re.search(r"\bhow many\b", problem, re.IGNORECASE):
        return None
    quantity = asked_quantity(problem)
    if not quantity:
        return None
    lemmas = [lemma(w) for w in words(problem)]
    # "permit applications" names the permits too: a neighbour of the asked noun is no other noun.
    near = {w for i, w in enumerate(lemmas) for n in lemmas[max(i - 1, 0) : i + 2] if n in quantity}
    return quantity, {w for w in lemmas if w not in STOPWORDS} - quantity - near


def _counts_other(after: str, quantity: set[str], others: set[str]) -> bool:
    """Whether the number just before ``after`` counts another noun of the problem than the one it
    asks about: "How many syllables are in a line?" -> "write down ten lines" counts lines. Only a
    plural noun counts (units such as "cm" or "kg" are no plurals and stay statements)."""
    following = words(after)[:1]
    if not following or following[0] in STOPWORDS or lemma(following[0]) == following[0]:
        return False
    noun = lemma(following[0])
    return noun not in quantity and noun in others


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


# --------------------------------------------------------------------------------------------
# Final answers a reply asserts, right or wrong
# --------------------------------------------------------------------------------------------

# Words that end the noun phrase after "how many" / "what is the": verbs, prepositions, pronouns.
_PHRASE_END = STOPWORDS | {"total", "altogether", "left", "now", "today", "each", "per", "be"}
# Words that open the noun phrase but never head it: "how many more pencils", "the total number of bunnies".
_PHRASE_OPENERS = {"more", "fewer", "less", "total", "additional", "extra", "different", "new", "original", "final"}
_ASKS_FOR = re.compile(
    r"\bhow (?:many|much)\b|\bwhat(?:'s| is| was| will| would| are| were)?\s+(?:be\s+)?(?:the|her|his|its|their|your)\b"
    r"|\b(?:calculate|find|determine|work out|compute)\s+(?:the|her|his|its|their|your)\b|\bwhat\b(?=\s+\w+\s+(?:does|do|did|is|will)\b)",
    re.IGNORECASE,
)
# "the total number of X", "the amount of X": the quantity is X.
_OF_QUANTITY = {"number", "amount", "total", "sum", "count", "value", "cost", "price"}


def asked_quantity(problem: str | None) -> set[str]:
    """What the problem's question asks for, as lemmas of its head noun: "How many large posters are
    there?" -> {"poster"}; "what will her annual pension be?" -> {"pension"}; "the total number of
    bunnies" -> {"bunny", "number"}. Empty when the question names no noun ("how many did she buy?")."""
    if not problem:
        return set()
    questions = [s for s in split_sentences(problem) if is_question(s)] or split_sentences(problem)[-1:]
    heads: set[str] = set()
    for question in questions[-1:]:
        for found in _ASKS_FOR.finditer(question):
            phrase: list[str] = []
            for word in words(question[found.end():])[:6]:
                if not phrase and word in _PHRASE_OPENERS:
                    continue
                if word == "of" and phrase and phrase[-1] in _OF_QUANTITY:
                    continue
                if word in _PHRASE_END:
                    break
                phrase.append(word)
            if phrase:
                heads.add(lemma(phrase[-1]))
                if len(phrase) > 1 and phrase[-2] in _OF_QUANTITY:
                    heads.add(phrase[-2])
    return heads


@dataclass(frozen=True)
class Claim:
    """A final answer a reply asserts: the clause, the value as written, and whether it is the key."""

    clause: str
    value: str
    correct: bool
    #: "answer wording" ("the answer is 9") or "asked quantity" ("there are 20 large posters").
    kind: str


# "the answer is 9", "the correct answer would be 9", "the right number of balls … is 5", "answer: 9" —
# not "your answer is 9" (the student's, being discussed), not "the answer is not 9".
_ANSWER_WORDING = re.compile(
    r"(?<!\byour )(?<!\bmy )\b(?:(?:correct|right|final|actual|real) (?:answer|number|total|amount|result|value|sum|"
    r"product|difference|quotient|cost|price)\b[^.?!]{0,60}?|answer)\s*(?:(?:is|are|was|would be|should be|will be|"
    r"comes to)\b|=|:)\s*(?:actually |really |just |simply |exactly |about |approximately |around )?(?!not\b)",
    re.IGNORECASE,
)
# "the answer is close", "the answer is that you …": a judgement or an explanation, not a value.
_NOT_A_VALUE = STOPWORDS - {"a", "an", "the"} | {"close", "correct", "incorrect", "right", "wrong", "almost", "nearly"}
# A clause that supposes instead of asserting: "if the area were 9 …", "suppose you get 9".
_SUPPOSES = re.compile(r"^\W*(?:\w+\W+){0,3}?(?:if|suppose|supposing|assume|assuming|imagine|let's say|say)\b", re.IGNORECASE)
# "it totals to 75", "there are 20 …": more ways than ``_RESULT_BEFORE`` to give a value as the result.
_CONCLUDES_BEFORE = re.compile(r"(?:\b(?:totals?|comes?|adds? up|amounts?) to|\bthere (?:are|is|were|was|will be))\s*[$€£]?$",
                               re.IGNORECASE)
# "let's find the correct answer", "to get the right total": the answer is sought, not stated.
_SEEKS = re.compile(r"\b(?:find|get|reach|figure out|work out|calculate|compute|determine|to)\s+(?:the\s+)?$", re.IGNORECASE)
# How many words before the result verb may name the asked quantity: "her annual pension will be …".
_SUBJECT_WORDS = 4


def _key_terms(text: str) -> set[str]:
    return {lemma(t) for t in re.findall(r"[a-z]+|\d+(?:\.\d+)?", text.lower()) if t not in STOPWORDS}


def _has_key_terms(text: str, answer: str) -> bool:
    """Whether ``text`` holds at least two thirds of the content terms (two or more) of a key
    written in words: a key of several parts is stated even when reworded or reordered."""
    key = _key_terms(answer)
    return len(key) >= 2 and 3 * len(key & _key_terms(text)) >= 2 * len(key)


def _value_after(clause: str, start: int) -> tuple[int, int] | None:
    """The number ``clause`` states right at ``start`` ("9 square centimeters." -> the 9), if asserted."""
    numbers = [m for m in find_numbers(clause) if m.start >= start]
    if numbers and not re.search(r"[^\s$€£(]", clause[start : numbers[0].start]):
        if states_at(clause, numbers[0].start, numbers[0].end):
            return numbers[0].start, numbers[0].end
    return None


def _names_quantity(clause: str, start: int, end: int, quantity: set[str]) -> bool:
    """Whether the value at ``clause[start:end]`` is the asked quantity stated as a result in words:
    "there are 20 large posters", "it totals to 75 haircuts", "her pension will be $25,000".

    A calculation ("7 - 1 = 6 balls") does not count: for a value that is not the key, a worked
    step and a final answer look alike, and the step is the student's to check.
    """
    before = clause[:start]
    verb = _CONCLUDES_BEFORE.search(before) or _RESULT_BEFORE.search(before)
    if verb is None or verb.group(0).lstrip().startswith("="):
        return False
    if re.search(r"\b(?:the|a|an|this|that|its|their|his|her|our|your)\s*$", before[: verb.start()], re.IGNORECASE):
        return False  # "in the total 13 hours": "total" names, it does not conclude
    after = words(clause[end:])[:3]
    if after and after[0] in _PHRASE_OPENERS:  # "8 more computers": a difference, not the total
        return False
    named_before = words(re.split(r"[,;:()]", before[: verb.start()])[-1])[-_SUBJECT_WORDS:]  # "…, which is 28": no
    return any(lemma(w) in quantity for w in after + named_before)


def final_answer_claims(reply: str, answer: str, turns: list[tuple[str, str]], problem: str | None) -> list[Claim]:
    """The final answers ``reply`` asserts, each marked right or wrong against ``answer`` (the key).

    A clause asserts a final answer when it says so ("the answer is 9", "the correct number of
    balls … is 5"), or when the reply ends, without asking anything, on the quantity the problem
    asks for written as a result ("How many posters …?" -> "… so there are 20 large posters.").
    Not claims: questions ("is it 30?"), suppositions ("if the area were 9 …"), operands ("10 × 6"),
    rejected values ("not 9"), the problem's own givens, and the student's value handed back
    ("you found 9 …"). An answer in words ("pentagon") is compared in words after an answer wording.
    """
    numeric = parse_number(answer) is not None
    givens = {m.value for m in find_numbers(problem or "")}
    quantity = asked_quantity(problem)
    parts = clauses(without_list_markers(reply))
    claims: list[Claim] = []
    for clause in parts:
        if is_question(clause) or _SUPPOSES.search(clause):
            continue
        for wording in _ANSWER_WORDING.finditer(clause):
            if not numeric and _has_key_terms(clause[wording.end():], answer):
                # "So the answer is x = 7 and y = 3.", "… is to make a complete loop from the
                # battery …": a key of several parts, restated in other words or order.
                value = clause[wording.end():].strip(" .!'\"")
            elif not numeric:  # an answer in words: a short phrase of content words ("a pentagon")
                value = re.split(r"[,.;!]", clause[wording.end():])[0].strip()
                if len(words(value)) > 3 or set(words(value)) & _NOT_A_VALUE:
                    value = ""
            else:
                span = _value_after(clause, wording.end())
                value = clause[span[0] : span[1]] if span else ""
            if not value or _STUDENTS_OWN.search(clause[: wording.start()]) or _SEEKS.search(clause[: wording.start()]):
                continue
            # "the correct total … is 12" names an answer only when it names the asked quantity.
            named = {lemma(w) for w in words(wording.group(0))}
            if "answer" not in named and (not named & quantity or (numeric and parse_number(value) in givens)):
                continue
            correct = bool(answer_spans(value, answer)) or (not numeric and _has_key_terms(value, answer))
            claims.append(Claim(clause, value, correct, "answer wording"))
    # A reply that ends on a value of the asked quantity, and asks nothing, has given its answer.
    if numeric and quantity and parts and not any(is_question(c) for c in parts):
        last = parts[-1]
        for mention in find_numbers(last):
            start, end = mention.start, mention.end
            if mention.value in givens or not states_at(last, start, end) or _SUPPOSES.search(last):
                continue
            if _names_quantity(last, start, end, quantity) and not _STUDENTS_OWN.search(last[:start]):
                claims.append(Claim(last, last[start:end], bool(answer_spans(last[start:end], answer)), "asked quantity"))
    return claims
