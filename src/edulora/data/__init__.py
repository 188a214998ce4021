"""Datasets: formats and importers, validation, reports, privacy scrubbing, splits, the packaged samples."""

from .samples import sample_data_path

__all__ = ["sample_data_path"]
