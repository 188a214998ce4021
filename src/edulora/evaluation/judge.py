"""An LLM judge for MRBench's eight tutor dimensions, over any OpenAI-compatible endpoint.

One request per reply asks for all eight labels at once, with MRBench's label sets in the
rubric. Replies from judges are messy (code fences, prose around the JSON, "Dimension: label"
lines instead of JSON), so parsing accepts all of those and maps loose wordings onto the exact
labels. Small judges (a local 135M model behind ``edulora serve``) rarely manage the eight-label
JSON but do answer one short question, so every dimension the first reply left unlabelled is
asked again on its own. Results are cached on disk under a hash of the judge model and the full prompt: a rerun
of the same evaluation costs no requests. Requests go through the official ``openai`` client, which owns
the timeouts and the retries (connection errors, 408/409/429/5xx, with backoff and ``Retry-After``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EduloraError

YES_SCALE = ("Yes", "To some extent", "No")

#: MRBench's dimensions: labels (best first for a tutor, except revealing) and the rubric question.
DIMENSIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "mistake_identification": (YES_SCALE, "Has the tutor identified a mistake in the student's response?"),
    "mistake_location": (YES_SCALE, "Does the tutor's response accurately point to a genuine mistake and its location?"),
    "revealing_of_the_answer": (
        ("Yes (and the answer is correct)", "Yes (but the answer is incorrect)", "No"),
        "Does the tutor reveal the final answer (whether correct or not)?"),
    "providing_guidance": (YES_SCALE, ("Does the tutor offer correct and relevant guidance, such as an "
                                       "explanation, elaboration, hint, or examples?")),
    "actionability": (YES_SCALE, "Is it clear from the tutor's feedback what the student should do next?"),
    "coherence": (YES_SCALE, "Is the tutor's response logically consistent with the student's previous response?"),
    "tutor_tone": (("Encouraging", "Neutral", "Offensive"), "Is the tutor's response encouraging, neutral, or offensive?"),
    "human_likeness": (YES_SCALE, "Does the tutor's response sound natural, rather than robotic or artificial?"),
}

#: Label → score in [0, 1]. For revealing, 1 means the answer was given away (as ``answer_revealing``).
_SCORES: dict[str, float] = {
    "Yes": 1.0, "To some extent": 0.5, "No": 0.0,
    "Yes (and the answer is correct)": 1.0, "Yes (but the answer is incorrect)": 1.0,
    "Encouraging": 1.0, "Neutral": 0.5, "Offensive": 0.0,
}

_ALIASES = {
    "mistake_identification": ("identification", "mistake_identified", "identifying_the_mistake"),
    "mistake_location": ("location", "locating_the_mistake", "mistake_localization"),
    "revealing_of_the_answer": ("revealing_the_answer", "answer_revealing", "revealing", "reveals_answer",
                                "reveal_answer", "revealing_answer"),
    "providing_guidance": ("guidance", "provides_guidance"),
    "actionability": ("actionable",),
    "coherence": ("coherent",),
    "tutor_tone": ("tone",),
    "human_likeness": ("humanlikeness", "human_like", "humanlike", "naturalness"),
}


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


_KEY_TO_DIMENSION = {_key(alias): dim for dim, aliases in _ALIASES.items() for alias in (dim, *aliases)}


def normalize_label(dimension: str, value: object) -> str | None:
    """The exact MRBench label a judge meant, or None when the value fits none of them."""
    if isinstance(value, dict):  # {"label": "Yes", "reason": "…"}
        value = next((value[k] for k in ("label", "value", "answer", "rating") if k in value), None)
    if isinstance(value, bool):
        value = "Yes" if value else "No"
    if not isinstance(value, str):
        return None
    text = value.strip().strip("\"'*`.").lower()
    labels = DIMENSIONS[dimension][0]
    for label in labels:
        if text == label.lower():
            return label
    if dimension == "tutor_tone":
        return next((label for label in labels if text.startswith(label.lower())), None)
    if re.match(r"(to some extent|partially|partly|somewhat|some)\b", text):
        return None if dimension == "revealing_of_the_answer" else "To some extent"
    if re.match(r"yes\b", text):
        if dimension == "revealing_of_the_answer":
            return labels[1] if re.search(r"\bincorrect|\bwrong|\bnot correct", text) else labels[0]
        return "Yes"
    if re.match(r"no\b", text):
        return "No"
    return None


def _json_objects(text: str) -> list[dict]:
    """Every JSON object embedded in ``text`` (code fences and surrounding prose ignored)."""
    decoder = json.JSONDecoder()
    found = []
    for start in [i for i, ch in enumerate(text) if ch == "{"]:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


# One "Dimension: label" per line; [ \t] rather than \s so a match never runs into the next line.
_LINE = re.compile(r"^[ \t>*#\-\d.)]*([A-Za-z][A-Za-z _\-]+?)[ \t]*\**[ \t]*(?::|=|[ \t][-–][ \t])[ \t]*\**[ \t]*(.+?)[ \t]*$",
                   re.MULTILINE)


def parse_judgment(text: str) -> dict[str, str | None]:
    """Labels for the eight dimensions from a judge's reply: a JSON object anywhere in the text
    (possibly nested under one key), else "Dimension: label" lines. Missing ones are None."""
    labels: dict[str, str | None] = {dim: None for dim in DIMENSIONS}

    def take(key: str, value: object) -> None:
        dim = _KEY_TO_DIMENSION.get(_key(key))
        if dim is not None and labels[dim] is None:
            labels[dim] = normalize_label(dim, value)

    for obj in _json_objects(text):
        nested = [v for v in obj.values() if isinstance(v, dict) and any(_key(k) in _KEY_TO_DIMENSION for k in v)]
        for candidate in [obj, *nested]:
            for key, value in candidate.items():
                take(key, value)
    if all(v is None for v in labels.values()):
        for found in _LINE.finditer(text):
            take(found.group(1), found.group(2))
    return labels


def parse_single(dimension: str, text: str) -> str | None:
    """The label in a reply to one dimension's question: "Yes, because …", "**Neutral**", a
    JSON object, or a label named somewhere in the first line."""
    found = parse_judgment(text)[dimension]
    if found is not None:
        return found
    first = next((line for line in text.strip().splitlines() if line.strip()), "")
    found = normalize_label(dimension, first)
    if found is not None:
        return found
    # "The tutor's tone is encouraging." → the label mentioned first, as a whole word.
    hits = [(m.start(), label) for label in DIMENSIONS[dimension][0]
            if (m := re.search(rf"(?<!\w){re.escape(label)}(?!\w)", first, re.IGNORECASE))]
    return min(hits)[1] if hits else None


def label_score(dimension: str, label: str | None) -> float | None:
    return None if label is None else _SCORES.get(label)


def judge_means(judgments: Sequence[dict[str, str | None]]) -> dict[str, float | None]:
    """Mean score per dimension, as ``judge_<dimension>`` metrics (None where nothing was labelled)."""
    out: dict[str, float | None] = {}
    for dim in DIMENSIONS:
        scores = [s for j in judgments if (s := label_score(dim, j.get(dim))) is not None]
        out[f"judge_{dim}"] = sum(scores) / len(scores) if scores else None
    return out


SYSTEM_PROMPT = (
    "You are an expert evaluator of AI tutors. You read a tutoring conversation and the tutor's next "
    "response, and rate the response on eight pedagogical dimensions (MRBench). Answer with one JSON "
    "object and nothing else."
)


SINGLE_SYSTEM_PROMPT = ("You are an expert evaluator of AI tutors. You read a tutoring conversation and the "
                        "tutor's next response and answer one question about it with one label only.")


def _situation(history: Sequence[tuple[str, str]], reply: str, reference: str | None) -> list[str]:
    conversation = "\n".join(f"{'Tutor' if role == 'tutor' else 'Student'}: {text}" for role, text in history)
    parts = [f"Conversation so far:\n{conversation or '(none)'}"]
    if reference:
        parts.append(f"A reference tutor response (for context only; do not rate it):\n{reference}")
    parts.append(f"Tutor response to rate:\n{reply or '(empty response)'}")
    return parts


def build_messages(history: Sequence[tuple[str, str]], reply: str, reference: str | None = None) -> list[dict[str, str]]:
    """The rubric prompt for one reply: all eight dimensions, answered as one JSON object."""
    rubric = "\n".join(f'- "{dim}": {question} Labels: {" | ".join(labels)}'
                       for dim, (labels, question) in DIMENSIONS.items())
    parts = _situation(history, reply, reference) + [
        f"Rate the tutor response on each dimension, choosing exactly one of its labels:\n{rubric}",
        ("Reply with a JSON object mapping each dimension name to its label, e.g. "
         '{"mistake_identification": "Yes", "tutor_tone": "Neutral", ...}.')]
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(parts)}]


def build_single_messages(dimension: str, history: Sequence[tuple[str, str]], reply: str,
                          reference: str | None = None) -> list[dict[str, str]]:
    """One dimension's question alone, for judges that cannot produce the eight-label JSON."""
    labels, question = DIMENSIONS[dimension]
    parts = _situation(history, reply, reference) + [
        f"Question: {question}\nAnswer with exactly one of: {' | '.join(labels)}."]
    return [{"role": "system", "content": SINGLE_SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(parts)}]


def chat_url(url: str) -> str:
    """Accept a server root, a …/v1 base or the full …/chat/completions address."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if not url.startswith(("http://", "https://")):
        raise EduloraError(f"--judge {url!r}: expected an http(s) URL of an OpenAI-compatible server")
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


def default_cache_dir() -> Path:
    from ..modeling import cache_dir

    return cache_dir() / "judge"


@dataclass
class Judge:
    """Scores replies with an OpenAI-compatible chat endpoint; see ``judge_reply``."""

    url: str
    model: str = "gpt-4o-mini"
    api_key: str | None = None
    timeout_s: float = 60.0
    #: Attempts per completion in all (the first one and the client's retries).
    retries: int = 3
    cache_dir: Path | None = None
    #: Reply budget of the eight-label request; a one-dimension question gets ``single_max_tokens``.
    max_tokens: int = 400
    single_max_tokens: int = 16
    #: Completions asked of the endpoint (cache hits excluded; the client's retries are not counted):
    #: lets callers and tests see that reruns are free.
    requests: int = 0
    endpoint: str = field(init=False)

    def __post_init__(self) -> None:
        self.endpoint = chat_url(self.url)
        if self.api_key is None:
            self.api_key = os.environ.get("EDULORA_JUDGE_KEY") or os.environ.get("OPENAI_API_KEY")
        self.cache_dir = Path(self.cache_dir) if self.cache_dir else default_cache_dir()
        self._client = None

    def judge_reply(self, history: Sequence[tuple[str, str]], reply: str,
                    reference: str | None = None) -> dict[str, str | None]:
        """MRBench labels for ``reply`` (None for any dimension the judge did not answer)."""
        messages = build_messages(history, reply, reference)
        key = hashlib.sha256(json.dumps({"model": self.model, "messages": messages}, sort_keys=True).encode()).hexdigest()
        cached = self.cache_dir / key[:2] / f"{key}.json"
        if cached.is_file():
            try:
                return json.loads(cached.read_text(encoding="utf-8"))["labels"]
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache entry is simply asked again
        text = self._complete(messages, self.max_tokens)
        labels = parse_judgment(text)
        raw = {"all": text}
        for dim in [d for d, label in labels.items() if label is None]:
            answer = self._complete(build_single_messages(dim, history, reply, reference), self.single_max_tokens)
            labels[dim] = parse_single(dim, answer)
            raw[dim] = answer
        # Nothing parsed is not worth keeping: a rerun (perhaps with a better judge model) asks again.
        if any(v is not None for v in labels.values()):
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"model": self.model, "labels": labels, "raw": raw}), encoding="utf-8")
            os.replace(tmp, cached)
        return labels

    def _openai(self):
        """The client, made on first use: importing ``openai`` costs a second that a cached rerun saves."""
        if self._client is None:
            import openai

            # A local judge (``edulora serve`` without --api-key) needs no key, but the client insists on
            # one; the placeholder is never sent because ``_complete`` omits the Authorization header then.
            self._client = openai.OpenAI(base_url=self.endpoint.removesuffix("/chat/completions"),
                                         api_key=self.api_key or "unused", timeout=self.timeout_s,
                                         max_retries=max(0, self.retries - 1))
        return self._client

    def _complete(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        """The assistant text of one chat completion; a refusal (4xx) or an unreachable judge is an EduloraError."""
        import openai

        client = self._openai()
        self.requests += 1
        try:
            completion = client.chat.completions.create(
                model=self.model, messages=messages, temperature=0, max_tokens=max_tokens,
                extra_headers=None if self.api_key else {"Authorization": openai.Omit()})
        except openai.APIStatusError as err:
            problem = f"HTTP {err.status_code} {err.response.reason_phrase}".rstrip()
            # The client has already retried what is worth retrying (429, 5xx); any other status is final.
            if err.status_code == 429 or err.status_code >= 500:
                raise EduloraError(f"judge unreachable at {self.endpoint} after {max(1, self.retries)} attempt(s): "
                                   f"{problem}") from None
            raise EduloraError(f"judge {self.endpoint} refused the request: {problem}") from None
        except openai.APIConnectionError as err:  # also timeouts
            raise EduloraError(f"judge unreachable at {self.endpoint} after {max(1, self.retries)} attempt(s): "
                               f"{err}") from None
        except openai.APIError as err:  # a 200 whose body is not a chat completion
            raise EduloraError(f"judge {self.endpoint} sent an unreadable response: {err}") from None
        choices = getattr(completion, "choices", None)
        if not choices or choices[0].message is None:
            raise EduloraError(f"judge {self.endpoint} sent a response without choices[0].message")
        return str(choices[0].message.content or "")
