"""llama.cpp (through PyPI ``xllamacpp``, a prebuilt CPU wheel) as edulora's fast decoder.

One GGUF base and every adapter's GGUF LoRA are loaded once, each adapter in a llama.cpp server core
of its own, so concurrent users of different adapters never race over a global switch and never wait
for each other's adapter. Each core runs ``parallel`` slots with continuous batching: a request joins
its adapter's running batch as soon as a slot is free, and leaves it when done.

What edulora keeps for itself, so both backends answer alike: the prompt is tokenized by the
same Hugging Face tokenizer (llama.cpp receives token ids), and each new token id goes through
``generation``'s row logic (stop tokens, stop strings, UTF-8-safe streaming, cancellation). The
sampling rules are mapped one to one (greedy, temperature, top-p, a repetition penalty over the
prompt and reply), and llama.cpp's own extras (top-k 40, min-p 0.05) are switched off.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ..config import DEFAULT_MODEL
from ..errors import EduloraError
from ..generation import PEFT_BASE, Request, Sampling, Row, stop_token_ids
from ..modeling import cache_dir, packaged_gguf, resolve_model_path
from .convert import CONVERTER_VERSION, convert_model, gguf_refusal


class LlamaCppError(RuntimeError):
    """llama.cpp refused or failed a request (not the caller's fault)."""


def require_xllamacpp():
    try:
        import xllamacpp
    except ImportError:
        raise EduloraError("the llama.cpp backend needs the package xllamacpp: run 'pip install xllamacpp'") from None
    return xllamacpp


BACKENDS = ("auto", "llamacpp", "transformers")


def choose_backend(backend: str = "auto", base_model: str | None = None, adapters: Sequence[os.PathLike] = (),
                   log: Callable[[str], None] | None = None, gguf: str | os.PathLike | None = None) -> str:
    """``"llamacpp"`` or ``"transformers"``: ``"auto"`` decodes on llama.cpp when it is installed and the
    model would run on a CPU (where it is ~8× faster; docs/serving.md has its tolerance), else transformers.

    Given ``base_model`` (and ``adapters``' folders), ``"auto"`` also checks that llama.cpp can take them
    (an architecture llama.cpp's converter maps, plain LoRA adapters); when not, it picks transformers and
    ``log`` says why.
    """
    if backend not in BACKENDS:
        raise EduloraError(f"backend must be {', '.join(BACKENDS)}, not {backend!r}")
    if backend != "auto":
        return backend
    from ..modeling import device

    if not importlib.util.find_spec("xllamacpp") or device().type != "cpu":
        return "transformers"
    reason = None if base_model is None else llamacpp_refusal(base_model, adapters, gguf)
    if reason is not None:
        (log or print)(f"Backend: transformers, not llama.cpp: {reason}")
        return "transformers"
    return "llamacpp"


def llamacpp_refusal(base_model: str, adapters: Sequence[os.PathLike] = (),
                     gguf: str | os.PathLike | None = None) -> str | None:
    """Why llama.cpp cannot serve ``base_model`` with these adapter folders (None: it can): a base (or, for a
    ``.gguf`` base, the folder its adapters are converted against) whose architecture llama.cpp's converter has
    no layout for, an adapter kind llama.cpp cannot apply, or, with no ``gguf`` base file given, a conversion
    of the base that fails (it is cached: the load that follows reuses it)."""
    from .gguf_lora import lora_alpha, read_adapter_config

    try:
        reason = gguf_refusal(resolve_model_path(base_model))
        if reason:
            return reason
        for folder in adapters:
            lora_alpha(read_adapter_config(Path(folder)), Path(folder))
        if gguf is None:
            base_gguf(base_model)
    except (EduloraError, OSError, ValueError) as err:
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


def base_gguf(base_model: str, gguf: str | os.PathLike | None = None) -> Path:
    """The GGUF file to serve ``base_model`` from: ``gguf`` when given, the packaged file for the default
    model (the very weights training dequantized), a ``.gguf`` base itself, else an f16 export in the cache."""
    if gguf is not None:
        path = Path(gguf).expanduser()
        if not path.is_file():
            raise EduloraError(f"{path}: no such GGUF file")
        return path
    if base_model in (DEFAULT_MODEL, "default", ""):
        return packaged_gguf()
    if Path(base_model).expanduser().suffix == ".gguf":
        return base_gguf(base_model, base_model)
    folder = Path(resolve_model_path(base_model))
    # Keyed by the folder, its config's time and the converter that lays the file out.
    stamp = f"{folder.resolve()}:{(folder / 'config.json').stat().st_mtime_ns}" if folder.is_dir() else str(folder)
    stamp += f":{CONVERTER_VERSION}"
    out = cache_dir() / "gguf" / f"{folder.name}-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}-f16.gguf"
    if not out.is_file():
        convert_model(folder, out, dtype="f16", name=folder.name, for_edulora=True)
    return out


THREADS_VARIABLE = "EDULORA_LLAMACPP_THREADS"


def default_threads() -> int:
    """llama.cpp's threads: ``$EDULORA_LLAMACPP_THREADS``, else every core this process may use.

    Safe on a shared machine only because ``LlamaCpp`` also turns off llama.cpp's spin-waiting
    (``poll`` 0): with spinning threads meeting at a barrier after every operation, one of them losing
    its core to another busy process stalls them all (2 threads decoded 0.1 tokens/s next to a training
    run). Without spinning, measured side by side on 2 AVX2 cores (``benchmarks/llamacpp_threads.py``,
    8 requests together): idle, 2 threads decode 1.45x what 1 thread does; next to a 2-thread PyTorch
    job they keep 86% of 1 thread's rate, where spinning ones keep 41%.
    """
    value = os.environ.get(THREADS_VARIABLE, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise EduloraError(f"{THREADS_VARIABLE}={value!r}: expected a whole number of threads, 1 or more")
        return int(value)
    return max(1, len(os.sched_getaffinity(0)))


class _Core:
    """One llama.cpp server core: the GGUF base with GGUF LoRAs, each request setting their scales.

    llama.cpp applies LoRA scales to a whole batch, so one core decodes together only the requests of one
    adapter: with several adapters in one core, the others' requests wait for their turn. A core per adapter
    lets every adapter's requests decode at once (see ``LlamaCpp``)."""

    def __init__(self, gguf: Path, loras: Mapping[str, Path], *, parallel: int, context: int, threads: int | None,
                 exact_cache: bool, poll: int):
        xllamacpp = require_xllamacpp()
        self.loras = dict(loras)
        self.names = list(self.loras)
        params = xllamacpp.CommonParams()
        params.model.path = str(gguf)
        params.n_parallel = max(1, parallel)
        # One KV cache shared by the core's slots: ``context`` bounds the whole batch, like the transformers
        # engine's max_batch_tokens, instead of reserving a full context for every slot.
        params.kv_unified = True
        params.n_ctx = context
        params.ctx_shift = False  # edulora bounds prompt + reply itself; never drop context silently
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads or default_threads()
        # No spin-waiting between operations by default (llama.cpp's own default is 50): see default_threads.
        params.cpuparams.poll = params.cpuparams_batch.poll = poll
        # Loaded with scale 0: each request sets the scales it wants (``LlamaCpp.body``).
        params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(p), 0.0) for p in self.loras.values()]
        # The core also listens on a loopback port; a random key keeps that door shut (edulora calls it in-process).
        params.api_keys = [secrets.token_hex(24)]
        params.verbosity = -1
        if exact_cache:
            params.cache_type_k = params.cache_type_v = xllamacpp.ggml_type.GGML_TYPE_F32
            # llama.cpp's CPU flash attention (on by default) rounds K and V through f16 even from an f32
            # cache: measured on the tiny f32 model, log-probs then differ from the PEFT forward by up to
            # 1e-2 (2e-5 without it), enough to flip near-tied greedy picks a few tokens into a reply.
            params.flash_attn_type = xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED
        # No host-RAM prompt cache shared across slots: each slot keeps its own (``cache_prompt``), which
        # serves a conversation's next turn; a shared one would cost memory in every core.
        params.cache_ram_mib = 0
        try:
            self.server = xllamacpp.Server(params)
        except Exception as err:  # llama.cpp reports a bad file or a mismatched adapter as a runtime error
            raise EduloraError(f"llama.cpp could not load {gguf.name} with adapters "
                               f"{', '.join(self.names) or 'none'}: {err}") from None
        # xllamacpp's Server reports ready before its task loop runs, and a loop that starts after the
        # Server was told to stop never stops: freeing a core that young hung its destructor forever (seen
        # here: 1 core in ~4 freed at once; a test run stalled until CI's time ran out). One answered
        # request proves the loop is running (one prompt token, ~10 ms), so freeing a core is always safe.
        self.server.handle_completions({"prompt": [0], "n_predict": 0, "stream": True}, lambda chunk: False)


class LlamaCpp:
    """A GGUF base with named GGUF LoRA adapters in llama.cpp, one server core per adapter (no HTTP is used).

    Each adapter's core (and the base's, started on its first request) batches its own requests
    continuously; the cores decode side by side on the same threads' worth of CPU. Measured on a class of
    30 students over 4 adapters and the base (docs/benchmarks.md, "A core per adapter"), where one core
    with every adapter had to let the adapters take turns: median first token 15.8 -> 0.67 s, p95 23.2 ->
    1.59 s, 72.8 -> 94.4 tokens/s in total. The cost is memory: every core holds its own KV cache
    (``context`` tokens) and buffers, ~220 MB for SmolLM2-135M at 8,192 tokens; the weights are mapped
    from the file once.

    ``per_adapter=False`` keeps every adapter and the base in one core instead, for one user asking one
    tutor at a time (``Tutor``, evaluations): there is nothing to decode side by side, and one further
    core that merely exists halved a single reply's decoding rate (libgomp's threads spin less once a
    process holds more of them than CPUs; docs/benchmarks.md, "What an idle core costs")."""

    def __init__(self, gguf: str | os.PathLike, loras: Mapping[str, str | os.PathLike] | None = None, *,
                 parallel: int = 8, context: int = 8192, threads: int | None = None, exact_cache: bool = False,
                 poll: int = 0, per_adapter: bool = True, cores: Mapping[str | None, _Core] | None = None):
        """``parallel`` and ``context`` are per core. ``poll`` is llama.cpp's spin-wait level between
        operations (0-100; see ``default_threads``). ``exact_cache`` keeps attention in f32 (llama.cpp's
        default rounds K and V to f16): for f32 bases, where llama.cpp then computes what the PEFT forward
        computes, up to f32 rounding. ``cores``: running cores to reuse (see ``reloaded``)."""
        require_xllamacpp()
        self.gguf = Path(gguf)
        self.loras = {name: Path(path) for name, path in (loras or {}).items()}
        self.names = list(self.loras)
        self.settings = {"parallel": parallel, "context": context, "threads": threads, "exact_cache": exact_cache,
                         "poll": poll}
        self.per_adapter = per_adapter
        self.vocab: ByteVocab | None = None
        if not self.gguf.is_file():
            raise EduloraError(f"{self.gguf}: no such GGUF file")
        running = dict(cores or {}) if per_adapter else {}
        self._lock = threading.Lock()
        self._cores: dict[str | None, _Core] = {}
        if not per_adapter:
            shared = self._start(self.loras)
            self._cores = {name: shared for name in [*self.names, None]}
            return
        for name, path in self.loras.items():  # every adapter's core now: a bad LoRA file fails here, not mid-class
            kept = running.get(name)
            self._cores[name] = kept if kept is not None and kept.loras == {name: path} else self._start({name: path})
        if running.get(None) is not None:
            self._cores[None] = running[None]
        elif not self.loras:
            self._cores[None] = self._start({})

    @property
    def started(self) -> list[str | None]:
        """The adapters whose cores are running (None: the base's)."""
        with self._lock:
            return list(self._cores)

    def _start(self, loras: Mapping[str, Path]) -> _Core:
        return _Core(self.gguf, loras, **self.settings)

    def core(self, adapter: str | None) -> _Core:
        """The core that decodes ``adapter``'s requests (None: the base's, started on first use: a tutor
        server's base may never be asked, and each core costs memory)."""
        with self._lock:
            if adapter not in self._cores:
                if adapter is not None:
                    raise EduloraError(f"adapter {adapter!r} is not loaded in llama.cpp")
                self._cores[None] = self._start({})
            return self._cores[adapter]

    def reloaded(self, loras: Mapping[str, str | os.PathLike]) -> LlamaCpp:
        """The same base and settings with these adapters, keeping the cores of adapters that stay.

        llama.cpp fixes a core's LoRA file when it starts (its server can change the scale, not load
        another), so an added adapter gets a core of its own; a removed adapter's core decodes what it
        has in flight and is freed when its last request ends.
        """
        with self._lock:
            running = dict(self._cores)
        new = LlamaCpp(self.gguf, loras, per_adapter=self.per_adapter, cores=running, **self.settings)
        new.vocab = self.vocab
        return new

    def use_tokenizer(self, tokenizer) -> None:
        """The Hugging Face tokenizer whose ids the requests carry (see ``ByteVocab``)."""
        if self.vocab is None or self.vocab.tokenizer is not tokenizer:
            self.vocab = ByteVocab(tokenizer)

    @staticmethod
    def adapter_of(request: Request) -> str | None:
        """The adapter ``request`` asks for, None for the base (which the serving layer calls ``PEFT_BASE``)."""
        return None if request.adapter == PEFT_BASE else request.adapter

    def body(self, request: Request, core: _Core) -> dict:
        """The completion request for ``request`` to ``core``, its adapter's (see ``send``): token ids in, one
        token id per streamed chunk out."""
        s: Sampling = request.sampling
        adapter = self.adapter_of(request)
        return {
            "prompt": list(request.prompt_ids), "n_predict": s.max_new_tokens, "stream": True,
            "n_probs": 1,  # the chosen token's id comes with its log-probability
            "temperature": s.temperature, "top_p": s.top_p if s.temperature > 0 else 1.0, "top_k": 0,
            "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": s.repetition_penalty,
            "repeat_last_n": len(request.prompt_ids) + s.max_new_tokens,  # the whole prompt and reply, as transformers
            "presence_penalty": 0.0, "frequency_penalty": 0.0, "dry_multiplier": 0.0,
            "seed": s.seed if s.seed is not None else int.from_bytes(uuid.uuid4().bytes[:4], "little"),
            # Only this request's adapter counts (an adapter's own core holds just it; the base's holds none).
            "lora": [{"id": i, "scale": 1.0 if name == adapter else 0.0}
                     for i, name in enumerate(core.names)],
            # A slot keeps its last prompt's KV cache, so the next turn of a conversation (or the next open
            # turn of an evaluated dialogue) evaluates only its new tokens. A core of one adapter never
            # serves another; a shared core's server clears a slot's cache when the next request's adapter
            # scales differ ("clearing cache for lora change"). Both tested against the PEFT forward.
            "cache_prompt": True,
            # Every chunk says how many prompt tokens came from the slot's cache, known from the first token on:
            # edulora usually ends a request (stop token or string, length) before llama.cpp's last chunk.
            "timings_per_token": True,
        }

    def send(self, request: Request, on_chunk: Callable[[dict], bool], **overrides) -> None:
        """``request`` to its adapter's core, each streamed chunk to ``on_chunk`` (which returns True to stop
        it); ``overrides`` replace fields of ``body`` (benchmarks and tests: ``cache_prompt``, ``n_probs``)."""
        core = self.core(self.adapter_of(request))
        core.server.handle_completions({**self.body(request, core), **overrides}, on_chunk)

    def run(self, request: Request, decode_text: Callable[[list[int]], str], stop_ids: set[int]) -> None:
        """Decode ``request`` to its end (blocking; other threads' requests share its core's batch meanwhile)."""
        row = Row(request, decode_text, stop_ids, torch.device("cpu"))
        vocab = self.vocab
        failure: list[str] = []
        ended: list[str] = []

        def on_chunk(chunk: dict) -> bool:  # True tells llama.cpp to stop this request
            if "choices" not in chunk:
                failure.append(str(chunk.get("message") or chunk.get("error") or chunk))
                return True
            if "timings" in chunk:
                request.cached_tokens = int(chunk["timings"].get("cache_n", 0))
            choice = chunk["choices"][0]
            for item in (choice.get("logprobs") or {}).get("content") or ():
                for token in vocab.tokens(int(item["id"]), bytes(item.get("bytes") or b"")):
                    if row.advance(token):
                        return True
            if choice.get("finish_reason"):
                ended.append(choice["finish_reason"])
            return request.cancelled

        if not request.cancelled:
            self.send(request, on_chunk)
        if failure:
            raise LlamaCppError(failure[0])
        if request.finish_reason is None:
            # llama.cpp stopped first: an end-of-generation token (not streamed), its length limit, or a cancel.
            if request.cancelled:
                request.finish("cancelled")
            else:
                row.finish(decode_text(row.tokens), "length" if ended == ["length"] else "stop")

    def decode(self, tokenizer, requests: Sequence[Request], decode_text=None, parallel: int = 8) -> None:
        """Every request decoded to its end, up to ``parallel`` at a time (continuous batching)."""
        decode_text = decode_text or _thread_safe_decoder(tokenizer)
        self.use_tokenizer(tokenizer)
        stops = set(stop_token_ids(tokenizer))
        with ThreadPoolExecutor(max(1, min(parallel, len(requests)))) as pool:
            for future in [pool.submit(self.run, r, decode_text, stops) for r in requests]:
                future.result()


def _thread_safe_decoder(tokenizer) -> Callable[[list[int]], str]:
    """Fast tokenizers raise "Already borrowed" when used from several threads at once."""
    lock = threading.Lock()

    def decode(tokens: list[int]) -> str:
        with lock:
            return tokenizer.decode(tokens, skip_special_tokens=True)

    return decode


class ByteVocab:
    """Token ids from llama.cpp's stream, including the ones it folds into the next chunk.

    llama.cpp holds back a token that ends inside a UTF-8 character and streams it together with the
    next one, reporting only the last token's id but the bytes of both. The held tokens are found
    again from those leading bytes (longest vocabulary match), so the reply's tokens stay complete.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        to_byte = byte_level_alphabet()
        special = set(getattr(tokenizer, "all_special_tokens", ()))
        self.by_id: dict[int, bytes] = {}
        for text, token_id in tokenizer.get_vocab().items():
            byte_level = text not in special and all(c in to_byte for c in text)
            self.by_id[token_id] = bytes(to_byte[c] for c in text) if byte_level else text.encode()
        self.by_bytes = {b: i for i, b in sorted(self.by_id.items(), reverse=True)}
        self.longest = max(map(len, self.by_bytes), default=1)

    def tokens(self, token_id: int, raw: bytes) -> list[int]:
        own = self.by_id.get(token_id, b"")
        if len(raw) <= len(own) or not raw.endswith(own):
            return [token_id]
        held, out = raw[: len(raw) - len(own)], []
        while held:
            for size in range(min(len(held), self.longest), 0, -1):
                if held[:size] in self.by_bytes:
                    out.append(self.by_bytes[held[:size]])
                    held = held[size:]
                    break
            else:
                raise LlamaCppError(f"llama.cpp streamed bytes {held!r} that no token of the tokenizer spells")
        return out + [token_id]


def byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE's character for each byte: printable Latin-1 bytes stand for themselves, the
    other 68 bytes (controls, space, a few more) take the characters from U+0100 on, in byte order."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in printable]
    return {**{chr(b): b for b in printable}, **{chr(0x100 + i): b for i, b in enumerate(others)}}


def load_llamacpp(adapters: Mapping[str, Path], base_model: str, gguf: str | os.PathLike | None = None,
                  allow_pickle: bool = False, parallel: int = 8, context: int = 8192, exact_cache: bool | None = None,
                  per_adapter: bool = True):
    """(LlamaCpp, tokenizer, base config): the base's GGUF with each adapter folder as a GGUF LoRA, loaded once
    (``per_adapter``: see ``LlamaCpp``)."""
    from transformers import AutoConfig

    from ..modeling import load_tokenizer
    from .gguf_lora import cached_gguf_lora

    folder = resolve_model_path(base_model)
    config = AutoConfig.from_pretrained(folder)
    tokenizer = load_tokenizer(folder)
    loras = {name: cached_gguf_lora(Path(path), folder, allow_pickle) for name, path in adapters.items()}
    path = base_gguf(base_model, gguf)
    if exact_cache is None:  # an f32 base is asked for exactness: keep its KV cache in f32 too
        exact_cache = _all_f32(path)
    model = LlamaCpp(path, loras, parallel=parallel, context=context, exact_cache=exact_cache, per_adapter=per_adapter)
    model.use_tokenizer(tokenizer)
    return model, tokenizer, config


def _all_f32(path: Path) -> bool:
    from gguf import GGMLQuantizationType, GGUFReader

    return all(t.tensor_type == GGMLQuantizationType.F32 for t in GGUFReader(str(path)).tensors)
