"""The inference engine: one base model, several LoRA adapters, one thread that owns them.

HTTP handlers (or the terminal chat) call :meth:`Engine.submit` and read text deltas from the
returned :class:`Generation`. The engine thread takes whatever is waiting (up to ``max_batch``
requests and ``max_batch_tokens``) and decodes it as one batch, token by token with a KV cache,
even when the requests are for different adapters: PEFT's ``adapter_names`` argument applies
each row's own LoRA weights inside the same forward pass. Rows leave the batch as soon as
they finish, so a short answer never pays for a long neighbour. Requests that arrive while a
batch is decoding wait for the next one (static batching: simple, and correct with PEFT's mixed-adapter forward). Token
budgets bound what one request can cost the others: a request's prompt plus reply may not
exceed ``max_request_tokens`` (a 400 naming the limit), and a batch's KV cache (rows × longest
prompt plus reply) stays within ``max_batch_tokens``, so a long prompt is decoded apart from
short ones instead of making every row in its batch pad to its length.

The decoding itself is ``generation.decode``, the same loop ``Tutor.reply`` and ``edulora eval``
use: each row's tokens are chosen from that row's own tokens only, never from padding, so an
answer does not depend on what else was in its batch, and a served reply equals the offline one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ModelConfig
from ..data.schema import Metadata, parse_metadata
from ..errors import EduloraError
from ..formatting import Message, PromptFormat
from ..generation import PEFT_BASE, Request, Sampling, decode
from ..modeling import attach_adapter, inference_precision, load_base_model
from .adapters import (NAME_PATTERN, RESERVED_NAMES, AdapterSpec, Unloading, display_name,  # noqa: F401 (API)
                       find_adapter, parse_adapter_arg, resolve_adapters, same_model, validate_name)

log = logging.getLogger(__name__)

#: Stop strings per request and their length (OpenAI allows 4): every new token is checked against each.
MAX_STOPS = 4
MAX_STOP_CHARS = 100


class QueueFull(Exception):
    """Too many requests are waiting; the caller should retry later."""


class ContextTooLong(ValueError):
    """Prompt plus requested reply do not fit the model's context window."""


class EngineStopped(Exception):
    """The engine is shutting down and takes no more work."""


class GenerationFailed(Exception):
    """Decoding failed inside the engine (not the caller's fault)."""


class UpstreamFailed(GenerationFailed):
    """The decoding server behind this one (vLLM) failed or could not be reached: a 502 for the client."""


class AdapterConflict(Exception):
    """An adapter cannot be added now: its name is already served."""


def load_engine(adapters: Sequence[tuple[str | None, str | Path]], base: str | None = None, precision: str = "auto",
                allow_pickle: bool = False, resolved: tuple[list[AdapterSpec], str] | None = None,
                **engine_options) -> Engine:
    """Load the base model once and every adapter beside it (no merging); all must share that base.
    ``resolved``: ``resolve_adapters``' answer for ``adapters`` when the caller already has it."""
    specs, base_model = resolved or resolve_adapters(adapters, base, allow_pickle)
    model, tokenizer, _ = load_base_model(ModelConfig(name=base_model, precision=inference_precision(precision)))
    for spec in specs:
        model = attach_adapter(model, spec.folder, spec.name)
    model.eval()
    return Engine(model, tokenizer, display_name(base_model), {s.name: s for s in specs}, base_model=base_model,
                  **engine_options)


class Generation(Request):
    """One request's handle: the engine pushes events, the caller iterates text deltas.

    A thread reads them with :meth:`deltas`; an asyncio task with :meth:`adeltas`, which waits
    without holding a thread, so a burst of HTTP clients costs no thread per waiting client.
    """

    def __init__(self, target: str | None, prompt_ids: list[int], sampling: Sampling):
        super().__init__(prompt_ids, sampling, adapter=target or PEFT_BASE)
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        #: Adapter name, or None for the base model.
        self.target = target
        self._events: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._cancelled = threading.Event()
        self._wake: Callable[[], None] | None = None

    @property
    def completion_tokens(self) -> int:
        return self.tokens

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Stop decoding this row (e.g. the client went away); its batch neighbours go on."""
        self._cancelled.set()

    def deltas(self, timeout: float | None = None) -> Iterator[str]:
        """Text pieces as they are decoded; ends when the reply is complete."""
        while True:
            kind, value = self._events.get(timeout=timeout)
            if kind == "done":
                return
            yield self._value(kind, value)

    def text(self, timeout: float | None = None) -> str:
        return "".join(self.deltas(timeout))

    async def adeltas(self, timeout: float | None = None) -> AsyncIterator[str]:
        """``deltas`` for asyncio; raises ``TimeoutError`` when nothing arrives for ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        self._wake = lambda: loop.call_soon_threadsafe(ready.set)
        while True:
            try:
                kind, value = self._events.get_nowait()
            except queue.Empty:
                # Events put before ``_wake`` was set are seen by get_nowait; later ones set ``ready``.
                await asyncio.wait_for(ready.wait(), timeout)
                ready.clear()
                continue
            if kind == "done":
                return
            yield self._value(kind, value)

    async def atext(self, timeout: float | None = None) -> str:
        return "".join([piece async for piece in self.adeltas(timeout)])

    @staticmethod
    def _value(kind: str, value: str) -> str:
        if kind == "error":
            raise GenerationFailed(value)
        if kind == "upstream":
            raise UpstreamFailed(value)
        return value

    # Engine side.
    def _put(self, kind: str, value: str) -> None:
        self._events.put((kind, value))
        wake = self._wake
        if wake is not None:
            try:
                wake()
            except RuntimeError:  # the waiting event loop has closed: nobody is listening any more
                pass

    def emit(self, text: str) -> None:
        if text:
            self._put("text", text)

    def finish(self, reason: str) -> None:
        self.finish_reason = reason
        self._put("done", reason)

    def _fail(self, message: str, kind: str = "error") -> None:
        """End the reply with an error: ``kind`` "error" (ours, a 500) or "upstream" (the decoding server's, a 502)."""
        self.finish_reason = "error"
        self._put(kind, message)


@dataclass
class EngineStats:
    batches: int = 0
    rows: int = 0
    largest_batch: int = 0
    #: Batches whose rows used more than one adapter (or an adapter and the base model).
    mixed_batches: int = 0
    generated_tokens: int = 0
    busy_seconds: float = 0.0
    rejected: int = 0
    #: Requests whose client went away before the reply was complete.
    cancelled: int = 0
    by_target: dict[str, int] = field(default_factory=dict)


class Engine:
    """Owns the model; runs a single decoding thread fed by a bounded queue."""

    #: Which library decodes (``llamacpp_engine.LlamaCppEngine`` and ``vllm_engine.VllmEngine`` are the others).
    backend = "transformers"

    def __init__(self, model, tokenizer, base_id: str, adapters: dict[str, AdapterSpec], *, max_batch: int = 8,
                 max_queue: int = 64, gather_seconds: float = 0.005, default_max_tokens: int = 256,
                 repetition_penalty: float = 1.1, max_request_tokens: int | None = None,
                 max_batch_tokens: int | None = None, context_limit: int | None = None,
                 base_model: str | None = None):
        self.model = model
        #: What adapters added at run time must have been trained on (a hub id or a folder).
        self.base_model = base_model or base_id
        self.tokenizer = tokenizer
        self.base_id = base_id
        self.adapters = adapters
        # Every adapter served since start, by name: replies accepted before a removal still need theirs.
        self._known = dict(adapters)
        self.max_batch = max(1, max_batch)
        self.gather_seconds = gather_seconds
        self.default_max_tokens = default_max_tokens
        self.repetition_penalty = repetition_penalty
        if context_limit is None:
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            context_limit = int(getattr(base.config, "max_position_embeddings", None) or 2048)
        self.context_limit = context_limit
        #: Prompt plus reply tokens one request may use (None: the model's context).
        self.max_request_tokens = min(max_request_tokens or self.context_limit, self.context_limit)
        #: KV-cache slots one batch may fill, ``rows × (longest prompt + longest reply)`` (None: no bound).
        self.max_batch_tokens = max_batch_tokens
        self.stats = EngineStats()
        # Each adapter is prompted as it was trained (template, persona, key); the base like a fresh chat model.
        self.formats = {name: self._format(spec) for name, spec in adapters.items()}
        self.base_format = PromptFormat.create(tokenizer)
        self._queue: queue.Queue[Generation] = queue.Queue(max(1, max_queue))
        # A request taken from the queue that did not fit the batch being formed: it leads the next one.
        self._held: Generation | None = None
        # Fast tokenizers raise "Already borrowed" when used from several threads at once.
        self._tokenizer_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # Replies accepted and not yet finished (pruned as they end): what an adapter's removal waits for.
        self._accepted: set[Generation] = set()
        self._admit = threading.Lock()
        self._leaving = Unloading()  # adapters removed whose weights are still being freed
        # Work that must run on the engine thread between two batches (adding / removing an adapter).
        self._tasks: queue.SimpleQueue[tuple[Callable[[], bool], Future]] = queue.SimpleQueue()

    # ----- caller side -------------------------------------------------------------------------
    def start(self) -> Engine:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="edulora-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in flight, fail what is still queued, and end the thread."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._drain("the server is shutting down")

    @property
    def pending(self) -> int:
        return self._queue.qsize() + (self._held is not None)

    def format(self, target: str | None) -> PromptFormat:
        return self.base_format if target is None else self.formats[target]

    def metadata(self, target: str | None, key: Metadata | None = None) -> Metadata:
        """The adapter's persona metadata (none for the base), with the request's key when it sent one.

        The request's grade level and teaching style, when it names them, replace the adapter's:
        the persona is a system prompt, so one adapter can teach another grade or style.
        """
        meta = Metadata() if target is None else parse_metadata(self._known[target].metadata,
                                                                f"{target}: edulora.json")
        if key is not None:
            meta.grade_level = key.grade_level or meta.grade_level
            meta.teaching_style = key.teaching_style or meta.teaching_style
            meta.extra.update({k: v for k, v in (("answer", key.answer), ("solution", key.solution)) if v is not None})
        return meta

    def prompt_messages(self, messages: Sequence[Message], target: str | None,
                        key: Metadata | None = None) -> list[Message]:
        """The conversation as the adapter saw it in training: its persona first unless the caller set one."""
        return self.format(target).with_persona(messages, self.metadata(target, key))

    def encode(self, messages: Sequence[Message], target: str | None, key: Metadata | None = None) -> list[int]:
        prompt = self.format(target).render(self.prompt_messages(messages, target, key))
        with self._tokenizer_lock:
            return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def decode(self, tokens: list[int]) -> str:
        with self._tokenizer_lock:
            return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def submit(self, messages: Sequence[Message], target: str | None, sampling: Sampling | None = None, *,
               max_tokens: int | None = None, key: Metadata | None = None) -> Generation:
        """Queue a reply to ``messages`` (ending with a user turn) from adapter ``target`` (None: base model).

        ``max_tokens`` is the caller's limit (None: the engine's default, shortened to what the context
        leaves); ``sampling``'s own ``max_new_tokens`` is replaced by it. ``key`` carries the teacher's
        answer / solution for this conversation.
        """
        if self._stopping.is_set():
            raise EngineStopped("the server is shutting down")
        if target is not None and target not in self.adapters:
            raise KeyError(target)
        sampling = sampling or Sampling(repetition_penalty=self.repetition_penalty)
        if len(sampling.stop) > MAX_STOPS or any(len(s) > MAX_STOP_CHARS for s in sampling.stop):
            raise EduloraError(f"stop: at most {MAX_STOPS} strings of at most {MAX_STOP_CHARS} characters each")
        prompt_ids = self.encode(messages, target, key)
        budget = self.max_request_tokens
        room = budget - len(prompt_ids)
        if room < 1 or (max_tokens is not None and max_tokens > room):
            limit = (f"this model's context is {budget} tokens" if budget == self.context_limit else
                     f"this server allows {budget} tokens per request (prompt plus reply)")
            raise ContextTooLong(f"{limit}; the prompt has {len(prompt_ids)} and {max_tokens or 1} more were "
                                 "requested. Shorten the conversation or lower max_tokens")
        limit = max_tokens or min(self.default_max_tokens, room)
        gen = Generation(target, prompt_ids, dataclasses.replace(sampling, max_new_tokens=limit))
        with self._admit:  # an adapter's removal sees either this request or the adapter already gone
            if target is not None and target not in self.adapters:
                raise KeyError(target)
            try:
                self._queue.put_nowait(gen)
            except queue.Full:
                self.stats.rejected += 1
                raise QueueFull(f"{self._queue.maxsize} requests are already waiting; retry shortly") from None
            self._accepted = {g for g in self._accepted if g.finish_reason is None} | {gen}
        return gen

    # ----- adapters at run time ----------------------------------------------------------------
    def _format(self, spec: AdapterSpec) -> PromptFormat:
        return PromptFormat.create(self.tokenizer, spec.info.template or "auto", spec.info.system_prompt,
                                   spec.info.answer_key)

    def adapter_spec(self, path: str | Path, name: str | None = None) -> AdapterSpec:
        """An adapter folder checked before loading: safetensors weights, a free name, this server's base model."""
        return self.admissible(find_adapter(path, name))

    def admissible(self, spec: AdapterSpec) -> AdapterSpec:
        """``spec`` if this server can take it now: its name free (a removal of it waited for), its base this one's."""
        if not self._leaving.wait(spec.name):
            raise AdapterConflict(f"an adapter named {spec.name!r} is still being unloaded; retry shortly")
        if spec.name in self.adapters:
            raise AdapterConflict(f"an adapter named {spec.name!r} is already served; remove it first")
        if spec.info.base_model and not same_model(spec.info.base_model, self.base_model):
            raise EduloraError(f"adapter {spec.name!r} was trained on {spec.info.base_model!r}, not on this "
                               f"server's base {self.base_model!r}")
        return spec

    def add_adapter(self, path: str | Path, name: str | None = None, timeout: float = 600.0) -> AdapterSpec:
        """Load an adapter beside the others between two batches; requests may name it once this returns."""
        spec = self.adapter_spec(path, name)

        def attach() -> bool:
            self.model = attach_adapter(self.model, spec.folder, spec.name).eval()
            self._admit_adapter(spec)
            return True

        self._on_engine_thread(attach, timeout)
        return spec

    def remove_adapter(self, name: str, timeout: float = 600.0, wait: bool = True) -> AdapterSpec:
        """Refuse new requests for ``name`` now; free its weights once the replies accepted for it are done
        (before this returns, or in the background when not ``wait``)."""
        spec = self._retire(name)

        def detach() -> bool:
            if self._serving(name):
                return False  # asked again after the next batch
            if set(self.model.peft_config) == {name}:  # PEFT keeps no sane state without any adapter left
                self.model = self.model.unload()  # the plain base model, as served without adapters
            else:
                self.model.delete_adapter(name)
            return True

        self._leaving.run(name, lambda: self._on_engine_thread(detach, timeout), wait)
        return spec

    def _admit_adapter(self, spec: AdapterSpec) -> None:
        self.formats = {**self.formats, spec.name: self._format(spec)}
        self._known = {**self._known, spec.name: spec}
        self.adapters = {**self.adapters, spec.name: spec}

    def _retire(self, name: str) -> AdapterSpec:
        with self._admit:
            spec = self.adapters[name]  # KeyError: not served
            self.adapters = {k: v for k, v in self.adapters.items() if k != name}
            self._leaving.begin(name)  # under the lock: the name cannot be taken again before it is freed
        return spec

    def _serving(self, name: str) -> bool:
        """Whether a reply accepted for adapter ``name`` is still queued or being decoded."""
        with self._admit:
            return any(g.target == name and g.finish_reason is None for g in self._accepted)

    def _on_engine_thread(self, task: Callable[[], bool], timeout: float) -> None:
        """Run ``task`` on the engine thread, which owns the model, between batches (again until it says done)."""
        done: Future = Future()
        self._tasks.put((task, done))
        done.result(timeout)

    def _run_tasks(self) -> None:
        later = []
        while True:
            try:
                task, done = self._tasks.get_nowait()
            except queue.Empty:
                break
            try:
                (done.set_result(None) if task() else later.append((task, done)))
            except Exception as err:  # the caller gets it; the engine goes on
                done.set_exception(err)
        for item in later:
            self._tasks.put(item)

    # ----- engine thread -----------------------------------------------------------------------
    def _fits(self, batch: list[Generation]) -> bool:
        """Whether ``batch``'s KV cache stays within the batch budget (rows are padded to the longest)."""
        if self.max_batch_tokens is None:
            return True
        width = max(len(g.prompt_ids) for g in batch) + max(g.sampling.max_new_tokens for g in batch)
        return len(batch) * width <= self.max_batch_tokens

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._run_tasks()
            first, self._held = self._held, None
            if first is None:
                try:
                    first = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
            batch = [first]
            # A few milliseconds' wait lets requests sent together share one batch.
            deadline = time.monotonic() + self.gather_seconds
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if not self._fits(batch + [nxt]):
                    self._held = nxt  # it opens the next batch, so nobody is overtaken for long
                    break
                batch.append(nxt)
            for gone in [g for g in batch if g.cancelled]:  # its client left while it waited
                self.stats.cancelled += 1
                gone.finish("cancelled")
            batch = [g for g in batch if not g.cancelled]
            if not batch:
                continue
            began = time.perf_counter()
            try:
                self._decode(batch)
            except Exception as err:  # one bad batch must not kill the server
                log.exception("decoding failed")
                for gen in batch:
                    if gen.finish_reason is None:
                        gen._fail(f"generation failed: {type(err).__name__}: {err}")
            self.stats.busy_seconds += time.perf_counter() - began
        self._drain("the server is shutting down")

    def _drain(self, message: str) -> None:
        while True:  # adapter changes that never ran: their callers get an answer now, not after a timeout
            try:
                self._tasks.get_nowait()[1].set_exception(EngineStopped(message))
            except queue.Empty:
                break
        held, self._held = self._held, None
        if held is not None:
            held._fail(message)
        while True:
            try:
                self._queue.get_nowait()._fail(message)
            except queue.Empty:
                return

    def _record(self, batch: list[Generation]) -> None:
        s = self.stats
        targets = {g.target or PEFT_BASE for g in batch}
        s.batches += 1
        s.rows += len(batch)
        s.largest_batch = max(s.largest_batch, len(batch))
        s.mixed_batches += len(targets) > 1
        for g in batch:
            key = g.target or self.base_id
            s.by_target[key] = s.by_target.get(key, 0) + 1

    def _decode(self, batch: list[Generation]) -> None:
        self._record(batch)
        decode(self.model, self.tokenizer, batch, decode_text=self.decode)
        self.stats.generated_tokens += sum(g.tokens for g in batch)
        self.stats.cancelled += sum(g.finish_reason == "cancelled" for g in batch)
