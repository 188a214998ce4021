"""The learned judges: shipped weights load and predict, training is deterministic, bad input is one line."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edulora.cli import main
from edulora.evaluation.judges import WEIGHTS, JudgeInput, Judges, load_judges
from edulora.evaluation.judges.features import context_texts, rule_columns
from edulora.evaluation.judges.train import TrainSettings, is_held_out, train_judges
from edulora.evaluation.mrbench import DIMENSIONS

_PART = Path("shared", "data", "mrbench", "mrbench_v2_part.json")
MRBENCH = next((p / _PART for p in Path(__file__).resolve().parents[2:4] if (p / _PART).is_file()),
               Path(__file__).resolve().parents[2] / _PART)
needs_mrbench = pytest.mark.skipif(not MRBENCH.is_file(), reason=f"MRBench file not found at {MRBENCH}")


def fake_embed(texts: list[str]) -> list[list[float]]:
    """Unit vectors from a hash of each text: deterministic, instant, no model (384 like MiniLM)."""
    out = []
    for text in texts:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
        v = np.random.default_rng(seed).standard_normal(384)
        out.append(list(v / np.linalg.norm(v)))
    return out


def toy_mrbench(n: int) -> list[dict]:
    """Made-up dialogues in MRBench V2 format (not MRBench's): replies that tell, hint or chat."""
    replies = {
        "teller": ("So the answer is {a}.", "Yes (and the answer is correct)", "No", "To some extent"),
        "hinter": ("What do you get when you add {x} and {y} again?", "No", "Yes", "Yes"),
        "chatter": ("Nice weather today!", "No", "No", "No"),
    }
    dialogues = []
    for i in range(n):
        x, y = i + 2, 2 * i + 3
        answer = x + y
        dialogues.append({
            "conversation_id": f"toy-{i}", "Data": "Toy", "Split": "test",
            "conversation_history": f"Tutor: What is {x} + {y}?\n Student: {answer + 1}",
            "Ground_Truth_Solution": f"{x} + {y} = {answer}\n {answer}",
            "anno_llm_responses": {name: {"response": text.format(a=answer, x=x, y=y), "annotation": {
                "Mistake_Identification": mistake, "Mistake_Location": mistake, "Revealing_of_the_Answer": reveal,
                "Providing_Guidance": guide, "Actionability": guide, "Coherence": "Yes", "Tutor_Tone": "Neutral",
                "humanlikeness": "Yes"}} for name, (text, reveal, guide, mistake) in replies.items()},
        })
    return dialogues


def test_shipped_judges_load_and_predict() -> None:
    assert WEIGHTS.is_file() and WEIGHTS.stat().st_size < 50 * 2**20
    judges = load_judges()
    assert set(judges.dimensions) == set(DIMENSIONS) and set(judges.heads) == {"learned", "combined"}
    items = [JudgeInput("So the answer is 42.", "Tutor: What is 6 x 7?\n Student: 48", "6 x 7 = 42\n 42"),
             JudgeInput("What is 6 x 6, and what do you add to get 6 x 7?", [("tutor", "What is 6 x 7?"),
                                                                              ("student", "48")])]
    for feature_set in ("learned", "combined"):
        verdicts = judges.predict(items, embed=fake_embed, feature_set=feature_set)
        assert len(verdicts) == 2
        for verdict in verdicts:
            for dimension, judgement in verdict.items():
                assert judgement.label in DIMENSIONS[dimension][1]
                assert sum(judgement.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
                assert judgement.probability == max(judgement.probabilities.values())
    assert judges.predict([], embed=fake_embed) == []
    assert len(judges.trained_on) > 0 and not any(is_held_out(c) for c in judges.trained_on)


def test_model_card_attributes_mrbench_and_gives_the_shipped_scores() -> None:
    card = (WEIGHTS.parent / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in card and "MRBench" in card
    scores = load_judges().info["held_out_scores"]
    assert f"{scores['providing_guidance']['combined']['macro_f1']:.3f}" in card


def test_context_is_the_last_student_turn_and_the_tutor_turn_before_it() -> None:
    item = JudgeInput("Hm?", "Tutor: What is 2 + 2?\n Student: 5\n Tutor: Sure?", "Not Available")
    assert context_texts(item) == ("5", "What is 2 + 2?", "")
    assert not item.has_key and JudgeInput("x", None, "2 + 2 = 4").has_key
    assert rule_columns() > 0


def test_weights_of_another_feature_version_are_refused(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(1, dtype=np.float32)}, str(tmp_path / "foreign.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    for name in ("foreign.safetensors", "junk.safetensors", "missing.safetensors"):
        from edulora.errors import EduloraError

        with pytest.raises(EduloraError):
            load_judges(tmp_path / name)


@pytest.mark.slow  # trains: optimizer steps
def test_training_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "toy.json"
    path.write_text(json.dumps(toy_mrbench(20)), encoding="utf-8")
    settings = TrainSettings(folds=2, l2_grid=(0.1, 1.0), max_iter=20)
    reports = [train_judges(path, tmp_path / name, settings, embed=fake_embed) for name in ("a", "b")]
    for name in ("judges.safetensors", "MODEL_CARD.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert reports[0] == reports[1] and reports[0]["responses"] > 0
    judges = Judges.load(tmp_path / "a" / "judges.safetensors")
    assert judges.info["held_out_scores"] == reports[0]
    assert set(judges.info["held_out"]).isdisjoint(judges.info["trained_on"])


def test_bad_training_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "obj.json").write_text('{"a": 1}', encoding="utf-8")
    for args in (["judges", "train", str(tmp_path / "obj.json")], ["judges", "train", str(tmp_path / "none.json")],
                 ["judges", "train", str(tmp_path / "obj.json"), "--dialogues", "x"]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("edulora: error:") and len(err.strip().splitlines()) == 1, err


@needs_mrbench
def test_the_cli_rebuilds_the_same_bytes_on_a_subset(tmp_path: Path) -> None:
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-m", "edulora", "judges", "train", str(MRBENCH), "--dialogues", ":25",
                        "--out", str(tmp_path / name)], check=True, capture_output=True, timeout=900)
    for name in ("judges.safetensors", "MODEL_CARD.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_judged_rates_count_yes_with_intervals() -> None:
    from edulora.evaluation.judges import EVAL_DIMENSIONS, Judgement, judged_metrics, judged_rates

    def verdict(label: str) -> dict:
        return {dim: Judgement(label if dim != "revealing_of_the_answer" else "No", 0.9, {}) for dim in EVAL_DIMENSIONS}

    rates = judged_rates([verdict("Yes"), verdict("To some extent"), verdict("No"), verdict("Yes")])
    guidance = rates["judged_providing_guidance_rate"]
    assert guidance.value == 0.5 and guidance.n == 4 and guidance.low < 0.5 < guidance.high
    assert rates["judged_revealing_of_the_answer_rate"].value == 0.0 and judged_rates([]) == {}
    assert judged_metrics(verdict("To some extent"))["judged_providing_guidance"] == 0.5


def test_label_offsets_recover_an_underpredicted_label() -> None:
    from edulora.evaluation.judges.train import nested_offset_score, tune_offsets

    rng = np.random.default_rng(0)
    gold = np.repeat([0, 1, 2], 60)
    logits = np.eye(3)[gold] * 2.0 + rng.normal(0, 0.8, (180, 3))
    logits[:, 1] -= 1.5  # the middle label loses most ties, as a rare "To some extent" does
    labels = ("No", "To some extent", "Yes")
    offsets = tune_offsets("actionability", logits, gold, labels)
    assert offsets[0] == 0 and offsets[1] > 0.5
    plain = (logits.argmax(axis=1) == gold).mean()
    assert ((logits + offsets).argmax(axis=1) == gold).mean() > plain
    from edulora.evaluation.mrbench import agreement

    untuned = agreement([labels[g] for g in gold], [labels[p] for p in logits.argmax(axis=1)], labels)["macro_f1"]
    # Offsets chosen on the other folds still help each fold: the shift is real, not fitted noise.
    assert nested_offset_score("actionability", logits, gold, np.arange(180) % 3, labels) > untuned
