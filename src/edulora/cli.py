"""Command-line interface: a thin layer over the Python API.

User mistakes arrive here as ``EduloraError`` and leave as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import sys

from . import __version__, cli_data, cli_eval, cli_export, cli_serve
from .errors import OUT_OF_SPACE, EduloraError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edulora", description="LoRA fine-tuning for educational AI tutors.")
    parser.add_argument("--version", action="version", version=f"edulora {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    data = commands.add_parser("data", help="check, convert and inspect datasets")
    data_commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    cli_data.add_commands(data_commands)
    cli_eval.add_commands(commands)

    p = commands.add_parser("demo", help="train a tutor on the packaged model and sample data, show before/after")
    p.add_argument("--output-dir", default="runs", help="where the run directory is created (default: runs)")
    p.set_defaults(func=cmd_demo)

    p = commands.add_parser("train", help="train a LoRA adapter from a YAML config")
    p.add_argument("config", nargs="?", help="YAML config (see configs/); optional with --resume")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set lora.r=8 (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty run directory")
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("generate", help="print a tutor reply to a question")
    p.add_argument("question")
    p.add_argument("--adapter", metavar="RUN_OR_DIR", help="run directory or adapter directory (default: base model)")
    p.add_argument("--base", help="base model (default: the adapter's, or the packaged SmolLM2)")
    p.add_argument("--context", help="extra context, e.g. what the student tried")
    p.add_argument("--subject")
    p.add_argument("--grade-level")
    p.add_argument("--teaching-style")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--allow-pickle", action="store_true", help="allow loading .bin (pickle) adapter weights")
    p.set_defaults(func=cmd_generate)

    cli_export.add_commands(commands)
    cli_serve.add_commands(commands)
    return parser


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(args.output_dir)
    print(result.run_dir)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .training import resume, train

    if args.resume:
        if args.config or args.overrides:
            raise EduloraError("--resume continues a run with its saved config; drop CONFIG and --set")
        result = resume(args.resume)
    else:
        if not args.config and not args.overrides:
            raise EduloraError("give a config file (e.g. configs/default.yaml) or --set values")
        result = train(load_config(args.config, args.overrides), overwrite=args.overwrite)
    s = result.summary
    print(f"eval loss {s.eval_loss_before:.4f} -> {s.eval_loss_after:.4f}; "
          f"{s.train_tokens_per_s:.0f} tokens/s; {s.wall_s:.0f} s")
    print(result.run_dir)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .generation import Sampling
    from .tutor import Tutor

    tutor = Tutor.load(args.adapter, base=args.base, allow_pickle=args.allow_pickle)
    reply = tutor.ask(args.question, context=args.context, subject=args.subject, grade_level=args.grade_level,
                      teaching_style=args.teaching_style,
                      sampling=Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature))
    print(reply.text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EduloraError as err:
        _close_progress_bars()
        print(f"edulora: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _close_progress_bars()
        print("edulora: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        # A full disk or a read-only folder is the user's to fix; anything else is our bug: traceback.
        if err.errno not in OUT_OF_SPACE | {errno.EROFS, errno.EACCES}:
            raise
        _close_progress_bars()
        where = f"{err.filename}: " if err.filename else ""
        print(f"edulora: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2


def _close_progress_bars() -> None:
    """End any progress bar an error cut short, so the message starts on its own line."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", None) or ()):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a broken bar must not hide the real error
            pass
