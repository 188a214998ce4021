"""``edulora merge`` and ``edulora export``: ship a tutor without PEFT through ``edulora.export``."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from .options import AllowPickle, Base, Overwrite

Run = Annotated[str, typer.Argument(metavar="RUN", help="run directory or adapter directory")]
# None keeps edulora.export's default (1e-3) without importing torch before a command runs.
Tolerance = Annotated[float | None, typer.Option(help="largest accepted |merged - unmerged| logit (default: 1e-3)")]
app = typer.Typer()


@app.command()
def merge(run: Run, out: str = typer.Argument(..., metavar="OUT", help="model folder to write"), base: Base = None,
          tolerance: Tolerance = None, allow_pickle: AllowPickle = False, overwrite: Overwrite = False) -> None:
    """Merge a run's adapter into its base (fp32) as a plain HF model folder."""
    from ..export import merge_run
    print(merge_run(run, out, base, overwrite, allow_pickle=allow_pickle, **_given(tolerance=tolerance)))


@app.command()
def export(run: Run, gguf: str = typer.Option(..., metavar="OUT.gguf", help="GGUF file to write"),
           dtype: Literal["f16", "f32", "q8_0"] = "f16", tokenizer_pre: str | None = typer.Option(None, help="llama.cpp name"),
           no_modelfile: bool = typer.Option(False, "--no-modelfile", help="no Ollama Modelfile beside the GGUF"),
           overwrite: Overwrite = False, base: Base = None, tolerance: Tolerance = None,
           allow_pickle: AllowPickle = False) -> None:
    """Write a run as one GGUF file (+ Ollama Modelfile) for llama.cpp."""
    from ..export import export_gguf
    print(export_gguf(run, gguf, dtype, base, allow_pickle=allow_pickle, pre_tokenizer=tokenizer_pre,
                      overwrite=overwrite, modelfile=not no_modelfile, **_given(tolerance=tolerance)))


def _given(**options: float | None) -> dict[str, float]:
    return {name: value for name, value in options.items() if value is not None}
