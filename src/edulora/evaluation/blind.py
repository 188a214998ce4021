"""A blinded rating sheet for a person (a head of pedagogy, a teacher) and their ratings read back.

``write_blind_sheet(result, "ratings.csv")`` writes one row per evaluated record, in a seeded
random order: the conversation, two replies to it (two models' replies, base and tuned by default)
as ``reply A`` and ``reply B`` with the side of each model drawn per row, and empty ``choice`` and
``notes`` columns for the rater. Nothing in the sheet says which model wrote which reply: the
mapping lives in a key file beside it (``ratings.key.json``), which stays with whoever runs the
evaluation. ``read_ratings("ratings.csv")`` reads the filled sheet with its key and returns the
human preference: how often the rater preferred each model where they preferred one, with its
Wilson interval (``rates.rate``), beside the ties and the rows left blank.

The key also holds a fingerprint of each row's texts, so a sheet read with another sheet's key,
or with replies edited in the spreadsheet, is refused at the line where they disagree instead of
being counted against the wrong models.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from pathlib import Path

from ..data.csvrows import iter_csv_rows
from ..data.io import Problem, atomic_text_writer, atomic_write_text
from ..data.outputs import check_outputs
from ..errors import EduloraError
from .rates import rate
from .results import EvalResult, HumanPreference

#: The sheet's columns, as a rater sees them; ``read_ratings`` matches them by the words before " (".
COLUMNS = ("item", "conversation", "reply A", "reply B", "choice (A, B or same)", "notes")
#: What the choice column may hold (any case); blank: not rated yet.
CHOICES = ("a", "b", "same")
KEY_VERSION = 1


def key_path(sheet: str | Path) -> Path:
    """Where the key of ``sheet`` is kept: ``ratings.csv`` → ``ratings.key.json``."""
    sheet = Path(sheet)
    return sheet.with_name(sheet.stem + ".key.json")


def check_sheet_outputs(sheet: str | Path) -> None:
    """Refuse a sheet (or its key) that exists already: it may hold a rater's work."""
    check_outputs({}, {"--blind-sheet": sheet, "its key": key_path(sheet)})


def _fingerprint(*texts: str) -> str:
    # Spreadsheets re-wrap line endings and trim cells: only the words are compared.
    return hashlib.sha256("\x00".join(" ".join(t.split()) for t in texts).encode()).hexdigest()[:16]


def _pair(result: EvalResult, models: tuple[str, str] | None) -> tuple[str, str]:
    """The two models to compare: ``models``, else the reference (the base when evaluated) and the first other."""
    names = [m.name for m in result.models]
    if models is None:
        if len(names) < 2:
            raise EduloraError("a blind sheet compares two models: evaluate an adapter with --with-base, or two adapters")
        first = next((m.name for m in result.models if m.is_base), names[0])
        models = (first, next(n for n in names if n != first))
    for name in models:
        if name not in names:
            raise EduloraError(f"blind sheet: no model {name!r} in this evaluation ({', '.join(names)})")
    if models[0] == models[1]:
        raise EduloraError("blind sheet: two different models are needed")
    return models


def write_blind_sheet(result: EvalResult, sheet: str | Path, *, models: tuple[str, str] | None = None,
                      seed: int = 0, sample: int | None = None) -> Path:
    """Write the rating sheet ``sheet`` (CSV) and its key (``key_path(sheet)``); returns the key's path.

    ``sample``: at most this many rows, drawn at random (None: every record). Neither file is ever
    replaced: a sheet may already hold a rater's work.
    """
    sheet, key = Path(sheet), key_path(sheet)
    check_sheet_outputs(sheet)
    first, second = _pair(result, models)
    rng = random.Random(seed)
    order = [info.index for info in result.records]
    rng.shuffle(order)
    order = order[:sample] if sample else order
    replies = {m.name: {r.record: r.text for r in m.replies} for m in (result.model(first), result.model(second))}
    prompts = {info.index: info.prompt for info in result.records}
    rows, items = [], {}
    for number, record in enumerate(order, start=1):
        a, b = (first, second) if rng.random() < 0.5 else (second, first)
        item = f"R{number:03d}"  # not a number: a spreadsheet would save "001" as 1
        rows.append([item, prompts[record], replies[a][record], replies[b][record], "", ""])
        items[item] = {"record": record, "A": a, "B": b,
                       "texts": _fingerprint(prompts[record], replies[a][record], replies[b][record])}
    with atomic_text_writer(sheet) as handle:
        handle.write("\ufeff")  # a byte-order mark, so spreadsheets open the file as UTF-8
        writer = csv.writer(handle)
        writer.writerows([COLUMNS, *rows])
    atomic_write_text(key, json.dumps({"version": KEY_VERSION, "sheet": sheet.name, "models": [first, second],
                                       "seed": seed, "items": items}, indent=1) + "\n")
    return key


def _column(name: str) -> str:
    return name.split(" (")[0].strip().lower()


def _load_key(path: Path) -> dict:
    if not path.is_file():
        raise EduloraError(f"{path}: no key for this sheet (written beside it by --blind-sheet)")
    try:
        key = json.loads(path.read_text(encoding="utf-8"))
        models, items = key["models"], key["items"]
        if key.get("version") != KEY_VERSION or len(models) != 2 or not isinstance(items, dict):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise EduloraError(f"{path}: not a blind sheet's key") from None
    return key


def read_ratings(sheet: str | Path, key: str | Path | None = None, confidence: float = 0.95) -> list[HumanPreference]:
    """The filled ``sheet`` read with its key (``key_path(sheet)`` unless given): the preference for each
    of the two models (the share of rows with a preference that chose it, with its interval)."""
    sheet = Path(sheet)
    if not sheet.is_file():
        raise EduloraError(f"{sheet}: no such ratings sheet")
    spec = _load_key(Path(key) if key else key_path(sheet))
    items = spec["items"]
    first, second = spec["models"]
    wins = {first: 0, second: 0}
    ties = 0
    rated: set[str] = set()
    for line, row in iter_csv_rows(sheet, _check_header):
        if isinstance(row, Problem):
            raise EduloraError(str(row))
        cells = {_column(k): (v or "").strip() for k, v in row.items()}
        where = f"{sheet}:{line}"
        item = cells.get("item", "")
        if item not in items:
            raise EduloraError(f"{where}: column 'item': {item!r} is not a row of this sheet's key")
        if item in rated:
            raise EduloraError(f"{where}: column 'item': {item} is rated twice")
        entry = items[item]
        texts = [cells.get(c) for c in ("conversation", "reply a", "reply b")]
        if None not in texts and _fingerprint(*texts) != entry["texts"]:
            raise EduloraError(f"{where}: columns 'conversation', 'reply A', 'reply B': not the texts the key "
                               "was written with (edited, or another sheet's key)")
        choice = cells.get("choice", "").lower()
        if choice not in (*CHOICES, ""):
            raise EduloraError(f"{where}: column 'choice': {cells['choice']!r} is not A, B or same (blank: unrated)")
        if choice:
            rated.add(item)
        if choice == "same":
            ties += 1
        elif choice:
            wins[entry[choice.upper()]] += 1
    decisive = wins[first] + wins[second]
    unrated = len(items) - len(rated)
    return [HumanPreference(model, other, wins[model], wins[other], ties, unrated, str(sheet),
                            rate(wins[model], decisive, confidence) if decisive else None)
            for model, other in ((second, first), (first, second))]


def _check_header(columns: list[str]) -> str | None:
    names = {_column(c) for c in columns}
    missing = [c for c in ("item", "choice") if c not in names]
    return f"no {' or '.join(repr(c) for c in missing)} column: not a blind rating sheet" if missing else None

