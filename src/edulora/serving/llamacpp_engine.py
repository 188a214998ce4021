"""The serving engine on llama.cpp: the same interface as ``Engine``, continuous batching underneath.

Worker threads (``workers.WorkerEngine``) hand requests to llama.cpp, where each adapter has a core of its
own whose slots decode its running requests together: a new request joins its adapter's batch at the next
step instead of waiting for the batch before it, and never waits for another adapter's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..generation import stop_token_ids
from .engine import AdapterSpec, Generation, display_name, resolve_adapters
from .workers import WorkerEngine


def load_llamacpp_engine(adapters: Sequence[tuple[str | None, str | Path]], base: str | None = None,
                         gguf: str | os.PathLike | None = None, allow_pickle: bool = False,
                         resolved: tuple[list[AdapterSpec], str] | None = None,
                         **engine_options) -> LlamaCppEngine:
    """The base as GGUF (``gguf``, else see ``base_gguf``) and every adapter as a GGUF LoRA, in llama.cpp
    (``resolved``: as in ``load_engine``)."""
    from ..inference.llamacpp import load_llamacpp

    specs, base_model = resolved or resolve_adapters(adapters, base, allow_pickle)
    parallel = engine_options.get("max_batch", 8)
    context = max(engine_options.get("max_batch_tokens") or 8192, engine_options.get("max_request_tokens") or 0)
    model, tokenizer, config = load_llamacpp({s.name: s.folder for s in specs}, base_model, gguf, allow_pickle,
                                             parallel=parallel, context=context)
    return LlamaCppEngine(model, tokenizer, display_name(base_model), {s.name: s for s in specs},
                          context_limit=int(getattr(config, "max_position_embeddings", None) or 2048),
                          base_model=base_model, config=config, **engine_options)


class LlamaCppEngine(WorkerEngine):
    """``Engine`` whose decoding is llama.cpp's: ``max_batch`` requests in flight, joined as slots free up."""

    backend = "llamacpp"

    def __init__(self, model, tokenizer, base_id, adapters, config=None, **options):
        super().__init__(model, tokenizer, base_id, adapters, **options)
        #: The base's Hugging Face config (its context length, architecture).
        self.config = config
        self._stop_ids = set(stop_token_ids(tokenizer))

    def _attach(self, spec: AdapterSpec) -> None:
        """Convert the adapter to a GGUF LoRA and start its core; the other adapters' cores keep running."""
        from ..inference.gguf_lora import cached_gguf_lora
        from ..modeling import resolve_model_path

        lora = cached_gguf_lora(spec.folder, resolve_model_path(self.base_model))
        self.model = self.model.reloaded({**self.model.loras, spec.name: lora})

    def _detach(self, name: str) -> None:
        """Drop the adapter's core from the set; it is released once its replies are done."""
        self.model = self.model.reloaded({k: v for k, v in self.model.loras.items() if k != name})

    def _run(self, gen: Generation) -> None:
        self.model.run(gen, self.decode, self._stop_ids)
