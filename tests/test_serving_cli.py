"""``edulora serve`` and ``edulora chat`` as a user runs them: real processes, real signals, piped stdin."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import pytest

from test_serving_support import launch_serve, serve_env, tiny_engine, tiny_runs  # noqa: F401  (fixtures)

from edulora.cli import main
from edulora.errors import EduloraError
from edulora.serving.engine import load_engine, parse_adapter_arg, validate_name


def test_serve_answers_then_stops_cleanly_on_sigterm(tiny_runs, tmp_path):
    openai = pytest.importorskip("openai")
    process, url = launch_serve("--adapter", f"math={tiny_runs['math']}", "--port", "0", "--precision", "fp32",
                                "--backend", "transformers", "--max-new-tokens", "4",
                                "--feedback-db", str(tmp_path / "fb.db"))
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=30)
        assert client.chat.completions.create(model="math", messages=[{"role": "user", "content": "hi"}]).model == "math"
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, rest
    assert "Stopped." in rest and "Traceback" not in rest
    assert (tmp_path / "fb.db").exists()


def test_serve_refuses_a_public_host_without_a_key(capsys):
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--api-key" in capsys.readouterr().err


def test_adapters_must_share_a_base_model(tiny_runs, tmp_path):
    other = tmp_path / "other-run"
    shutil.copytree(tiny_runs["bio"], other)
    meta = other / "adapter" / "edulora.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "base_model": "some-other-model"}))
    with pytest.raises(EduloraError, match="shared base model"):
        load_engine([("math", tiny_runs["math"]), ("other", other)])


def test_adapter_names_are_plain(tiny_runs):
    for bad in ("../etc", "a/b", "auto", "..", "x y", ""):
        with pytest.raises(EduloraError):
            validate_name(bad)
    assert parse_adapter_arg(f"math={tiny_runs['math']}") == ("math", str(tiny_runs["math"]))
    assert parse_adapter_arg(str(tiny_runs["bio"])) == (None, str(tiny_runs["bio"]))
    with pytest.raises(EduloraError, match="used twice"):
        load_engine([("same", tiny_runs["math"]), ("same", tiny_runs["bio"])])


def test_chat_streams_switches_and_resets(tiny_runs, tiny_engine):
    command = [sys.executable, "-m", "edulora", "chat", "--adapter", str(tiny_runs["math"]),
               "--adapter", f"bio={tiny_runs['bio']}", "--precision", "fp32", "--max-new-tokens", "6"]
    script = "What is 2+2?\n/adapter bio\nWhy?\n/adapter nope\n/adapters\n/reset\nHello\n/quit\n"
    done = subprocess.run(command, input=script, capture_output=True, text=True, timeout=120, env=serve_env())
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # The bare path was named after its subject; replies match what the engine says to the same history.
    first = tiny_engine.submit([{"role": "user", "content": "What is 2+2?"}], "math", max_tokens=6)
    first_text = first.text()
    assert f"mathematics> {first_text}\n" in out
    history = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": first_text},
               {"role": "user", "content": "Why?"}]
    second = tiny_engine.submit(history, "bio", max_tokens=6).text()
    assert f"bio> {second}\n" in out
    assert "now talking to bio (biology, high school, step by step)" in out
    assert "unknown adapter 'nope'" in out and "conversation cleared" in out
    fresh = tiny_engine.submit([{"role": "user", "content": "Hello"}], "bio", max_tokens=6).text()
    assert f"bio> {fresh}\n" in out  # /reset really forgot the history


def test_chat_gives_the_tutor_the_teachers_key(tiny_runs, tiny_engine):
    from edulora.data.schema import Metadata

    command = [sys.executable, "-m", "edulora", "chat", "--adapter", f"math={tiny_runs['math']}", "--precision",
               "fp32", "--max-new-tokens", "6", "--answer", "4", "--solution", "Two and two make four."]
    done = subprocess.run(command, input="What is 2+2?\n/quit\n", capture_output=True, text=True, timeout=120,
                          env=serve_env())
    assert done.returncode == 0, done.stderr
    question = [{"role": "user", "content": "What is 2+2?"}]
    key = Metadata(extra={"answer": "4", "solution": "Two and two make four."})
    keyed = tiny_engine.submit(question, "math", max_tokens=6, key=key).text()
    plain = tiny_engine.submit(question, "math", max_tokens=6).text()
    assert keyed != plain  # the key changes the prompt, so the (random) tutor says something else
    assert f"math> {keyed}\n" in done.stdout


def test_typer_checks_ranges_before_loading_anything(capsys):
    assert main(["serve", "--max-batch", "0"]) == 2
    assert "--max-batch" in capsys.readouterr().err


def test_a_bad_teacher_token_is_refused_before_loading_anything(capsys, monkeypatch):
    assert main(["serve", "--teacher", "ms-lee", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--teacher 'ms-lee': expected NAME=TOKEN" in err and len(err.strip().splitlines()) == 1
    assert main(["serve", "--teacher", "ms-lee=short", "--port", "0"]) == 2
    assert "at least 12 characters" in capsys.readouterr().err
    from edulora.serving.server import check_exposure
    from edulora.serving.service import parse_teachers

    check_exposure("0.0.0.0", parse_teachers(["ms-lee=token-of-ms-lee-0001"]))  # teachers' tokens lock it too
    monkeypatch.setenv("EDULORA_TEACHERS", "ms-lee=token-of-ms-lee-0001 mr-ray=short")  # space-separated
    assert main(["serve", "--port", "0"]) == 2
    assert "teacher 'mr-ray'" in capsys.readouterr().err


def test_serve_settings_are_one_object_checked_in_one_place(capsys):
    from edulora.serving import ServeSettings

    with pytest.raises(EduloraError, match=r"^--max-batch-tokens \(100\) must be at least --max-request-tokens"):
        ServeSettings.parse(max_batch_tokens=100)
    with pytest.raises(EduloraError, match=r"^--backend: Input should be 'auto', 'transformers'"):
        ServeSettings.parse(backend="tgi")
    assert ServeSettings.parse(teachers=None, allow_origins=["http://a.example"]).teachers == ()
    # the CLI's options arrive under the same names: a rule between two of them is refused before any model loads
    assert main(["serve", "--max-batch-tokens", "100", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--max-batch-tokens (100) must be at least --max-request-tokens (4096)" in err and err.count("\n") == 1
