"""The sample datasets shipped inside the package, so that an installed edulora (not only a checkout) has them."""

from __future__ import annotations

from pathlib import Path

from ..errors import EduloraError

#: Written for this project: single-turn tutoring examples with the teacher's key where one is
#: definite, and multi-turn tutoring dialogues.
SAMPLES = ("tutoring.jsonl", "dialogues.jsonl")

_FOLDER = Path(__file__).resolve().parents[1] / "sample_data"


def sample_data_path(name: str = "tutoring.jsonl") -> Path:
    """The path of a packaged sample dataset (``tutoring.jsonl`` or ``dialogues.jsonl``)."""
    if name not in SAMPLES:
        raise EduloraError(f"unknown sample dataset {name!r} (known: {', '.join(SAMPLES)})")
    path = _FOLDER / name
    if not path.is_file():
        raise EduloraError(f"{path}: sample dataset missing from this installation of edulora; reinstall it")
    return path


__all__ = ["SAMPLES", "sample_data_path"]
