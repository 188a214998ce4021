"""The command line's one error mapping, and commands reaching the Python API with every flag."""

from __future__ import annotations

import errno
import subprocess
import sys
from types import SimpleNamespace

import pytest
import typer

import edulora
from edulora.cli import main
from edulora.errors import EduloraError


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(err: str, needle: str) -> bool:
    return err.startswith("edulora: error: ") and needle in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv, needle", [
    (["train"], "give a config file"),
    (["train", "configs/default.yaml", "--resume", "runs/x"], "drop CONFIG and --set"),
    ([], "Missing command"),
    (["data"], "Missing command"),
    (["data", "validate", "--bogus", "x.jsonl"], "--bogus"),
    (["data", "convert", "in.jsonl"], "Missing option '--out'"),
    # Old spellings (issue 42): one line naming the new one, never read another way.
    (["data", "convert", "in.jsonl", "out.jsonl"], "Missing option '--out'"),
    (["data", "scrub", "in.jsonl", "out.jsonl"], "what a command writes is an option now: --out FILE"),
    (["merge", "runs/x", "merged"], "Missing option '--out'"),
    (["feedback", "export", "sft.jsonl"], "Missing option '--out'"),
    (["export", "runs/x", "--gguf", "t.gguf"], "--gguf is now --out"),
    (["eval", "runs/x", "--base"], "--base is now --with-base"),
    (["eval", "runs/x", "--base-model", "m"], "--base-model is now --base"),
    (["chat", "--max-tokens", "5"], "--max-tokens is now --max-new-tokens"),
    (["serve", "--max-tokens", "5"], "--max-tokens is now --max-new-tokens"),
    # serve and feedback export name the feedback database alike
    (["feedback", "export", "--out", "o.jsonl", "--feedback-db", "none.db"], "none.db: no feedback database"),
    (["generate", "q", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["eval", "--precision", "fp8"], "fp8"),
    (["data", "split", "d.jsonl", "--eval-fraction", "1.5", "--train-out", "a", "--eval-out", "b"], "--eval-fraction"),
])
def test_user_mistakes_are_one_line_and_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and one_line_error(err, needle), err


def test_real_entry_point_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "edulora", "train", "--resume", "runs/x", "--set", "lora.r=8"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and one_line_error(proc.stderr, "--resume continues a run")


def test_version_and_help(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out == f"edulora {edulora.__version__}\n"
    code, out, _ = run(capsys, "data", "report", "--help")
    assert code == 0 and "--near-threshold" in out and "--from" in out
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "what it writes is an option" in " ".join(out.split()) and "docs/cli.md" in out


def test_each_renamed_spelling_is_gone_and_its_new_one_is_there():
    """RENAMED cannot go stale: an old option re-added would be read, not refused (eval's --base is now the model)."""
    from edulora.cli import RENAMED, app

    commands = typer.main.get_command(app).commands
    for (name, old), new in RENAMED.items():
        options = {o for p in commands[name].params for o in p.opts}
        assert new.split()[0] in options and (old not in options or (name, old) == ("eval", "--base")), (name, old)


def _raising(error: BaseException):
    def validate(*args, **kwargs):
        raise error
    return validate


@pytest.mark.parametrize("error, exit_code, expected", [
    (KeyboardInterrupt(), 130, "edulora: interrupted"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/out.jsonl"), 2,
     "edulora: error: /ro/out.jsonl: Read-only file system"),
    (OSError(errno.ENOSPC, "No space left on device"), 2, "edulora: error: No space left on device"),
    (EduloraError("one line"), 2, "edulora: error: one line"),
])
def test_error_mapping(capsys, monkeypatch, error, exit_code, expected):
    monkeypatch.setattr(edulora.data, "validate", _raising(error))
    assert run(capsys, "data", "validate", "x.jsonl") == (exit_code, "", expected + "\n")


def test_other_os_errors_are_bugs_with_a_traceback(monkeypatch):
    monkeypatch.setattr(edulora.data, "validate", _raising(OSError(errno.EBADF, "Bad file descriptor")))
    with pytest.raises(OSError, match="Bad file descriptor"):
        main(["data", "validate", "x.jsonl"])


def test_generate_passes_every_flag_to_the_tutor(capsys, monkeypatch):
    from edulora.tutor import Tutor

    seen = {}

    def load(source=None, **options):
        seen["load"] = (source, options)
        return SimpleNamespace(ask=lambda question, **kw: seen.update(ask=(question, kw)) or SimpleNamespace(text="Hm?"))

    monkeypatch.setattr(Tutor, "load", staticmethod(load))
    code, out, _ = run(capsys, "generate", "--adapter", "runs/a", "What is 2+2?", "--grade-level", "grade 1",
                       "--answer", "4", "--solution", "count on: 3, 4", "--max-new-tokens", "9", "--precision", "fp32")
    assert code == 0 and out == "Hm?\n"
    assert seen["load"] == ("runs/a", {"base": None, "precision": "fp32", "allow_pickle": False})
    question, kw = seen["ask"]
    assert question == "What is 2+2?" and kw["answer"] == "4" and kw["solution"] == "count on: 3, 4"
    assert kw["grade_level"] == "grade 1" and kw["sampling"].max_new_tokens == 9 and kw["sampling"].temperature == 0


def test_train_and_resume_reach_the_api(capsys, monkeypatch):
    calls = []
    summary = edulora.RunSummary(eval_loss_before=2.5, eval_loss_after=1.25, train_tokens_per_s=300.0, wall_s=12.0)
    monkeypatch.setattr(edulora, "load_config", lambda path, overrides: ("config", path, list(overrides)), raising=False)
    monkeypatch.setattr(edulora, "train", lambda config, overwrite: calls.append((config, overwrite)) or
                        SimpleNamespace(summary=summary, run_dir="runs/new"), raising=False)
    monkeypatch.setattr(edulora, "resume", lambda run: calls.append(run) or
                        SimpleNamespace(summary=summary, run_dir=run), raising=False)
    code, out, _ = run(capsys, "train", "c.yaml", "--set", "lora.r=8", "--set=training.epochs=2", "--overwrite")
    assert code == 0 and out == "eval loss 2.5000 -> 1.2500; 300 tokens/s; 12 s\nruns/new\n"
    assert run(capsys, "train", "--resume", "runs/old")[:2] == (0, "eval loss 2.5000 -> 1.2500; 300 tokens/s; 12 s\nruns/old\n")
    assert calls == [(("config", "c.yaml", ["lora.r=8", "training.epochs=2"]), True), "runs/old"]


def test_serve_commands_stay_reachable(capsys):
    code, _, err = run(capsys, "serve", "--host", "0.0.0.0", "--port", "0")
    assert code == 2 and "--api-key" in err
