"""The MathDial and Bridge importers: our own fixtures in the published shapes, malformed items, shared files."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edulora.data.formats import (
    detect_format,
    iter_format_records,
    load_records,
    validate_any,
    write_record_line,
)
from edulora.data.importers import Skipped
from edulora.data.importers.bridge import MISTAKE_TYPES
from edulora.data.importers.mathdial import split_ground_truth
from edulora.data.io import Problem
from edulora.data.jsonscan import looks_like_json
from edulora.data.schema import Dialogue, GradeLevel
from edulora.errors import EduloraError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDULORA_SHARED_DATA") or REPO.parent / "shared" / "data")

# --------------------------------------------------------------------------- MathDial

CONVERSATION = [
    "Teacher: (generic)Hi Lena, can you walk me through your answer?",
    "Lena: I added 3 and 12 to get 15, then took away 10.",
    "Teacher: (probing)How many pencils are in one pack?",
    "Teacher: (probing)How many pencils are in one pack?",  # recorded twice
    "Teacher: (focus)",  # a move tag without a message
    "Student: 12 pencils.",
    "Teacher: (focus)So how many pencils are in 3 packs?",
    "Teacher: (telling)It is 3 times 12.",  # one thought sent as two messages
    "Student: Oh, 36 pencils. So 36 - 10 = 26.",
    "Teacher: (telling) Yes, 26 pencils.",
    "Student: Thank you!",
]
MATHDIAL = {
    "qid": 101,
    "scenario": 2,
    "question": "Mia buys 3 packs of 12 pencils. She gives away 10 pencils. How many pencils does she have left?",
    "ground_truth": "Mia buys 3 * 12 = <<3*12=36>>36 pencils.\nShe has 36 - 10 = <<36-10=26>>26 pencils left.\n 26",
    "student_incorrect_solution": "Mia has 3 + 12 = 15 pencils.\nShe has 15 - 10 = 5 left.\n 5",
    "student_profile": "Lena is a 6th grade student. She adds when she should multiply.",
    "teacher_described_confusion": "added instead of multiplied",
    "self-correctness": "Yes, but I had to reveal the answer",
    "self-typical-confusion": 4.0,
    "self-typical-interactions": 3.0,
    "conversation": "|EOM|".join(CONVERSATION),
}
OPENING = ("Mia buys 3 packs of 12 pencils. She gives away 10 pencils. How many pencils does she have left?\n\n"
           "My solution:\nMia has 3 + 12 = 15 pencils.\nShe has 15 - 10 = 5 left.\n5")
TURNS = [
    ("user", OPENING),
    ("assistant", "Hi Lena, can you walk me through your answer?"),
    ("user", "I added 3 and 12 to get 15, then took away 10."),
    ("assistant", "How many pencils are in one pack?"),
    ("user", "12 pencils."),
    ("assistant", "So how many pencils are in 3 packs?\nIt is 3 times 12."),
    ("user", "Oh, 36 pencils. So 36 - 10 = 26."),
    ("assistant", "Yes, 26 pencils."),
    ("user", "Thank you!"),
]
METADATA = {
    "subject": "mathematics",
    "grade_level": "middle_school",
    "answer": "26",
    "solution": "Mia buys 3 * 12 = 36 pencils.\nShe has 36 - 10 = 26 pencils left.",
    "source": "mathdial",
    "qid": 101,
    "scenario": 2,
    "self-typical-confusion": 4,
    "self-typical-interactions": 3,
    "student_profile": "Lena is a 6th grade student. She adds when she should multiply.",
    "teacher_described_confusion": "added instead of multiplied",
    "self-correctness": "Yes, but I had to reveal the answer",
    "moves": ["generic", "probing", "focus+telling", "telling"],
}


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def problems(items: list) -> list[str]:
    return [str(item) for _, item in items if isinstance(item, Problem)]


def test_mathdial_item_becomes_a_grounded_dialogue(tmp_path):
    path = jsonl(tmp_path / "mathdial.jsonl", [MATHDIAL])
    assert detect_format(path) == "mathdial"
    (line, dialogue), = iter_format_records(path, "mathdial")
    assert line == 1 and isinstance(dialogue, Dialogue)
    assert [(t.role, t.content) for t in dialogue.turns] == TURNS
    assert all(t.train for t in dialogue.turns)
    assert dialogue.metadata.grade_level is GradeLevel.MIDDLE_SCHOOL
    assert (dialogue.metadata.answer, dialogue.metadata.solution) == (METADATA["answer"], METADATA["solution"])
    assert dialogue.to_dict()["metadata"] == METADATA
    assert "train" not in json.dumps(dialogue.to_dict()["messages"])


def test_mathdial_exclude_telling_keeps_context_but_not_targets(tmp_path):
    path = jsonl(tmp_path / "mathdial.jsonl", [MATHDIAL])
    (_, dialogue), = iter_format_records(path, "mathdial", exclude_telling=True)
    assert [(t.role, t.content) for t in dialogue.turns] == TURNS  # telling turns stay in the conversation
    assert [t.train for t in dialogue.turns if t.role == "assistant"] == [True, True, False, False]
    messages = dialogue.to_dict()["messages"]
    assert [m.get("train", True) for m in messages] == [True] * 5 + [False, True, False, True]
    # what is written reads back the same, train marks included
    out = tmp_path / "out.jsonl"
    with open(out, "w", encoding="utf-8") as handle:
        write_record_line(handle, dialogue)
    (again,) = load_records(out)
    assert again.to_dict() == dialogue.to_dict() and [t.train for t in again.turns] == [t.train for t in dialogue.turns]


def test_mathdial_all_telling_is_skipped_and_counted(tmp_path, caplog):
    telling = dict(MATHDIAL, qid=102, conversation="Teacher: (telling)Multiply 3 by 12 first.|EOM|Student: 36.")
    path = jsonl(tmp_path / "mathdial.jsonl", [MATHDIAL, telling])
    skipped: list[Skipped] = []
    records = load_records(path, "mathdial", exclude_telling=True, skipped=skipped)
    assert [r.metadata.extra["qid"] for r in records] == [101]
    assert [str(s) for s in skipped] == [f"{path}:2: skipped: every teacher turn is 'telling' (excluded from training)"]
    with caplog.at_level(logging.WARNING, logger="edulora.data.formats"):
        assert len(load_records(path, "mathdial", exclude_telling=True)) == 1
    assert f"{path}: left out 1 item(s) on purpose" in caplog.text
    assert len(load_records(path, "mathdial")) == 2  # without the option nothing is left out


def test_mathdial_csv_gives_the_same_dialogue(tmp_path):
    row = {k: ("" if v is None else str(v)) for k, v in MATHDIAL.items()}
    row["ground_truth"] = "Mia buys 3 * 12 = 36 pencils.\nShe has 36 - 10 = 26 pencils left.\n#### 26"
    path = write_csv(tmp_path / "mathdial.csv", [row, dict(row, qid="102", scenario="", **{"self-correctness": ""})])
    assert detect_format(path) == "mathdial"
    (l1, first), (l2, second) = iter_format_records(path)
    assert (l1, l2) == (2, 7)  # quoted cells span lines 2-6; each row keeps the line it starts on
    assert first.to_dict()["metadata"] == METADATA and [(t.role, t.content) for t in first.turns] == TURNS
    assert "scenario" not in second.metadata.extra and "self-correctness" not in second.metadata.extra
    path = write_csv(tmp_path / "other.csv", [{"question": "q", "answer": "a"}])
    assert problems(list(iter_format_records(path, "mathdial"))) == [
        f"{path}:1: not a MathDial CSV: no column 'ground_truth', 'student_incorrect_solution', 'conversation'; "
        "columns are: question, answer"]


def test_csv_or_json_is_told_by_one_rule_for_every_importer(tmp_path):
    """MathDial reads a file as the transcripts importer does (``jsonscan.looks_like_json``): a .json, .jsonl,
    .ndjson or .csv, .tsv name decides, else the first character ({ or [: JSON); an empty file is a CSV."""
    row = {k: ("" if v is None else str(v)) for k, v in MATHDIAL.items()}
    row["ground_truth"] = METADATA["solution"] + "\n#### 26"
    files = {"csv.txt": write_csv(tmp_path / "csv.txt", [row]), "jsonl.txt": jsonl(tmp_path / "jsonl.txt", [MATHDIAL]),
             "csv.json": write_csv(tmp_path / "csv.json", [row]), "empty.txt": tmp_path / "empty.txt",
             "tsv": jsonl(tmp_path / "a.TSV", [MATHDIAL])}
    files["empty.txt"].write_bytes(b"")
    assert {name: looks_like_json(path) for name, path in files.items()} == {
        "csv.txt": False, "jsonl.txt": True, "csv.json": True, "empty.txt": False, "tsv": False}
    for name in ("csv.txt", "jsonl.txt"):
        (_, dialogue), = iter_format_records(files[name], "mathdial")
        assert [(t.role, t.content) for t in dialogue.turns] == TURNS
    assert problems(list(iter_format_records(files["csv.json"], "mathdial")))[0].startswith(
        f"{files['csv.json']}:1: invalid JSON")
    assert problems(list(iter_format_records(files["empty.txt"], "mathdial"))) == [
        f"{files['empty.txt']}:1: file holds no records (no CSV header)"]


def test_mathdial_malformed_items_are_file_line_problems(tmp_path):
    rows = [
        MATHDIAL,
        [1, 2],
        {k: v for k, v in MATHDIAL.items() if k != "question"},
        dict(MATHDIAL, ground_truth="She has twenty-six pencils left."),
        dict(MATHDIAL, conversation="Hello there|EOM|Teacher: (focus)How many packs?"),
        dict(MATHDIAL, conversation="Student: I think 5.|EOM|Teacher: (focus)"),
        dict(MATHDIAL, qid=[1], **{"self-typical-confusion": "often", "student_profile": 7}),
        '{"qid": 5, "question": ',
        dict(MATHDIAL, conversation=None, student_incorrect_solution=""),
    ]
    path = jsonl(tmp_path / "bad.jsonl", rows)
    result = validate_any(path, "mathdial")
    assert result.records == 1
    assert [str(p) for p in result.problems] == [
        f"{path}:2: a record must be a JSON object, got list",
        f"{path}:3: missing field 'question'",
        f"{path}:4: field 'ground_truth' must end with the final answer on its last line (e.g. '#### 10')",
        f"{path}:5: conversation turn 1 does not start with 'Teacher:' or 'Student:': 'Hello there'",
        f"{path}:6: field 'conversation' has no teacher turn",
        f"{path}:7: field 'qid' must be an integer or a string, got list",
        f"{path}:7: field 'self-typical-confusion' must be a number, got 'often'",
        f"{path}:7: field 'student_profile' must be a string, got int",
        f"{path}:8: invalid JSON: Expecting value (column 23)",
        f"{path}:9: field 'student_incorrect_solution' is empty",
        f"{path}:9: missing field 'conversation'",
    ]
    with pytest.raises(EduloraError, match=rf"^{path}:2: a record must be a JSON object"):
        load_records(path, "mathdial")


def test_convert_command_reports_problems_without_a_traceback(tmp_path):
    bad = jsonl(tmp_path / "bad.jsonl", [MATHDIAL, dict(MATHDIAL, ground_truth="no number")])
    out = tmp_path / "out.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, "-m", "edulora", "data", "convert", str(bad), "--out", str(out), "--from", "mathdial"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"{bad}:2: field 'ground_truth' must end with the final answer")
    assert not out.exists()
    good = jsonl(tmp_path / "good.jsonl", [MATHDIAL])
    proc = subprocess.run([sys.executable, "-m", "edulora", "data", "convert", str(good), "--out", str(out), "--from", "mathdial"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["metadata"]["answer"] == "26"


@pytest.mark.parametrize("text,expected", [
    ("She has 36 - 10 = 26 left.\n 26", ("She has 36 - 10 = 26 left.", "26")),
    ("Total: 1,234 + 1 = 1,235\n#### 1,235", ("Total: 1,234 + 1 = 1,235", "1235")),
    ("Each costs $4.50 / 3 = $1.50\n$1.50", ("Each costs $4.50 / 3 = $1.50", "1.50")),
    ("She is 7 - 9 = -2 floors down.\n-2", ("She is 7 - 9 = -2 floors down.", "-2")),
    ("So 5 apples and 3 pears.\nThe answer is 8 fruits", ("So 5 apples and 3 pears.\nThe answer is 8 fruits", "8")),
    (" 42", (None, "42")),
    ("It takes no time at all.", ("It takes no time at all.", None)),
])
def test_ground_truth_split(text, expected):
    assert split_ground_truth(text) == expected


# --------------------------------------------------------------------------- Bridge

BRIDGE = {
    "c_id": "900_12",
    "lesson_topic": "4.3A.Comparing Fractions",
    "c_h": [
        {"id": 12, "text": "Which is bigger, 1/3 or 1/4?", "time": "10:01", "user": "tutor"},
        {"id": 13, "text": "Look at the bottom numbers.", "time": "10:02", "user": "tutor"},
        {"id": 14, "text": "", "time": "10:03", "user": "student"},
        {"id": 15, "text": "1/4 because 4 is bigger", "time": "10:04", "user": "student"},
    ],
    "c_r": [{"id": 16, "text": "No, that's wrong.", "time": "10:05", "user": "tutor"},
            {"id": 17, "text": "It is 1/3.", "time": "10:05", "user": "tutor"}],
    "c_r_": [{"user": "tutor", "text": "Good try!", "is_revised": True},
             {"user": "tutor", "text": "If a pizza is cut into 4 pieces, is each piece bigger or smaller than when "
                                       "it is cut into 3?", "is_revised": True}],
    "c_revision": [{"user": "tutor", "text": "Good try!", "is_revised": True},
                   {"user": "student", "text": "smaller", "is_revised": True}],
    "e": "right-idea",
    "z_what": "provide_similar_problem",
    "z_why": "clarify_misunderstanding",
}


def bridge_file(path: Path, items: list) -> Path:
    """A JSON array with one item per line, so item ``i`` starts on line ``i + 2``."""
    path.write_text("[\n" + ",\n".join(json.dumps(item) for item in items) + "\n]\n", encoding="utf-8")
    return path


def test_bridge_item_ends_with_the_experts_reply(tmp_path):
    path = bridge_file(tmp_path / "train.json", [BRIDGE])
    assert detect_format(path) == "bridge"
    (line, dialogue), = iter_format_records(path)
    assert line == 2
    assert [(t.role, t.content, t.train) for t in dialogue.turns] == [
        ("assistant", "Which is bigger, 1/3 or 1/4?\nLook at the bottom numbers.", False),  # the novice's turns
        ("user", "1/4 because 4 is bigger", True),
        ("assistant", "Good try!\nIf a pizza is cut into 4 pieces, is each piece bigger or smaller than when it is "
                      "cut into 3?", True),
    ]
    assert dialogue.to_dict()["metadata"] == {
        "subject": "mathematics", "grade_level": "elementary", "source": "bridge", "c_id": "900_12",
        "lesson_topic": "4.3A.Comparing Fractions", "error_type": "right-idea", "strategy": "provide_similar_problem",
        "intention": "clarify_misunderstanding", "novice_response": "No, that's wrong.\nIt is 1/3."}
    assert dialogue.metadata.answer is None


def test_bridge_items_without_a_mistake_are_skipped_and_counted(tmp_path):
    no_student = dict(BRIDGE, c_h=BRIDGE["c_h"][:2] + [{"id": 14, "text": "  ", "time": "10:03", "user": "student"}])
    items = [BRIDGE, dict(BRIDGE, e="End session\n"), dict(BRIDGE, e="The student did not make a mistake."),
             dict(BRIDGE, e="Guess", lesson_topic="7.4B.Identify Unit Rate"), no_student]
    path = bridge_file(tmp_path / "train.json", items)
    skipped: list[Skipped] = []
    records = load_records(path, "bridge", skipped=skipped)
    assert [r.metadata.grade_level for r in records] == [GradeLevel.ELEMENTARY, GradeLevel.MIDDLE_SCHOOL]
    assert [str(s) for s in skipped] == [
        f"{path}:3: skipped: error type 'End session' is not a student mistake",
        f"{path}:4: skipped: error type 'The student did not make a mistake.' is not a student mistake",
        f"{path}:6: skipped: the history does not end with a student message for the expert to answer",
    ]
    result = validate_any(path, "bridge")
    assert result.ok and result.records == 2


def test_bridge_malformed_items_are_file_line_problems(tmp_path):
    items = [
        BRIDGE,
        dict(BRIDGE, c_h="oops"),
        dict(BRIDGE, c_h=[{"user": "teacher", "text": "hi"}, "hello", {"user": "student", "text": 4}]),
        {k: v for k, v in BRIDGE.items() if k != "e"},
        dict(BRIDGE, c_r_=[{"user": "tutor", "text": " "}]),
        dict(BRIDGE, c_r_=[{"user": "student", "text": "smaller"}], c_id=["x"]),
        "just text",
    ]
    path = bridge_file(tmp_path / "train.json", items)
    assert problems(list(iter_format_records(path, "bridge"))) == [
        f"{path}:3: field 'c_h' must be a list of turns, got str",
        f"{path}:4: c_h[0].user must be 'tutor' or 'student', got 'teacher'",
        f"{path}:4: c_h[1] must be an object",
        f"{path}:4: c_h[2].text must be a string, got int",
        f"{path}:5: missing field 'e'",
        f"{path}:6: field 'c_r_' holds no expert reply",
        f"{path}:7: c_r_[0].user must be 'tutor', got 'student'",
        f"{path}:7: field 'c_id' must be a string, got list",
        f"{path}:8: a record must be a JSON object, got str",
    ]


def test_importer_options_and_names(tmp_path):
    path = bridge_file(tmp_path / "train.json", [BRIDGE])
    with pytest.raises(EduloraError, match="exclude_telling applies to MathDial input only"):
        load_records(path, "bridge", exclude_telling=True)
    assert len(load_records(path, " Bridge ")) == 1
    with pytest.raises(EduloraError, match="unknown format 'mathdail'.*mathdial, bridge"):
        load_records(path, "mathdail")


# --------------------------------------------------------------------------- the shared published parts


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not here (set EDULORA_SHARED_DATA to the shared data folder)")
    return path


def test_shared_mathdial_part():
    path = shared("mathdial", "mathdial_part.jsonl")
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = load_records(path, "mathdial")
    assert len(records) == len(raw)
    for item, record in zip(raw, records):
        assert record.metadata.extra["qid"] == item["qid"]
        assert float(record.metadata.answer) == float(item["ground_truth"].split()[-1].replace(",", ""))
        assert record.metadata.solution and record.metadata.subject == "mathematics"
        tutor = [t for t in record.turns if t.role == "assistant"]
        assert len(tutor) == len(record.metadata.extra["moves"]) > 0
        assert not any(t.content.startswith(("(focus)", "(probing)", "(telling)", "(generic)")) for t in tutor)
        assert all(a.role != b.role for a, b in zip(record.turns, record.turns[1:]))
    skipped: list[Skipped] = []
    excluded = load_records(path, "mathdial", exclude_telling=True, skipped=skipped)
    assert len(excluded) + len(skipped) == len(raw) and len(excluded) > 0.9 * len(raw)
    for record in excluded:
        moves = record.metadata.extra["moves"]
        tutor = [t for t in record.turns if t.role == "assistant"]
        assert [t.train for t in tutor] == ["telling" not in (m or "").split("+") for m in moves]


@pytest.mark.parametrize("split", ["train", "validation"])
def test_shared_bridge_splits(split):
    path = shared("bridge", f"{split}.json")
    raw = json.loads(path.read_text(encoding="utf-8"))
    skipped: list[Skipped] = []
    records = load_records(path, "bridge", skipped=skipped)
    not_mistakes = sum(item["e"].strip().lower() not in MISTAKE_TYPES for item in raw)
    assert len(records) + len(skipped) == len(raw)
    assert sum("is not a student mistake" in s.reason for s in skipped) == not_mistakes > 0
    experts = {item["c_id"] + "|" + "\n".join(t["text"].strip() for t in item["c_r_"] if t["text"].strip())
               for item in raw}
    for record in records:
        last = record.turns[-1]
        assert last.role == "assistant" and last.train and record.turns[-2].role == "user"
        assert f"{record.metadata.extra['c_id']}|{last.content}" in experts
        assert not any(t.train for t in record.turns[:-1] if t.role == "assistant")
