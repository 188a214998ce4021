"""Which adapters a server serves: names, folders, metadata, and the one base model they share.

Used at start (``resolve_adapters``) and when an adapter is added at run time (``find_adapter``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import ModelConfig
from ..errors import EduloraError
from ..generation import PEFT_BASE
from ..modeling import AdapterInfo, adapter_dir, adapter_weights, read_adapter_info
from ..rundir import RunDir

log = logging.getLogger(__name__)
#: Longest a re-added adapter waits for its earlier removal to free its weights.
REMOVAL_WAIT_S = 600.0
#: Adapter names travel in URLs, JSON and the web page; keep them plain.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
#: Names with another meaning in the API.
RESERVED_NAMES = {"auto", "base", PEFT_BASE}


@dataclass(frozen=True)
class AdapterSpec:
    """One adapter the engine serves, with where it came from."""

    name: str
    folder: Path
    info: AdapterInfo
    #: The training run directory when the adapter sits in one with its held-out records (they help routing).
    run_dir: RunDir | None = None

    @property
    def metadata(self) -> dict[str, str]:
        return {k: v for k, v in (("subject", self.info.subject), ("grade_level", self.info.grade_level),
                                  ("teaching_style", self.info.teaching_style)) if v}


def validate_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name) or name in (".", "..") or name in RESERVED_NAMES:
        raise EduloraError(f"adapter name {name!r}: use letters, digits, '_', '.' or '-' "
                           f"(and not {', '.join(sorted(RESERVED_NAMES))})")
    return name


def parse_adapter_arg(text: str) -> tuple[str | None, str]:
    """``NAME=PATH`` or a bare ``PATH`` (the name then comes from the adapter's subject or folder)."""
    name, sep, path = text.partition("=")
    if sep and NAME_PATTERN.fullmatch(name) and not Path(text).exists():
        return validate_name(name), path
    return None, text


def check_servable(folder: Path, weights: Path) -> None:
    """Refuse, in one line, an adapter no backend here can serve beside others: DoRA (PEFT cannot mix it into
    a batch of other adapters), or a safetensors file whose header does not cover it (truncated, garbled)."""
    try:
        dora = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get("use_dora")
    except (OSError, ValueError, AttributeError):
        dora = False  # a missing or odd config is the loader's to report
    if dora:
        raise EduloraError(f"{folder}: DoRA adapters cannot be served beside other adapters; merge it into its "
                           "base (edulora merge RUN --out DIR) and serve that with --base DIR")
    if weights.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(weights), "pt"):  # reads the header only
                pass
        except SafetensorError as err:
            raise EduloraError(f"{weights}: not a valid safetensors file ({err})") from None


def find_adapter(path: str | Path, name: str | None = None, allow_pickle: bool = False) -> AdapterSpec:
    folder = adapter_dir(path)
    check_servable(folder, adapter_weights(folder, allow_pickle))
    info = read_adapter_info(folder)
    if name is None:
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", info.subject or (folder.parent.name if folder.name == "adapter"
                                                                 else folder.name)) or "adapter"
    run = RunDir(folder.parent) if folder.name == RunDir.ADAPTER else None
    return AdapterSpec(validate_name(name), folder, info, run if run is not None and run.eval_file.is_file() else None)


def same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def display_name(base_model: str) -> str:
    """The id the API shows for the base model: a local folder's name, else the hub id / packaged name."""
    path = Path(base_model).expanduser()
    return path.name if path.exists() else base_model


def resolve_adapters(adapters: Sequence[tuple[str | None, str | Path]], base: str | None = None,
                     allow_pickle: bool = False) -> tuple[list[AdapterSpec], str]:
    """Each adapter's spec and the one base model they share (``base`` forces it)."""
    specs = [find_adapter(path, name, allow_pickle) for name, path in adapters]
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise EduloraError(f"adapter name used twice: {', '.join(duplicates)}; name them with --adapter NAME=RUN")
    base_model = base or (specs[0].info.base_model if specs else None) or ModelConfig().name
    if base is None:
        for spec in specs[1:]:
            if not same_model(spec.info.base_model, base_model):
                raise EduloraError(
                    f"adapters need one shared base model: {specs[0].name!r} was trained on {base_model!r} but "
                    f"{spec.name!r} on {spec.info.base_model!r}; serve them separately (or force one with --base)")
    return specs, base_model


class Unloading:
    """Adapters removed from serving whose weights are still being freed: the HTTP answer to a removal does
    not wait for the replies in flight, and a name comes back only once its old weights are gone."""

    def __init__(self) -> None:
        self._done: dict[str, threading.Event] = {}

    def begin(self, name: str) -> None:
        self._done[name] = threading.Event()

    def wait(self, name: str, timeout: float = REMOVAL_WAIT_S) -> bool:
        """Whether ``name`` is free (at once, or once its unloading ends within ``timeout``)."""
        done = self._done.get(name)
        return done is None or done.wait(timeout)

    def run(self, name: str, unload: Callable[[], None], wait: bool) -> None:
        """Run ``unload`` (after ``begin(name)``) now, or on a thread of its own when not ``wait``."""
        done = self._done[name]

        def run() -> None:
            try:
                unload()
            except Exception:
                if wait:
                    raise
                log.exception("unloading adapter %r failed", name)
            finally:
                done.set()
                if self._done.get(name) is done:
                    del self._done[name]

        if wait:
            run()
        else:
            threading.Thread(target=run, name=f"edulora-unload-{name}", daemon=True).start()
