"""Minimal Typer app for the serve branch's tests only: the CLI branch owns the real one (all commands)."""

from __future__ import annotations

import sys

import click
import typer

from ..errors import EduloraError
from . import serve

app = typer.Typer(name="edulora", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
serve.register(app)


def main(argv: list[str] | None = None) -> int:
    try:
        app(args=argv, prog_name="edulora", standalone_mode=False)
    except EduloraError as err:
        print(f"edulora: error: {err}", file=sys.stderr)
        return 2
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as err:
        err.show()
        return err.exit_code
    return 0
