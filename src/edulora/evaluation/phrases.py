"""The wordings of tutoring moves the metrics look for: hints, invitations, analogies, ….

Phrases match as whole words, case-insensitively (``text.phrase_pattern``): "try" is not found in
"country". Kept apart from the scoring in ``metrics.py`` so that the vocabulary can be read, and
extended, in one place; docs/evaluation.md lists the same phrases.
"""

from __future__ import annotations

import re

from .text import phrase_pattern

# --------------------------------------------------------------------------------------------
# Providing guidance
# --------------------------------------------------------------------------------------------

# Words every tutor reply uses whatever the problem; sharing them with the conversation is no sign of relevance.
TUTOR_FILLER = frozenset(
    """great good nice well job try tried trying effort work working right wrong correct incorrect close answer
    answers question questions think thinking look looking take taking again together keep practice practicing
    remember sure make makes made see seems seem like way step steps problem problems mistake mistakes calculation
    calculations understand understanding point points awesome excellent done let's okay ok yes thanks thank""".split()
)

# A hint names what to look at or use; "let's try again" or "double-check" only says to look again.
HINT = phrase_pattern([
    "remember", "recall", "think about", "consider", "notice", "keep in mind", "don't forget", "do not forget",
    "make sure", "pay attention", "focus on", "start with", "start by", "first", "the key", "hint", "note that",
])
VAGUE_PROMPT = phrase_pattern([
    "try", "try again", "let's", "let us", "double-check", "double check", "re-check", "recheck", "revisit",
    "re-examine", "reexamine", "reconsider", "rethink", "go back", "look at", "take a look", "take a closer look",
    "take another look", "check",
])
ERROR_EXPLANATION = phrase_pattern([
    "mistake", "error", "forgot", "forget", "missed", "instead of", "rather than", "already", "represents",
    "means", "should be", "should have", "need to", "needs to", "have to", "must", "because", "since",
    "not quite", "doesn't", "don't need", "isn't", "misunderstanding", "confused", "mixed up", "double count",
    "mix-up",
])
# Chat-transcript markers inside a reply: the model went on to write other turns, off the lesson.
TRANSCRIPT = re.compile(r"###|\b(?:User|Assistant|Tutor response)\s*(?:\(|:)", re.IGNORECASE)
# A sentence opening like a question ("so what do we get") asks, even without its "?".
QUESTION_START = re.compile(
    r"^\W*(?:so\s+|and\s+|but\s+|now\s+|then\s+)?(?:how|what|why|which|where|when|who|can|could|do|does|did|is|are|would|"
    r"will|should|shall)\b",
    re.IGNORECASE,
)

# --------------------------------------------------------------------------------------------
# Engagement
# --------------------------------------------------------------------------------------------

INVITATIONS = phrase_pattern([
    "try", "give it a try", "have a go", "can you", "could you", "what do you think", "let's", "let us",
    "how would you", "why do you think", "your turn", "see if you can", "would you like", "want to try",
    "how about you", "what if you",
])
UNDERSTANDING_CHECKS = phrase_pattern([
    "does that make sense", "does this make sense", "do you understand", "can you explain", "could you explain",
    "explain in your own words", "in your own words", "can you tell me why", "is that clear", "is this clear",
    "are you following", "any questions", "what did you notice", "how did you get", "can you show me",
    "what part is confusing", "do you see why",
])

# --------------------------------------------------------------------------------------------
# Teaching-style adherence
# --------------------------------------------------------------------------------------------

STEP_MARKERS = re.compile(
    r"(?im)^\s*(?:\d+[.):]|step\s+\d+|[-*•])\s+|\b(?:first(?:ly)?|second(?:ly)?|third(?:ly)?|then|next|after that|"
    r"finally|lastly|last)\b"
)
ANALOGY = phrase_pattern([
    "like a", "like an", "like the", "just like", "think of … as", "similar to", "imagine", "as if", "is like",
    "are like", "compared to", "compare it to", "picture", "the same way", "just as", "kind of like",
])
NAMES_MISCONCEPTION = phrase_pattern([
    "common mistake", "common misconception", "misconception", "many people think", "many students think",
    "people often think", "you might think", "it's a myth", "it is a myth", "a myth", "it's easy to think",
    "a lot of people", "it may seem", "it might seem", "it's tempting", "mistake", "confuse", "not true",
])
CORRECTS = phrase_pattern([
    "actually", "in fact", "in reality", "the truth is", "correct", "really", "instead", "rather", "but",
    "however",
])
DEFINITION = re.compile(
    r"\b(?:is|are) (?:defined as|called|known as)\b|\brefers? to\b|\bmeans\b|\bis (?:a|an|the) \w+|\bare \w+ that\b"
    r"|\bformula\b|\brule\b",
    re.IGNORECASE,
)
INQUIRY = phrase_pattern([
    "investigate", "explore", "experiment", "predict", "prediction", "observe", "hypothesis", "hypothesize",
    "what would happen if", "what happens if", "what happens when", "find out", "test", "measure", "design",
    "what do you notice", "what patterns", "how could we", "how might we", "why do you think", "wonder",
    "let's see what", "gather", "compare",
])
