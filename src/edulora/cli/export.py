"""``edulora merge`` and ``edulora export``: ship a tutor without PEFT through ``edulora.export``."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from .options import AllowPickle, Base, Overwrite, Run

# None: edulora.export picks its default, so torch is not imported before a command runs.
Tolerance = Annotated[float | None, typer.Option(help="largest accepted |merged - unmerged| logit (default: 1e-3)")]
app = typer.Typer()


@app.command()
def merge(run: Run, out: str = typer.Option(..., metavar="DIR", help="model folder to write"), base: Base = None,
          tolerance: Tolerance = None, allow_pickle: AllowPickle = False, overwrite: Overwrite = False) -> None:
    """Merge a run's adapter into its base (fp32) as a plain HF model folder."""
    from ..export import merge_run
    print(merge_run(run, out, base, overwrite, tolerance, allow_pickle))


@app.command()
def export(run: Run, out: str = typer.Option(..., metavar="OUT.gguf", help="GGUF file to write"),
           dtype: Literal["f16", "f32", "q8_0"] = "f16", tokenizer_pre: str | None = typer.Option(None, help="llama.cpp name"),
           no_modelfile: bool = typer.Option(False, "--no-modelfile", help="no Ollama Modelfile beside the GGUF"),
           overwrite: Overwrite = False, base: Base = None, tolerance: Tolerance = None,
           allow_pickle: AllowPickle = False) -> None:
    """Write a run as one GGUF file (+ Ollama Modelfile) for llama.cpp."""
    from ..export import export_gguf
    print(export_gguf(run, out, dtype, base, tolerance, allow_pickle, tokenizer_pre, overwrite, not no_modelfile))
