"""``edulora serve``, ``edulora chat`` and ``edulora feedback export``.

Registered on the main CLI with ``cli_serve.add_commands(commands)``; ``python -m
edulora.cli_serve`` runs the same commands on their own.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from .errors import EduloraError


def default_feedback_db() -> Path:
    from .modeling import cache_dir

    return cache_dir() / "feedback.sqlite3"


def _model_options(p: argparse.ArgumentParser, adapter_help: str) -> None:
    p.add_argument("--adapter", dest="adapters", action="append", default=[], metavar="NAME=RUN", help=adapter_help)
    p.add_argument("--base", help="base model (default: the one the adapters were trained on)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="weight precision (default: auto: fp32 on a CPU, bf16/fp16 on a GPU)")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading .bin (pickle) adapter weights")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``serve``, ``chat`` and ``feedback`` on the top-level sub-parsers."""
    p = subparsers.add_parser("serve", help="serve tutors: OpenAI-compatible API + teacher page",
                              description="One base model in memory with every adapter beside it; "
                                          "'model' in a request picks the adapter, \"auto\" routes by subject.")
    _model_options(p, "adapter to serve, as NAME=RUN_DIR (repeatable; the name defaults to its subject)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    p.add_argument("--api-key", default=os.environ.get("EDULORA_API_KEY"),
                   help="require 'Authorization: Bearer KEY' (default: $EDULORA_API_KEY); needed off loopback")
    p.add_argument("--feedback-db", default=None, metavar="PATH",
                   help=f"SQLite file for teachers' ratings (default: {default_feedback_db()})")
    p.add_argument("--no-feedback", action="store_true", help="do not store feedback")
    p.add_argument("--max-batch", type=int, default=8, help="requests decoded together (default: 8)")
    p.add_argument("--max-queue", type=int, default=64, help="waiting requests before 429 (default: 64)")
    p.add_argument("--max-tokens", type=int, default=256, help="reply length when a request sets none")
    p.add_argument("--route-threshold", type=float, default=0.2,
                   help="similarity under which 'auto' uses the fallback (default: 0.2)")
    p.add_argument("--fallback-adapter", help="adapter for questions no adapter fits (default: the base model)")
    p.set_defaults(func=cmd_serve)

    p = subparsers.add_parser("chat", help="chat with a tutor in the terminal")
    _model_options(p, "adapter to chat with, as RUN_DIR or NAME=RUN_DIR (repeatable; switch with /adapter)")
    p.add_argument("--max-tokens", type=int, default=256, help="longest reply in tokens (default: 256)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 is deterministic (default)")
    p.set_defaults(func=cmd_chat)

    p = subparsers.add_parser("feedback", help="teachers' feedback collected by 'edulora serve'")
    commands = p.add_subparsers(dest="feedback_command", metavar="SUBCOMMAND", required=True)
    e = commands.add_parser("export", help="write SFT records (and preference pairs) from rated/corrected replies")
    e.add_argument("out", metavar="OUT.jsonl", help="SFT records in edulora's data schema")
    e.add_argument("--db", default=None, help=f"feedback database (default: {default_feedback_db()})")
    e.add_argument("--pairs", metavar="PAIRS.jsonl", help="also write preference pairs (prompt, chosen, rejected)")
    e.set_defaults(func=cmd_feedback_export)


def _load(args: argparse.Namespace, **options):
    from .serving.engine import load_engine, parse_adapter_arg

    return load_engine([parse_adapter_arg(a) for a in args.adapters], base=args.base, precision=args.precision,
                       allow_pickle=args.allow_pickle, **options)


def cmd_serve(args: argparse.Namespace) -> int:
    from .serving.api import App, is_loopback, make_server
    from .serving.feedback import FeedbackStore
    from .serving.router import Router

    if not is_loopback(args.host) and not args.api_key:  # checked before the slow model load
        raise EduloraError(f"serving on {args.host} exposes the tutor to the network: set --api-key "
                           "(or EDULORA_API_KEY), or bind to 127.0.0.1")
    for name in ("max_batch", "max_queue", "max_tokens"):
        if getattr(args, name) < 1:
            raise EduloraError(f"--{name.replace('_', '-')} must be at least 1")
    engine = _load(args, max_batch=args.max_batch, max_queue=args.max_queue, default_max_tokens=args.max_tokens)
    if args.fallback_adapter and args.fallback_adapter not in engine.adapters:
        raise EduloraError(f"--fallback-adapter {args.fallback_adapter!r} is not one of the served adapters")
    router = Router(list(engine.adapters.values()), args.route_threshold, args.fallback_adapter)
    router.prepare()
    feedback = None if args.no_feedback else FeedbackStore(args.feedback_db or default_feedback_db())
    server = make_server(App(engine, router, feedback, args.api_key), args.host, args.port)
    engine.start()

    def stop(signum, frame):  # shutdown() waits for serve_forever, so it must run off this thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    names = ", ".join(engine.adapters) or "none"
    print(f"Serving {engine.base_id} with adapters: {names} (auto routing: {router.method})", flush=True)
    if feedback is not None:
        print(f"Feedback database: {feedback.path}", flush=True)
    print(f"Teacher page: {server.url}/   API: {server.url}/v1", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        engine.stop()
        if feedback is not None:
            feedback.close()
    print("Stopped.", flush=True)
    return 0


CHAT_HELP = "Commands: /adapter NAME (switch tutor), /adapters, /reset (forget the conversation), /quit"


def cmd_chat(args: argparse.Namespace) -> int:
    from .generation import Sampling
    from .serving.engine import ContextTooLong

    engine = _load(args, max_batch=1, max_queue=2, default_max_tokens=args.max_tokens).start()
    names = list(engine.adapters)
    current: str | None = names[0] if names else None
    history: list[dict[str, str]] = []

    def label(target: str | None) -> str:
        if target is None:
            return engine.base_id
        meta = engine.adapters[target].metadata
        return f"{target} ({', '.join(v.replace('_', ' ') for v in meta.values())})" if meta else target

    print(f"Tutor: {label(current)}. {CHAT_HELP}", flush=True)
    try:
        while True:
            try:
                line = input("you> ").strip()
            except EOFError:
                print()
                break
            if not line:
                continue
            if line.startswith("/"):
                command, _, rest = line.partition(" ")
                rest = rest.strip()
                if command in ("/quit", "/exit"):
                    break
                if command == "/reset":
                    history.clear()
                    print("(conversation cleared)", flush=True)
                elif command == "/adapters":
                    for name in [*names, "base"]:
                        print(f"  {'*' if (name == current or (name == 'base' and current is None)) else ' '} "
                              f"{label(None if name == 'base' else name)}", flush=True)
                elif command == "/adapter" and (rest in engine.adapters or rest in ("base", engine.base_id)):
                    current = None if rest in ("base", engine.base_id) else rest
                    print(f"(now talking to {label(current)})", flush=True)
                elif command == "/adapter":
                    print(f"(unknown adapter {rest!r}; known: {', '.join([*names, 'base'])})", flush=True)
                else:
                    print(f"(unknown command; {CHAT_HELP})", flush=True)
                continue
            history.append({"role": "user", "content": line})
            sampling = Sampling(temperature=args.temperature, repetition_penalty=engine.repetition_penalty)
            try:
                gen = engine.submit(history, current, sampling)
            except ContextTooLong as err:
                history.pop()
                print(f"({err}; /reset starts over)", flush=True)
                continue
            print(f"{current or engine.base_id}> ", end="", flush=True)
            parts: list[str] = []
            try:
                for delta in gen.deltas():
                    parts.append(delta)
                    print(delta, end="", flush=True)
            except KeyboardInterrupt:  # stop this reply, keep the session
                gen.cancel()
                print(" (stopped)", end="")
            print(flush=True)
            history.append({"role": "assistant", "content": "".join(parts)})
    except KeyboardInterrupt:
        print()
    finally:
        engine.stop()
    return 0


def cmd_feedback_export(args: argparse.Namespace) -> int:
    from .serving.feedback import export_feedback

    counts = export_feedback(args.db or default_feedback_db(), args.out, args.pairs)
    print(f"{counts.rows} feedback rows -> {counts.sft} SFT records in {args.out}"
          + (f", {counts.pairs} preference pairs in {args.pairs}" if args.pairs else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """These commands without the rest of the CLI (``python -m edulora.cli_serve``)."""
    parser = argparse.ArgumentParser(prog="edulora")
    add_commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EduloraError as err:
        print(f"edulora: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
