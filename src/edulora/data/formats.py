"""Reading datasets in the formats teachers and other tools export, with format detection.

Supported formats (names accepted by ``--from``):

* ``edulora`` – the guide's records ``{"instruction", "context", "response", "metadata"}``;
  OpenAI-style ``{"messages": [...]}`` dialogues may be mixed in, as in our own JSONL.
* ``openai`` – chat records ``{"messages": [{"role", "content"}…], "metadata": {…}}``.
* ``alpaca`` – ``{"instruction", "input", "output"}``.
* ``sharegpt`` – ``{"conversations": [{"from": "human"|"gpt"|"system", "value"}…]}``.
* ``csv`` – a CSV (or ``.tsv``) file with a header row; columns are mapped to fields.
* ``mathdial`` – MathDial as published (JSONL or CSV), see ``edulora.data.importers.mathdial``.
* ``bridge`` – Bridge as published (a JSON array), see ``edulora.data.importers.bridge``.
* ``transcripts`` – a platform's per-message export (CSV or JSON lines: conversation id, speaker,
  text, time or turn), one ``Dialogue`` per conversation, see ``edulora.data.importers.transcripts``.

Every JSON format may be stored as JSONL (one record per line) or as one JSON array. Both
are streamed (``edulora.data.jsonscan``), so a file larger than memory is never held whole.
Every reader yields ``(line, Record | Problem)`` where ``line`` is the line the record starts
on, so that every message can say ``FILE:LINE``.

The teacher's key travels in every format as ``metadata.answer`` / ``metadata.solution``; in a
CSV file as the columns ``answer`` and ``solution`` (or any columns mapped to them). Importers
may leave a well-formed item out on purpose (a Bridge item without a mistake); such items are
``Skipped``: collected in the ``skipped`` list a caller passes, or else logged as a warning.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from ..errors import EduloraError
from ..namevalue import split_name_value
from .csvrows import iter_csv_rows
from .importers import iter_bridge, iter_mathdial
from .importers.common import ImportItem
from .importers.mathdial import REQUIRED as MATHDIAL_FIELDS
from .importers.transcripts import (
    META_FIELDS,
    SPEAKER_FIELDS,
    TRANSCRIPT_FIELDS,
    TranscriptOptions,
    iter_transcripts,
    looks_like_transcript,
)
from .io import Problem, Skipped, ValidationResult, collect_items, convert_items, count_items
from .jsonscan import encoding_problem, iter_json_array, iter_json_objects, read_head
from .schema import (
    MAX_FIELD_CHARS,
    Dialogue,
    Example,
    Record,
    RecordError,
    Turn,
    example_from_dict,
    metadata_from_dict,
    record_from_dict,
)

log = logging.getLogger(__name__)

FORMATS = ("edulora", "openai", "alpaca", "sharegpt", "csv", "mathdial", "bridge", "transcripts")

_FORMAT_ALIASES = {
    "edulora": "edulora", "guide": "edulora", "jsonl": "edulora",
    "openai": "openai", "chat": "openai", "messages": "openai",
    "alpaca": "alpaca",
    "sharegpt": "sharegpt",
    "csv": "csv", "tsv": "csv",
    "mathdial": "mathdial",
    "bridge": "bridge",
    "transcripts": "transcripts", "transcript": "transcripts",
}

#: Fields a CSV column can be mapped to; ``metadata.KEY`` keeps any other column as metadata.
CSV_FIELDS = ("instruction", "context", "response", "subject", "grade_level", "teaching_style", "answer", "solution")
#: ``--map`` fields of transcripts only (their speaker fields take names, not a column).
_TRANSCRIPT_ONLY = TRANSCRIPT_FIELDS + SPEAKER_FIELDS
#: ``--map``'s help, next to the fields it lists (answer and solution: the teacher's key).
COLUMN_MAP_HELP = (f"read FIELD from COLUMN. CSV: {', '.join(CSV_FIELDS)} (answer, solution: the teacher's key), "
                   f"metadata.KEY. transcripts: {', '.join(TRANSCRIPT_FIELDS)}, the metadata fields, and speakers as "
                   "tutor=NAME|NAME, student=NAME, skip=NAME. Several at once: A=x,B=y")

#: How many records detection may look at before settling on the default format.
_DETECT_RECORDS = 20

LineItem = tuple[int, Record | Problem]


def normalize_format_name(name: str) -> str:
    """The canonical format name for ``name`` (``guide`` → ``edulora``); raises ``EduloraError``."""
    found = _FORMAT_ALIASES.get(name.strip().lower())
    if found is None:
        raise EduloraError(f"unknown format {name!r} (known: {', '.join(FORMATS)})")
    return found


# --------------------------------------------------------------------------- record converters


def _rename(messages: list[str], names: Mapping[str, str]) -> list[str]:
    """Say the user's own field names in messages produced for the guide's field names."""
    out = []
    for message in messages:
        for ours, theirs in names.items():
            message = message.replace(f"field '{ours}'", f"field '{theirs}'")
        out.append(message)
    return out


_ALPACA_NAMES = {"response": "output", "context": "input"}


def alpaca_from_dict(obj: Any) -> Example:
    """An ``Example`` from an Alpaca record; ``input`` becomes the context, ``output`` the response."""
    if not isinstance(obj, dict):
        raise RecordError([f"a record must be a JSON object, got {type(obj).__name__}"])
    guide = {"instruction": obj.get("instruction"), "response": obj.get("output"), "metadata": obj.get("metadata")}
    if obj.get("input") not in (None, ""):
        guide["context"] = obj["input"]
    try:
        example = example_from_dict(guide)
    except RecordError as err:
        raise RecordError(_rename(err.messages, _ALPACA_NAMES)) from None
    example.extra = {k: v for k, v in obj.items() if k not in ("instruction", "input", "output", "metadata")}
    return example


_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def sharegpt_from_dict(obj: Any) -> Dialogue:
    """A ``Dialogue`` from a ShareGPT record (``from``: human → user, gpt → assistant)."""
    if not isinstance(obj, dict):
        raise RecordError([f"a record must be a JSON object, got {type(obj).__name__}"])
    problems: list[str] = []
    turns: list[Turn] = []
    system = obj.get("system")
    if isinstance(system, str) and system.strip():
        turns.append(Turn("system", system))
    conversations = obj.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        problems.append("field 'conversations' must be a non-empty list")
    else:
        for i, item in enumerate(conversations):
            if not isinstance(item, dict):
                problems.append(f"conversations[{i}] must be an object")
                continue
            speaker, value = item.get("from"), item.get("value")
            role = _SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None
            if role is None:
                problems.append(f"conversations[{i}].from must be one of human, gpt, system, got {speaker!r}"[:200])
            elif not isinstance(value, str) or not value.strip():
                problems.append(f"conversations[{i}].value must be a non-empty string")
            elif len(value) > MAX_FIELD_CHARS:
                problems.append(f"conversations[{i}].value is {len(value):,} characters long (limit {MAX_FIELD_CHARS:,})")
            else:
                turns.append(Turn(role, value))
        if not problems and not any(t.role == "assistant" for t in turns):
            problems.append("conversation has no 'gpt' (tutor) turn to learn from")
    metadata = metadata_from_dict(obj.get("metadata"), problems)
    if problems:
        raise RecordError(problems)
    extra = {k: v for k, v in obj.items() if k not in ("conversations", "metadata", "system")}
    return Dialogue(turns=turns, metadata=metadata, extra=extra)


_CONVERTERS: dict[str, Callable[[Any], Record]] = {
    "edulora": record_from_dict,
    "openai": record_from_dict,  # our own JSONL mixes both kinds, so either kind is accepted
    "alpaca": alpaca_from_dict,
    "sharegpt": sharegpt_from_dict,
}


def detect_record_format(obj: Any) -> str | None:
    """The JSON format a single object looks like, or None when it says nothing."""
    if not isinstance(obj, dict):
        return None
    if "conversation" in obj and "ground_truth" in obj:
        return "mathdial"
    if "c_h" in obj and "c_r_" in obj:
        return "bridge"
    if looks_like_transcript(obj):  # one message per object: conversation id, speaker, text
        return "transcripts"
    if "conversations" in obj:
        return "sharegpt"
    if "messages" in obj:
        return "openai"
    if "output" in obj and "response" not in obj:
        return "alpaca"
    if "input" in obj and "context" not in obj and "response" not in obj:
        return "alpaca"
    if "instruction" in obj or "response" in obj:
        return "edulora"
    return None


def _csv_header(head: bytes, suffix: str) -> list[str]:
    first = head.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    return [column.strip() for column in next(csv.reader([first], delimiter="\t" if suffix == ".tsv" else ","), [])]


def detect_format(path: str | Path) -> str:
    """Guess a file's format from its extension and first records; defaults to ``edulora``.

    Only the first few records are looked at, so detection is cheap on any file size.
    """
    suffix = Path(path).suffix.lower()
    head = read_head(path)
    if encoding_problem(head):
        return "csv" if suffix in (".csv", ".tsv") else "edulora"  # the reader reports the encoding problem
    stripped = head.lstrip()
    if suffix in (".csv", ".tsv") or (suffix not in (".json", ".jsonl", ".ndjson") and stripped
                                      and stripped[:1] not in (b"[", b"{") and b"," in stripped.split(b"\n", 1)[0]):
        # a header line, also without a .csv name; MathDial is published as CSV too
        header = _csv_header(stripped, suffix)
        if set(MATHDIAL_FIELDS) <= set(header):
            return "mathdial"
        return "transcripts" if looks_like_transcript(header) else "csv"
    seen = 0
    for _, obj in iter_json_objects(path):
        if isinstance(obj, Problem):
            continue
        found = detect_record_format(obj)
        if found:
            return found
        seen += 1
        if seen >= _DETECT_RECORDS:
            break
    return "edulora"


# --------------------------------------------------------------------------- CSV


def parse_column_map(pairs: Iterable[str]) -> dict[str, str]:
    """``["instruction=question", …]`` → ``{"instruction": "question"}``; raises ``EduloraError``.

    One item may hold several, comma-separated (``conversation=chat,role=who``); a comma starts a new
    item only where an ``=`` follows, so a column or name with a comma ("Rivera, Ms") stays whole.
    Speaker fields of transcripts add up (``tutor=A`` and ``tutor=B`` give ``"A|B"``).
    """
    mapping: dict[str, str] = {}
    for pair in _map_items(pairs):
        field, column = split_name_value(pair, "--map", "FIELD=COLUMN", "instruction=question")
        known = field in CSV_FIELDS or field in _TRANSCRIPT_ONLY
        if not known and not (field.startswith("metadata.") and len(field) > len("metadata.")):
            raise EduloraError(f"--map {pair!r}: unknown field {field!r} (known: {', '.join(CSV_FIELDS)}, or "
                               f"metadata.KEY; transcripts: {', '.join(_TRANSCRIPT_ONLY)})")
        mapping[field] = f"{mapping[field]}|{column}" if field in SPEAKER_FIELDS and field in mapping else column
    return mapping


def _map_items(pairs: Iterable[str]) -> Iterator[str]:
    for pair in pairs:
        items: list[str] = []
        for piece in pair.split(","):
            if items and "=" not in piece:
                items[-1] += "," + piece
            else:
                items.append(piece)
        yield from items


def _csv_mapping(column_map: Mapping[str, str] | None) -> dict[str, str]:
    """Field → column: each field reads the column of its own name unless ``column_map`` says otherwise.

    A column mapped to one field is not also read by name for another: with ``response=answer``
    the ``answer`` column is the tutor's reply, not the teacher's key.
    """
    explicit = dict(column_map or {})
    claimed = set(explicit.values())
    mapping = {f: f for f in CSV_FIELDS if f in ("instruction", "response") or f not in claimed}
    mapping.update(explicit)
    return mapping


def iter_csv_records(path: str | Path, column_map: Mapping[str, str] | None = None) -> Iterator[LineItem]:
    """Yield ``(line, Example | Problem)`` per CSV row; columns map to fields by name or ``column_map``."""
    name = str(path)
    mapping = _csv_mapping(column_map)

    def check_header(columns: list[str]) -> str | None:
        missing = [f"'{mapping[f]}'" + ("" if mapping[f] == f else f" (for {f})")
                   for f in ("instruction", "response") if mapping[f] not in columns]
        missing += [f"'{c}' (for {f})" for f, c in (column_map or {}).items()
                    if f not in ("instruction", "response") and c not in columns]
        if not missing:
            return None
        return (f"CSV header has no column {', '.join(missing)}; columns are: "
                f"{', '.join(columns) or '(none)'}; map columns with --map FIELD=COLUMN")

    def convert(row: Mapping[str, str]) -> Record:
        return example_from_dict(_csv_guide_record(row, mapping))

    yield from convert_items(name, iter_csv_rows(path, check_header), convert)


def _csv_guide_record(row: Mapping[str, str], mapping: Mapping[str, str]) -> dict[str, Any]:
    """The guide's record for one CSV row; empty optional cells count as absent."""
    # Columns named metadata.KEY are kept as metadata without needing a --map.
    fields = {**{c: c for c in row if c.startswith("metadata.") and c not in mapping}, **mapping}
    guide: dict[str, Any] = {"instruction": row.get(fields["instruction"]), "response": row.get(fields["response"])}
    context = row.get(fields.get("context", ""))
    if context and context.strip():
        guide["context"] = context
    metadata: dict[str, Any] = {}
    for field, column in fields.items():
        value = row.get(column)
        if value is None or not value.strip():
            continue
        if field in META_FIELDS:
            metadata[field] = value
        elif field.startswith("metadata."):
            metadata[field[len("metadata."):]] = value
    if metadata:
        guide["metadata"] = metadata
    return guide


# --------------------------------------------------------------------------- public entry points


def _read(path: str | Path, fmt: str, column_map: Mapping[str, str] | None, exclude_telling: bool,
          transcripts: TranscriptOptions | None) -> Iterator[ImportItem]:
    if fmt == "transcripts":
        return iter_transcripts(path, column_map, transcripts)
    if fmt == "csv":
        return iter_csv_records(path, column_map)
    if fmt == "mathdial":
        return iter_mathdial(path, exclude_telling)
    if fmt == "bridge":
        return iter_bridge(path)
    return convert_items(str(path), iter_json_objects(path), _CONVERTERS[fmt])


def iter_format_records(
    path: str | Path, format: str | None = None, column_map: Mapping[str, str] | None = None, *,
    exclude_telling: bool = False, skipped: list[Skipped] | None = None, transcripts: TranscriptOptions | None = None,
) -> Iterator[LineItem]:
    """Yield ``(line, Record | Problem)`` for a file in any supported format (auto-detected when ``format`` is None).

    ``column_map`` applies to CSV input and transcripts, ``exclude_telling`` to MathDial, ``transcripts``
    (speakers, a metadata side file, scrubbing) to transcripts (see the importers).
    Items an importer leaves out on purpose go to ``skipped`` when given, else into one warning.
    """
    fmt = normalize_format_name(format) if format else detect_format(path)
    if column_map and fmt not in ("csv", "transcripts"):
        raise EduloraError(f"--map applies to CSV input only, and transcripts ({path} is read as {fmt})")
    if fmt == "csv" and column_map and set(column_map) & set(_TRANSCRIPT_ONLY):
        raise EduloraError(f"--map {', '.join(sorted(set(column_map) & set(_TRANSCRIPT_ONLY)))}: transcript fields; "
                           f"read {path} with --from transcripts")
    if exclude_telling and fmt != "mathdial":
        raise EduloraError(f"exclude_telling applies to MathDial input only ({path} is read as {fmt})")
    if transcripts is not None and fmt != "transcripts":
        raise EduloraError(f"--metadata and --no-scrub apply to transcripts only ({path} is read as {fmt}; "
                           "add --from transcripts)")
    left_out: list[Skipped] = [] if skipped is None else skipped
    count = len(left_out)
    for line, item in _read(path, fmt, column_map, exclude_telling, transcripts):
        if isinstance(item, Skipped):
            left_out.append(item)
        else:
            yield line, item
    if skipped is None and len(left_out) > count:
        log.warning("%s: left out %d item(s) on purpose, e.g. %s", path, len(left_out) - count, left_out[count])


def validate_any(
    path: str | Path, format: str | None = None, column_map: Mapping[str, str] | None = None, *,
    exclude_telling: bool = False, skipped: list[Skipped] | None = None,
) -> ValidationResult:
    """Check every record of a file in any supported format; streams, so memory stays flat."""
    items = iter_format_records(path, format, column_map, exclude_telling=exclude_telling, skipped=skipped)
    return count_items(path, items, "file holds no records")


def load_records_with_lines(
    path: str | Path, format: str | None = None, column_map: Mapping[str, str] | None = None,
    max_problems_shown: int = 20, *, exclude_telling: bool = False, skipped: list[Skipped] | None = None,
) -> tuple[list[Record], list[int]]:
    """All records and their line numbers, or ``EduloraError`` listing the file's problems."""
    items = iter_format_records(path, format, column_map, exclude_telling=exclude_telling, skipped=skipped)
    records, lines, problems = collect_items(path, items, "file holds no records")
    if problems:
        raise EduloraError(problems_message(problems, str(path), max_problems_shown))
    return records, lines


def load_records(
    path: str | Path, format: str | None = None, column_map: Mapping[str, str] | None = None, *,
    exclude_telling: bool = False, skipped: list[Skipped] | None = None,
) -> list[Record]:
    """All records of a file in any supported format, or ``EduloraError`` listing its problems.

    ``load_records("mathdial.jsonl", "mathdial", exclude_telling=True)`` reads a published dataset.
    """
    return load_records_with_lines(path, format, column_map, exclude_telling=exclude_telling, skipped=skipped)[0]


def problems_message(problems: list[Problem], path: str, max_shown: int = 20) -> str:
    shown = "\n".join(str(p) for p in problems[:max_shown])
    more = f"\n… and {len(problems) - max_shown} more" if len(problems) > max_shown else ""
    return f"{shown}{more}\n{len(problems)} problem(s) in {path}; run 'edulora data validate {path}'"


def write_record_line(handle: IO[str], record: Record) -> None:
    handle.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when two paths name the same file (also through links), even if ``b`` does not exist yet."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        # realpath, not Path.resolve: it does not raise on a symbolic link loop (reading the file says so).
        return os.path.realpath(a) == os.path.realpath(b)


__all__ = [
    "COLUMN_MAP_HELP", "CSV_FIELDS", "FORMATS", "Skipped", "alpaca_from_dict", "detect_format", "detect_record_format",
    "iter_csv_records", "iter_format_records", "iter_json_array", "iter_json_objects", "load_records",
    "load_records_with_lines", "normalize_format_name", "parse_column_map", "problems_message", "same_file",
    "sharegpt_from_dict", "validate_any", "write_record_line",
]
