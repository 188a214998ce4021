"""Streaming CSV rows with the line each starts on, for every CSV-based format.

Rows are decoded line by line, so one bad byte is reported at its own line instead of
stopping the file; a quoted cell may span lines, and the row keeps the line it starts on.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .io import Problem, open_data_file
from .jsonscan import encoding_problem, read_head

#: ``check_header(columns)`` returns a message when the header lacks what the reader needs.
HeaderCheck = Callable[[list[str]], str | None]


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


def iter_csv_rows(path: str | Path, check_header: HeaderCheck | None = None) -> Iterator[tuple[int, dict[str, str] | Problem]]:
    """Yield ``(line, {column: cell})`` per non-blank row, or a ``Problem`` in its place.

    Column names are stripped of surrounding blanks; a ``.tsv`` file is tab-separated.
    ``check_header`` sees the column names first; its message stops the file at line 1.
    """
    name = str(path)
    problem = encoding_problem(read_head(path))
    if problem:
        yield 1, Problem(name, 1, problem)
        return
    delimiter = "\t" if Path(path).suffix.lower() == ".tsv" else ","
    bad_lines: set[int] = set()
    with open_data_file(path) as handle:
        reader = csv.reader(_decoded_lines(handle, bad_lines), delimiter=delimiter)
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
        message = check_header(list(columns)) if check_header else None
        if message:
            yield 1, Problem(name, 1, message)
            return
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
            yield line, {column: row[i] for column, i in columns.items() if i < len(row)}
        if rows == 0:
            yield 1, Problem(name, 1, "file holds no records (only a CSV header)")


__all__ = ["HeaderCheck", "iter_csv_rows"]
