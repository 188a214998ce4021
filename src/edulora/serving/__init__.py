"""Serving tutors: one base model with several LoRA adapters behind an OpenAI-compatible API.

``engine`` owns the model and batches requests for any mix of adapters, ``router`` picks an
adapter for ``model: "auto"``, ``service`` is what the server does as Python calls, ``app`` its
HTTP face (FastAPI; the teacher page in ``web/``), ``server`` runs it (uvicorn), ``chat`` is the
terminal chat, ``flags`` computes a reply's pedagogy flags, and ``feedback`` stores teachers' ratings and
reviews and turns the approved ones into training data.

    import edulora.serving as serving
    serving.serve(["math=runs/algebra"], serving.ServeSettings(port=8000))  # blocks; SIGTERM stops it
    engine = serving.load_engine([("math", "runs/algebra")]).start()
    server = serving.TutorServer(serving.TutorService(engine, serving.Router([]))).start()
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public names and the module each lives in; loaded on first use, so ``edulora feedback export``
#: does not import torch.
_EXPORTS = {
    "serve": "server", "ServeSettings": "server", "TutorServer": "server",
    "chat": "terminal",
    "create_app": "app",
    "TutorService": "service", "Chat": "service",
    "Engine": "engine", "Generation": "engine", "load_engine": "engine",
    "VllmEngine": "vllm_engine", "load_vllm_engine": "vllm_engine",
    "Router": "router", "Route": "router",
    "FeedbackStore": "feedback", "export_feedback": "feedback", "default_feedback_db": "feedback",
    "reply_flags": "flags",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
