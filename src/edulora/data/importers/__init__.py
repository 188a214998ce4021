"""Importers for published tutoring datasets, each turning an item into an edulora ``Dialogue``.

* ``mathdial`` – MathDial (teacher–student dialogues on GSM8K problems, with the solution);
* ``bridge`` – Bridge (real tutoring chats where an expert rewrote the tutor's reply to a mistake).

They are formats like any other (``load_records(path, "mathdial")``); see ``edulora.data.formats``.
"""

from .bridge import iter_bridge
from ..io import Skipped
from .mathdial import iter_mathdial

__all__ = ["Skipped", "iter_bridge", "iter_mathdial"]
