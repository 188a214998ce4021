"""Minimal Typer app for the serve branch's tests only: the CLI branch owns the real one (all commands)."""

from __future__ import annotations

import sys

import typer

from ..errors import EduloraError
from . import serve

app = typer.Typer(name="edulora", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
serve.register(app)


def main(argv: list[str] | None = None) -> int:
    try:
        app(args=argv, prog_name="edulora")  # Typer reports usage errors itself (exit 2)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 0
    except EduloraError as err:
        print(f"edulora: error: {err}", file=sys.stderr)
        return 2
    return 0
