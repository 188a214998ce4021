"""Hostile or broken inputs to the command line: one line naming the file (or FILE:LINE), exit 2, no traceback.

Symbolic link loops and lone UTF-16 surrogates for the data commands; damaged adapters (weights, links,
``edulora.json``, a malicious pickle) for the commands that load one.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_serving_support import tiny_runs  # noqa: F401  (fixture)

from edulora.cli import main
from edulora.errors import EduloraError

GOOD = {"instruction": "What is 3 x 4?", "response": "Think of 3 rows of 4 apples; count them.",
        "metadata": {"subject": "math"}}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err: str, needle: str) -> bool:
    return err.startswith("edulora: error: ") and needle in err and len(err.splitlines()) == 1


def data_commands(src: Path, tmp_path: Path) -> dict[str, list]:
    return {"validate": ["validate", src], "convert": ["convert", src, "--out", tmp_path / "o.jsonl"],
            "scrub": ["scrub", src, "--out", tmp_path / "o.jsonl"], "report": ["report", src],
            "split": ["split", src, "--train-out", tmp_path / "t.jsonl", "--eval-out", tmp_path / "e.jsonl"]}


# --------------------------------------------------------------------------- data commands


@pytest.mark.parametrize("command", ["validate", "convert", "scrub", "report", "split"])
def test_a_symlink_loop_as_input_is_one_line(tmp_path, capsys, command):
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop.name)
    code, out, err = run(capsys, "data", *data_commands(loop, tmp_path)[command])
    assert code == 2 and out == "" and one_line(err, f"{loop}: symbolic link loop"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop.jsonl"]  # nothing written


def test_a_symlink_loop_through_the_real_entry_point(tmp_path):
    loop = tmp_path / "a.jsonl"
    loop.symlink_to(tmp_path / "b.jsonl")
    (tmp_path / "b.jsonl").symlink_to(loop)
    proc = subprocess.run([sys.executable, "-m", "edulora", "data", "convert", str(loop), "--out", str(tmp_path / "o.jsonl")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert one_line(proc.stderr, f"{loop}: symbolic link loop"), proc.stderr


SURROGATE_LINE = '{"instruction": "hi \\ud800 there", "response": "Hello."}'


@pytest.mark.parametrize("command", ["validate", "convert", "scrub", "report", "split"])
def test_a_lone_surrogate_is_reported_at_its_line(tmp_path, capsys, command):
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps(GOOD) + "\n" + SURROGATE_LINE + "\n", encoding="utf-8")
    code, out, err = run(capsys, "data", *data_commands(src, tmp_path)[command])
    assert code == 2 and out == ""
    assert f"{src}:2: holds a lone UTF-16 surrogate '\\ud800'" in err, err
    assert not any(p.name != "d.jsonl" for p in tmp_path.iterdir())  # nothing written


def test_surrogates_in_a_json_array_and_real_pairs(tmp_path, capsys):
    array = tmp_path / "d.json"
    array.write_text('[\n{"instruction": "q", "response": "a"},\n{"instruction": "q", "response": "a \\udfff"}\n]\n',
                     encoding="utf-8")
    code, _, err = run(capsys, "data", "validate", array)
    assert code == 2 and err.startswith(f"{array}:3: holds a lone UTF-16 surrogate '\\udfff'"), err
    # A proper pair is an emoji written as ASCII escapes: valid text, kept as the character.
    emoji = tmp_path / "emoji.jsonl"
    emoji.write_text('{"instruction": "Well done \\ud83d\\ude00", "response": "Thanks!"}\n', encoding="utf-8")
    assert run(capsys, "data", "convert", emoji, "--out", tmp_path / "out.jsonl")[0] == 0
    assert json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))["instruction"] == "Well done \U0001F600"


# --------------------------------------------------------------------------- adapters


def _broken(tiny_runs, tmp_path: Path, damage) -> Path:  # noqa: F811
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_runs["math"], run_dir)
    damage(run_dir / "adapter")
    return run_dir


def _replace_weights(adapter: Path, link_to: str | None = None, data: bytes | None = None) -> None:
    weights = adapter / "adapter_model.safetensors"
    weights.unlink()
    if link_to is not None:
        weights.symlink_to(link_to)
    else:
        weights.write_bytes(data or b"")


class _Payload:
    """A pickle that runs a command when loaded: what a malicious adapter_model.bin holds."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _malicious_bin(adapter: Path) -> None:
    (adapter / "adapter_model.safetensors").unlink()
    (adapter / "adapter_model.bin").write_bytes(pickle.dumps(_Payload(adapter / "PWNED")))


ADAPTER_DAMAGE = {
    "corrupt weights": (lambda a: _replace_weights(a, data=os.urandom(300)),
                        "adapter_model.safetensors: not a valid safetensors file"),
    "weights linked to a device": (lambda a: _replace_weights(a, link_to="/dev/zero"),
                                   "adapter_model.safetensors: not a regular file"),
    "weights linked to a folder": (lambda a: _replace_weights(a, link_to=str(a)),
                                   "adapter_model.safetensors: not a regular file"),
    "weights link loop": (lambda a: _replace_weights(a, link_to="adapter_model.safetensors"),
                          "adapter_model.safetensors: cannot read it (Too many levels of symbolic links)"),
    "dangling weights link": (lambda a: _replace_weights(a, link_to="/nonexistent/w.safetensors"),
                              "adapter_model.safetensors: cannot read it (No such file or directory)"),
    "malformed edulora.json": (lambda a: (a / "edulora.json").write_text('{"base_model": '),
                               "edulora.json: not valid JSON"),
    "edulora.json without base_model": (lambda a: (a / "edulora.json").write_text('{"subject": "math"}'),
                                        "edulora.json: must be an object with a 'base_model' name"),
    "edulora.json with wrong types": (
        lambda a: (a / "edulora.json").write_text(json.dumps(
            {**json.loads((a / "edulora.json").read_text()), "system_prompt": "yes", "template": 3})),
        "edulora.json: 'template' must be str, got int; 'system_prompt' must be bool, got str"),
    "malicious pickle": (_malicious_bin, "adapter_model.bin: torch's safe loader (weights_only) refused it"),
}


@pytest.mark.parametrize("kind", sorted(ADAPTER_DAMAGE))
def test_a_damaged_adapter_is_one_line(tiny_runs, tmp_path, capsys, kind):  # noqa: F811
    damage, needle = ADAPTER_DAMAGE[kind]
    run_dir = _broken(tiny_runs, tmp_path, damage)
    code, out, err = run(capsys, "generate", "What is 2+2?", "--adapter", run_dir, "--max-new-tokens", "2",
                         "--precision", "fp32", "--allow-pickle")
    # transformers' loading bar may come first (it is on stderr, not a message of ours); the error is one line.
    last = err.rstrip("\n").rsplit("\n", 1)[-1]
    assert code == 2 and out == "" and one_line(last, needle) and "Traceback" not in err, err
    assert f"{run_dir / 'adapter'}/" in last  # the message names the file
    assert not (run_dir / "adapter" / "PWNED").exists()


@pytest.mark.parametrize("kind", ["corrupt weights", "malicious pickle", "weights linked to a device"])
def test_the_server_and_evaluation_load_adapters_the_same_way(tiny_runs, tmp_path, kind):  # noqa: F811
    from edulora.evaluation.runner import load_models
    from edulora.serving.engine import load_engine

    damage, needle = ADAPTER_DAMAGE[kind]
    run_dir = _broken(tiny_runs, tmp_path, damage)
    with pytest.raises(EduloraError, match=needle.split(":")[0]) as caught:
        load_engine([("math", run_dir)], precision="fp32", allow_pickle=True)
    assert needle in str(caught.value)
    with pytest.raises(EduloraError) as caught:
        load_models([run_dir], precision="fp32", allow_pickle=True)
    assert needle in str(caught.value)
    assert not (run_dir / "adapter" / "PWNED").exists()


# --------------------------------------------------------------------------- a failed start blocks nothing


def test_a_run_whose_data_fails_validation_can_be_retried(tiny_llama, tmp_path):
    from conftest import tutoring_rows
    from test_training import tiny_config

    from edulora.training import train

    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"instruction": "What is 2+2?"}) + "\n", encoding="utf-8")
    config = tiny_config(tiny_llama, data, tmp_path / "runs", max_steps=2, eval_steps=2, save_steps=2,
                         pedagogy_sample=0)  # no replies to generate: the retry is what is tested
    with pytest.raises(EduloraError, match="missing field 'response'"):
        train(config)
    assert (tmp_path / "runs" / "run").is_dir()  # the config snapshot is written before the data is read
    data.write_text("".join(json.dumps(r) + "\n" for r in tutoring_rows(8)), encoding="utf-8")
    result = train(config)  # the same command again, without --overwrite
    assert result.summary.optimizer_steps == 2 and (result.run_dir.path / "adapter" / "adapter_model.safetensors").is_file()
