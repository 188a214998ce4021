"""edulora: LoRA fine-tuning for educational tutors, on a laptop CPU or a GPU."""

__version__ = "0.1.0"
