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
#: Tokens left beside prompt + reply for the BOS and EOS TRL adds when the texts lack them.
SPECIAL_TOKENS = 2


class OddsRatioTrainer(PreferenceReporting, ORPOTrainer):
    """TRL's ORPOTrainer plus what an edulora run reports (see ``PreferenceReporting``)."""


def orpo_arguments(config: RunConfig) -> dict:
    """ORPOConfig's own settings for ``training_arguments`` (the shared ones come from the config)."""
    # ORPOConfig has no truncation mode: the prompts are cut beforehand (keep_prompt_ends).
    return {"beta": config.training.beta, "max_length": config.data.max_length, "dataset_num_proc": None}


def keep_prompt_ends(rows: dict[str, list[str]], tokenizer, max_length: int) -> dict[str, list[str]]:
    """Each rendered prompt cut to its last tokens so that prompt + the longer reply fit ``max_length``.

    TRL's ORPO tokenizer keeps a prompt whole and cuts the reply instead, and a prompt longer than
    ``max_length`` leaves no reply to score. Here, as in SFT and DPO, a long conversation loses its
    oldest tokens and never the reply (unless the reply alone takes over half of ``max_length``).
    The cut is at a token boundary (the fast tokenizer's offsets), so TRL re-tokenizes the same tokens.
    """
    prompts = []
    for prompt, chosen, rejected in zip(rows["prompt"], rows["chosen"], rows["rejected"]):
        reply = max(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in (chosen, rejected))
        room = max(max_length - reply - SPECIAL_TOKENS, max_length // 2)
        offsets = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        prompts.append(prompt if len(offsets) <= room else prompt[offsets[-room][0]:])
    return {**rows, "prompt": prompts}


def orpo_card_rows(config: RunConfig) -> list[tuple[str, str]]:
    """The model card's method rows for an ORPO run."""
    return [("Method", f"ORPO (TRL), beta (lambda) = {config.training.beta}; no reference model"),
            ("Started from", config.model.adapter or "a new adapter on the base model"),
            ("Eval loss above", "ORPO's loss on held-out pairs: the chosen text's cross-entropy (TRL includes "
                                "the prompt) + beta × -log sigmoid(log odds ratio of chosen over rejected)")]


__all__ = ["ORPO_METRICS", "ORPOConfig", "OddsRatioTrainer", "keep_prompt_ends", "orpo_arguments", "orpo_card_rows"]
