"""Options several commands share, declared once."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from ..data.formats import COLUMN_MAP_HELP, FORMATS

AllowPickle = Annotated[bool, typer.Option("--allow-pickle", help="allow loading .bin (pickle) adapter weights")]
Base = Annotated[str | None, typer.Option("--base", help="base model: folder, .gguf or hub id (default: the adapter's)")]
Run = Annotated[str, typer.Argument(metavar="RUN", help="run directory or adapter directory", show_default=False)]
MaxNewTokens = Annotated[int, typer.Option(min=1, help="longest reply in tokens")]
Backend = Annotated[Literal["auto", "llamacpp", "transformers"], typer.Option(help="auto: llamacpp on CPU if installed")]
Precision = Annotated[Literal["auto", "fp32", "bf16", "fp16"], typer.Option(help="auto: fp32 on CPU, bf16/fp16 on GPU")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="replace existing outputs (refused without it)")]
InputFormat = Annotated[str | None, typer.Option(
    "--from", metavar="FORMAT", help=f"input format: {', '.join(FORMATS)}, … (default: detected from the file)")]
ExcludeTelling = Annotated[bool, typer.Option(
    "--exclude-telling", help="MathDial: keep 'telling' turns as context, out of the training targets")]
ColumnMap = Annotated[list[str] | None, typer.Option("--map", metavar="FIELD=COLUMN", help=COLUMN_MAP_HELP)]
