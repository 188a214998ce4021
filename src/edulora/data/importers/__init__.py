"""Importers for published tutoring datasets and platform exports, each giving edulora ``Dialogue``s.

* ``mathdial`` – MathDial (teacher–student dialogues on GSM8K problems, with the solution);
* ``bridge`` – Bridge (real tutoring chats where an expert rewrote the tutor's reply to a mistake);
* ``transcripts`` – a platform's per-message export, one dialogue per conversation.

They are formats like any other (``load_records(path, "mathdial")``); see ``edulora.data.formats``.
"""

from .bridge import iter_bridge
from ..io import Skipped
from .mathdial import iter_mathdial
from .transcripts import iter_transcripts

__all__ = ["Skipped", "iter_bridge", "iter_mathdial", "iter_transcripts"]
