"""``edulora data …`` commands: thin wrappers over ``edulora.data``."""

from __future__ import annotations

import argparse
import sys

from .data.io import validate_file


def add_commands(data: argparse._SubParsersAction) -> None:
    p = data.add_parser("validate", help="check a dataset; every problem is printed as FILE:LINE: message")
    p.add_argument("file")
    p.set_defaults(func=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    result = validate_file(args.file)
    for problem in result.problems:
        print(problem, file=sys.stderr)
    if result.ok:
        print(f"{args.file}: {result.records} records, no problems")
        return 0
    print(f"{args.file}: {result.records} valid records, {len(result.problems)} problem(s)", file=sys.stderr)
    return 2
