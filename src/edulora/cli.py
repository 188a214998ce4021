"""Command-line interface: a thin layer over the Python API.

User mistakes arrive here as ``EduloraError`` and leave as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__, cli_data
from .errors import EduloraError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edulora", description="LoRA fine-tuning for educational AI tutors.")
    parser.add_argument("--version", action="version", version=f"edulora {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    data = commands.add_parser("data", help="check, convert and inspect datasets")
    data_commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    cli_data.add_commands(data_commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EduloraError as err:
        print(f"edulora: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edulora: interrupted", file=sys.stderr)
        return 130
