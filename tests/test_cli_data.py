"""``edulora data …`` end to end: exit codes, FILE:LINE messages on stderr, files written."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edulora.cli import main

GUIDE = {"instruction": "What is 3 x 4?", "response": "Think of 3 rows of 4 apples. Count them all: 12.",
         "metadata": {"subject": "math", "grade_level": "grade 3", "teaching_style": "step_by_step"}}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def guide_rows(n: int) -> list[dict]:
    subjects, styles = ("math", "biology", "history"), ("socratic", "step_by_step", "analogy")
    return [{"instruction": f"Question {i}: why does thing {i} happen when we try it at home?",
             "response": f"Let us think about thing {i} together, step by step, and see what you notice first.",
             "metadata": {"subject": subjects[i % 3], "grade_level": "middle school", "teaching_style": styles[i % 3]}}
            for i in range(n)]


# --------------------------------------------------------------------------- validate


def test_validate_ok(tmp_path, capsys):
    path = jsonl(tmp_path / "d.jsonl", [GUIDE, GUIDE])
    assert run(capsys, "data", "validate", path) == (0, f"{path}: 2 records, no problems\n", "")


BAD_INPUTS = {
    "empty": (b"", ["{p}:1: file holds no records"]),
    "invalid_json": (b'{"instruction": "q", "response": "a"}\n{"instruction": \n',
                     ["{p}:2: invalid JSON: Expecting value (column 16)"]),
    "missing_field": (b'{"instruction": "q"}\n', ["{p}:1: missing field 'response'"]),
    "empty_field": (b'{"instruction": "", "response": "a"}\n', ["{p}:1: field 'instruction' is empty"]),
    "wrong_type": (b'{"instruction": 3, "response": "a"}\n', ["{p}:1: field 'instruction' must be a string, got int"]),
    "bad_metadata": (b'{"instruction": "q", "response": "a", "metadata": {"grade_level": "toddler"}}\n',
                     ["{p}:1: metadata: unknown grade_level 'toddler'"]),
    "latin1": (b'{"instruction": "caf\xe9", "response": "a"}\n', ["{p}:1: not valid UTF-8 (byte 21)"]),
    "utf16": ('{"instruction": "q", "response": "a"}\n'.encode("utf-16"), ["{p}:1: file is UTF-16 encoded"]),
    "too_long": (json.dumps({"instruction": "q", "response": "x" * 30_000}).encode(),
                 ["{p}:1: field 'response' is 30,000 characters long (limit 20,000)"]),
    "array_truncated": (b'[\n  {"instruction": "q", "output": "a"},\n  {"instruction": "q2", "out',
                        ["{p}:3: JSON array ends inside this element"]),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_validate_reports_each_malformed_kind(tmp_path, capsys, kind):
    data, expected = BAD_INPUTS[kind]
    path = tmp_path / ("d.json" if kind.startswith("array") else "d.jsonl")
    path.write_bytes(data)
    code, out, err = run(capsys, "data", "validate", path)
    assert code == 2 and out == ""
    lines = err.splitlines()
    for prefix, line in zip(expected, lines):
        assert line.startswith(prefix.format(p=path)), (line, prefix)
    assert lines[-1].startswith(f"{path}: ") and "problem(s)" in lines[-1]
    assert "Traceback" not in err


def test_validate_csv_missing_columns_and_map(tmp_path, capsys):
    path = tmp_path / "d.csv"
    path.write_text("question,answer,grade\nWhat is 2+2?,4,grade 1\n", encoding="utf-8")
    code, _, err = run(capsys, "data", "validate", path)
    assert code == 2 and err.startswith(f"{path}:1: CSV header has no column 'instruction', 'response'")
    code, out, _ = run(capsys, "data", "validate", path, "--map", "instruction=question", "--map", "response=answer",
                       "--map", "grade_level=grade")
    assert code == 0 and out == f"{path}: 1 records, no problems\n"
    code, _, err = run(capsys, "data", "validate", path, "--map", "bogus")
    assert code == 2 and err == "edulora: error: --map 'bogus': expected FIELD=COLUMN, e.g. instruction=question\n"


def test_missing_file_is_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "data", "validate", tmp_path / "nope.jsonl")
    assert code == 2 and err == f"edulora: error: {tmp_path / 'nope.jsonl'}: no such file\n"


def test_real_entry_point_exits_2_without_traceback(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"instruction": "caf\xe9", "response": "a"}\n')
    proc = subprocess.run([sys.executable, "-m", "edulora", "data", "validate", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0] == f"{path}:1: not valid UTF-8 (byte 21); save the file as UTF-8"


# --------------------------------------------------------------------------- convert


def test_convert_alpaca_array_sharegpt_and_csv(tmp_path, capsys):
    alpaca = tmp_path / "a.json"
    alpaca.write_text(json.dumps([{"instruction": "Define area.", "input": "", "output": "Space inside a shape."}]))
    out = tmp_path / "out" / "a.jsonl"
    out.parent.mkdir()  # data outputs go into existing folders only (see test_writers_refuse_…)
    assert run(capsys, "data", "convert", alpaca, "--out", out)[:2] == (0, f"wrote 1 records to {out}\n")
    assert read_jsonl(out) == [{"instruction": "Define area.", "response": "Space inside a shape."}]

    share = jsonl(tmp_path / "s.jsonl", [{"conversations": [{"from": "human", "value": "hi"},
                                                              {"from": "gpt", "value": "hello"}]}])
    assert run(capsys, "data", "convert", share, "--out", tmp_path / "s_out.jsonl")[0] == 0
    assert read_jsonl(tmp_path / "s_out.jsonl") == [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]

    csv_path = tmp_path / "d.csv"
    csv_path.write_text("q,a,subject\nWhat is 2+2?,Count on: 3 then 4.,Maths\n", encoding="utf-8")
    code, _, _ = run(capsys, "data", "convert", csv_path, "--out", tmp_path / "c.jsonl", "--map", "instruction=q",
                     "--map", "response=a")
    assert code == 0 and read_jsonl(tmp_path / "c.jsonl") == [
        {"instruction": "What is 2+2?", "response": "Count on: 3 then 4.", "metadata": {"subject": "mathematics"}}]
    # The converted file validates as our own format.
    assert run(capsys, "data", "validate", tmp_path / "c.jsonl", "--from", "edulora")[0] == 0


def test_convert_with_problems_writes_nothing(tmp_path, capsys):
    src = jsonl(tmp_path / "d.jsonl", [GUIDE, {"instruction": "x"}, GUIDE, {"response": "y"}])
    out = tmp_path / "out.jsonl"
    code, stdout, err = run(capsys, "data", "convert", src, "--out", out)
    assert code == 2 and stdout == "" and not out.exists()
    assert err.splitlines() == [f"{src}:2: missing field 'response'", f"{src}:4: missing field 'instruction'",
                                f"{src}: 2 problem(s); nothing written"]
    assert not list(tmp_path.glob(".out.jsonl.*"))  # the temporary file is gone too


def test_convert_refuses_same_file_and_bad_format(tmp_path, capsys):
    src = jsonl(tmp_path / "d.jsonl", [GUIDE])
    code, _, err = run(capsys, "data", "convert", src, "--out", src)
    assert code == 2 and "is the input file" in err
    code, _, err = run(capsys, "data", "convert", src, "--out", tmp_path / "o.jsonl", "--from", "xml")
    assert code == 2 and err.startswith("edulora: error: unknown format 'xml'")


# --------------------------------------------------------------------------- report


def test_report_text_json_html_and_eval(tmp_path, capsys):
    rows = guide_rows(12)
    train = jsonl(tmp_path / "train.jsonl", rows + [rows[0]])
    evals = jsonl(tmp_path / "eval.jsonl", [rows[1], guide_rows(20)[15]])
    html_out, json_out = tmp_path / "r.html", tmp_path / "r.json"
    code, out, err = run(capsys, "data", "report", train, "--eval", evals, "--html", html_out, "--json", json_out,
                         "--max-length", "20")
    assert code == 0 and err == ""
    assert "Length in ESTIMATED tokens" in out and "exact: 1 group(s): 1+13 (lines)" in out
    assert "same record: 1: eval 1=train 2" in out
    data = json.loads(json_out.read_text())
    assert data["records"] == 13 and data["leakage"]["leaked_eval_lines"] == [1]
    assert len(data["lengths"]["truncated"]) == 13
    page = html_out.read_text()
    assert page.count("data:image/png;base64,") == 4 and "<script" not in page

    code, out, _ = run(capsys, "data", "report", train, "--json", "-")
    assert code == 0 and json.loads(out)["records"] == 13


def test_report_with_tokenizer(tmp_path, capsys):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tokenizer = Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    path = jsonl(tmp_path / "d.jsonl", [GUIDE])
    code, out, _ = run(capsys, "data", "report", path, "--tokenizer", tmp_path / "tokenizer.json")
    assert code == 0 and "Length in tokens" in out and "ESTIMATED" not in out


def test_report_user_errors(tmp_path, capsys):
    path = jsonl(tmp_path / "d.jsonl", [GUIDE, {"instruction": 1, "response": "a"}])
    code, _, err = run(capsys, "data", "report", path)
    assert code == 2 and err.startswith(f"edulora: error: {path}:2: field 'instruction' must be a string")
    good = jsonl(tmp_path / "g.jsonl", [GUIDE])
    code, _, err = run(capsys, "data", "report", good, "--max-length", "0")
    assert code == 2 and "--max-length" in err
    code, _, err = run(capsys, "data", "report", good, "--tokenizer", tmp_path / "no-such-dir")
    assert code == 2 and err.startswith("edulora: error: cannot load tokenizer") and len(err.splitlines()) == 1


# --------------------------------------------------------------------------- scrub


def test_scrub_writes_placeholders_and_reports_lines_only(tmp_path, capsys):
    roster = tmp_path / "names.txt"
    roster.write_text("Maria Gonzalez\n", encoding="utf-8")
    rows = [GUIDE, {"instruction": "Hi, I'm Tom. My email is tom@home.net and Maria helps me.",
                    "response": "Welcome Tom! What is 345 * 12?"}]
    src = jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    code, stdout, err = run(capsys, "data", "scrub", src, "--out", out, "--roster", roster, "--report-json", tmp_path / "r.json")
    assert code == 0 and err == ""
    assert read_jsonl(out)[1] == {"instruction": "Hi, I'm [NAME]. My email is [EMAIL] and [NAME] helps me.",
                                  "response": "Welcome [NAME]! What is 345 * 12?"}
    assert read_jsonl(out)[0]["instruction"] == GUIDE["instruction"]
    assert stdout.splitlines()[:2] == ["replaced 4 value(s) in 1 of 2 record(s): EMAIL 1, NAME 3",
                                       "  line 2: EMAIL 1, NAME 3"]
    for secret in ("Tom", "tom@", "home.net", "Maria"):
        assert secret not in stdout and secret not in (tmp_path / "r.json").read_text()
    assert json.loads((tmp_path / "r.json").read_text())["by_line"] == {"2": {"NAME": 3, "EMAIL": 1}}


def test_scrub_in_place_rules(tmp_path, capsys):
    src = jsonl(tmp_path / "in.jsonl", [{"instruction": "call me Ana", "response": "ok"}])
    code, _, err = run(capsys, "data", "scrub", src, "--out", src)
    assert code == 2 and "--in-place" in err and "Ana" in src.read_text()
    code, _, err = run(capsys, "data", "scrub", src)
    assert code == 2 and "give --out FILE" in err
    assert run(capsys, "data", "scrub", src, "--in-place")[0] == 0
    assert read_jsonl(src) == [{"instruction": "call me [NAME]", "response": "ok"}]


def test_scrub_bad_input_writes_nothing(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"instruction": "I am Jos\xe9", "response": "a"}\n')
    code, _, err = run(capsys, "data", "scrub", src, "--out", tmp_path / "out.jsonl")
    assert code == 2 and not (tmp_path / "out.jsonl").exists()
    assert err.splitlines()[0].startswith(f"{src}:1: not valid UTF-8")


# --------------------------------------------------------------------------- split


def test_split_command(tmp_path, capsys):
    rows = guide_rows(60)
    src = jsonl(tmp_path / "d.jsonl", rows + rows[:5])
    train, evals = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    args = ["data", "split", src, "--eval-fraction", "0.2", "--seed", "3", "--train-out", train, "--eval-out", evals]
    code, out, _ = run(capsys, *args)
    assert code == 0 and "dropped 5 exact duplicate record(s)" in out
    train_rows, eval_rows = read_jsonl(train), read_jsonl(evals)
    assert len(train_rows) + len(eval_rows) == 60 and 9 <= len(eval_rows) <= 15
    assert not {json.dumps(r, sort_keys=True) for r in train_rows} & {json.dumps(r, sort_keys=True) for r in eval_rows}
    first = (train.read_text(), evals.read_text())
    assert run(capsys, *args, "--overwrite")[0] == 0 and (train.read_text(), evals.read_text()) == first
    # The result passes the leakage check of the report.
    code, out, _ = run(capsys, "data", "report", train, "--eval", evals)
    assert code == 0 and "none found" in out


def test_split_user_errors(tmp_path, capsys):
    src = jsonl(tmp_path / "d.jsonl", [GUIDE])
    code, _, err = run(capsys, "data", "split", src, "--eval-fraction", "1.5", "--train-out", tmp_path / "a",
                       "--eval-out", tmp_path / "b")
    assert code == 2 and "--eval-fraction" in err
    code, _, err = run(capsys, "data", "split", src, "--train-out", src, "--eval-out", tmp_path / "b")
    assert code == 2 and "is the input file" in err
    code, _, err = run(capsys, "data", "split", src, "--train-out", tmp_path / "a", "--eval-out", tmp_path / "a")
    assert code == 2 and "must be different" in err


def test_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, capsys, monkeypatch):
    import errno
    import os

    src = jsonl(tmp_path / "d.jsonl", [GUIDE])
    out = tmp_path / "out.jsonl"
    out.write_text("the user's earlier file\n")

    def full(source, target):
        raise OSError(errno.ENOSPC, "No space left on device", str(source))

    monkeypatch.setattr(os, "replace", full)
    code, _, err = run(capsys, "data", "convert", src, "--out", out, "--overwrite")
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("edulora: error: ") and "No space left on device" in err
    assert out.read_text() == "the user's earlier file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "out.jsonl"]  # no temporary left behind


# --------------------------------------------------------------------------- writers never clobber


def _refusals(tmp_path: Path) -> list[tuple[str, Path]]:
    """Outputs a data writer must refuse: a folder, a FIFO, a link to a device, a file in a missing folder.

    A link to /dev/null rather than /dev/null itself: should the refusal ever break, only the link is
    replaced (the tests run as root here).
    """
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    device = tmp_path / "null-link"
    device.symlink_to(os.devnull)
    (tmp_path / "folder").mkdir()
    return [("is a directory", tmp_path / "folder"), ("not a regular file", fifo), ("not a regular file", device),
            ("no such directory", tmp_path / "missing" / "out.jsonl")]


def _untouched(tmp_path: Path) -> None:
    assert (tmp_path / "folder").is_dir() and not list((tmp_path / "folder").iterdir())
    assert stat.S_ISFIFO((tmp_path / "fifo").stat().st_mode)
    assert (tmp_path / "null-link").is_symlink() and os.readlink(tmp_path / "null-link") == os.devnull
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("command", ["convert", "scrub", "report --json", "report --html", "split --eval-out"])
def test_writers_refuse_non_files_and_missing_folders(tmp_path, capsys, command):
    src = jsonl(tmp_path / "d.jsonl", guide_rows(12))
    for needle, out in _refusals(tmp_path):
        argv = {"convert": ["convert", src, "--out", out], "scrub": ["scrub", src, "--out", out],
                "report --json": ["report", src, "--json", out], "report --html": ["report", src, "--html", out],
                "split --eval-out": ["split", src, "--train-out", tmp_path / "t.jsonl", "--eval-out", out]}[command]
        code, stdout, err = run(capsys, "data", *argv)
        assert code == 2 and stdout == "", (out, stdout)
        assert err.startswith("edulora: error: ") and needle in err and len(err.splitlines()) == 1, err
        assert "Traceback" not in err
    _untouched(tmp_path)
    assert not (tmp_path / "t.jsonl").exists()  # split checks both outputs before writing either


def test_scrub_report_json_is_checked_before_anything_is_written(tmp_path, capsys):
    src = jsonl(tmp_path / "d.jsonl", [GUIDE])
    code, _, err = run(capsys, "data", "scrub", src, "--out", tmp_path / "out.jsonl", "--report-json", tmp_path / "no" / "r.json")
    assert code == 2 and "no such directory" in err and not (tmp_path / "out.jsonl").exists()


# --------------------------------------------------------------------------- the same pipelines from Python


def test_pipelines_are_typed_calls(tmp_path):
    from edulora import data
    from edulora.data.privacy import ScrubReport
    from edulora.data.quality import DatasetReport
    from edulora.data.split import SplitStats

    rows = guide_rows(30)
    rows[4]["instruction"] += " My email is ana@school.org."
    src = jsonl(tmp_path / "d.jsonl", rows)
    assert data.validate(src).ok and data.validate(src).records == 30
    assert data.convert(src, tmp_path / "c.jsonl") == 30 and len(read_jsonl(tmp_path / "c.jsonl")) == 30
    scrubbed = data.scrub_file(src, tmp_path / "s.jsonl", report_json=tmp_path / "s.json")
    assert isinstance(scrubbed, ScrubReport) and scrubbed.counts["EMAIL"] == 1 and dict(scrubbed.by_line) == {5: {"EMAIL": 1}}
    assert "[EMAIL]" in read_jsonl(tmp_path / "s.jsonl")[4]["instruction"]
    stats = data.split_file(src, train_out=tmp_path / "tr.jsonl", eval_out=tmp_path / "ev.jsonl", eval_fraction=0.2)
    assert isinstance(stats, SplitStats) and stats.train + stats.eval == 30 and stats.eval > 0
    assert len(read_jsonl(tmp_path / "ev.jsonl")) == stats.eval
    result = data.report(src, eval_path=tmp_path / "ev.jsonl", json_out=tmp_path / "r.json")
    assert isinstance(result, DatasetReport) and result.records == 30 and result.leakage is not None
    assert json.loads((tmp_path / "r.json").read_text())["records"] == 30


def test_pipeline_problems_carry_every_bad_line_and_write_nothing(tmp_path):
    from edulora import EduloraError, data

    src = jsonl(tmp_path / "d.jsonl", [GUIDE, {"instruction": "x"}, {"response": "y"}])
    for call in (lambda: data.convert(src, tmp_path / "o.jsonl"), lambda: data.scrub_file(src, tmp_path / "o.jsonl")):
        with pytest.raises(data.DataProblems) as caught:
            call()
        assert isinstance(caught.value, EduloraError)
        assert [p.line for p in caught.value.problems] == [2, 3] and not (tmp_path / "o.jsonl").exists()
    assert [p.line for p in data.validate(src).problems] == [2, 3]
    with pytest.raises(EduloraError, match="not a regular file"):
        data.convert(jsonl(tmp_path / "ok.jsonl", [GUIDE]), _refusals(tmp_path)[1][1])


def test_importer_formats_and_options_pass_through(tmp_path, capsys):
    from test_importers import MATHDIAL

    src = jsonl(tmp_path / "mathdial.jsonl", [MATHDIAL])
    out = tmp_path / "out.jsonl"
    assert run(capsys, "data", "convert", src, "--out", out, "--from", "mathdial", "--exclude-telling")[:2] == (
        0, f"wrote 1 records to {out}\n")
    messages = read_jsonl(out)[0]["messages"]
    assert [m.get("train", True) for m in messages if m["role"] == "assistant"] == [True, True, False, False]
    code, _, err = run(capsys, "data", "validate", src, "--from", "alpaca", "--exclude-telling")
    assert code == 2 and err.startswith("edulora: error: exclude_telling applies to MathDial input only")
