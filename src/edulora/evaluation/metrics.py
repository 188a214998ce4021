"""Educational metrics of a tutor reply: pure functions over strings.

Every metric takes the reply (plus the reference, metadata values or conversation history it
needs) and returns a float in [0, 1] or a small frozen dataclass whose ``score`` is in [0, 1]
and whose other fields explain the score. Nothing here loads a model: ``outcome_alignment``
takes an ``embed`` callable, and ``edulora.evaluation.embeddings.embed`` is the real one.

Numbers and arithmetic live in ``numbers.py``, the answer a student should reach and where a
reply states one in ``answers.py``, words and sentences in ``text.py``; this module holds the
metrics, one function each.

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
from .answers import (
    Claim, already_said, answer_from_history, answer_statement, correction_statement, extract_final_answer,
    final_answer_claims,
)
# parse_number and question_answer are re-exported: callers have long found them here.
from .numbers import find_numbers, format_number, parse_number, question_answer  # noqa: F401
from .phrases import (
    ANALOGY, CORRECTS, DEFINITION, ERROR_EXPLANATION, HINT, INQUIRY, INVITATIONS, NAMES_MISCONCEPTION, QUESTION_START,
    STEP_MARKERS, TRANSCRIPT, TUTOR_FILLER, UNDERSTANDING_CHECKS, VAGUE_PROMPT,
)
from .text import (
    STOPWORDS, History, is_question, key_concepts, lemma, parse_history, readability_grade, split_sentences, words,
)

# --------------------------------------------------------------------------------------------
# Answer revealing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerReveal:
    """Whether a reply gives away a final answer, right or wrong; ``score`` is 1.0 when it does."""

    revealed: bool
    #: The answer looked for: as given, or inferred from the tutor's last arithmetic question.
    answer: str | None
    #: The sentence that gives an answer away, when one does.
    evidence: str | None
    #: Why: "states the answer", "states a wrong answer", "only asks about the answer", "answer already
    #: in the conversation", "answer not stated", "states a correction" or "no answer known".
    reason: str
    #: Whether the answer given away is the right one (MRBench's "Yes (and the answer is correct)" vs
    #: "Yes (but the answer is incorrect)"); None when none is given away or no answer is known.
    correct: bool | None = None

    @property
    def score(self) -> float:
        return 1.0 if self.revealed else 0.0


def answer_revealing(reply: str, answer: str | None = None, history: History = None, reference: str | None = None,
                     problem: str | None = None) -> AnswerReveal:
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

    A reply that asserts a *wrong* final answer reveals too, as MRBench counts "Yes (but the answer
    is incorrect)": see ``answers.final_answer_claims`` ("the answer is 9", "the correct number of
    balls is 5", or a reply ending on the asked quantity: "… so there are 20 large posters.").

    With no answer known, the reply reveals when it asserts a correction: "the correct answer
    is …", "… is called …", "… is actually …", or "X, not Y" where Y is the student's last answer.
    """
    return answer_metrics(reply, answer, history, reference, problem)[0]


@dataclass(frozen=True)
class AnswerCorrectness:
    """Whether a reply asserts a final answer other than the key ("incorrect answer asserted"):
    ``score`` 0.0 when it does, 1.0 for the key or no final answer, None with no key (not scored)."""

    score: float | None
    answer: str | None
    #: The final answer the reply asserts, as written ("9"), and the clause asserting it.
    asserted: str | None
    evidence: str | None
    #: "asserts a wrong answer", "asserts the answer", "no final answer asserted" or "no answer key".
    reason: str


def answer_correctness(reply: str, answer: str | None = None, history: History = None, reference: str | None = None,
                       problem: str | None = None) -> AnswerCorrectness:
    """Does ``reply`` assert a final answer different from the key (``answer``, else the final
    answer of the ``reference`` solution)? Without a key it is not scored (``score`` None): an
    answer inferred from the conversation is a guess, not a key to mark a tutor wrong by.

    A final answer is asserted as ``answers.final_answer_claims`` reads it, and as
    ``answer_revealing`` finds the key stated; asking about a value ("is it 30?"), using it as
    an operand ("10 × 6"), rejecting it ("not 9") or supposing it ("if it were 9") asserts nothing.
    """
    return answer_metrics(reply, answer, history, reference, problem)[1]


def answer_metrics(reply: str, answer: str | None = None, history: History = None, reference: str | None = None,
                   problem: str | None = None) -> tuple[AnswerReveal, AnswerCorrectness]:
    """``answer_revealing`` and ``answer_correctness`` of one reply, from one reading of where it states
    the answer and which final answers it claims: an evaluation scores both on every reply, and that
    reading is most of their cost."""
    key = extract_final_answer(reference) if answer is None and reference is not None else answer
    keyed = key is not None and bool(key.strip())
    # Without a key, revealing looks for the value of the tutor's last arithmetic question (unless a blank key was
    # given); correctness is not scored, since an inferred answer is a guess, not a key to mark a tutor wrong by.
    target = key if keyed else answer_from_history(history) if key is None else None
    turns = parse_history(history)
    if target is None or not target.strip():
        evidence = correction_statement(reply, turns)
        return AnswerReveal(evidence is not None, None, evidence,
                            "states a correction" if evidence else "no answer known"), _NO_KEY
    if problem is None and turns:
        problem = turns[0][1]
    sentence, asked = answer_statement(reply, target, turns, problem)
    claims = final_answer_claims(reply, target, turns, problem)
    return _reveal(target, turns, sentence, asked, claims), _correctness(target, sentence, claims) if keyed else _NO_KEY


_NO_KEY = AnswerCorrectness(None, None, None, None, "no answer key")


def _reveal(answer: str, turns: list[tuple[str, str]], sentence: str | None, asked: bool,
            claims: list[Claim]) -> AnswerReveal:
    if sentence is None:  # a key in words, restated after "the answer is"
        sentence = next((c.clause for c in claims if c.correct), None)
    if sentence is not None and not already_said(answer, turns):
        return AnswerReveal(True, answer, sentence, "states the answer", correct=True)
    wrong = next((c for c in claims if not c.correct), None)
    if wrong is not None:
        return AnswerReveal(True, answer, wrong.clause, "states a wrong answer", correct=False)
    if sentence is not None:
        return AnswerReveal(False, answer, None, "answer already in the conversation")
    return AnswerReveal(False, answer, None, "only asks about the answer" if asked else "answer not stated")


def _correctness(answer: str, sentence: str | None, claims: list[Claim]) -> AnswerCorrectness:
    wrong = next((c for c in claims if not c.correct), None)
    if wrong is not None:
        return AnswerCorrectness(0.0, answer, wrong.value, wrong.clause, "asserts a wrong answer")
    right = sentence or next((c.clause for c in claims), None)
    if right is not None:
        return AnswerCorrectness(1.0, answer, answer, right, "asserts the answer")
    return AnswerCorrectness(1.0, answer, None, None, "no final answer asserted")


# --------------------------------------------------------------------------------------------
# Providing guidance
# --------------------------------------------------------------------------------------------

#: Below this share of its content terms found in the conversation, a reply is off-topic.
#: Low on purpose: an on-topic reply brings new words (the hint) and short dialogues share few.
MIN_ON_TOPIC_SHARE = 0.1


def _asks(sentence: str) -> bool:
    """A question, with or without its "?", or a calculation left open for the student ("243 - 80 =")."""
    return is_question(sentence) or bool(QUESTION_START.match(sentence)) or bool(re.search(r"=\s*[.?]*\s*$", sentence))


def asks_question(reply: str) -> bool:
    """Does ``reply`` leave the student something to answer (a question, or a calculation left open)?"""
    return any(_asks(s) for s in split_sentences(reply))


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
    terms = {lemma(w) for w in words(text) if w not in STOPWORDS and w not in TUTOR_FILLER and len(w) > 2}
    terms |= {format_number(m.value) for m in find_numbers(text)}
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
    hints = tuple(m.group(0).lower() for m in HINT.finditer(reply))
    vague = tuple(m.group(0).lower() for m in VAGUE_PROMPT.finditer(reply))
    explanations = tuple(m.group(0).lower() for m in ERROR_EXPLANATION.finditer(reply))
    pointed = sum(
        1 for s in split_sentences(reply) if _asks(s) and (find_numbers(s) or (_content_terms(s) & (topic or own)))
    )
    specific = bool(hints) + bool(explanations) + bool(pointed)
    if on_topic < MIN_ON_TOPIC_SHARE or TRANSCRIPT.search(reply) or not (specific or answer_revealed):
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


def grade_level_fit(reply: str, grade_level: GradeLevel | str) -> GradeFit:
    """1.0 when ``readability_grade(reply)`` lies in the band of ``grade_level`` (elementary K–5,
    middle_school 6–8, high_school 9–12, college 13–16, adult any), falling linearly with the
    distance to the band to 0 at ``GRADE_TOLERANCE`` grades away.

    ``grade_level`` may be a ``GradeLevel`` or any wording ``parse_grade_level`` accepts.
    A reply without words scores 0.
    """
    if not isinstance(grade_level, GradeLevel):
        grade_level = parse_grade_level(grade_level)
    low, high = grade_level.band  # the one grade-band table (schema.GradeLevel.band)
    if not words(reply):
        return GradeFit(0.0, 0.0, (low, high), 0.0)
    grade = readability_grade(reply)
    distance = max(low - grade, grade - high, 0.0)
    return GradeFit(round(_clip(1 - distance / GRADE_TOLERANCE), 4), round(grade, 2), (low, high), round(distance, 2))


# --------------------------------------------------------------------------------------------
# Concept coverage
# --------------------------------------------------------------------------------------------


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
    questions = sum(is_question(s) for s in split_sentences(reply))
    invitations = tuple(m.group(0).lower() for m in INVITATIONS.finditer(reply))
    checks = tuple(m.group(0).lower() for m in UNDERSTANDING_CHECKS.finditer(reply))
    score = (bool(questions) + bool(invitations) + bool(checks)) / 3
    return Engagement(round(score, 4), questions, invitations, checks)


# --------------------------------------------------------------------------------------------
# Teaching-style adherence
# --------------------------------------------------------------------------------------------


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
    questions = [s for s in sentences if is_question(s)]
    statements = [s for s in sentences if not is_question(s)]

    def found(pattern: re.Pattern[str], text: str = reply) -> tuple[str, ...]:
        return tuple(m.group(0).strip().lower() for m in pattern.finditer(text))

    if style is TeachingStyle.SOCRATIC:
        reveal = answer_revealing(reply, answer=answer, history=history)
        if reveal.revealed or (answer is None and re.search(r"\bthe answer is\b", " ".join(statements), re.I)):
            return StyleAdherence(0.0, style, ("states the answer",))
        return StyleAdherence(1.0 if questions else 0.3, style, tuple(questions[:3]))
    if style is TeachingStyle.STEP_BY_STEP:
        markers = found(STEP_MARKERS)
        return StyleAdherence(round(min(1.0, len(markers) / 3), 4), style, markers)
    if style is TeachingStyle.ANALOGY_BASED:
        comparisons = found(ANALOGY)
        return StyleAdherence(1.0 if comparisons else 0.0, style, comparisons)
    if style is TeachingStyle.MISCONCEPTION_CORRECTION:
        names = found(NAMES_MISCONCEPTION) + found(re.compile(r"\bnot\b[^.?!]{1,60}?\bbut\b", re.I))
        corrects = found(CORRECTS)
        return StyleAdherence(0.5 * bool(names) + 0.5 * bool(corrects), style, names + corrects)
    if style is TeachingStyle.DIRECT_INSTRUCTION:
        definitions = found(DEFINITION, " ".join(statements))
        score = 1.0 if definitions else (0.5 if statements else 0.0)
        return StyleAdherence(score, style, definitions)
    investigations = found(INQUIRY)
    return StyleAdherence(0.5 * bool(investigations) + 0.5 * bool(questions), style, investigations)
