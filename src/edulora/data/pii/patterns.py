"""Patterns for every kind of personal detail except names, and the order they are applied in.

The patterns lean towards keeping text: a tutoring dataset is full of numbers ("what is 345 * 12",
"the year 1492", "299792458 m/s", "July 4, 1776") and capitalized words, and scrubbing those would
damage the data more than it protects anyone. So numbers with a shape of their own (separated
phone groups, 123-45-6789, SW1A 1AA) are taken anywhere, and a plain run of digits or a date only
next to a cue word ("call", "student ID", "my birthday is").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

from .words import MONTHS, NOT_NAMES

# One capitalized word in a Latin script, accents included ("Müller", "O'Connor", "Bartholomew's").
CAP = r"[A-ZÀ-ÖØ-Þ][^\W\d_]*(?:['’-][^\W\d_]+)*"

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")

_TLDS = ("com|org|net|edu|gov|io|co|uk|us|ca|au|de|fr|info|biz|me|ly|app|dev|ai|tv|in|es|nl|ru|jp|cn|br|mx|ch|"
         "nz|ie|xyz|site|blog|online|school")
# A bare domain needs a lower-case TLD, so a missing space after a full stop ("said so.Me") is
# not taken for a web address.
URL = re.compile(
    r"(?i:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"']+"
    rf"|\b[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:{_TLDS})\b(?:/[^\s<>\"']*)?"
)

# "@sofia_m_2011"; an e-mail address is gone by the time this runs, and "the @ symbol" has no name.
HANDLE_AT = re.compile(r"(?<![\w@.\[])@[A-Za-z0-9_](?:[A-Za-z0-9_.]{0,28}[A-Za-z0-9_])?")
# "my tiktok is mateo.draws08", "add me on discord: pixelpanda#4821", "my login for the portal is x.y".
HANDLE_CUED = re.compile(
    r"(?i:\b(?:insta|instagram|ig|tiktok|tik\s+tok|snap|snapchat|twitter|discord|roblox|minecraft|fortnite|xbox|"
    r"psn|steam|twitch|youtube|username|user\s*name|login|gamertag|handle)\b"
    r"(?:\s+(?:name|id|handle|username|account|tag))?(?:\s+[a-z][a-z ]{0,30}?\s+is)?\s*[:=-]?\s*(?:is\s+|as\s+)?)"
    r"(@?[A-Za-z0-9_][A-Za-z0-9_.#-]*[A-Za-z0-9_])"
)

_NATIONAL_CUE = (
    r"ssn|social\s+security(?:\s+number|\s+no\.?)?|national\s+insurance(?:\s+number)?|ni\s+number|nino|"
    r"aadhaa?r(?:\s+number|\s+no\.?)?|passport\s+(?:number|no\.?)|dni|curp|nif|tax\s+id|tfn|pps\s+number|pesel|"
    r"personalausweis(?:nummer)?|sozialversicherungsnummer|numéro\s+de\s+sécurité\s+sociale|codice\s+fiscale"
)
NATIONAL_ID = re.compile(
    # US social security numbers (never 000, 666 or 9xx first) and UK national insurance numbers.
    r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"
    r"|\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"
    rf"|(?i:\b(?:{_NATIONAL_CUE})\b\s*(?:is|was|:|#|=)?\s*[:#]?\s*)([A-Z0-9](?:[A-Z0-9 -]{{3,22}}[A-Z0-9]))"
)

_MONTH = rf"(?:{MONTHS})(?![^\W\d_])"
_DATE = (
    r"\d{1,4}[/.-]\d{1,2}[/.-]\d{2,4}"
    rf"|\d{{1,2}}(?:st|nd|rd|th|er)?\.?\s+(?:of\s+|de\s+)?{_MONTH}\.?(?:,?\s+(?:de\s+|of\s+)?\d{{4}})?"
    rf"|{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?"
    r"|\d{4}\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*日?"
)
_BIRTH_WORD = (
    r"birthday|b-?day|date\s+of\s+birth|dob|d\.o\.b\.?|birth\s*date|cumpleaños|fecha\s+de\s+nacimiento|"
    r"anniversaire|date\s+de\s+naissance|geburtstag|geburtsdatum|compleanno|data\s+di\s+nascita|aniversário"
)
# A date is a birth date only when someone says it is theirs or their family's: "Gandhi was born on
# 2 October 1869" and "signed on July 4, 1776" are history.
BIRTH_DATE = re.compile(
    r"(?:"
    rf"\b(?:my|our|his|her|their|mi|mon|ma|mein|meine|mio|mia|\w+['’]s)\s+(?:{_BIRTH_WORD})"
    r"\s*(?:is|was|es|est|ist|è|é|:|=|-)?\s*(?:(?:on|the|el|le|am|il)\s+){0,2}"
    r"|\b(?:dob|d\.o\.b\.?|date\s+of\s+birth|birth\s*date|fecha\s+de\s+nacimiento|date\s+de\s+naissance|"
    r"geburtsdatum|data\s+di\s+nascita)\s*(?:is\s+)?[:=-]?\s*"
    r"|(?:\bI\s+was|\bI['’]m|\bI\s+am|\bwe\s+were|\bmy\s+\w+\s+was|^|[.!?]\s+)\s*born\s+(?:on\s+|in\s+)?(?:the\s+)?"
    r"|\b(?:yo\s+)?nac[ií]\s+(?:el\s+)?|\bje\s+suis\s+née?\s+le\s+"
    r"|我的生日是|我出生于|我出生在|我生于"
    rf")({_DATE})"
    rf"|\bich\s+bin\s+am\s+({_DATE})(?=\s+geboren)",
    re.IGNORECASE | re.MULTILINE,
)

_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|"
    r"Terrace|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Close|Crescent|Cres|Grove|Row|Mews|Gardens|Walk|Trail)"
)
_ROMANCE_STREET = (r"(?:Rue|Avenue|Boulevard|Bd|Place|Chemin|Allée|Impasse|Quai|Calle|Avenida|Plaza|Paseo|Carrer|"
                   r"Via|Viale|Piazza|Corso|Rua|Travessa|Largo)")
_PARTICLES = r"(?:(?:de|du|des|la|le|les|del|di|della|dei|do|da|dos|das)\s+|[dl]['’])*"
_ROMANCE_NAME = rf"{_PARTICLES}{CAP}(?:[\s-]+{_PARTICLES}{CAP}){{0,3}}"
# ", 75002 Paris" after a street.
_POSTAL_CITY = rf"(?:,?\s+\d{{4,5}}\s+{CAP}(?:[\s-]{CAP})?)?"
# The street name words must be capitalized (or ordinals like 5th): "3 apples on the way" is a
# math problem, "12 Oak Way" an address.
ADDRESS = re.compile(
    # A house number may carry a letter: "221B Baker Street", "14b Elm Road", "3A Kings Road".
    r"\b\d{1,6}[A-Za-z]?\s+(?:(?:[A-Z][A-Za-z'.-]*|\d{1,3}(?:st|nd|rd|th))\s+){1,4}"
    + _STREET_SUFFIX
    + r"\b\.?(?:,?\s+(?:Apt|Apartment|Unit|Suite|#)\.?\s*\w+)?"
    r"(?:,\s*[A-Z][A-Za-z .'-]+,\s*[A-Z]{2}(?:\s+\d{5}(?:-\d{4})?)?)?"
    r"|\bP\.?\s?O\.?\s+Box\s+\d+\b"
    # "17 Rue de la Paix, 75002 Paris", "Calle Mayor 10, 28013 Madrid", "Lindenstraße 23, 10969 Berlin"
    # (after a number the street word may be lower case, as French writes it: "8 avenue Victor Hugo")
    rf"|\b\d{{1,5}}[a-zA-Z]?,?\s+(?i:{_ROMANCE_STREET})\s+{_ROMANCE_NAME}{_POSTAL_CITY}"
    rf"|\b{_ROMANCE_STREET}\s+{_ROMANCE_NAME}\s+\d{{1,5}}[a-zA-Z]?\b{_POSTAL_CITY}"
    rf"|\b[A-ZÄÖÜ][a-zäöüß]+(?:-[A-ZÄÖÜ]?[a-zäöüß]+)*(?:straße|strasse|str\.|weg|gasse|platz|allee)\s+\d{{1,4}}[a-z]?\b"
    rf"{_POSTAL_CITY}"
    rf"|\b[A-ZÄÖÜ][a-zäöüß]+\s+(?:Straße|Strasse|Str\.|Weg|Gasse|Platz|Allee)\s+\d{{1,4}}[a-z]?\b{_POSTAL_CITY}"
    # Postcodes with a shape of their own: UK (SW1A 1AA) and Canada (K1A 0B1).
    r"|\b[A-Z]{1,2}\d[A-Z\d]?\s\d[A-Z]{2}\b|\b[A-Z]\d[A-Z]\s?\d[A-Z]\d\b"
)
# Parts of an address given without a number or on their own: "I live on Maple Street", "zip code 94110".
ADDRESS_CUED = re.compile(
    rf"(?i:\b(?:live|lives|living|stay|stays)\s+(?:on|at|in)\s+)({CAP}(?:\s+{CAP}){{0,3}}\s+{_STREET_SUFFIX})\b"
    r"|(?i:\b(?:zip(?:\s*code)?|post\s*code|postal\s+code|plz|code\s+postal|código\s+postal|pin\s*code)\s*"
    r"(?:is|:|=)?\s*)([A-Z0-9]{3,5}(?:[\s-][A-Z0-9]{3,4})?)\b"
)
# Addresses every history lesson may mention.
FAMOUS_ADDRESSES = ("10 downing street", "1600 pennsylvania ave", "221b baker street", "742 evergreen terrace",
                    "4 privet drive", "12 grimmauld place")

# Separated groups (555-123-4567, (555) 123 4567, +44 7700 900456, 020 7946 0958, 06 12 34 56 78);
# a run of digits alone is a math answer far more often than a phone number, so it needs a cue.
PHONE = re.compile(
    r"(?<![\w.+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?!\d|[.-]\d)"
    # "+44 (0)20 7946 0958": a bracket is part of the number only around a group ("(call +44 20 …)" keeps its ")").
    r"|(?<![\w.+])\+\d{1,3}(?:[\s.-]?(?:\(\d{1,6}\)|\d{1,6})){1,6}(?!\d|[.-]\d)"
    # A national number with its leading 0 (UK, Germany, Ireland, France, Australia …).
    r"|(?<![\w.+/-])0\d{1,4}(?:[\s/-]\d{2,8}){1,4}(?![\d/]|[.,-]\d)"
)
_PHONE_CUE = (
    r"(?i:\b(?:call|text|phone|cell|mobile|tel|telephone|whatsapp|ring|rang|reach\s+me|contact|landline|"
    r"(?:my|his|her|their|your|\w+['’]s)\s+(?:phone\s+|cell\s+|mobile\s+|home\s+)?number|teléfono|telefono|"
    r"móvil|movil|celular|numéro|téléphone|portable|handy|telefon|nummer|телефон|номер|τηλέφωνο)\b)"
    r"|电话|手机|電話|फ़ोन|फोन|नंबर"
)
PHONE_CUED = re.compile(rf"(?:{_PHONE_CUE})[^\d\n=+*/^<>]{{0,20}}?(?<!\d)(\+?\(?\d[\d\s().-]{{5,18}}\d)(?![\d.,]\d|\d)")

_ID_QUALIFIER = (r"student|school|learner|pupil|library(?:\s+card)?|exam|candidate|roll|admission|registration|"
                 r"enrol(?:l)?ment|matriculation|membership|class")
_ID_KIND = r"id|i\.d\.|number|num|no\.?|#|code"
STUDENT_ID = re.compile(
    rf"(?i:\b(?:{_ID_QUALIFIER})\s*(?:{_ID_KIND})|\bid\s*(?:number|no\.?|#)|\bid\b\s*[:#]|\bid\s+is\b|\blocker|\bbadge)"
    r"\s*(?:is|was|=)?\s*[:#]?\s*((?=[A-Za-z0-9/-]*\d)[A-Za-z]{0,4}[-/]?\d[A-Za-z0-9]*(?:[-/][A-Za-z0-9]+){0,3})\b"
    r"|\b([A-Z]{1,2}\d{6,10})\b"
)

_SCHOOL_SUFFIX = (
    r"(?:High\s+School|Junior\s+High(?:\s+School)?|Middle\s+School|Elementary\s+School|Primary\s+School|"
    r"Secondary\s+School|Grammar\s+School|Intermediate\s+School|Preparatory\s+School|Prep\s+School|Public\s+School|"
    r"International\s+School|Community\s+School|Charter\s+School|Day\s+School|Montessori(?:\s+School)?|"
    r"Academy|School|Elementary|Primary|High|Middle|Prep)"
)
# Words that open a sentence before a school's name without being part of it: "At Riverside High School …".
_LEAD_NOT = r"(?:At|In|To|From|For|On|Of|And|Or|But|Our|My|His|Her|Their|Your|Since|After|Before|When|If|So|Then|By)"
SCHOOL = re.compile(
    rf"(?<![\w'’])((?P<lead>(?!{_LEAD_NOT}\s)(?:(?:St\.?|Saint|Santa|San|Mount|Mt\.?)\s+)?{CAP}(?:[\s-]+{CAP}){{0,3}})\s+{_SCHOOL_SUFFIX})"
    r"(?![\w-])"
    r"|\b(?:Escuela|Colegio|Instituto|Liceo|Scuola|École|Ecole|Lycée|Collège|Gymnasium|Grundschule|Realschule|"
    rf"Gesamtschule|Escola|Colégio)\s+(?:(?:de|del|la|los|las|San|Santa|St|Saint|Sainte|am|an|der|di|do|da)\s+)*"
    rf"{CAP}(?:[\s-]+{CAP}){{0,3}}"
    rf"|\b{CAP}(?:-{CAP})*-(?:Gymnasium|Schule|Grundschule|Realschule|Gesamtschule|Oberschule)\b"
    r"|\bPS\s+\d{2,3}\b"
)


def sub(pattern: re.Pattern[str], label: str, text: str, counts: Counter[str],
        keep: Callable[[re.Match[str], str], bool] | None = None) -> str:
    """Replace each match by ``[label]``; with capture groups, only the first group that matched.

    ``keep(match, value)`` may veto a match (e.g. too few digits for a phone number).
    """

    def replace(match: re.Match[str]) -> str:
        group = next((g for g in range(1, (pattern.groups or 0) + 1) if match.group(g)), 0)
        if keep is not None and keep(match, match.group(group)):
            return match.group(0)
        counts[label] += 1
        start, end = match.span(group)
        whole, offset = match.group(0), match.start()
        return whole[: start - offset] + f"[{label}]" + whole[end - offset:]

    return pattern.sub(replace, text)


def _digits(value: str) -> int:
    return sum(c.isdigit() for c in value)


def _not_phone(_: re.Match[str], value: str) -> bool:
    return not 7 <= _digits(value) <= 15


def _not_international(_: re.Match[str], value: str) -> bool:
    return not 8 <= _digits(value) <= 15


def _not_national(match: re.Match[str], value: str) -> bool:
    if value.startswith("+"):
        return _not_international(match, value)
    if value.startswith("0") and not value.startswith("00"):
        return not 9 <= _digits(value) <= 12
    return _not_phone(match, value)


def _not_id(_: re.Match[str], value: str) -> bool:
    return _digits(value) < 4


def _not_handle(_: re.Match[str], value: str) -> bool:
    # A plain word after the cue ("my insta is private") is not a user name.
    return not (value.startswith("@") or any(c.isdigit() or c in "._#" for c in value))


#: Words before an address that make it the writer's own ("I live at 221B Baker Street"), famous or not.
_OWN_ADDRESS = re.compile(r"(?i)\b(?:I|we|my|our|me|us)\b[^.!?\n]{0,30}$")


def _famous_address(match: re.Match[str], value: str) -> bool:
    before = match.string[max(0, match.start() - 40):match.start()]
    return value.lower().startswith(FAMOUS_ADDRESSES) and not _OWN_ADDRESS.search(before)


def _not_school(match: re.Match[str], value: str) -> bool:
    if not match.group("lead"):
        return False
    words = re.split(r"[\s-]+", match.group("lead").lower())
    first = next((w for w in words if w.rstrip(".") not in ("st", "saint", "santa", "san", "mount", "mt")), "")
    after = match.string[match.end():match.end() + 4]
    before = match.string[max(0, match.start() - 4):match.start()].lower()
    # The name's own first word decides: "Senior High School", "In High School" are no school's name.
    return (first.removesuffix("'s").removesuffix("’s") in NOT_NAMES
            # "The Magic School Bus", "High Middle Ages", "Academy of Sciences": part of a longer name.
            or bool(re.match(r"\s+(?:[A-Z]|of\b)", after))
            or (before.endswith("the ") and match.group(0).endswith(("School", "Academy"))))


def _trim_url(text: str, counts: Counter[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        value = match.group(0)
        trailing = len(value) - len(value.rstrip(".,;:!?)]}'\""))
        counts["URL"] += 1
        return "[URL]" + (value[len(value) - trailing:] if trailing else "")

    return URL.sub(replace, text)


def scrub_patterns(text: str, counts: Counter[str]) -> str:
    """Every kind except names, most specific shapes first: an e-mail before its domain is taken
    for a URL, a national ID or a birth date before its digits are taken for a phone number."""
    text = sub(EMAIL, "EMAIL", text, counts)
    text = _trim_url(text, counts)
    text = sub(HANDLE_AT, "HANDLE", text, counts)
    text = sub(HANDLE_CUED, "HANDLE", text, counts, keep=_not_handle)
    text = sub(NATIONAL_ID, "NATIONAL_ID", text, counts, keep=lambda m, v: m.lastindex is not None and _not_id(m, v))
    text = sub(BIRTH_DATE, "BIRTH_DATE", text, counts)
    text = sub(ADDRESS, "ADDRESS", text, counts, keep=_famous_address)
    text = sub(ADDRESS_CUED, "ADDRESS", text, counts)
    text = sub(SCHOOL, "SCHOOL", text, counts, keep=_not_school)
    text = sub(PHONE, "PHONE", text, counts, keep=_not_national)
    text = sub(STUDENT_ID, "STUDENT_ID", text, counts, keep=lambda m, v: m.group(1) is not None and _not_id(m, v))
    text = sub(PHONE_CUED, "PHONE", text, counts, keep=_not_phone)
    return text
