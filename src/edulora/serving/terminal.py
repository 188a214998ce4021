"""``edulora chat``: the serving engine in a terminal, replies streamed as they are decoded."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..data.schema import Metadata
from ..generation import Sampling
from .engine import ContextTooLong, Engine

CHAT_HELP = "Commands: /adapter NAME (switch tutor), /adapters, /reset (forget the conversation), /quit"


def chat(adapters: Sequence[str | tuple[str | None, str | Path]] = (), *, base: str | None = None,
         precision: str = "auto", allow_pickle: bool = False, max_tokens: int = 256, temperature: float = 0.0,
         answer: str | None = None, solution: str | None = None, backend: str = "auto") -> None:
    """Chat with the adapters (switch with ``/adapter``) on stdin / stdout until ``/quit`` or end of input.

    ``answer`` / ``solution`` are the teacher's key for the problem discussed: the tutor gets them
    as private material and guides the student toward them. ``backend``: see ``choose_backend``.
    """
    from ..inference.llamacpp import choose_backend
    from .engine import load_engine, parse_adapter_arg, resolve_adapters
    from .llamacpp_engine import load_llamacpp_engine

    pairs = [parse_adapter_arg(a) if isinstance(a, str) else a for a in adapters]
    resolved = specs, base_model = resolve_adapters(pairs, base, allow_pickle)  # read once: to choose and load
    options = dict(base=base, allow_pickle=allow_pickle, max_batch=1, max_queue=2, default_max_tokens=max_tokens,
                   resolved=resolved)
    engine = (load_llamacpp_engine(pairs, **options)
              if choose_backend(backend, base_model, [s.folder for s in specs]) == "llamacpp"
              else load_engine(pairs, precision=precision, **options)).start()
    try:
        talk(engine, Sampling(temperature=temperature, repetition_penalty=engine.repetition_penalty),
             key_metadata(answer, solution))
    finally:
        engine.stop()


def key_metadata(answer: str | None, solution: str | None) -> Metadata | None:
    """The teacher's key as the metadata the prompt format reads it from (None without one)."""
    key = {k: v for k, v in (("answer", answer), ("solution", solution)) if v}
    return Metadata(extra=key) if key else None


def talk(engine: Engine, sampling: Sampling, key: Metadata | None = None, read: Callable[[str], str] = input,
         write: Callable[..., None] = print) -> None:
    """The conversation loop on an engine that is already running."""
    names = list(engine.adapters)
    current: str | None = names[0] if names else None
    history: list[dict[str, str]] = []

    def label(target: str | None) -> str:
        if target is None:
            return engine.base_id
        meta = engine.adapters[target].metadata
        return f"{target} ({', '.join(v.replace('_', ' ') for v in meta.values())})" if meta else target

    def command(line: str) -> bool:
        """Run a /command; False when the user leaves."""
        nonlocal current
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/reset":
            history.clear()
            write("(conversation cleared)", flush=True)
        elif name == "/adapters":
            for n in [*names, "base"]:
                chosen = n == current or (n == "base" and current is None)
                write(f"  {'*' if chosen else ' '} {label(None if n == 'base' else n)}", flush=True)
        elif name == "/adapter" and (rest in engine.adapters or rest in ("base", engine.base_id)):
            current = None if rest in ("base", engine.base_id) else rest
            write(f"(now talking to {label(current)})", flush=True)
        elif name == "/adapter":
            write(f"(unknown adapter {rest!r}; known: {', '.join([*names, 'base'])})", flush=True)
        else:
            write(f"(unknown command; {CHAT_HELP})", flush=True)
        return True

    write(f"Tutor: {label(current)}. {CHAT_HELP}", flush=True)
    try:
        while True:
            try:
                line = read("you> ").strip()
            except EOFError:
                write()
                return
            if line.startswith("/"):
                if not command(line):
                    return
                continue
            if not line:
                continue
            history.append({"role": "user", "content": line})
            try:
                gen = engine.submit(history, current, sampling, key=key)
            except ContextTooLong as err:
                history.pop()
                write(f"({err}; /reset starts over)", flush=True)
                continue
            write(f"{current or engine.base_id}> ", end="", flush=True)
            parts: list[str] = []
            try:
                for delta in gen.deltas():
                    parts.append(delta)
                    write(delta, end="", flush=True)
            except KeyboardInterrupt:  # stop this reply, keep the session
                gen.cancel()
                write(" (stopped)", end="")
            write(flush=True)
            history.append({"role": "assistant", "content": "".join(parts)})
    except KeyboardInterrupt:
        write()
