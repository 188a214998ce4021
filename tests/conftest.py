"""Shared fixtures: tiny random models built from configs (fast), and the real packaged model (e2e).

Also the two test tiers (docs/testing.md): ``pytest`` runs the fast tier, ``make test`` both. A test
is ``slow`` by what it uses, found in its code (see ``SLOW_USES``); a test left in the fast tier that
still trains, starts a process or runs long fails with a message saying how to mark it.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
import types
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# --------------------------------------------------------------------------------------------
# Two tiers
# --------------------------------------------------------------------------------------------

#: What makes a test slow when its code, a fixture it uses or a helper of tests/ they call uses it:
#: a module, or a function by its qualified name (anything under it counts too).
SLOW_USES = {
    "subprocess": "starts a child process (the CLI, a server, torchrun)",
    "edulora.training.recipe.train": "runs a training",
    "edulora.training.recipe.resume": "runs a training",
    "xllamacpp": "runs llama.cpp",
    "edulora.inference.llamacpp.load_llamacpp": "runs llama.cpp",
    # GGUF files are written by llama.cpp's converter in a child process (edulora.inference.convert).
    "edulora.inference.convert": "converts to GGUF in a child process",
    "edulora.inference.gguf_lora.write_gguf_lora": "converts to GGUF in a child process",
    "edulora.inference.gguf_lora.cached_gguf_lora": "converts to GGUF in a child process",
    "edulora.export.write_gguf": "converts to GGUF in a child process",
    "edulora.export.export_gguf": "converts to GGUF in a child process",
    "playwright": "drives a browser",
    "benchmarks": "runs a script from benchmarks/ (timing loops)",
}
#: Markers that make a test slow: e2e runs the real packaged model.
SLOW_MARKERS = ("slow", "e2e")
#: CPU seconds a fast-tier test body (or one fixture's set-up) may take; far above any fast test today.
FAST_CPU_LIMIT_S = 30.0
#: Fixtures exempt from that limit: the packaged model is converted once per machine, then cached.
ONCE_PER_MACHINE = {"packaged_model_dir"}


def _names_used(code: types.CodeType, namespace: dict, seen: set) -> set[str]:
    """Qualified names of the modules and functions ``code`` refers to (by name, attribute, import or
    string, as in ``importorskip``), following the helpers defined under tests/ that it calls."""
    if code in seen:
        return set()
    seen.add(code)
    # A module named in a string counts as used: pytest.importorskip("playwright.sync_api").
    found = {c for c in code.co_consts if isinstance(c, str) and all(p.isidentifier() for p in c.split("."))}
    for name in code.co_names:
        obj = namespace.get(name, sys.modules.get(name))
        if obj is None and name.split(".")[0] == "edulora":
            # A function-level ``from edulora.x import y`` names a module that may not be imported yet when
            # only this file is collected: import it (ours, cheap) so what it holds is found all the same.
            try:
                obj = importlib.import_module(name)
            except ImportError:
                obj = None
        if isinstance(obj, types.ModuleType):
            found.add(obj.__name__)
            # Attributes of the module that the code names too (``subprocess.run``, ``el.train``).
            for attr in code.co_names:
                with warnings.catch_warnings():  # numpy warns on some names it deprecates (np.str)
                    warnings.simplefilter("ignore")
                    value = getattr(obj, attr, None) if not attr.startswith("_") else None
                if callable(value) and hasattr(value, "__qualname__"):
                    found.add(f"{getattr(value, '__module__', obj.__name__)}.{value.__qualname__}")
        elif callable(obj) and hasattr(obj, "__qualname__"):
            found.add(f"{getattr(obj, '__module__', '')}.{obj.__qualname__}")
        helper = getattr(obj, "__code__", None)
        if helper is not None and Path(helper.co_filename).is_relative_to(TESTS):
            found |= _names_used(helper, obj.__globals__, seen)
    for const in code.co_consts:  # nested functions, lambdas, comprehensions
        if isinstance(const, types.CodeType):
            found |= _names_used(const, namespace, seen)
    return found


def _slow_reason(item) -> str | None:
    for name in SLOW_MARKERS:
        if item.get_closest_marker(name):
            return f"marked {name}"
    functions = [(item.name, item.function)] if hasattr(item, "function") else []
    fixtures = getattr(item, "_fixtureinfo", None)
    for name in item.fixturenames:
        for definition in fixtures.name2fixturedefs.get(name, ()) if fixtures else ():
            functions.append((f"fixture {name}", definition.func))
    seen: set = set()
    for label, function in functions:
        code = getattr(function, "__code__", None)
        if code is None or not Path(code.co_filename).is_relative_to(TESTS):
            continue
        for used in sorted(_names_used(code, function.__globals__, seen)):
            for slow, why in SLOW_USES.items():
                if used == slow or used.startswith(slow + "."):
                    return f"{label} {why} ({used})"
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        reason = _slow_reason(item)
        if reason and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow(reason=reason))


class FastTierGuard:
    """Fails a fast-tier test that trains, starts a process or takes long: the tier stays fast by
    construction, not by everyone remembering. Watches through Python's audit events (process
    starts) and torch's global optimizer hook (training steps), both public hooks; nothing is patched."""

    PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.posix_spawn", "os.fork", "os.forkpty", "os.exec"}

    def __init__(self):
        self.item = None
        self.problems: list[str] = []
        self.optimizer_hook = None
        # platform runs `uname -p` once per process and caches the answer; asked here, a library asking
        # later (the OpenAI client does) is not taken for a test starting a process.
        platform.processor()
        sys.addaudithook(self.audit)  # cannot be removed; inert while no fast test runs

    def audit(self, event, args):
        if self.item is not None and event in self.PROCESS_EVENTS:
            self.problems.append(f"started a process ({event}: {str(args[:2])[:120]})")

    def optimizer_step(self, optimizer, args, kwargs):
        if self.item is not None and not any("optimizer step" in p for p in self.problems):
            self.problems.append("ran an optimizer step (a training)")

    def start(self, item):
        optim = sys.modules.get("torch.optim.optimizer")
        if self.optimizer_hook is None and optim is not None:
            self.optimizer_hook = optim.register_optimizer_step_pre_hook(self.optimizer_step)
        self.item, self.problems = item, []

    def report(self) -> str | None:
        self.item, problems = None, self.problems
        if not problems:
            return None
        return ("this fast-tier test " + "; ".join(dict.fromkeys(problems)) + ".\nMark it slow "
                "(@pytest.mark.slow), or use a fixture or helper that does this, so its kind is found by "
                "what it uses (SLOW_USES in tests/conftest.py); see docs/testing.md.")


_guard: FastTierGuard | None = None


def pytest_configure(config):
    global _guard
    _guard = FastTierGuard()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if not item.get_closest_marker("slow"):
        _guard.start(item)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    started = time.process_time()
    result = yield
    spent = time.process_time() - started
    if _guard.item is not None and fixturedef.argname not in ONCE_PER_MACHINE and spent > FAST_CPU_LIMIT_S:
        _guard.problems.append(f"set up fixture {fixturedef.argname} in {spent:.1f} s of CPU (limit "
                               f"{FAST_CPU_LIMIT_S:g} s)")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    started = time.process_time()
    try:
        return (yield)
    finally:
        spent = time.process_time() - started
        if _guard.item is item and spent > FAST_CPU_LIMIT_S:
            _guard.problems.append(f"took {spent:.1f} s of CPU (limit {FAST_CPU_LIMIT_S:g} s)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    # The verdict on the call (or on a set-up that failed or skipped: no call follows).
    if _guard.item is item and (call.when == "call" or (call.when == "setup" and not report.passed)):
        problem = _guard.report()
        if problem and not report.skipped:
            report.outcome = "failed"
            report.longrepr = f"{report.longrepr}\n\n{problem}" if report.longrepr else problem
    return report


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def packaged_model_dir() -> Path:
    """The packaged SmolLM2 converted to safetensors (once per machine, in the user cache)."""
    from edulora.modeling import DEFAULT_MODEL, resolve_model_path

    return Path(resolve_model_path(DEFAULT_MODEL))


def _save_tiny(tmp: Path, kind: str, packaged: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(packaged)
    vocab = len(tokenizer)
    if kind == "llama":
        config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                             tie_word_embeddings=True, initializer_range=0.3, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        model = LlamaForCausalLM(config)
    else:
        config = GPT2Config(vocab_size=vocab, n_embd=64, n_layer=2, n_head=4, n_positions=2048, initializer_range=0.3,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        model = GPT2LMHeadModel(config)
    out = tmp / f"tiny-{kind}"
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, packaged_model_dir) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("models"), "llama", packaged_model_dir)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory, packaged_model_dir) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("models"), "gpt2", packaged_model_dir)


@pytest.fixture
def write_jsonl(tmp_path):
    """Write rows (dicts or raw strings) to a JSONL file and return its path."""

    def write(rows, name: str = "data.jsonl") -> Path:
        path = tmp_path / name
        lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return path

    return write


def tutoring_rows(n: int = 24) -> list[dict]:
    """A small, consistent data set a tiny model can overfit: a fixed phrasing per style."""
    subjects = ["mathematics", "biology", "history"]
    styles = ["socratic", "step_by_step", "direct_instruction"]
    rows = []
    for i in range(n):
        a, b = 2 + i % 7, 3 + i % 5
        rows.append({
            "instruction": f"What is {a} times {b}?",
            "response": f"Let's work it out. {a} groups of {b} make {a * b}. So the answer is {a * b}.",
            "metadata": {"subject": subjects[i % 3], "grade_level": "elementary", "teaching_style": styles[i % 3]},
        })
    return rows


def write_tutoring_file(folder: Path, n: int = 24) -> Path:
    """``tutoring_rows(n)`` as ``folder/data.jsonl`` (for module-scoped fixtures, which cannot use write_jsonl)."""
    path = folder / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in tutoring_rows(n)), encoding="utf-8")
    return path


def short_examples(vocab: int):
    """Four short token sequences, the first half of each a prompt (label -100)."""
    import torch

    from edulora.formatting import EncodedExample

    torch.manual_seed(1)
    out = []
    for n in (9, 14, 6, 11):
        ids = torch.randint(5, vocab, (n,)).tolist()
        out.append(EncodedExample(ids, [-100] * (n // 2) + ids[n // 2:]))
    return out
