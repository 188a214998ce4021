"""No data or feedback command destroys what it reads or replaces what the user had (issue 38).

Every output is checked against every input by one rule (``edulora.data.outputs``): the same file
(by name, ``./``, a symbolic or a hard link) is refused, an existing output needs ``--overwrite``,
a read-only one is never replaced, a replaced one keeps its mode and a symlinked one stays a link.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from test_cli_data import GUIDE, guide_rows, jsonl, run
from test_serving_feedback import fill

from edulora.cli import main


def _database(tmp_path: Path) -> Path:
    db = tmp_path / "feedback.sqlite3"
    fill(db)
    return db


def _same_file_spellings(path: Path) -> dict[str, Path]:
    """``path`` as the user may name it: itself, through ``./``, a symbolic link and a hard link."""
    (path.parent / "link").symlink_to(path.name)
    os.link(path, path.parent / "hardlink")
    return {"itself": path, "./": path.parent / "." / path.name, "symlink": path.parent / "link",
            "hardlink": path.parent / "hardlink"}


# --------------------------------------------------------------------------- outputs onto inputs


@pytest.mark.parametrize("spelling", ["itself", "./", "symlink", "hardlink"])
def test_feedback_export_onto_its_own_database_leaves_it_byte_identical(tmp_path, capsys, spelling):
    db = _database(tmp_path)
    before = db.read_bytes()
    target = _same_file_spellings(db)[spelling]
    for extra in ([], ["--overwrite"]):
        code, stdout, err = run(capsys, "feedback", "export", "--out", target, "--db", db, *extra)
        assert (code, stdout) == (2, "") and "is the input file --db" in err and len(err.splitlines()) == 1
        code, _, err = run(capsys, "feedback", "export", "--out", tmp_path / "sft.jsonl", "--db", db, "--pairs", target, *extra)
        assert code == 2 and "is the input file --db" in err
    assert db.read_bytes() == before and not (tmp_path / "sft.jsonl").exists()


def test_feedback_export_onto_the_default_database_leaves_it_byte_identical(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDULORA_CACHE", str(tmp_path))
    db = _database(tmp_path)  # where the server keeps it by default
    before = db.read_bytes()
    for extra in ([], ["--overwrite"]):
        code, _, err = run(capsys, "feedback", "export", "--out", db, *extra)
        assert code == 2 and "is the input file --db" in err and db.read_bytes() == before


def test_feedback_export_onto_the_databases_journal_is_refused(tmp_path, capsys):
    db = _database(tmp_path)
    for extra in ([], ["--overwrite"]):
        code, _, err = run(capsys, "feedback", "export", "--out", f"{db}-wal", "--db", db, *extra)
        assert code == 2 and "--db's -wal file" in err and not Path(f"{db}-wal").exists()


def test_feedback_export_with_pairs_onto_its_own_output_is_refused(tmp_path, capsys):
    db, out = _database(tmp_path), tmp_path / "f.jsonl"
    out.write_text("the user's file\n")
    for extra in ([], ["--overwrite"]):
        code, _, err = run(capsys, "feedback", "export", "--out", out, "--db", db, "--pairs", out, *extra)
        assert code == 2 and "must be different files" in err and out.read_text() == "the user's file\n"


REPORT_ONTO_INPUT = {"--html onto FILE": ("--html", "d"), "--json onto FILE": ("--json", "d"),
                     "--html onto --eval": ("--html", "e"), "--json onto --eval": ("--json", "e")}


@pytest.mark.parametrize("case", REPORT_ONTO_INPUT)
@pytest.mark.parametrize("spelling", ["itself", "./", "symlink", "hardlink"])
def test_data_report_output_onto_an_input_leaves_it_byte_identical(tmp_path, capsys, case, spelling):
    option, victim = REPORT_ONTO_INPUT[case]
    data, evals = jsonl(tmp_path / "d.jsonl", guide_rows(6)), jsonl(tmp_path / "e.jsonl", guide_rows(3))
    before = data.read_bytes(), evals.read_bytes()
    target = _same_file_spellings(data if victim == "d" else evals)[spelling]
    for extra in ([], ["--overwrite"]):
        code, stdout, err = run(capsys, "data", "report", data, "--eval", evals, option, target, *extra)
        assert (code, stdout) == (2, "") and "is the input file" in err and len(err.splitlines()) == 1
    assert (data.read_bytes(), evals.read_bytes()) == before


@pytest.mark.parametrize("spelling", ["itself", "./", "symlink", "hardlink"])
def test_data_scrub_report_json_onto_its_input_leaves_it_byte_identical(tmp_path, capsys, spelling):
    src = jsonl(tmp_path / "d.jsonl", [{"instruction": "I am Ana", "response": "Hi!"}])
    before = src.read_bytes()
    target = _same_file_spellings(src)[spelling]
    for argv in ([src, "--out", tmp_path / "out.jsonl"], [src, "--in-place"], [src, "--out", tmp_path / "out.jsonl", "--overwrite"]):
        code, _, err = run(capsys, "data", "scrub", *argv, "--report-json", target)
        assert code == 2 and "--report-json" in err and "is the input file IN" in err
    assert src.read_bytes() == before and not (tmp_path / "out.jsonl").exists()


def test_data_scrub_onto_its_roster_leaves_it_byte_identical(tmp_path, capsys):
    src = jsonl(tmp_path / "d.jsonl", [{"instruction": "I am Ana", "response": "Hi!"}])
    roster = tmp_path / "roster.txt"
    roster.write_text("Ana\n")
    for extra in ([], ["--overwrite"]):
        code, _, err = run(capsys, "data", "scrub", src, "--out", roster, "--roster", roster, *extra)
        assert code == 2 and "is the input file --roster" in err and roster.read_text() == "Ana\n"


# --------------------------------------------------------------------------- existing outputs


def _writers(tmp_path: Path, target: Path) -> dict[str, list]:
    """Each output of each data and feedback command, aimed at ``target`` (the rest at fresh files)."""
    src, db = jsonl(tmp_path / "d.jsonl", guide_rows(12)), _database(tmp_path)
    fresh = tmp_path / "fresh.jsonl"
    return {"convert": ["data", "convert", src, "--out", target], "scrub": ["data", "scrub", src, "--out", target],
            "scrub --report-json": ["data", "scrub", src, "--out", fresh, "--report-json", target],
            "split --train-out": ["data", "split", src, "--train-out", target, "--eval-out", fresh],
            "split --eval-out": ["data", "split", src, "--train-out", fresh, "--eval-out", target],
            "report --json": ["data", "report", src, "--json", target],
            "report --html": ["data", "report", src, "--html", target],
            "feedback export": ["feedback", "export", "--out", target, "--db", db],
            "feedback export --pairs": ["feedback", "export", "--out", fresh, "--db", db, "--pairs", target]}


WRITERS = [
    "convert", "scrub", "scrub --report-json", "split --train-out", "split --eval-out", "report --json",
    "report --html", "feedback export", "feedback export --pairs"]


@pytest.mark.parametrize("writer", WRITERS)
def test_existing_outputs_are_replaced_only_with_overwrite(tmp_path, capsys, writer):
    target = tmp_path / "existing.out"
    target.write_text("the user's earlier file\n")
    argv = _writers(tmp_path, target)[writer]
    code, stdout, err = run(capsys, *argv)
    assert (code, stdout) == (2, "") and err.strip().endswith("exists; pass --overwrite to replace it")
    assert target.read_text() == "the user's earlier file\n" and not (tmp_path / "fresh.jsonl").exists()
    assert run(capsys, *argv, "--overwrite")[0] == 0
    assert target.read_text() != "the user's earlier file\n"


@pytest.mark.parametrize("writer", WRITERS)
def test_overwrite_keeps_the_outputs_mode(tmp_path, capsys, writer):
    target = tmp_path / "existing.out"
    target.write_text("old\n")
    target.chmod(0o640)
    assert run(capsys, *_writers(tmp_path, target)[writer], "--overwrite")[0] == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o640 and target.read_text() != "old\n"


@pytest.mark.parametrize("writer", ["convert", "report --html", "feedback export"])
def test_a_read_only_output_is_never_replaced(tmp_path, capsys, writer):
    # 444 says "keep this as it is"; writing by rename would get past it, so the command refuses.
    target = tmp_path / "existing.out"
    target.write_text("kept\n")
    target.chmod(0o444)
    code, _, err = run(capsys, *_writers(tmp_path, target)[writer], "--overwrite")
    assert code == 2 and "is read-only" in err
    assert target.read_text() == "kept\n" and stat.S_IMODE(target.stat().st_mode) == 0o444


@pytest.mark.parametrize("writer", ["convert", "scrub --report-json", "report --json", "feedback export --pairs"])
def test_a_symlinked_output_is_written_through_and_stays_a_link(tmp_path, capsys, writer):
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "data.out"
    real.write_text("old\n")
    real.chmod(0o600)
    link = tmp_path / "link.out"
    link.symlink_to(real)
    assert run(capsys, *_writers(tmp_path, link)[writer], "--overwrite")[0] == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() != "old\n" and stat.S_IMODE(real.stat().st_mode) == 0o600
    assert not [p for p in (tmp_path / "real").iterdir() if p.name != "data.out"]  # no temporary left


def test_scrub_in_place_needs_no_overwrite_but_keeps_the_mode(tmp_path, capsys):
    src = jsonl(tmp_path / "in.jsonl", [{"instruction": "call me Ana", "response": "ok"}])
    src.chmod(0o600)
    assert run(capsys, "data", "scrub", src, "--in-place")[0] == 0
    assert "[NAME]" in src.read_text() and stat.S_IMODE(src.stat().st_mode) == 0o600


@pytest.mark.parametrize("command", [["data", "convert"], ["data", "scrub"], ["data", "split"], ["data", "report"],
                                     ["data", "pairs"], ["feedback", "export"]])
def test_every_writing_command_says_overwrite_in_its_help(capsys, command):
    code, stdout, _ = run(capsys, *command, "--help")
    assert code == 0 and "--overwrite replace existing outputs (refused without it)" in " ".join(stdout.split())


# --------------------------------------------------------------------------- hostile data files


@pytest.mark.parametrize("command", ["validate", "report", "scrub"])
def test_a_100000_digit_integer_is_a_file_line_error_not_a_traceback(tmp_path, capsys, command):
    src = tmp_path / "d.jsonl"
    line = json.dumps(GUIDE)[:-1] + ', "n": ' + "9" * 100_000 + "}"
    src.write_text(json.dumps(GUIDE) + "\n" + line + "\n")
    argv = {"validate": [src], "report": [src], "scrub": [src, "--out", tmp_path / "o.jsonl"]}[command]
    code, _, err = run(capsys, "data", command, *argv)
    assert code == 2 and "Traceback" not in err
    assert f"{src}:2: a number has more than 4,300 digits" in err.splitlines()[0]
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("layout", ["jsonl", "json array"])
def test_duplicate_json_keys_are_file_line_problems(tmp_path, capsys, layout):
    repeated = '{"instruction": "What is 2+2?", "response": "Count on.", "response": "4"}'
    text = json.dumps(GUIDE) + "\n" + repeated + "\n" if layout == "jsonl" else f"[{json.dumps(GUIDE)},\n{repeated}]\n"
    src = tmp_path / "d.json"
    src.write_text(text)
    code, _, err = run(capsys, "data", "validate", src)
    assert code == 2 and err.splitlines()[0] == f"{src}:2: key 'response' appears twice in one object; keep one"


def _pipe_with(data: bytes) -> str:
    """A pipe holding ``data`` as a path, as ``<(…)`` and ``/dev/stdin`` give one; the writer end is closed."""
    read, write = os.pipe()
    os.write(write, data)  # small: fits the pipe's buffer, so no writer thread is needed
    os.close(write)
    return f"/dev/fd/{read}"


def test_validate_reads_a_pipe_such_as_stdin_or_process_substitution(tmp_path, capsys):
    piped = _pipe_with((json.dumps(GUIDE) + "\n").encode() * 3)
    code, stdout, err = run(capsys, "data", "validate", piped)
    assert (code, stdout, err) == (0, f"{piped}: 3 records, no problems\n", "")


def test_convert_reads_a_pipe_once_and_names_it_in_problems(tmp_path, capsys):
    piped = _pipe_with(json.dumps(GUIDE).encode() + b'\n{"instruction": "q"}\n')
    code, _, err = run(capsys, "data", "convert", piped, "--out", tmp_path / "o.jsonl")
    assert code == 2 and err.splitlines()[0] == f"{piped}:2: missing field 'response'"
    piped = _pipe_with(json.dumps(GUIDE).encode() + b"\n")
    assert run(capsys, "data", "convert", piped, "--out", tmp_path / "o.jsonl")[0] == 0
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 1


def test_a_fifo_input_is_read_not_waited_on_forever(tmp_path, capsys):
    import threading

    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    done, reopened = threading.Event(), []

    def feed() -> None:
        with open(fifo, "wb") as handle:
            handle.write((json.dumps(GUIDE) + "\n").encode() * 2)
        # A reader that opens the FIFO again would wait for a second writer forever: be that writer
        # (empty, so the command ends) and say so. Non-blocking, so this thread ends when the command does.
        while not done.wait(1.0 if not reopened else 0.05):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                reopened.append(True)
            except OSError:  # ENXIO: no reader waiting
                pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    code, stdout, _ = run(capsys, "data", "validate", fifo)
    done.set()
    feeder.join()
    assert not reopened and (code, stdout) == (0, f"{fifo}: 2 records, no problems\n")


def test_a_device_input_is_refused_in_one_line(capsys):
    code, _, err = run(capsys, "data", "validate", os.devnull)
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"edulora: error: {os.devnull}: is a device, not a data file")


@pytest.mark.parametrize("option", ["--html", "--json", "--markdown"])
def test_eval_report_onto_its_records_leaves_them_byte_identical(tmp_path, capsys, option):
    """``edulora eval`` never writes a report onto the records it evaluates."""
    data = jsonl(tmp_path / "eval.jsonl", guide_rows(4))
    before = data.read_bytes()
    assert main(["eval", "--data", str(data), option, str(tmp_path / "." / data.name)]) == 2
    assert "is the input file --data" in capsys.readouterr().err
    assert data.read_bytes() == before


@pytest.mark.parametrize("option", ["--html", "--json", "--markdown"])
def test_eval_keeps_an_existing_report_without_overwrite(tmp_path, capsys, option):
    """An earlier report is kept unless ``--overwrite`` says it may go, checked before any model loads."""
    data, old = jsonl(tmp_path / "eval.jsonl", guide_rows(4)), tmp_path / "old-report"
    old.write_text("last week's report")
    assert main(["eval", "--data", str(data), option, str(old)]) == 2
    assert "--overwrite" in capsys.readouterr().err and old.read_text() == "last week's report"
