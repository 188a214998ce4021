"""The MRBench calibration command: agreement arithmetic, file reading, and the score on the shared file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edulora.evaluation import calibrate as c
from edulora.errors import EduloraError

_PART = Path("shared", "data", "mrbench", "mrbench_v2_part.json")
# The shared data folder sits beside the checkout, or beside the folder of worktrees holding it.
MRBENCH = next((p / _PART for p in Path(__file__).resolve().parents[2:4] if (p / _PART).is_file()),
               Path(__file__).resolve().parents[2] / _PART)

# A made-up dialogue in MRBench V2 format (not taken from MRBench).
_TOY = [
    {
        "conversation_id": "toy-1",
        "conversation_history": "Tutor: What is the value of 6 x 7?\n Student: 48",
        "Data": "Toy",
        "Split": "test",
        "Ground_Truth_Solution": "Not Available",
        "anno_llm_responses": {
            "A": {
                "response": "Close, but 6 x 7 = 42.",
                "annotation": {"Revealing_of_the_Answer": "Yes (and the answer is correct)", "Providing_Guidance": "To some extent"},
            },
            "B": {
                "response": "Remember 6 x 7 is one more 6 than 6 x 6. What is 6 x 6?",
                "annotation": {"Revealing_of_the_Answer": "No", "Providing_Guidance": "Yes"},
            },
            "C": {
                "response": "Try again.",
                "annotation": {"Revealing_of_the_Answer": "No", "Providing_Guidance": "No"},
            },
            "D": {"response": "Unlabelled reply.", "annotation": {}},
        },
    }
]


# A made-up dialogue with a worked solution (the key), so that answer correctness is scored.
_KEYED = {
    "conversation_id": "toy-2",
    "conversation_history": "Tutor: The question is: A triangle has a base of 10 cm and a height of 6 cm. "
                            "What is its area?\n Student: 60",
    "Data": "Toy",
    "Split": "train",
    "Ground_Truth_Solution": "The rectangle is 10 x 6 = 60, the triangle half of it: 60 / 2 = 30\n 30",
    "anno_llm_responses": {
        "wrong": {"response": "Not quite. So the answer is 16 square centimeters.",
                  "annotation": {"Revealing_of_the_Answer": "Yes (but the answer is incorrect)", "Providing_Guidance": "No"}},
        "asks": {"response": "What is half of your 60?",
                 "annotation": {"Revealing_of_the_Answer": "No", "Providing_Guidance": "Yes"}},
        "tells": {"response": "Halve it: the area is 30 square centimeters.",
                  "annotation": {"Revealing_of_the_Answer": "Yes (and the answer is correct)",
                                 "Providing_Guidance": "To some extent"}},
    },
}


def test_answer_correctness_is_calibrated_where_there_is_a_key() -> None:
    items = list(c.labelled_responses([_KEYED] + _TOY))
    assert [i.correctness for i in items[:3]] == ["Incorrect", "Correct", "Correct"]
    assert {i.correctness for i in items[3:]} == {None}  # "Not Available": no key, not scored
    result = c.calibrate([_KEYED] + _TOY)
    correctness = result["answer_correctness"]
    assert correctness["labels"] == ["Correct", "Incorrect"] and correctness["confusion_matrix"] == [[2, 0], [0, 1]]
    assert result["revealing_of_the_answer"]["confusion_matrix"] == [[3, 0], [0, 3]]


def test_predictions_file_has_one_line_per_labelled_response(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, out = tmp_path / "toy.json", tmp_path / "predictions.jsonl"
    path.write_text(json.dumps([_KEYED] + _TOY), encoding="utf-8")
    assert c.main([str(path), "--predictions", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 6 and printed["responses"] == 7  # "D" has no labels: scored, not written
    first = rows[0]
    assert (first["dialogue"], first["tutor"]) == (0, "wrong")
    assert first["human"] == {"revealing_of_the_answer": "Yes", "answer_correctness": "Incorrect",
                              "providing_guidance": "No"}
    assert first["annotation"]["Revealing_of_the_Answer"] == "Yes (but the answer is incorrect)"
    assert first["predicted"]["revealing_of_the_answer"] == {"label": "Yes", "score": 1.0}
    assert first["predicted"]["answer_correctness"] == {"label": "Incorrect", "score": 0.0}
    assert set(first["predicted"]["providing_guidance"]) == {"label", "score"}
    assert rows[3]["dialogue"] == 1 and rows[3]["predicted"]["answer_correctness"] is None
    # --dialogues keeps the file's own dialogue indexes
    assert c.main([str(path), "--dialogues", "1:", "--predictions", str(out)]) == 0
    assert {json.loads(line)["dialogue"] for line in out.read_text(encoding="utf-8").splitlines()} == {1}


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "toy.json"
    path.write_text(json.dumps(_TOY), encoding="utf-8")
    assert c.main([str(path), "--dialogues", "1:2:3"]) == 2
    assert "START:END" in capsys.readouterr().err
    assert c.main([str(path), "--no-such-option"]) == 2
    assert c.main(["--help"]) == 0 and "--predictions" in capsys.readouterr().out


def test_agreement_arithmetic() -> None:
    gold = ["No", "No", "Yes", "Yes"]
    pred = ["No", "Yes", "Yes", "Yes"]
    result = c.agreement(gold, pred, ("No", "Yes"))
    assert result["confusion_matrix"] == [[1, 1], [0, 2]]
    assert result["accuracy"] == 0.75
    assert result["f1"] == {"No": pytest.approx(2 / 3, abs=1e-4), "Yes": 0.8}
    assert result["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2, abs=1e-4)
    assert result["support"] == {"No": 2, "Yes": 2} and result["labels"] == ["No", "Yes"]


def test_agreement_with_a_label_never_seen() -> None:
    result = c.agreement(["No", "No"], ["No", "No"], ("No", "To some extent", "Yes"))
    assert result["f1"]["No"] == 1.0 and result["f1"]["Yes"] == 0.0 and result["accuracy"] == 1.0


def test_labelled_responses_collapse_revealing_labels() -> None:
    items = list(c.labelled_responses(_TOY))
    assert [i.tutor for i in items] == ["A", "B", "C", "D"]
    assert [i.revealing for i in items] == ["Yes", "No", "No", None]
    assert [i.guidance for i in items] == ["To some extent", "Yes", "No", None]


def test_calibrate_on_a_toy_dialogue() -> None:
    result = c.calibrate(_TOY)
    assert result["dialogues"] == 1 and result["responses"] == 4
    assert result["revealing_of_the_answer"]["accuracy"] == 1.0
    assert result["providing_guidance"]["accuracy"] == 1.0
    assert sum(result["revealing_of_the_answer"]["support"].values()) == 3


def test_main_prints_json_and_selects_dialogues(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "toy.json"
    path.write_text(json.dumps(_TOY * 2), encoding="utf-8")
    assert c.main([str(path), "--dialogues", "1:"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dialogues"] == 1 and out["selection"] == {"dialogues": "1:"}
    assert c.main([str(path), "--split", "train"]) == 0
    assert json.loads(capsys.readouterr().out)["responses"] == 0


def test_bad_files_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "obj.json").write_text('{"a": 1}', encoding="utf-8")
    for name in ("bad.json", "obj.json", "missing.json"):
        assert c.main([str(tmp_path / name)]) == 2
        assert capsys.readouterr().err.startswith("edulora: error:")
    with pytest.raises(EduloraError):
        c.load_mrbench(tmp_path / "obj.json")


@pytest.mark.skipif(not MRBENCH.is_file(), reason=f"MRBench calibration file not found at {MRBENCH}")
def test_revealing_agrees_with_mrbench_humans() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "edulora.evaluation.calibrate", str(MRBENCH)],
        capture_output=True, text=True, check=True, timeout=120,
    )
    result = json.loads(run.stdout)
    assert result["responses"] > 900
    revealing = result["revealing_of_the_answer"]
    assert revealing["labels"] == ["No", "Yes"]
    assert revealing["macro_f1"] >= 0.75, revealing
    # docs/evaluation.md: 0.890 macro-F1, "Yes" F1 0.810 (0.885 and 0.800 before wrong answers counted)
    assert revealing["macro_f1"] >= 0.85 and revealing["f1"]["Yes"] > 0.80, revealing
    correctness = result["answer_correctness"]
    assert correctness["labels"] == ["Correct", "Incorrect"] and correctness["accuracy"] > 0.95, correctness
    guidance = result["providing_guidance"]
    assert guidance["labels"] == ["No", "To some extent", "Yes"] and guidance["macro_f1"] > 0.4
