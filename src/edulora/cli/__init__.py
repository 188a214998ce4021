"""The ``edulora`` command line: a thin Typer skin over the Python API (``import edulora``): parse, call, print.
``main`` maps errors once for all: a user mistake (``EduloraError``, a usage error, a full disk or read-only
folder) is one line on stderr and exit 2, Ctrl-C is 130; anything else is a bug in edulora: a traceback."""

from __future__ import annotations

import contextlib
import errno
import sys

import typer

from .. import __version__
from ..data.pipelines import DataProblems
from ..errors import OUT_OF_SPACE, EduloraError
from . import data, evaluate, export, judges, serve, train

#: Spellings that changed (issue 42), refused with the new one rather than read another way.
RENAMED = {("eval", "--base-model"): "--base", ("eval", "--base"): "--with-base (--base MODEL: the base model)",
           ("export", "--gguf"): "--out", ("chat", "--max-tokens"): "--max-new-tokens", ("serve", "--max-tokens"): "--max-new-tokens"}
app = typer.Typer(name="edulora", add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]}, epilog="What a command works on comes "
                  "first (RUN, IN, CONFIG…), what it writes is an option (--out, --html, --json); --base is a model: docs/cli.md")


def _version(value: bool) -> None:
    if value:
        print(f"edulora {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="show it")) -> None:
    """LoRA fine-tuning for educational AI tutors."""


for _group, _name in ((train, None), (evaluate, None), (export, None), (serve, None), (data, "data"), (judges, None)):
    app.add_typer(_group.app, name=_name)


def main(argv: list[str] | None = None) -> int:
    """Run one command line (default: ``sys.argv[1:]``); returns the exit code."""
    command, args = typer.main.get_command(app), list(sys.argv[1:] if argv is None else argv)
    try:
        with command.make_context("edulora", args) as ctx:
            return int(command.invoke(ctx) or 0)
    except typer.Exit as done:  # --help, --version
        return done.exit_code
    except typer.TyperException as err:  # click's usage errors: unknown option, missing argument, out of range
        ctx = getattr(err, "ctx", None)
        message, hint = err.format_message(), f" (see '{ctx.command_path} --help')" if ctx else ""
        if new := RENAMED.get((next(iter(args), None), getattr(err, "option_name", None))):
            message = f"{err.option_name} is now {new}"
        elif "extra argument" in message and ctx and any("--out" in p.opts for p in ctx.command.params):
            message += "; what a command writes is an option now: --out FILE"
        return _fail(f"edulora: error: {message}{hint}")
    except EduloraError as err:  # DataProblems: a FILE:LINE line per bad record; NothingToDo: a notice, exit 0
        return _fail(str(err) if isinstance(err, DataProblems) else f"edulora: {err.label}: {err}", err.exit_code)
    except KeyboardInterrupt:
        return _fail("edulora: interrupted", 130)
    except OSError as err:
        # A full disk or a read-only folder is the user's to fix; anything else is our bug: traceback.
        if err.errno not in OUT_OF_SPACE | {errno.EROFS, errno.EACCES}:
            raise
        where = f"{err.filename}: " if err.filename else ""
        return _fail(f"edulora: error: {where}{err.strerror or err}")


def _fail(message: str, code: int = 2) -> int:
    """End any progress bar cut short (so the message starts its own line), print (exit 0: stdout), return ``code``."""
    for bar in list(getattr(getattr(sys.modules.get("tqdm"), "tqdm", None), "_instances", None) or ()):
        with contextlib.suppress(Exception):  # a broken bar must not hide the real error
            bar.close()
    print(message, file=sys.stderr if code else sys.stdout)
    return code
