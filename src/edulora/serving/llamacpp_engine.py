"""The serving engine on llama.cpp: the same interface as ``Engine``, continuous batching underneath.

``Engine`` gathers a batch, decodes it to its end, then takes the next; here ``max_batch`` worker
threads each take one request from the same bounded queue and hand it to llama.cpp, whose slots
decode every running request together: a new request joins at the next step, whatever its adapter
(each names its own LoRA scales), instead of waiting for the batch before it. Prompt formats,
personas, token budgets, 429s and cancellation are ``Engine``'s, unchanged.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ..generation import stop_token_ids
from .engine import AdapterSpec, Engine, Generation, display_name, resolve_adapters

log = logging.getLogger(__name__)


def load_llamacpp_engine(adapters: Sequence[tuple[str | None, str | Path]], base: str | None = None,
                         gguf: str | os.PathLike | None = None, allow_pickle: bool = False,
                         **engine_options) -> LlamaCppEngine:
    """The base as GGUF (``gguf``, else see ``base_gguf``) and every adapter as a GGUF LoRA, in llama.cpp."""
    from ..inference.llamacpp import load_llamacpp

    specs, base_model = resolve_adapters(adapters, base, allow_pickle)
    parallel = engine_options.get("max_batch", 8)
    context = max(engine_options.get("max_batch_tokens") or 8192, engine_options.get("max_request_tokens") or 0)
    model, tokenizer, config = load_llamacpp({s.name: s.folder for s in specs}, base_model, gguf, allow_pickle,
                                             parallel=parallel, context=context)
    return LlamaCppEngine(model, tokenizer, display_name(base_model), {s.name: s for s in specs},
                          context_limit=int(getattr(config, "max_position_embeddings", None) or 2048),
                          base_model=base_model, config=config, **engine_options)


class LlamaCppEngine(Engine):
    """``Engine`` whose decoding is llama.cpp's: ``max_batch`` requests in flight, joined as slots free up."""

    backend = "llamacpp"

    def __init__(self, model, tokenizer, base_id, adapters, config=None, **options):
        super().__init__(model, tokenizer, base_id, adapters, **options)
        #: The base's Hugging Face config: what an adapter added at run time is converted to GGUF against.
        self.config = config
        self._reload_lock = threading.Lock()  # one change of the adapter set at a time
        self._stop_ids = set(stop_token_ids(tokenizer))
        self._workers: list[threading.Thread] = []
        self._stats_lock = threading.Lock()

    def start(self) -> LlamaCppEngine:
        if not self._workers:
            self._workers = [threading.Thread(target=self._work, name=f"edulora-llamacpp-{i}", daemon=True)
                             for i in range(self.max_batch)]
            for worker in self._workers:
                worker.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Let the replies in flight finish, fail what is still queued, and end the workers."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._drain("the server is shutting down")

    def add_adapter(self, path: str | Path, name: str | None = None, timeout: float = 600.0) -> AdapterSpec:
        """Convert the adapter to a GGUF LoRA and start a core with it; replies in flight finish on the old one."""
        from ..inference.gguf_lora import cached_gguf_lora

        with self._reload_lock:
            spec = self.adapter_spec(path, name)
            lora = cached_gguf_lora(spec.folder, self.config)
            self.model = self.model.reloaded({**self.model.loras, spec.name: lora})
            self._admit_adapter(spec)
        return spec

    def remove_adapter(self, name: str, timeout: float = 600.0) -> AdapterSpec:
        """Refuse new requests for ``name`` now; once those accepted are done, start a core without it."""
        with self._reload_lock:
            spec = self._retire(name)
            deadline = time.monotonic() + timeout
            while self._serving(name):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"replies for {name!r} are still being decoded; it is no longer served")
                time.sleep(0.05)
            self.model = self.model.reloaded({k: v for k, v in self.model.loras.items() if k != name})
        return spec

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                gen = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self._serve(gen)

    def _serve(self, gen: Generation) -> None:
        if gen.cancelled:  # its client left while it waited
            with self._stats_lock:
                self.stats.cancelled += 1
            gen.finish("cancelled")
            return
        with self._stats_lock:
            self._record([gen])
        began = time.perf_counter()
        try:
            self.model.run(gen, self.decode, self._stop_ids)
        except Exception as err:  # one failed request must not kill the worker
            log.exception("llama.cpp decoding failed")
            if gen.finish_reason is None:
                gen._fail(f"generation failed: {type(err).__name__}: {err}")
        with self._stats_lock:
            self.stats.generated_tokens += gen.tokens
            self.stats.cancelled += gen.finish_reason == "cancelled"
            self.stats.busy_seconds += time.perf_counter() - began
