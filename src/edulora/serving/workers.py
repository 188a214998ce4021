"""``Engine`` for decoders with their own continuous batching (llama.cpp in process, a vLLM server over HTTP).

``Engine`` gathers a batch, decodes it to its end, then takes the next. A decoder that batches by
itself wants requests as they come instead: here ``max_batch`` worker threads each take one request
from the same bounded queue and hand it to the decoder (``_run``), which decodes every running request
together, whatever its adapter. Prompt formats, personas, token budgets, 429s and cancellation are
``Engine``'s, unchanged; a subclass says only how one request is decoded and how adapters come and go.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from pathlib import Path

from .engine import AdapterSpec, Engine, Generation, UpstreamFailed

log = logging.getLogger(__name__)


class WorkerEngine(Engine):
    """``Engine`` whose decoding is a continuous-batching decoder's: ``max_batch`` requests in flight."""

    def __init__(self, model, tokenizer, base_id, adapters, **options):
        super().__init__(model, tokenizer, base_id, adapters, **options)
        self._reload_lock = threading.Lock()  # one change of the adapter set at a time
        self._workers: list[threading.Thread] = []
        self._stats_lock = threading.Lock()

    def start(self) -> WorkerEngine:
        if not self._workers:
            self._workers = [threading.Thread(target=self._work, name=f"edulora-{self.backend}-{i}", daemon=True)
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

    def _run(self, gen: Generation) -> None:
        """Decode ``gen`` to its end (blocking; the decoder batches it with the other workers' requests)."""
        raise NotImplementedError

    def _attach(self, spec: AdapterSpec) -> None:
        """Make the decoder able to decode with adapter ``spec`` (before any request for it is accepted)."""
        raise NotImplementedError

    def _detach(self, name: str) -> None:
        """Drop adapter ``name`` from the decoder (no reply for it is decoding any more)."""
        raise NotImplementedError

    def add_adapter(self, path: str | Path, name: str | None = None, timeout: float = 600.0) -> AdapterSpec:
        """Load the adapter into the decoder, then accept requests for it; replies in flight are not disturbed."""
        # Read once; this waits, outside the lock the removal needs, for a removal of the name to end.
        spec = self.adapter_spec(path, name)
        with self._reload_lock:
            self.admissible(spec)  # again: another change of the adapter set may have come in between
            self._attach(spec)
            self._admit_adapter(spec)
        return spec

    def remove_adapter(self, name: str, timeout: float = 600.0, wait: bool = True) -> AdapterSpec:
        """Refuse new requests for ``name`` now; once those accepted are done, drop it from the decoder
        (before this returns, or in the background when not ``wait``)."""
        with self._reload_lock:
            spec = self._retire(name)

        def unload() -> None:
            with self._reload_lock:
                self._wait_idle(name, timeout)
                self._detach(name)

        self._leaving.run(name, unload, wait)
        return spec

    def _wait_idle(self, name: str, timeout: float) -> None:
        """Wait until no reply accepted for adapter ``name`` (already refused to new requests) is decoding."""
        deadline = time.monotonic() + timeout
        while self._serving(name):
            if time.monotonic() > deadline:
                raise TimeoutError(f"replies for {name!r} are still being decoded; it is no longer served")
            time.sleep(0.05)

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
            self._run(gen)
        except Exception as err:  # one failed request must not kill the worker
            upstream = isinstance(err, UpstreamFailed)  # the decoding server's fault (a 502), not ours
            if not upstream:
                log.exception("%s decoding failed", self.backend)
            if gen.finish_reason is None:
                gen._fail(str(err) if upstream else f"generation failed: {type(err).__name__}: {err}",
                          "upstream" if upstream else "error")
        with self._stats_lock:
            self.stats.generated_tokens += gen.tokens
            self.stats.cancelled += gen.finish_reason == "cancelled"
            self.stats.busy_seconds += time.perf_counter() - began
