"""Every config key with its type or choices, default and doc, read from the models in ``config.py``.

``edulora train --help`` shows ``config_help()``; docs/config.md is ``config_reference()``, written by
``python -m edulora.configref docs/config.md`` and checked against the models by tests/test_config.py, so
neither can drift from the code.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from .config import MOVED, RunConfig, value_range


@dataclass(frozen=True)
class KeyDoc:
    key: str
    kind: str
    default: str
    doc: str


def _kind(annotation: Any, metadata: list[Any]) -> str:
    if get_origin(annotation) is Literal:
        return " | ".join(str(a) for a in get_args(annotation))
    names = {bool: "true/false", int: "integer", float: "number", str: "text"}
    kind = "list of text" if get_origin(annotation) is list else names.get(annotation, str(annotation))
    interval = value_range(metadata)
    if interval.endswith("inf)"):  # bounded below only: say so plainly
        return f"{kind} {'≥' if interval[0] == '[' else '>'} {interval[1:].split(',')[0]}"
    return f"{kind} in {interval}" if interval else kind


def _default(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return '""' if value == "" else str(value)


def config_keys(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[KeyDoc]:
    """One entry per key, in the order of the models (sub-sections after their section's own keys)."""
    out: list[KeyDoc] = []
    nested = []
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            nested.append((name, info.annotation))
            continue
        doc = re.sub(r"\s+", " ", info.description or "").strip()
        out.append(KeyDoc(prefix + name, _kind(info.annotation, info.metadata), _default(info.get_default(
            call_default_factory=True)), doc))
    for name, sub in nested:
        out += config_keys(sub, f"{prefix}{name}.")
    return out


def _first_sentence(doc: str, width: int = 150) -> str:
    first = re.split(r"(?<!e\.g\.)(?<!i\.e\.)(?<=\.)\s+(?=[A-Z(`])", doc.replace("``", ""), maxsplit=1)[0]
    return first if len(first) <= width else first[:width - 1].rsplit(" ", 1)[0] + " …"


def config_help() -> str:
    """Every key for ``edulora train --help``: one line each (click keeps ``\\b`` paragraphs as written)."""
    lines = ["\b", "Config keys (YAML sections, or --set KEY=VALUE; full docs: docs/config.md):"]
    for item in config_keys():
        lines.append(f"  {item.key} = {item.default}  [{item.kind}]  {_first_sentence(item.doc)}")
    return "\n".join(lines)


def config_reference() -> str:
    """docs/config.md: a table per section, and the old names still read."""
    out = ["# Config reference", "",
           "<!-- Generated from src/edulora/config.py by `python -m edulora.configref docs/config.md`; "
           "tests/test_config.py fails when it is out of date. -->", "",
           "A run's settings: a YAML file (see `configs/`) with these sections, each key overridable with "
           "`edulora train CONFIG --set KEY=VALUE`. A misspelt key, a value outside the choices or the range "
           "is refused in one line naming the file and line (or `--set`), the key and what is allowed.", ""]
    section = None
    for item in config_keys():
        here = item.key.rpartition(".")[0] or "(top level)"
        if here != section:
            section = here
            out += ["", f"## `{section}`", "", "| key | type / choices | default | what it does |", "|---|---|---|---|"]
        doc = item.doc.replace("``", "`").replace("|", "\\|")
        out.append(f"| `{item.key.rpartition('.')[2]}` | {item.kind.replace('|', 'or')} | `{item.default}` | {doc} |")
    out += ["", "## Old names", "",
            "Keys that moved into a sub-section of `training` are still read, with one line on stderr naming the "
            "new key; runs saved before the move load unchanged.", "", "| old key | new key |", "|---|---|"]
    out += [f"| `training.{old}` | `training.{section}.{new}` |" for old, (section, new) in MOVED.items()]
    return "\n".join(out).replace("\n\n\n", "\n\n") + "\n"


if __name__ == "__main__":  # python -m edulora.configref docs/config.md
    from .data.io import atomic_write_text

    if len(sys.argv) > 1:
        atomic_write_text(sys.argv[1], config_reference())
    else:
        print(config_reference(), end="")
