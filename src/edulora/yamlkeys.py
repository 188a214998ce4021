"""YAML mappings that remember where each key came from, so a config error can name the file and line.

``read_mapping`` reads a file into nested dicts and ``{("training", "lora"): "cfg.yaml:12"}``;
``parse_override`` turns ``--set a.b=value`` into the same nesting; ``merge`` lays one over another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import EduloraError
from .namevalue import split_name_value

Lines = dict[tuple[str, ...], str]


def read_mapping(path: str | Path) -> tuple[dict[str, Any], Lines]:
    """A config file's sections, and the line of each key; one-line errors for a missing or bad file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EduloraError(f"{path}: no such config file") from None
    except (UnicodeDecodeError, IsADirectoryError) as err:
        raise EduloraError(f"{path}: cannot read config ({err.__class__.__name__})") from None
    try:
        values = yaml.safe_load(text) or {}
        lines = key_lines(text, str(path))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise EduloraError(f"{path}{line}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(values, dict):
        raise EduloraError(f"{path}: a config must be a mapping of sections (model, data, lora, training, …)")
    return values, lines


def key_lines(text: str, path: str) -> Lines:
    """``("training", "lora")`` -> ``"cfg.yaml:12"`` for each key in the file, so errors can point at it."""
    lines: Lines = {}

    def walk(node: Any, prefix: tuple[str, ...]) -> None:
        for key, value in getattr(node, "value", []) if isinstance(node, yaml.MappingNode) else []:
            here = (*prefix, str(key.value))
            lines[here] = f"{path}:{key.start_mark.line + 1}"
            walk(value, here)

    walk(yaml.compose(text), ())
    return lines


def merge(into: dict[str, Any], values: dict[str, Any]) -> None:
    """Lay ``values`` over ``into``, section by section."""
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def parse_override(text: str) -> dict[str, Any]:
    """``lora.r=8`` -> ``{"lora": {"r": 8}}``; the value is read as YAML (numbers, booleans, lists)."""
    key, raw = split_name_value(text, "--set", "KEY=VALUE", "lora.r=8", empty_value=True)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def key_paths(values: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in values.items():
        out.append((*prefix, key))
        if isinstance(value, dict):
            out += key_paths(value, (*prefix, key))
    return out
