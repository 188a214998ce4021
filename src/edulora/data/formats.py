"""Reading datasets in the formats teachers and other tools export, with format detection.

Supported formats (names accepted by ``--from``):

* ``edulora`` – the guide's records ``{"instruction", "context", "response", "metadata"}``;
  OpenAI-style ``{"messages": [...]}`` dialogues may be mixed in, as in our own JSONL.
* ``openai`` – chat records ``{"messages": [{"role", "content"}…], "metadata": {…}}``.
* ``alpaca`` – ``{"instruction", "input", "output"}``.
* ``sharegpt`` – ``{"conversations": [{"from": "human"|"gpt"|"system", "value"}…]}``.
* ``csv`` – a CSV (or ``.tsv``) file with a header row; columns are mapped to fields.

Every JSON format may be stored as JSONL (one record per line) or as one JSON array. Both
are streamed: a JSON array is cut into elements by a small scanner, so a file larger than
memory is never held whole. Every reader yields ``(line, Record | Problem)`` where ``line``
is the line the record starts on, so that every message can say ``FILE:LINE``.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from ..errors import EduloraError
from .io import MAX_LINE_BYTES, Problem, ValidationResult, iter_json_lines, open_data_file
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

FORMATS = ("edulora", "openai", "alpaca", "sharegpt", "csv")

_FORMAT_ALIASES = {
    "edulora": "edulora", "guide": "edulora", "jsonl": "edulora",
    "openai": "openai", "chat": "openai", "messages": "openai",
    "alpaca": "alpaca",
    "sharegpt": "sharegpt",
    "csv": "csv", "tsv": "csv",
}

#: Fields a CSV column can be mapped to; ``metadata.KEY`` keeps any other column as metadata.
CSV_FIELDS = ("instruction", "context", "response", "subject", "grade_level", "teaching_style")
_META_FIELDS = ("subject", "grade_level", "teaching_style")

#: How many records detection may look at before settling on the default format.
_DETECT_RECORDS = 20
#: Bytes read per step when streaming a JSON array.
_CHUNK_BYTES = 1 << 20

LineItem = tuple[int, Record | Problem]


def normalize_format_name(name: str) -> str:
    """The canonical format name for ``name`` (``guide`` → ``edulora``); raises ``EduloraError``."""
    found = _FORMAT_ALIASES.get(name.strip().lower())
    if found is None:
        raise EduloraError(f"unknown format {name!r} (known: {', '.join(FORMATS)})")
    return found


# --------------------------------------------------------------------------- files and bytes


def _encoding_problem(head: bytes) -> str | None:
    """A message when the first bytes show an encoding other than UTF-8, else None.

    UTF-16/32 files decode as garbage line by line, so they are refused once, up front,
    with a message that tells the user what to do.
    """
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                      (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
        if head.startswith(bom):
            return f"file is {name} encoded; save it as UTF-8"
    if b"\x00" in head[:4096]:
        return "file contains NUL bytes (UTF-16 or binary?); save it as UTF-8 text"
    return None


def _sniff(path: str | Path) -> bytes:
    with open_data_file(path) as handle:
        head = handle.read(4096)
    return head[3:] if head.startswith(codecs.BOM_UTF8) else head


def _container(head: bytes) -> str:
    """``array`` when the file is one JSON array, ``lines`` otherwise."""
    stripped = head.lstrip()
    return "array" if stripped.startswith(b"[") else "lines"


# --------------------------------------------------------------------------- JSON arrays


_OUTSIDE = re.compile(r'["{}\[\]]')
_INSIDE = re.compile(r'["\\]')
_SCALAR_END = re.compile(r"[,\]\s]")


class _ArrayScanner:
    """Cuts a streamed JSON array into element texts, tracking the line each starts on.

    Only brackets outside strings are counted, so the scanner never needs a JSON parser
    of its own; each element is then parsed by ``json.loads`` on its own.
    """

    def __init__(self, path: str | Path):
        self.name = str(path)
        self.handle = open_data_file(path)
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf = ""
        self.line = 1  # line number of buf[0]
        self.pos = 0
        self.eof = False
        self.first = True
        self.keep = 0  # buf[keep:] must survive a refill (the element being read)
        # Lines are counted forward from a mark, so finding an element's line stays O(its length).
        self.mark_pos = 0
        self.mark_line = 1

    def close(self) -> None:
        self.handle.close()

    def line_at(self, index: int) -> int:
        if index < self.mark_pos:
            self.mark_pos, self.mark_line = 0, self.line
        self.mark_line += self.buf.count("\n", self.mark_pos, index)
        self.mark_pos = index
        return self.mark_line

    def refill(self) -> bool:
        """Read more text; False at the end of the file."""
        if self.eof:
            return False
        raw = self.handle.read(_CHUNK_BYTES)
        if self.first and raw.startswith(codecs.BOM_UTF8):
            raw = raw[3:]
        self.first = False
        try:
            text = self.decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as err:
            bad = self.line_at(len(self.buf)) + raw[: max(err.start, 0)].count(b"\n")
            raise _ArrayAbort(Problem(self.name, bad, "not valid UTF-8; save the file as UTF-8")) from None
        if not raw:
            self.eof = True
        keep = min(self.keep, self.pos)
        self.line += self.buf.count("\n", 0, keep)
        self.buf = self.buf[keep:] + text
        self.pos -= keep
        self.keep -= keep
        self.mark_pos -= keep
        if self.mark_pos < 0:
            self.mark_pos, self.mark_line = 0, self.line
        return bool(raw)

    def next_char(self) -> str | None:
        """The next non-blank character (not consumed), or None at the end of the file."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos].isspace():
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            self.keep = self.pos
            if not self.refill():
                return None

    def read_element(self) -> str | None:
        """The text of the element starting at ``pos``, or None if the file ends inside it."""
        start = self.keep = self.pos
        depth, in_string, escape = 0, False, False
        first = self.buf[self.pos]
        if first in "{[":
            depth, self.pos = 1, self.pos + 1
        elif first == '"':
            in_string, self.pos = True, self.pos + 1
        while True:
            if self.pos - self.keep > MAX_LINE_BYTES:
                raise _ArrayAbort(Problem(self.name, self.line_at(self.keep),
                                          f"array element is over {MAX_LINE_BYTES:,} characters long "
                                          "(a missing bracket or quote?); stopped reading"))
            if self.pos >= len(self.buf):
                offset = self.pos - self.keep
                if not self.refill():
                    return None
                start = self.keep
                self.pos = self.keep + offset
                continue
            if escape:
                self.pos += 1
                escape = False
                continue
            if in_string:
                m = _INSIDE.search(self.buf, self.pos)
                if m is None:
                    self.pos = len(self.buf)
                elif m.group() == "\\":
                    self.pos, escape = m.end(), True
                else:
                    self.pos, in_string = m.end(), False
                    if depth == 0:
                        return self.buf[start:self.pos]
                continue
            if depth == 0:  # a number or literal ends at the next separator
                m = _SCALAR_END.search(self.buf, self.pos)
                if m is None:
                    self.pos = len(self.buf)
                    continue
                self.pos = m.start()
                return self.buf[start:self.pos]
            m = _OUTSIDE.search(self.buf, self.pos)
            if m is None:
                self.pos = len(self.buf)
                continue
            self.pos = m.end()
            char = m.group()
            if char == '"':
                in_string = True
            elif char in "{[":
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    return self.buf[start:self.pos]


def iter_json_array(path: str | Path) -> Iterator[tuple[int, Any | Problem]]:
    """Yield ``(line, element)`` for each element of a top-level JSON array, streaming.

    A broken element is reported at its own line and the elements after it are still read;
    a file that ends before the closing ']' is reported as truncated.
    """
    scanner = _ArrayScanner(path)
    name = scanner.name
    try:
        char = scanner.next_char()
        if char is None:
            yield 1, Problem(name, 1, "file holds no records")
            return
        if char != "[":
            here = scanner.line_at(scanner.pos)
            yield here, Problem(name, here, "expected a JSON array starting with '['")
            return
        scanner.pos += 1
        expect_element = True
        while True:
            char = scanner.next_char()
            here = scanner.line_at(scanner.pos) if char is not None else scanner.line_at(len(scanner.buf))
            if char is None:
                yield here, Problem(name, here, "JSON array is not closed with ']' (file truncated?)")
                return
            if char == "]":
                scanner.pos += 1
                break
            if char == ",":
                scanner.pos += 1
                if expect_element:
                    yield here, Problem(name, here, "invalid JSON: unexpected ',' in array")
                expect_element = True
                continue
            if not expect_element:
                yield here, Problem(name, here, "invalid JSON: expected ',' or ']' after array element")
            text = scanner.read_element()
            if text is None:
                yield here, Problem(name, here, "JSON array ends inside this element "
                                                "(file truncated, or a bracket or quote missing?)")
                return
            yield _parse_element(name, here, text)
            expect_element = False
        char = scanner.next_char()
        if char is not None:
            here = scanner.line_at(scanner.pos)
            yield here, Problem(name, here, "unexpected content after the end of the JSON array")
    except _ArrayAbort as abort:
        yield abort.problem.line, abort.problem
    finally:
        scanner.close()


class _ArrayAbort(Exception):
    """Reading cannot go on (bad encoding, runaway element); carries the one problem to report."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


def _parse_element(name: str, line: int, text: str) -> tuple[int, Any | Problem]:
    try:
        return line, json.loads(text)
    except json.JSONDecodeError as err:
        at = line + err.lineno - 1
        return line, Problem(name, at, f"invalid JSON: {err.msg} (column {err.colno})")
    except RecursionError:
        return line, Problem(name, line, "invalid JSON: nested too deeply")


def iter_json_objects(path: str | Path) -> Iterator[tuple[int, Any | Problem]]:
    """JSONL or JSON array, whichever the file holds; refuses non-UTF-8 encodings up front."""
    head = _sniff(path)
    problem = _encoding_problem(head)
    if problem:
        yield 1, Problem(str(path), 1, problem)
        return
    if _container(head) == "array":
        yield from iter_json_array(path)
        return
    first = True
    for line, obj in iter_json_lines(path):
        if first and isinstance(obj, Problem) and obj.message.startswith("invalid JSON") and _looks_pretty(path, line):
            obj = Problem(obj.path, obj.line, obj.message + "; records must be one per line (JSONL) or one JSON array")
        first = False
        yield line, obj


def _looks_pretty(path: str | Path, line: int) -> bool:
    """True when the failing first line is a lone '{': a pretty-printed object, not JSONL."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == line:
                return raw.strip().lstrip(codecs.BOM_UTF8) == b"{"
    return False


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


def detect_format(path: str | Path) -> str:
    """Guess a file's format from its extension and first records; defaults to ``edulora``.

    Only the first few records are looked at, so detection is cheap on any file size.
    """
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    head = _sniff(path)
    if _encoding_problem(head):
        return "edulora"  # the reader reports the encoding problem
    stripped = head.lstrip()
    if (suffix not in (".json", ".jsonl", ".ndjson") and stripped and stripped[:1] not in (b"[", b"{")
            and b"," in stripped.split(b"\n", 1)[0]):
        return "csv"  # a header line without a .csv name
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
    """``["instruction=question", …]`` → ``{"instruction": "question"}``; raises ``EduloraError``."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        field, column = field.strip(), column.strip()
        if not sep or not field or not column:
            raise EduloraError(f"--map expects FIELD=COLUMN (e.g. instruction=question), got {pair!r}")
        if field not in CSV_FIELDS and not (field.startswith("metadata.") and len(field) > len("metadata.")):
            raise EduloraError(f"--map: unknown field {field!r} (known: {', '.join(CSV_FIELDS)}, or metadata.KEY)")
        mapping[field] = column
    return mapping


def _decoded_lines(handle: IO[bytes], bad_lines: set[int]) -> Iterator[str]:
    """Decode line by line, noting (not raising on) lines that are not UTF-8."""
    for number, raw in enumerate(handle, start=1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            bad_lines.add(number)
            yield raw.decode("utf-8", errors="replace")


def iter_csv_records(path: str | Path, column_map: Mapping[str, str] | None = None) -> Iterator[LineItem]:
    """Yield ``(line, Example | Problem)`` per CSV row; columns map to fields by name or ``column_map``."""
    name = str(path)
    head = _sniff(path)
    problem = _encoding_problem(head)
    if problem:
        yield 1, Problem(name, 1, problem)
        return
    delimiter = "\t" if Path(path).suffix.lower() == ".tsv" else ","
    mapping = {f: f for f in CSV_FIELDS}
    if column_map:
        mapping.update(column_map)
    bad_lines: set[int] = set()
    with open_data_file(path) as handle:
        text_lines = _decoded_lines(handle, bad_lines)
        reader = csv.reader(text_lines, delimiter=delimiter)
        try:
            header = next(reader, None)
        except csv.Error as err:
            yield 1, Problem(name, 1, f"invalid CSV header: {err}")
            return
        if 1 in bad_lines:
            yield 1, Problem(name, 1, "not valid UTF-8; save the file as UTF-8")
            return
        if header is None or not any(h.strip() for h in header):
            yield 1, Problem(name, 1, "file holds no records (no CSV header)")
            return
        columns = {h.strip(): i for i, h in enumerate(header)}
        missing = [f"'{mapping[f]}'" + ("" if mapping[f] == f else f" (for {f})")
                   for f in ("instruction", "response") if mapping[f] not in columns]
        missing += [f"'{c}' (for {f})" for f, c in (column_map or {}).items()
                    if f not in ("instruction", "response") and c not in columns]
        if missing:
            yield 1, Problem(name, 1, f"CSV header has no column {', '.join(missing)}; columns are: "
                                      f"{', '.join(columns) or '(none)'}; map columns with --map FIELD=COLUMN")
            return
        # Columns named metadata.KEY are kept as metadata without needing a --map.
        for column in columns:
            if column.startswith("metadata.") and column not in mapping:
                mapping[column] = column
        used = {f: columns[c] for f, c in mapping.items() if c in columns}
        start = 2
        rows = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as err:
                yield reader.line_num, Problem(name, reader.line_num, f"invalid CSV: {err}; stopped reading")
                return
            end = reader.line_num
            line, start = start, end + 1
            if not row or not any(cell.strip() for cell in row):
                continue
            rows += 1
            if any(n in bad_lines for n in range(line, end + 1)):
                yield line, Problem(name, line, "not valid UTF-8; save the file as UTF-8")
                continue
            if len(row) > len(header):
                yield line, Problem(name, line, f"row has {len(row)} fields but the header has {len(header)}")
                continue
            yield from _csv_row_record(name, line, row, used)
        if rows == 0:
            yield 1, Problem(name, 1, "file holds no records (only a CSV header)")


def _csv_row_record(name: str, line: int, row: list[str], used: Mapping[str, int]) -> Iterator[LineItem]:
    def cell(field: str) -> str | None:
        index = used.get(field)
        if index is None or index >= len(row):
            return None
        return row[index]

    guide: dict[str, Any] = {"instruction": cell("instruction"), "response": cell("response")}
    context = cell("context")
    if context and context.strip():
        guide["context"] = context
    metadata: dict[str, Any] = {}
    for field in used:
        value = cell(field)
        if value is None or not value.strip():
            continue
        if field in _META_FIELDS:
            metadata[field] = value
        elif field.startswith("metadata."):
            metadata[field[len("metadata."):]] = value
    if metadata:
        guide["metadata"] = metadata
    try:
        yield line, example_from_dict(guide)
    except RecordError as err:
        for message in err.messages:
            yield line, Problem(name, line, message)


# --------------------------------------------------------------------------- public entry points


def iter_format_records(
    path: str | Path, fmt: str | None = None, column_map: Mapping[str, str] | None = None
) -> Iterator[LineItem]:
    """Yield ``(line, Record | Problem)`` for a file in any supported format (auto-detected when ``fmt`` is None)."""
    fmt = normalize_format_name(fmt) if fmt else detect_format(path)
    if column_map and fmt != "csv":
        raise EduloraError(f"--map applies to CSV input only ({path} is read as {fmt})")
    if fmt == "csv":
        yield from iter_csv_records(path, column_map)
        return
    convert = _CONVERTERS[fmt]
    name = str(path)
    for line, obj in iter_json_objects(path):
        if isinstance(obj, Problem):
            yield line, obj
            continue
        try:
            yield line, convert(obj)
        except RecordError as err:
            for message in err.messages:
                yield line, Problem(name, line, message)


def validate_any(path: str | Path, fmt: str | None = None, column_map: Mapping[str, str] | None = None) -> ValidationResult:
    """Check every record of a file in any supported format; streams, so memory stays flat."""
    problems: list[Problem] = []
    records = 0
    for _, item in iter_format_records(path, fmt, column_map):
        if isinstance(item, Problem):
            problems.append(item)
        else:
            records += 1
    if records == 0 and not problems:
        problems.append(Problem(str(path), 1, "file holds no records"))
    return ValidationResult(str(path), records, problems)


def load_records_with_lines(
    path: str | Path, fmt: str | None = None, column_map: Mapping[str, str] | None = None,
    max_problems_shown: int = 20,
) -> tuple[list[Record], list[int]]:
    """All records and their line numbers, or ``EduloraError`` listing the file's problems."""
    records: list[Record] = []
    lines: list[int] = []
    problems: list[Problem] = []
    for line, item in iter_format_records(path, fmt, column_map):
        if isinstance(item, Problem):
            problems.append(item)
        else:
            records.append(item)
            lines.append(line)
    if not records and not problems:
        problems.append(Problem(str(path), 1, "file holds no records"))
    if problems:
        raise EduloraError(problems_message(problems, str(path), max_problems_shown))
    return records, lines


def load_records(path: str | Path, fmt: str | None = None, column_map: Mapping[str, str] | None = None) -> list[Record]:
    """All records of a file in any supported format, or ``EduloraError`` listing its problems."""
    return load_records_with_lines(path, fmt, column_map)[0]


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
        return Path(a).resolve() == Path(b).resolve()


__all__ = [
    "CSV_FIELDS", "FORMATS", "alpaca_from_dict", "detect_format", "detect_record_format",
    "iter_csv_records", "iter_format_records", "iter_json_array", "iter_json_objects", "load_records",
    "load_records_with_lines", "normalize_format_name", "parse_column_map", "problems_message", "same_file",
    "sharegpt_from_dict", "validate_any", "write_record_line",
]
