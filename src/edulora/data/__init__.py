"""Tutoring datasets: the record schema, the formats read, quality checks, PII scrubbing, splits.

The whole-file pipelines behind ``edulora data …`` are importable from here::

    from edulora.data import validate, convert, scrub_file, split_file, report
"""

from .pipelines import DataProblems, check_output_file, convert, report, scrub_file, split_file, validate

__all__ = ["DataProblems", "check_output_file", "convert", "report", "scrub_file", "split_file", "validate"]
