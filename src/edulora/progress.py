"""Progress bars for the waits a user sees (eval loss, probes, replies, report writing): one place decides
whether they show, so the demo's ``--quiet`` silences all of them at once.

Bars are tqdm's, as the training loop's are (the Hugging Face Trainer draws its own). ``disable=None`` hides
a bar when the output is not a terminal, so CI logs and redirected runs stay free of carriage-return noise;
``leave=False`` clears a finished bar, so nested ones (replies inside a probe) leave one line behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

#: Set by ``quiet(True)`` (the CLI's ``--quiet``): no bar is drawn, on a terminal or not.
QUIET = False


def quiet(value: bool = True) -> None:
    """Silence (or restore) every progress bar edulora draws."""
    global QUIET
    QUIET = value


def bar(iterable: Iterable[Any] | None = None, *, desc: str, total: int | None = None, unit: str = "it",
        enabled: bool = True) -> tqdm:
    """A bar with a count and an estimate of the time left (when ``total`` is known or ``iterable`` sized).

    ``enabled=False`` hides it regardless (e.g. on every process of a distributed run but the first)."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True,
                disable=True if QUIET or not enabled else None)
