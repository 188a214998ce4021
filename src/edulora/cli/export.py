"""``edulora merge`` and ``edulora export``: ship a tutor without PEFT through ``edulora.export``."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from .options import AllowPickle, Base, Overwrite

Run = Annotated[str, typer.Argument(metavar="RUN", help="run directory or adapter directory")]
# None leaves edulora.export's default, so the CLI need not import torch before a command runs.
Tolerance = Annotated[float | None, typer.Option(
    help="largest accepted |merged - unmerged| logit difference (default: 1e-3)", show_default=False)]


def register(app: typer.Typer) -> None:
    app.command()(merge)
    app.command()(export)


def _tolerance(value: float | None) -> dict[str, float]:
    return {} if value is None else {"tolerance": value}


def merge(run: Run, out: Annotated[str, typer.Argument(metavar="OUT", help="folder to write")], base: Base = None,
          tolerance: Tolerance = None, allow_pickle: AllowPickle = False, overwrite: Overwrite = False) -> None:
    """Merge a run's adapter into its base (fp32) as a plain HF model folder."""
    from ..export import merge_run

    print(merge_run(run, out, base, overwrite, allow_pickle=allow_pickle, **_tolerance(tolerance)))


def export(
    run: Run,
    gguf: Annotated[str, typer.Option(metavar="OUT.gguf", help="GGUF file to write")],
    dtype: Annotated[Literal["f16", "f32"], typer.Option(help="weight type in the file")] = "f16",
    tokenizer_pre: Annotated[str | None, typer.Option(metavar="NAME", help="llama.cpp pre-tokenizer name")] = None,
    no_modelfile: Annotated[bool, typer.Option("--no-modelfile", help="no Ollama Modelfile beside the GGUF")] = False,
    overwrite: Overwrite = False, base: Base = None, tolerance: Tolerance = None, allow_pickle: AllowPickle = False,
) -> None:
    """Write a run as one GGUF file (+ Ollama Modelfile) for llama.cpp."""
    from ..export import export_gguf

    print(export_gguf(run, gguf, dtype, base, allow_pickle=allow_pickle, pre_tokenizer=tokenizer_pre,
                      overwrite=overwrite, modelfile=not no_modelfile, **_tolerance(tolerance)))
