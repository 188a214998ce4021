"""Options several commands share, declared once."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from ..data.formats import FORMATS

AllowPickle = Annotated[bool, typer.Option("--allow-pickle", help="allow loading .bin (pickle) adapter weights")]
Base = Annotated[str | None, typer.Option("--base", help="base model (default: the one the adapter names)")]
Precision = Annotated[Literal["auto", "fp32", "bf16", "fp16"], typer.Option(
    help="weight precision (auto: fp32 on a CPU, bf16/fp16 on a GPU)")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="replace an existing output")]
InputFormat = Annotated[str | None, typer.Option(
    "--from", metavar="FORMAT", help=f"input format ({', '.join(FORMATS)}, …); detected from the file when omitted")]
ColumnMap = Annotated[list[str] | None, typer.Option(
    "--map", metavar="FIELD=COLUMN", help="CSV only: read FIELD (instruction, context, response, subject, "
                                          "grade_level, teaching_style, metadata.KEY) from COLUMN; repeatable")]
