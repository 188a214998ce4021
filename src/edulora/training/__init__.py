"""Training: ``train`` / ``resume`` (recipe.py) and the pieces the recipe composes."""

from .recipe import RunResult, resume, train
from .trainer import mean_token_loss, planned_optimizer_steps

__all__ = ["RunResult", "mean_token_loss", "planned_optimizer_steps", "resume", "train"]
