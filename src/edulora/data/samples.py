"""The sample datasets shipped inside the package, so that an installed edulora (not only a checkout) has them."""

from __future__ import annotations

from pathlib import Path

from ..errors import EduloraError

#: Written for this project (licence: the project's own): single-turn tutoring examples with the
#: teacher's key where one is definite, multi-turn tutoring dialogues, and two disjoint sets of
#: general, non-tutoring requests (everyday facts, instructions, short writing, simple arithmetic in
#: English, French, Spanish and German): ``retention.jsonl`` measures an adapter's drift from its base
#: (``evaluation.retention``), ``replay.jsonl`` is mixed into training against that drift
#: (``data.replay_fraction``). Disjoint, so that replay never trains on what retention measures.
#: ``transcripts.csv`` is tutoring chats as a platform exports them, one row per message (the README's
#: "your own data" path starts from it: ``edulora data convert --from transcripts``).
SAMPLES = ("tutoring.jsonl", "dialogues.jsonl", "retention.jsonl", "replay.jsonl", "transcripts.csv")

_FOLDER = Path(__file__).resolve().parents[1] / "sample_data"


def sample_data_path(name: str = "tutoring.jsonl") -> Path:
    """The path of a packaged sample dataset (one of ``SAMPLES``)."""
    if name not in SAMPLES:
        raise EduloraError(f"unknown sample dataset {name!r} (known: {', '.join(SAMPLES)})")
    path = _FOLDER / name
    if not path.is_file():
        raise EduloraError(f"{path}: sample dataset missing from this installation of edulora; reinstall it")
    return path


__all__ = ["SAMPLES", "sample_data_path"]
