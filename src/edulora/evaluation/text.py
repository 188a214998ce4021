"""Words, sentences and conversations as the metrics read them: pure functions over strings.

Shared by the metrics (``metrics.py``) and the answer detection (``answers.py``); nothing here
knows about numbers or answers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import textstat

# A sentence ends at . ! ? (plus closing quotes/brackets) followed by space, or at a line break.
# Decimal points ("0.67") never split because no space follows them.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+|\s*\n\s*")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, without empty ones."""
    return [s.strip() for s in _SENTENCE_BREAK.split(text) if s and s.strip()]


#: Where a complete sentence ends, by the same rule: its mark and closing quotes/brackets, then space or the end.
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s|$)")


def whole_sentences(text: str) -> str:
    """``text`` up to the end of its last complete sentence (a reply cut mid-sentence); empty when none ends."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].strip() if ends else ""


_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lower-case alphabetic words of ``text`` (apostrophes kept inside words: "don't")."""
    return _WORD.findall(text.lower().replace("’", "'"))


#: English function words: never a key concept, never a sign that two texts share a topic.
STOPWORDS = frozenset(
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


def phrase_pattern(phrases: Sequence[str]) -> re.Pattern[str]:
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


def clauses(text: str) -> list[str]:
    """Sentences further cut at ";" and at a spaced dash, so that "Pentagons have five sides;
    how many does a hexagon have?" yields a statement and a question."""
    return [c.strip() for s in split_sentences(text) for c in re.split(r";|\s[-–—]\s", s) if c.strip()]


def is_question(sentence: str) -> bool:
    """Whether ``sentence`` ends in a question mark (closing quotes, brackets and emphasis aside)."""
    return sentence.rstrip(" \"'”’)*").endswith("?")


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
    return {lemma(w) for w in words(text) if w not in STOPWORDS and len(w) >= 3}


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
    return max(0.0, min(20.0, sum(grades) / 3))
