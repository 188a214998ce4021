"""Datasets: formats and importers, validation, reports, privacy scrubbing, splits, the packaged samples.

The whole-file pipelines behind ``edulora data …`` are importable from here::

    from edulora.data import validate, convert, scrub_file, split_file, report

and a platform's per-message transcript export becomes dialogues with ``import_transcripts``.
"""

from .importers.transcripts import import_transcripts
from .pipelines import DataProblems, check_output_file, convert, report, scrub_file, split_file, validate
from .samples import sample_data_path

__all__ = ["DataProblems", "check_output_file", "convert", "import_transcripts", "report", "sample_data_path",
           "scrub_file", "split_file", "validate"]
