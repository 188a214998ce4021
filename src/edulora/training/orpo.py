"""ORPO (``training.method=orpo``): TRL's ORPOTrainer in the DPO run (``training.preference``).

ORPO (Hong et al., 2024) has no reference model: its loss is the chosen reply's cross-entropy plus
``beta`` (the paper's lambda) times -log sigmoid(log odds of chosen over rejected), so a step runs
the policy alone — cheaper than DPO's policy + reference on a CPU. TRL keeps it in
``trl.experimental``; ``training.preference`` imports this module only for ``method=orpo`` and turns
an installed TRL without it into a config error. Only what differs from DPO lives here.
"""

from __future__ import annotations

from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from ..config import RunConfig
from .trainer import PreferenceReporting

#: ORPO's held-out measures beside DPO's reward ones: the chosen reply's cross-entropy, the mean
#: log sigmoid of the log odds ratio (0 when chosen is far likelier) and the mean log odds ratio.
ORPO_METRICS = ("nll_loss", "log_odds_ratio", "log_odds_chosen")


class OddsRatioTrainer(PreferenceReporting, ORPOTrainer):
    """TRL's ORPOTrainer plus what an edulora run reports (see ``PreferenceReporting``)."""


def orpo_arguments(config: RunConfig) -> dict:
    """ORPOConfig's own settings for ``training_arguments`` (the shared ones come from the config)."""
    # ORPOConfig has no truncation mode: the prompts are cut beforehand (preference.keep_prompt_ends).
    return {"beta": config.training.preference.beta, "max_length": config.data.max_length, "dataset_num_proc": None}


def orpo_card_rows(config: RunConfig) -> list[tuple[str, str]]:
    """The model card's method rows for an ORPO run."""
    return [("Method", f"ORPO (TRL), beta (lambda) = {config.training.preference.beta}; no reference model"),
            ("Started from", config.model.adapter or "a new adapter on the base model"),
            ("Eval loss above", "ORPO's loss on held-out pairs: the chosen text's cross-entropy (TRL includes "
                                "the prompt) + beta × -log sigmoid(log odds ratio of chosen over rejected)")]


__all__ = ["ORPO_METRICS", "ORPOConfig", "OddsRatioTrainer", "orpo_arguments", "orpo_card_rows"]
