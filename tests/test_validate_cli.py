"""`edulora data validate`: every problem as FILE:LINE: message, exit 2, never a traceback."""

import subprocess
import sys

import pytest

from edulora.cli import main

GOOD = '{"instruction": "Why is the sky blue?", "response": "Sunlight scatters.", "metadata": {"subject": "physics"}}'


def run(capsys, path):
    code = main(["data", "validate", str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_clean_file_exits_zero(tmp_path, capsys):
    path = tmp_path / "ok.jsonl"
    path.write_text(GOOD + "\n" + GOOD.replace("blue", "dark at night") + "\n")
    code, out, _ = run(capsys, path)
    assert code == 0 and "2 records" in out


@pytest.mark.parametrize("content,line,needle", [
    (b"", 1, "no records"),
    (b"\n\n", 1, "no records"),
    (GOOD.encode() + b"\n{not json\n", 2, "invalid JSON"),
    (b'{"response": "r"}\n', 1, "missing field 'instruction'"),
    (b'{"instruction": "", "response": "r"}\n', 1, "is empty"),
    (b'{"instruction": ["a"], "response": "r"}\n', 1, "must be a string"),
    (b'{"instruction": "q", "response": "r", "metadata": {"teaching_style": "yelling"}}\n', 1, "unknown teaching_style"),
    (b'{"instruction": "q", "response": "r", "metadata": {"grade_level": 5}}\n', 1, "grade_level"),
    (GOOD.encode() + b'\n{"instruction": "caf\xe9", "response": "r"}\n', 2, "not valid UTF-8"),
    (b'{"instruction": "q", "response": "' + b"x" * 50_000 + b'"}\n', 1, "characters long"),
    (b"[1, 2, 3]\n", 1, "JSON object"),
])
def test_malformed_input_is_reported_with_file_and_line(tmp_path, capsys, content, line, needle):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    code, _, err = run(capsys, path)
    assert code == 2
    assert f"{path}:{line}: " in err and needle in err
    assert "Traceback" not in err


def test_missing_file_is_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edulora", "data", "validate", str(tmp_path / "nope.jsonl")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no such file" in result.stderr
    assert "Traceback" not in result.stderr
