"""``Tutor``: a base model, optionally a LoRA adapter, and the prompt format it was trained with.

The notebook face of edulora: ``Tutor.load("runs/algebra").ask("Why is 3/4 + 1/8 = 7/8?")``. The
CLI's ``generate`` and ``chat``, the evaluation and the demo all go through it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .data.schema import Metadata, parse_metadata
from .errors import EduloraError
from .formatting import Message, PromptFormat
from .generation import Reply, Sampling, generate
from .modeling import AdapterInfo

#: Name a tutor without an adapter goes by in reports and the server.
BASE_NAME = "base"


class Tutor:
    """A model ready to tutor: ``ask`` one question, ``reply`` to whole conversations, ``base()`` to compare."""

    def __init__(self, model, tokenizer, format: PromptFormat, info: AdapterInfo, name: str = BASE_NAME,
                 source: str = "", adapter: str | None = None, backend: str = "transformers"):
        #: A transformers (PEFT) network, or for ``backend="llamacpp"`` an ``inference.llamacpp.LlamaCpp``.
        self.model = model
        self.backend = backend
        self.tokenizer = tokenizer
        self.format = format
        self.info = info
        self.name = name
        #: Where the tutor came from (run or adapter directory, or the base model's name).
        self.source = source or info.base_model
        #: The PEFT adapter this tutor answers with; None: the base model (any adapters of the network off).
        #: Several tutors may share one network that holds several adapters.
        self.adapter = adapter
        self._base_only = 0

    @property
    def is_base(self) -> bool:
        return self.adapter is None

    def as_base(self, name: str = BASE_NAME) -> Tutor:
        """The base model with this tutor's prompt format, sharing its network (nothing is loaded again)."""
        return Tutor(self.model, self.tokenizer, self.format, self.info, name, self.info.base_model, adapter=None,
                     backend=self.backend)

    @classmethod
    def load(cls, source: str | os.PathLike | None = None, *, base: str | None = None, precision: str = "auto",
             allow_pickle: bool = False, name: str | None = None, backend: str = "transformers",
             gguf: str | os.PathLike | None = None) -> Tutor:
        """A run directory or adapter directory (base + adapter), or no source: the base model alone.

        ``base`` replaces the base model the adapter names (e.g. a local copy of it). ``backend`` is
        ``"transformers"`` (the exact reference; ``precision`` applies) or ``"llamacpp"``: the base as
        GGUF (``gguf``, else the packaged file or an f16 export) and the adapter as a GGUF LoRA.
        """
        if backend == "llamacpp":
            model, tokenizer, info = _load_llamacpp(source, base, gguf, allow_pickle)
        elif backend == "transformers":
            from .modeling import load_tutor

            model, tokenizer, info = load_tutor(source, base, precision=precision, allow_pickle=allow_pickle)
        else:
            raise EduloraError(f"backend must be transformers or llamacpp, not {backend!r}")
        if source is None:
            fmt = PromptFormat.create(tokenizer)
            return cls(model, tokenizer, fmt, info, name or BASE_NAME, info.base_model, backend=backend)
        fmt = PromptFormat.create(tokenizer, info.template or "auto", info.system_prompt, info.answer_key)
        return cls(model, tokenizer, fmt, info, name or _default_name(Path(source)), str(source), adapter="default",
                   backend=backend)

    @property
    def metadata(self) -> Metadata:
        """What the adapter teaches (its subject, grade level and style), as recorded at training time."""
        return parse_metadata({"subject": self.info.subject, "grade_level": self.info.grade_level,
                               "teaching_style": self.info.teaching_style}, f"{self.source}: edulora.json")

    @contextlib.contextmanager
    def base(self) -> Iterator[Tutor]:
        """The base model with this tutor's prompt format: its adapter is disabled inside the block."""
        self._base_only += 1
        try:
            yield self
        finally:
            self._base_only -= 1

    @contextlib.contextmanager
    def active(self) -> Iterator[Any]:
        """The network in eval mode with this tutor's adapter on (or every adapter off for the base)."""
        if self.backend != "transformers":
            raise EduloraError(f"this needs the tutor's network: load it with backend='transformers', not {self.backend!r}")
        model = self.model
        was_training = model.training
        model.eval()  # a model fresh from training still has LoRA dropout on; replies must be deterministic
        peft = hasattr(model, "peft_config") and hasattr(model, "disable_adapter")
        try:
            if peft and (self.adapter is None or self._base_only):
                with model.disable_adapter():
                    yield model
            else:
                if peft and self.adapter not in (None, getattr(model, "active_adapter", None)):
                    model.set_adapter(self.adapter)
                yield model
        finally:
            model.train(was_training)

    def question(self, question: str, *, context: str | None = None, subject: str | None = None,
                 grade_level: str | None = None, teaching_style: str | None = None, answer: str | None = None,
                 solution: str | None = None) -> list[Message]:
        """The prompt messages for a question; metadata not given falls back to the adapter's."""
        own = self.metadata
        meta = parse_metadata({"subject": subject or own.subject,
                               "grade_level": grade_level or (own.grade_level and own.grade_level.value),
                               "teaching_style": teaching_style or (own.teaching_style and own.teaching_style.value),
                               "answer": answer, "solution": solution})
        return self.format.question(question, context, meta)

    def ask(self, question: str, *, context: str | None = None, subject: str | None = None,
            grade_level: str | None = None, teaching_style: str | None = None, answer: str | None = None,
            solution: str | None = None, sampling: Sampling | None = None) -> Reply:
        """One reply to one question. ``answer`` / ``solution`` are the teacher's key: the tutor guides toward
        them without stating them (when the adapter was trained with keys, or for the base model)."""
        messages = self.question(question, context=context, subject=subject, grade_level=grade_level,
                                 teaching_style=teaching_style, answer=answer, solution=solution)
        return self.generate([messages], sampling)[0]

    def reply(self, conversations: Sequence[Sequence[Message]], sampling: Sampling | None = None,
              metadata: Metadata | None = None, batch_size: int = 8) -> list[Reply]:
        """The next tutor turn for each conversation (each ends with a student turn).

        The adapter's persona (or ``metadata``'s, with its key) is added unless a conversation brings
        its own system turn.
        """
        meta = metadata if metadata is not None else self.metadata
        prompts = [self.format.with_persona(c, meta) for c in conversations]
        return self.generate(prompts, sampling, batch_size)

    def generate(self, prompts: Sequence[Sequence[Message]], sampling: Sampling | None = None,
                 batch_size: int = 8, desc: str = "generating replies") -> list[Reply]:
        """Replies to fully formed prompt messages (persona already in place); ``desc`` names the wait on its
        progress bar."""
        for i, messages in enumerate(prompts):
            if not messages or messages[-1]["role"] != "user":
                raise EduloraError(f"conversation {i}: must end with a user (student) turn")
        texts = [self.format.render(m) for m in prompts]
        if self.backend == "llamacpp":
            return self._generate_llamacpp(texts, sampling or Sampling(), batch_size, desc)
        with self.active() as model:
            return generate(model, self.tokenizer, texts, sampling or Sampling(), batch_size, desc)

    def _generate_llamacpp(self, texts: Sequence[str], sampling: Sampling, parallel: int,
                           desc: str = "generating replies") -> list[Reply]:
        """All replies in flight together (continuous batching), each with this tutor's adapter or none."""
        from .generation import CountedRequest
        from .progress import bar

        adapter = None if self.adapter is None or self._base_only else self.adapter
        shown = bar(desc=f"{desc} (llama.cpp)", total=len(texts), unit="reply")
        requests = [CountedRequest(self.tokenizer(t, add_special_tokens=False)["input_ids"], sampling, adapter, shown)
                    for t in texts]
        began = time.perf_counter()
        try:
            self.model.decode(self.tokenizer, requests, parallel=parallel)
        finally:
            shown.close()
        seconds = time.perf_counter() - began
        return [Reply(r.output.strip(), r.tokens, seconds, r.finish_reason or "stop") for r in requests]

    def __repr__(self) -> str:
        return f"Tutor({self.name!r}, source={self.source!r})"


def _default_name(source: Path) -> str:
    """A run's folder name; for a bare ``adapter`` folder, the run it sits in."""
    source = source.expanduser()
    from .rundir import RunDir

    return source.parent.name if source.name == RunDir.ADAPTER else source.name


def on_llamacpp(tutors: Sequence[Tutor], gguf: str | os.PathLike | None = None,
                allow_pickle: bool = False) -> list[Tutor]:
    """The same tutors (names, prompt formats, adapters) decoding on llama.cpp: one GGUF base (``gguf``, else
    the packaged file or an f16 export) with each adapter's saved folder as a GGUF LoRA, all loaded once.
    Tutors already on llama.cpp are returned as they are, when all are."""
    from .inference.llamacpp import load_llamacpp
    from .modeling import adapter_dir

    if all(t.backend == "llamacpp" for t in tutors):
        return list(tutors)
    bases = {t.info.base_model for t in tutors}
    if len(bases) != 1:
        raise EduloraError(f"llama.cpp serves one base model; these tutors have {len(bases)}: {', '.join(sorted(bases))}")
    folders = {t.adapter: adapter_dir(t.source) for t in tutors if t.adapter is not None}
    # One core for all: tutors here are asked one at a time (see ``LlamaCpp``'s per_adapter).
    model, tokenizer, _ = load_llamacpp(folders, bases.pop(), gguf, allow_pickle, per_adapter=False)
    return [Tutor(model, tokenizer, t.format, t.info, t.name, t.source, t.adapter, backend="llamacpp") for t in tutors]


def _load_llamacpp(source, base: str | None, gguf, allow_pickle: bool):
    """(LlamaCpp, tokenizer, info) for ``Tutor.load(..., backend="llamacpp")``; the adapter is named "default"."""
    from .config import DEFAULT_MODEL
    from .inference.llamacpp import load_llamacpp
    from .modeling import adapter_dir, read_adapter_info

    if source is None:
        info = AdapterInfo(base_model=base or DEFAULT_MODEL)
        adapters = {}
    else:
        folder = adapter_dir(source)
        info = read_adapter_info(folder)
        info.base_model = base or info.base_model
        adapters = {"default": folder}
    model, tokenizer, _ = load_llamacpp(adapters, info.base_model, gguf, allow_pickle, per_adapter=False)
    return model, tokenizer, info
