"""``edulora calibrate``: agreement arithmetic, file reading, rules / learned / combined, and the shared file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edulora.cli import main
from edulora.evaluation import calibrate as c
from edulora.evaluation.mrbench import agreement, labelled_responses, load_mrbench
from edulora.errors import EduloraError

from test_judges import fake_embed

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
    items = list(labelled_responses([_KEYED] + _TOY))
    assert [i.correctness for i in items[:3]] == ["Incorrect", "Correct", "Correct"]
    assert {i.correctness for i in items[3:]} == {None}  # "Not Available": no key, not scored
    result = c.calibrate([_KEYED] + _TOY, learned=False)
    correctness = result["answer_correctness"]["rules"]
    assert correctness["labels"] == ["Correct", "Incorrect"] and correctness["confusion_matrix"] == [[2, 0], [0, 1]]
    assert result["revealing_of_the_answer"]["rules"]["confusion_matrix"] == [[3, 0], [0, 3]]
    assert set(result["revealing_of_the_answer"]) == {"rules"}  # learned=False: no model loaded


def test_learned_and_combined_judge_every_dimension() -> None:
    result = c.calibrate([_KEYED] + _TOY, embed=fake_embed)
    assert set(result["revealing_of_the_answer"]) == {"rules", "learned", "combined"}
    assert result["actionability"] == {}  # the toy has no such labels: nothing to agree with
    rows = c.predictions(_TOY, embed=fake_embed)
    assert "mistake_identification" in rows[0].judged["learned"] and "mistake_identification" not in rows[0].rules
    assert "revealing_of_the_answer" in c.to_text(result)


def test_predictions_file_has_one_line_per_labelled_response(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, out = tmp_path / "toy.json", tmp_path / "predictions.jsonl"
    path.write_text(json.dumps([_KEYED] + _TOY), encoding="utf-8")
    assert main(["calibrate", str(path), "--rules-only", "--json", "-", "--predictions", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 6 and printed["responses"] == 7  # "D" has no labels: scored, not written
    first = rows[0]
    assert (first["dialogue"], first["tutor"], first["conversation_id"]) == (0, "wrong", "toy-2")
    assert first["human"]["revealing_of_the_answer"] == "Yes" and first["human"]["answer_correctness"] == "Incorrect"
    assert first["human"]["providing_guidance"] == "No" and first["human"]["actionability"] is None
    assert first["annotation"]["Revealing_of_the_Answer"] == "Yes (but the answer is incorrect)"
    rules = first["predicted"]["rules"]
    assert rules["revealing_of_the_answer"] == {"label": "Yes", "score": 1.0}
    assert rules["answer_correctness"] == {"label": "Incorrect", "score": 0.0}
    assert set(rules["providing_guidance"]) == {"label", "score"}
    assert rows[3]["dialogue"] == 1 and rows[3]["predicted"]["rules"]["answer_correctness"] is None
    # --dialogues keeps the file's own dialogue indexes
    assert main(["calibrate", str(path), "--rules-only", "--dialogues", "1:", "--predictions", str(out), "--overwrite"]) == 0
    assert {json.loads(line)["dialogue"] for line in out.read_text(encoding="utf-8").splitlines()} == {1}


def test_predictions_carry_every_dimension_with_probabilities() -> None:
    [first, *_] = c.predictions([_KEYED], embed=fake_embed)
    row = first.row()
    for feature_set in ("learned", "combined"):
        verdict = row["predicted"][feature_set]["mistake_location"]
        assert verdict["label"] in verdict["probabilities"] and 0 < verdict["probability"] <= 1
    assert row["seen_by_judges"] is False  # toy-2 is no MRBench dialogue


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "toy.json"
    path.write_text(json.dumps(_TOY), encoding="utf-8")
    assert main(["calibrate", str(path), "--rules-only", "--dialogues", "1:2:3"]) == 2
    assert "START:END" in capsys.readouterr().err
    assert main(["calibrate", str(path), "--no-such-option"]) == 2
    assert main(["calibrate", "--help"]) == 0 and "--predictions" in capsys.readouterr().out
    assert main(["calibrate", str(path), "--judges", str(tmp_path / "none.safetensors")]) == 2
    assert "none.safetensors" in capsys.readouterr().err


def test_agreement_arithmetic() -> None:
    gold = ["No", "No", "Yes", "Yes"]
    pred = ["No", "Yes", "Yes", "Yes"]
    result = agreement(gold, pred, ("No", "Yes"))
    assert result["confusion_matrix"] == [[1, 1], [0, 2]]
    assert result["accuracy"] == 0.75
    assert result["f1"] == {"No": pytest.approx(2 / 3, abs=1e-4), "Yes": 0.8}
    assert result["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2, abs=1e-4)
    assert result["support"] == {"No": 2, "Yes": 2} and result["labels"] == ["No", "Yes"]


def test_macro_f1_averages_the_labels_that_occur() -> None:
    result = agreement(["No", "No"], ["No", "No"], ("No", "To some extent", "Yes"))
    assert result["f1"]["No"] == 1.0 and result["f1"]["Yes"] == 0.0 and result["accuracy"] == 1.0
    assert result["macro_f1"] == 1.0  # as scikit-learn without labels=: unseen labels do not count
    assert agreement(["No", "Yes"], ["No", "No"], ("No", "Yes"))["macro_f1"] == pytest.approx(1 / 3, abs=1e-4)


def test_labelled_responses_collapse_revealing_labels() -> None:
    items = list(labelled_responses(_TOY))
    assert [i.tutor for i in items] == ["A", "B", "C", "D"]
    assert [i.revealing for i in items] == ["Yes", "No", "No", None]
    assert [i.guidance for i in items] == ["To some extent", "Yes", "No", None]
    assert items[0].conversation == "toy-1" and not items[3].labelled


def test_calibrate_on_a_toy_dialogue() -> None:
    result = c.calibrate(_TOY, learned=False)
    assert result["dialogues"] == 1 and result["responses"] == 4
    assert result["revealing_of_the_answer"]["rules"]["accuracy"] == 1.0
    assert result["providing_guidance"]["rules"]["accuracy"] == 1.0
    assert sum(result["revealing_of_the_answer"]["rules"]["support"].values()) == 3


def test_selects_dialogues_by_position_and_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "toy.json"
    path.write_text(json.dumps(_TOY * 2), encoding="utf-8")
    assert main(["calibrate", str(path), "--rules-only", "--json", "-", "--dialogues", "1:"]) == 0
    assert json.loads(capsys.readouterr().out)["dialogues"] == 1
    assert main(["calibrate", str(path), "--rules-only", "--json", "-", "--split", "train"]) == 0
    assert json.loads(capsys.readouterr().out)["responses"] == 0


def test_bad_files_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "obj.json").write_text('{"a": 1}', encoding="utf-8")
    for name in ("bad.json", "obj.json", "missing.json"):
        assert main(["calibrate", str(tmp_path / name), "--rules-only"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("edulora: error:") and name in err and len(err.strip().splitlines()) == 1
    with pytest.raises(EduloraError):
        load_mrbench(tmp_path / "obj.json")


@pytest.mark.skipif(not MRBENCH.is_file(), reason=f"MRBench calibration file not found at {MRBENCH}")
def test_rules_agree_with_mrbench_humans() -> None:
    result = c.calibrate(load_mrbench(MRBENCH), learned=False)
    assert result["responses"] > 900
    revealing = result["revealing_of_the_answer"]["rules"]
    assert revealing["labels"] == ["No", "Yes"]
    # docs/evaluation.md: 0.890 macro-F1, "Yes" F1 0.810 (0.885 and 0.800 before wrong answers counted)
    assert revealing["macro_f1"] >= 0.85 and revealing["f1"]["Yes"] > 0.80, revealing
    correctness = result["answer_correctness"]["rules"]
    assert correctness["labels"] == ["Correct", "Incorrect"] and correctness["accuracy"] > 0.95, correctness
    guidance = result["providing_guidance"]["rules"]
    assert guidance["labels"] == ["No", "To some extent", "Yes"] and guidance["macro_f1"] > 0.4


@pytest.mark.slow  # MiniLM over a thousand texts
@pytest.mark.skipif(not MRBENCH.is_file(), reason=f"MRBench calibration file not found at {MRBENCH}")
def test_shipped_judges_on_dialogues_they_did_not_see() -> None:
    from edulora.evaluation.judges import load_judges

    judges = load_judges()
    chosen, offset = c.select(load_mrbench(MRBENCH), unseen_by=judges)
    result = c.calibrate(chosen, offset, judges)
    assert result["seen_by_judges"] == 0 and result["dialogues"] == judges.info["held_out_scores"]["dialogues"]
    for dimension, scores in judges.info["held_out_scores"].items():
        if isinstance(scores, dict):  # the card's numbers are what calibrate measures on the same dialogues
            assert result[dimension]["combined"]["macro_f1"] == scores["combined"]["macro_f1"], dimension
