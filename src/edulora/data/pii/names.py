"""Names found from the words around them, in several languages and scripts.

A capitalized word alone is no evidence ("Rosa Parks refused…", "Sara has 12 marbles", "In May"),
so a name is only taken after (or before) a cue: a self-introduction ("I'm José", "me llamo …",
"меня зовут …", "我叫…", "मेरा नाम … है"), a relative or friend ("my mom Linda Okafor", "grandma
Rosa"), a title ("Mr. Tanaka", "Frau Schneider"), a greeting or sign-off ("Great job, Aisha!",
"- Kwame"), or a request ("ask for Tommy"). Lower-case names ("my name is jose", "hi it's kevin")
are only taken after the strongest cues, since "I'm stuck" and "call me later" are not names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .words import MONTHS, NOT_NAMES, POSSESSIVES, PUBLIC_FIGURES, RELATIVES, TITLES

# Letters of any script, plus the Devanagari vowel signs and viramas Python's \w leaves out.
_L = r"(?:[^\W\d_]|[\u0900-\u0963\u0971-\u097f])"
_WORD = re.compile(rf"{_L}+(?:['’-]{_L}+)*")
_GAP = re.compile(r"[ \t]+")
_AND = re.compile(r"\s*(?:,\s*)?(?:and|&|y|e|et|und|и|και)\s+", re.IGNORECASE)
_MONTH = re.compile(rf"(?:{MONTHS})", re.IGNORECASE)
# Verbs and particles of languages without capitals that follow a name ("मेरा नाम राहुल है").
_CASELESS_STOP = frozenset("है हूँ हूं था थी और का की के में से को भी".split())
_GERMAN = re.compile(r"\b(?:und|ist|der|die|das|ich|nicht|wir|ein|eine|mit|auf|wenn|haben)\b", re.IGNORECASE)
_LITERARY = re.compile(r"\b(?:novel|story|stories|book|poem|play|character|characters|author|film|movie|series|"
                       r"fairy\s+tale|wrote|written)\b", re.IGNORECASE)


@dataclass(frozen=True)
class _Cue:
    pattern: re.Pattern[str]
    lower: bool = False  # a lower-case name may follow
    words: int = 4  # at most this many words ("María José Rodríguez Pérez")
    possessive: bool = True  # "my sister Ana's" yes; "This is Newton's law" is no introduction
    pair: bool = False  # "Ahmed and Fatima Hassan"
    lesson: bool = False  # the name may be a figure a lesson is about ("Mr. Darcy", "Madame Curie")
    verb_like: bool = False  # "I'm Exhausted": a capitalized -ing/-ed word is a state, not a name
    confirm: bool = False  # the name must be followed by "here", "from", "I …" (or end a "this is" sentence)
    german: bool = True  # the cue also holds in German text ("im Zentrum" is no "I'm")
    first_person: bool = False  # only in a text that speaks of "I"/"my": "his wife Anne Boleyn" is history


def _words(alternatives: str) -> str:
    return "|".join(sorted((re.escape(w) for w in alternatives.split()), key=len, reverse=True))


_I = re.IGNORECASE
_M = re.IGNORECASE | re.MULTILINE
_GREETING = (r"(?:hi|hey|hello|hiya|heya|yo|hola|bonjour|salut|hallo|ciao|olá|oi|good\s+(?:morning|afternoon|evening)|"
             r"buenos\s+días|buenas)")
_POSS = _words(" ".join(POSSESSIVES))
# "his mom Ingrid" in a student's message; "his wife Anne Boleyn" in a history lesson.
_OTHERS_POSS = _words("his her their su sus son sa ses sein seine ihr ihre suo sua seu sua его её ее")
_FIRST_PERSON = re.compile(r"(?<!\w)(?:I|I['’]m|I['’]ve|me|my|mine|we|our|mi|yo|je|mon|ma|mes|ich|mein|meine|"
                           r"io|eu|meu|minha|я|мой|моя|меня|μου|我|मेरा|मेरी|मैं)(?!\w)")
_KIN = _words(" ".join(RELATIVES))
_LOWER_KIN = ("grandma grandpa granny nana aunt auntie aunty uncle cousin coach abuela abuelo tía tío tante oncle "
              "oma opa nonna nonno бабушка дедушка")
# What joins a relative to the name: "my mom Linda", "Mon père, Karim", "my mother is Sunita", "my
# mom's name is Patricia", "My dad (Carlos)" — the bracket first, or the bare space would take it.
_KIN_LINK = (r"(?:\s*\(|(?:\s*,|['’]s\s+name\s+is|\s+(?:is|was|are|were|named|called|se\s+llama|se\s+llaman|"
             r"s['’]appelle|heißt|heisst|si\s+chiama|se\s+chama|зовут))?\s+)")
# Lower-case parts inside a name: "de la Cruz", "van Beethoven", "bint Ahmed".
_PARTICLES = frozenset("de del della der den di da das do dos du la le van von ter bin bint ibn al el".split())
_KIN_AFTER = re.compile(rf"\s+(?:{_KIN})\b", re.IGNORECASE)

_CUES = (
    # Self-introductions strong enough to take a lower-case name.
    _Cue(re.compile(
        r"(?<!\w)(?:my\s+(?:real\s+|full\s+|first\s+|nick\s*)?name\s+is|my\s+(?:real\s+|full\s+)?name['’]s|my\s+names|"
        r"name\s*:|"
        r"(?:you\s+can\s+)?call\s+me|(?:everyone|everybody|they|people|friends)\s+calls?\s+me|i\s+go\s+by|"
        r"me\s+llamo|mi\s+nombre\s+es|je\s+m['’]appelle|mon\s+(?:pr[ée]nom|nom)\s+est|ich\s+hei(?:ß|ss)e|"
        r"mein\s+name\s+ist|mi\s+chiamo|il\s+mio\s+nome\s+è|me\s+chamo|meu\s+nome\s+é|меня\s+зовут|мо[её]\s+имя|"
        r"με\s+λένε|ονομάζομαι|το\s+όνομά\s+μου\s+είναι|मेरा\s+नाम)\s+", _I), lower=True, pair=True),
    # After a greeting, "it's …" and "this is …" introduce the writer, in lower case too ("hey it's
    # kevin", "Hi Ms. Novak, it's Ella").
    _Cue(re.compile(rf"(?:^|[.!?]\s+)\s*{_GREETING}\b(?:[^!?\n]{{0,40}}?[,!.])?[\s,!.]*(?:it['’]?s|this\s+is|"
                    r"c['’]est|soy|es|sono)\s+", _M), lower=True, possessive=False),
    _Cue(re.compile(r"(?<!\w)(?:[Ii]['’]m|[Ii]\s+am)\s+"), verb_like=True, pair=True),
    # "Im Hamid" is "I'm" typed fast, unless the text is German ("Im Winter", "im Zentrum").
    _Cue(re.compile(r"(?<!\w)[Ii]m\s+"), verb_like=True, pair=True, german=False),
    _Cue(re.compile(r"(?<!\w)(?:soy|je\s+suis|sono|eu\s+sou|ich\s+bin|я|είμαι)\s+", _I), pair=True),
    # "This is Priya from 7B", "It's Lucía from 3rd period" without a greeting; "This is Newton's
    # law" and "It's Paris, the capital" are no introductions.
    _Cue(re.compile(r"(?:^|[.!?]\s+)\s*(?:this\s+is|it['’]?s)\s+", _M), possessive=False, words=2, confirm=True),
    _Cue(re.compile(rf"(?<!\w)(?:{_POSS})\s+(?:[^\W\d_]+\s+){{0,2}}?(?:{_KIN}){_KIN_LINK}", _I), pair=True),
    _Cue(re.compile(rf"(?<!\w)(?:{_OTHERS_POSS})\s+(?:[^\W\d_]+\s+){{0,2}}?(?:{_KIN}){_KIN_LINK}", _I), pair=True,
         first_person=True, lesson=True),
    _Cue(re.compile(rf"(?<![\w.])(?:{_words(_LOWER_KIN)}){_KIN_LINK}"), pair=True),
    _Cue(re.compile(rf"(?<![\w.])(?:{'|'.join(TITLES)})\.?\s+"), lesson=True),
    # "ask for Tommy", "tell Jamal I said hi"; "Ask Maria how many apples she has" is a word problem.
    _Cue(re.compile(r"(?<!\w)ask(?:ed)?\s+for\s+", _I), words=2),
    _Cue(re.compile(r"(?<!\w)(?:ask(?:ed)?|tell|told)\s+", _I), words=2, confirm=True),
    # Whom to contact, when a number or an address follows: "call Fatima Khan at 555-123-4567".
    _Cue(re.compile(r"(?<!\w)(?:call|text|e-?mail|message|phone|ring|contact|reach|write\s+to)\s+", _I), words=3,
         confirm=True),
    # Where someone sits in class: "I sit next to Jamal".
    _Cue(re.compile(r"(?<!\w)(?:sit|sits|sat|sitting)\s+(?:next\s+to|beside|with|behind|in\s+front\s+of)\s+", _I),
         words=2),
    # Greetings and praise addressed to someone: "Hi Sam,", "Great job, Aisha!".
    _Cue(re.compile(rf"(?:^|[.!?]\s+)\s*(?:{_GREETING}|dear|thanks|thank\s+you|(?:great|good|nice|awesome|excellent)"
                    r"\s+(?:job|work|question|thinking|try|answer|effort)|well\s+done|awesome|excellent|amazing)"
                    # "Hi Sam,", "Hello Fatima Khan!", "Hi Ahmed and Sara,": a full name is greeted too.
                    r"[\s,]+(?=\S+(?:[ \t]+\S+){0,2}\s*[,!.?])", _M), words=3, possessive=False, pair=True),
)

# Names before their cue, opening a message: "Mateo here." ("Gravity here on Earth" is physics);
# sign-offs at the very end: "Thanks! - Kwame", "Love, Mia" (not the last item of a "- …" list).
_HERE = re.compile(rf"^\s*(?:{_GREETING}[\s,!]+)?({_WORD.pattern}(?:\s+{_WORD.pattern})?)\s+here\s*(?:[.!,;:–-]|$)", _M)
_SIGN_OFF = re.compile(
    rf"(?:^|[.!?]\s*)\s*(?:[-–—~]+\s*({_WORD.pattern})|(?:(?:mit\s+)?(?:freundlichen|viele|liebe|herzliche)\s+)?(?:thanks|thank\s+you|thx|cheers|love|best|regards|"
    r"kind\s+regards|best\s+wishes|sincerely|from|saludos|un\s+saludo|cordialement|bisous|grüße|grüßen|ciao|"
    rf"abrazos)[,!]?\s+({_WORD.pattern}(?:[ \t]+{_WORD.pattern})?))\s*[.!]?\s*$", _I)
_BULLET = re.compile(r"^\s*[-–—•*]\s", re.MULTILINE)
# A name alone on the last line signs a message to the tutor ("Can you explain it again?\nFatima"),
# but only under a message that speaks to someone: "Who wrote Hamlet?\nShakespeare" is a quiz answer.
_LAST_LINE = re.compile(rf"\n[ \t]*({_WORD.pattern}(?:[ \t]+{_WORD.pattern}){{0,2}})[ \t]*[.!]?\s*$")
_SPOKEN_TO = re.compile(r"(?<!\w)(?:I|I['’]m|me|my|you|your|please|thanks|thank|hi|hello|hey)(?!\w)", re.IGNORECASE)
# A sentence opening by addressing someone, as tutors and teachers write: "Fatima, can you count by fours?".
_VOCATIVE = re.compile(
    rf"(?:^|[.!?]\s+)({_WORD.pattern}),[ \t]+(?=(?:can|could|would|will|do|did|does|what|how|why|where|when|which|"
    r"try|let['’]?s|remember|think|look|you|your|great|good|nice|well|that['’]?s|please|is|are)\b)", re.MULTILINE)
# Words that open such a sentence without naming anyone ("Finally, what is…", "Hmm, can we…").
_NOT_ADDRESSED = frozenset("hmm um uh oh ah wow oops alright right exactly perfect interesting careful remember instead "
                           "otherwise therefore however meanwhile besides anyway correct wait look see listen hint tip "
                           "note step example together plus yesterday tonight okay ok".split())
# Scripts without spaces: the name runs to a particle or punctuation.
_CJK = (
    re.compile(r"(?:我叫|我名叫|我的名字是|我的名字叫|名字叫|名字是|(?:妈妈|爸爸|哥哥|姐姐|弟弟|妹妹|朋友|同学|老师|奶奶|爷爷|外婆|外公)叫)"
               r"([\u4e00-\u9fff]{2,4}?)(?=[，,。.！!？?\s、；;]|$|今年|是|在|我|他|她|的|和)"),
    re.compile(r"(?:名前は|なまえは)([\u3040-\u30ff\u4e00-\u9fff]{2,8}?)(?:です|だよ|といいます|と申します)"),
    re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]{0,2}?([\u3040-\u30ff\u4e00-\u9fff]{2,8}?)(?:といいます|と申します)"),
    re.compile(r"(?:이름은|이름이)\s*([\uac00-\ud7af]{2,4}?)(?:입니다|이에요|예요|이야|야|라고|이라고)"),
)


def _plain(word: str) -> tuple[str, bool]:
    """The word without a possessive ending, and whether it had one."""
    for ending in ("'s", "’s", "'", "’"):
        if word.endswith(ending) and len(word) > len(ending) + 1:
            return word[: -len(ending)], True
    return word, False


def _name_word(word: str, lower: bool) -> bool:
    low = word.lower()
    if word[0].islower() and any(c in word for c in "'’"):
        return False  # "isn't", "they're": a lower-case word with an apostrophe is no name
    if low in NOT_NAMES or low in RELATIVES or low in _CASELESS_STOP or _MONTH.fullmatch(low):
        return False
    first = word[0]
    if first.isupper():
        return len(word) >= 2
    if first.islower():
        return lower and len(word) >= 2
    return True  # a script without capitals (Devanagari, Arabic …): the cue decides


def _next_word(text: str, end: int) -> re.Match[str] | None:
    gap = _GAP.match(text, end)
    return _WORD.match(text, gap.end()) if gap else None


def _take(text: str, pos: int, cue: _Cue) -> tuple[list[str], int]:
    """The name (or names, with ``pair``) starting at ``pos``, and where they end."""
    found: list[str] = []
    words: list[str] = []
    lowercase = False
    first = end = pos
    while len(words) < (2 if lowercase else cue.words):
        match = _next_word(text, end) if words else _WORD.match(text, end)
        if match is None:
            break
        if words and not lowercase and match.group(0) in _PARTICLES:
            # "Juan Carlos de la Cruz", "Ludwig van Beethoven": particles only before another capitalized part
            after = match
            while after is not None and after.group(0) in _PARTICLES:
                after = _next_word(text, after.end())
            if after is None or not after.group(0)[0].isupper():
                break
            match = after
        word, possessive = _plain(match.group(0))
        if possessive and not cue.possessive and not _KIN_AFTER.match(text, match.end()):
            return [], pos  # "This is Newton's law" — but "this is Rafael's sister" names Rafael
        if not _name_word(word, cue.lower and (not words or lowercase)):
            break
        if words and word[0].isupper() != words[0][0].isupper():
            break  # "Ana lopez": case changes, so only the first part is sure
        if not words:
            lowercase = word[0].islower()
            first = match.start()
        words.append(word)
        end = match.start() + len(word)
        if possessive:
            break
    if words and cue.verb_like and words[0][0].isupper() and len(words[0]) > 4 and words[0].endswith(("ing", "ed")):
        return [], pos
    if words:
        found.append(text[first:end])
        more = _AND.match(text, end) if cue.pair else None
        if more:
            rest, rest_end = _take(text, more.end(), _Cue(cue.pattern, words=cue.words))
            if rest:
                found.extend(rest)
                end = rest_end
    return found, end


def _public(name: str, text: str, at: int) -> bool:
    """A titled name a lesson is about: a known figure, or a sentence about a book or a film."""
    if any(w.lower() in PUBLIC_FIGURES for w in name.split()):
        return True
    sentence_start = max(text.rfind(c, 0, at) for c in ".!?\n") + 1
    ends = [i for i in (text.find(c, at) for c in ".!?\n") if i != -1]
    return bool(_LITERARY.search(text, sentence_start, min(ends) if ends else len(text)))


def find_names(text: str) -> list[str]:
    """Names given in ``text`` by cue words, in order of appearance, each once."""
    spans: list[tuple[int, str]] = []
    german = _GERMAN.search(text) is not None
    first_person = _FIRST_PERSON.search(text) is not None
    for cue in _CUES:
        if (german and not cue.german) or (cue.first_person and not first_person):
            continue
        for match in cue.pattern.finditer(text):
            names, _ = _take(text, match.end(), cue)
            if cue.lesson and names and _public(names[0], text, match.end()):
                continue
            if cue.confirm and names:
                # "This is Priya, I …" / "This is Priya from 7B" / "This is Priya." — not "This is Paris, the capital".
                after = text[match.end() + len(names[0]):]
                this = match.group(0).strip().lower().startswith("this")
                ends, again = (r"$|[.!]|", "|again") if this else ("", "")
                # "… at 555-0147", "… at ana@example.com": whom to reach, by a number or an address.
                contact = r"|\s+(?:at|on)\s+(?:[\d(+]|\S+@)"
                if not re.match(rf"\s*(?:{ends},?\s+(?:here|from|speaking{again})\b|,?\s*(?:I|i|my)\b{contact})",
                                after):
                    continue
            spans.extend((match.end(), n) for n in names)
    for match in _HERE.finditer(text):
        names = [w for w in match.group(1).split() if _name_word(w, False)]
        if names and len(names) == len(match.group(1).split()):
            spans.append((match.start(1), match.group(1)))
    for match in _SIGN_OFF.finditer(text):
        # one word after a dash ("- Albert Einstein" closes a quotation), up to two after "Regards,"
        group = 1 if match.group(1) else 2
        name = match.group(group)
        if all(_name_word(w, False) for w in name.split()) and len(_BULLET.findall(text)) < 2:
            spans.append((match.start(group), name))
    last = _LAST_LINE.search(text)
    if last and _SPOKEN_TO.search(text, 0, last.start()) and not text[:last.start()].rstrip().endswith(":"):
        words = last.group(1).split()
        if all(w[0].isupper() and _name_word(w, False) and w.lower() not in PUBLIC_FIGURES for w in words):
            spans.append((last.start(1), last.group(1)))
    for match in _VOCATIVE.finditer(text):
        word = match.group(1)
        low = word.lower()
        if word[0].isupper() and _name_word(word, False) and not low.endswith("ly") and low not in _NOT_ADDRESSED \
                and low not in PUBLIC_FIGURES:
            spans.append((match.start(1), word))
    for pattern in _CJK:
        spans.extend((m.start(1), m.group(1)) for m in pattern.finditer(text))
    seen: set[str] = set()
    out: list[str] = []
    for _, name in sorted(spans):
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def name_pattern(names: list[str]) -> re.Pattern[str] | None:
    """One pattern for ``names`` and their distinctive parts ("Linda Okafor" → also "Okafor" alone),
    longest first. A name given in lower case ("my name is kevin") also matches "Kevin"; one given
    capitalized matches as given, so "I'm Hope" leaves "I hope so" alone."""
    exact: set[str] = set()
    folded: set[str] = set()
    for name in names:
        lower = name[:1].islower()
        parts = [name] + ([w for w in name.split() if w not in _PARTICLES] if " " in name else [])
        for part in parts:
            distinctive = len(part) >= 3 and part.lower() not in NOT_NAMES and part.lower() not in RELATIVES
            if len(part) < 2 or (part is not name and not distinctive):
                continue
            (folded if lower and distinctive else exact).add(part)
    if not exact and not folded:
        return None
    alternatives = [(n, False) for n in exact] + [(n, True) for n in folded]
    alternatives.sort(key=lambda item: len(item[0]), reverse=True)
    return re.compile("|".join(_bounded(n, fold) for n, fold in alternatives))


def _spaceless(char: str) -> bool:
    return "\u3040" <= char <= "\u30ff" or "\u3400" <= char <= "\u9fff" or "\uac00" <= char <= "\ud7af"


def _bounded(name: str, fold: bool) -> str:
    """``name`` as a whole word; in scripts without spaces ("我叫王小明") the characters around it are
    part of the sentence, so no word boundary is asked for there."""
    body = f"(?i:{re.escape(name)})" if fold else re.escape(name)
    before = "" if _spaceless(name[0]) else r"(?<![\w\[])"
    after = "" if _spaceless(name[-1]) else r"(?![\w\]])"
    return before + body + after
