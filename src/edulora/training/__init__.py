"""Training: ``train`` / ``resume`` (recipe.py) and the pieces the recipe composes."""

# mean_token_loss lives in edulora.losses (evaluation measures with it too); kept here for existing callers.
from ..losses import mean_token_loss
from .loop import RunResult
from .recipe import resume, train
from .trainer import planned_optimizer_steps

__all__ = ["RunResult", "mean_token_loss", "planned_optimizer_steps", "resume", "train"]
