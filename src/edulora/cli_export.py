"""``edulora merge`` and ``edulora export``: the CLI side of :mod:`edulora.export`."""

from __future__ import annotations

import argparse

from .export import DEFAULT_TOLERANCE


def add_commands(subparsers) -> None:
    """Register ``merge`` and ``export`` on the top-level sub-parsers."""
    p = subparsers.add_parser("merge", help="merge a run's adapter into its base (fp32) as a plain HF model folder")
    p.add_argument("run", metavar="RUN", help="run directory or adapter directory")
    p.add_argument("out", metavar="OUT", help="folder to write (safetensors, tokenizer, chat template)")
    _common(p)
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    p.set_defaults(func=cmd_merge)

    p = subparsers.add_parser("export", help="write a run as one GGUF file (+ Ollama Modelfile) for llama.cpp")
    p.add_argument("run", metavar="RUN", help="run directory, adapter directory or merged model folder")
    p.add_argument("--gguf", required=True, metavar="OUT.gguf", help="GGUF file to write")
    p.add_argument("--dtype", choices=["f16", "f32"], default="f16", help="weight type in the file (default: f16)")
    p.add_argument("--tokenizer-pre", metavar="NAME", help="llama.cpp pre-tokenizer name (default: detected)")
    p.add_argument("--no-modelfile", action="store_true", help="do not write an Ollama Modelfile beside the GGUF")
    p.add_argument("--overwrite", action="store_true", help="replace an existing GGUF file")
    _common(p)
    p.set_defaults(func=cmd_export)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", help="base model (default: the one the adapter names)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"largest accepted |merged - unmerged| logit difference (default: {DEFAULT_TOLERANCE:g})")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading .bin (pickle) adapter weights")


def cmd_merge(args: argparse.Namespace) -> int:
    from .export import merge_run

    print(merge_run(args.run, args.out, args.base, args.overwrite, args.tolerance, args.allow_pickle))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_gguf

    out = export_gguf(args.run, args.gguf, args.dtype, args.base, args.tolerance, args.allow_pickle,
                      args.tokenizer_pre, args.overwrite, modelfile=not args.no_modelfile)
    print(out)
    return 0
