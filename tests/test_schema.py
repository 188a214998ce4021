import pytest

from edulora.data.schema import (Dialogue, GradeLevel, RecordError, TeachingStyle, Turn, dialogue_from_dict,
                                 example_from_dict, normalize_subject, parse_grade_level, parse_teaching_style)


@pytest.mark.parametrize("text", ["Middle School", "middle_school", "middle-school", "grade 7", "7th grade", "6"])
def test_grade_levels_normalize_to_one_value(text):
    assert parse_grade_level(text) is GradeLevel.MIDDLE_SCHOOL


@pytest.mark.parametrize("text,style", [("Socratic", TeachingStyle.SOCRATIC), ("step-by-step", TeachingStyle.STEP_BY_STEP),
                                        ("Analogy", TeachingStyle.ANALOGY_BASED),
                                        ("Misconception Correction", TeachingStyle.MISCONCEPTION_CORRECTION)])
def test_teaching_styles_normalize(text, style):
    assert parse_teaching_style(text) is style


def test_unknown_values_are_reported_not_dropped():
    with pytest.raises(RecordError) as err:
        example_from_dict({"instruction": "q", "response": "r",
                           "metadata": {"grade_level": "grade 42", "teaching_style": "telepathy"}})
    text = " ".join(err.value.messages)
    assert "grade 42" in text and "telepathy" in text


def test_subjects_are_open_but_aliases_merge():
    assert normalize_subject("Math") == "mathematics"
    assert normalize_subject("Marine Biology") == "marine_biology"


def test_unknown_keys_survive_a_round_trip():
    raw = {"instruction": "q", "response": "r", "id": 7,
           "metadata": {"subject": "maths", "grade_level": "High School", "answer": "12"}}
    example = example_from_dict(raw)
    assert example.metadata.answer == "12"
    assert example.to_dict() == {"instruction": "q", "response": "r", "id": 7,
                                 "metadata": {"subject": "mathematics", "grade_level": "high_school", "answer": "12"}}


@pytest.mark.parametrize("raw,needle", [
    ({"response": "r"}, "missing field 'instruction'"),
    ({"instruction": "  ", "response": "r"}, "field 'instruction' is empty"),
    ({"instruction": 3, "response": "r"}, "must be a string"),
    ({"instruction": "q", "response": "r", "metadata": []}, "'metadata' must be an object"),
    ({"instruction": "q", "response": "x" * 30_000}, "characters long"),
    ([1, 2], "must be a JSON object"),
])
def test_each_bad_field_gets_a_message(raw, needle):
    with pytest.raises(RecordError) as err:
        example_from_dict(raw)
    assert any(needle in m for m in err.value.messages)


# --------------------------------------------------------------------------- the teacher's key


def test_key_numbers_are_kept_as_text():
    example = example_from_dict({"instruction": "q", "response": "r",
                                 "metadata": {"answer": 12, "solution": "3 rows of 4 make 12."}})
    assert example.metadata.answer == "12" and example.metadata.solution == "3 rows of 4 make 12."
    assert example.to_dict()["metadata"] == {"answer": "12", "solution": "3 rows of 4 make 12."}
    assert example_from_dict({"instruction": "q", "response": "r", "metadata": {"answer": 2.5}}).metadata.answer == "2.5"
    assert example_from_dict({"instruction": "q", "response": "r", "metadata": {"answer": None}}).metadata.answer is None


@pytest.mark.parametrize("value,needle", [
    ("", "metadata.answer is empty"),
    ("   ", "metadata.answer is empty"),
    (True, "metadata.answer must be a non-empty string or a number, got bool"),
    ([12], "metadata.answer must be a non-empty string or a number, got list"),
    ({"value": 12}, "metadata.answer must be a non-empty string or a number, got dict"),
    (float("nan"), "metadata.answer must be a finite number"),
    ("x" * 30_000, "metadata.answer is 30,000 characters long"),
])
def test_bad_answers_are_reported_by_field(value, needle):
    with pytest.raises(RecordError) as err:
        example_from_dict({"instruction": "q", "response": "r", "metadata": {"answer": value}})
    assert err.value.messages[0].startswith(needle)
    with pytest.raises(RecordError) as err:
        example_from_dict({"instruction": "q", "response": "r", "metadata": {"solution": value}})
    assert err.value.messages[0].startswith(needle.replace("answer", "solution"))


# --------------------------------------------------------------------------- turns not to train on


def _messages(*turns):
    return {"messages": [dict(zip(("role", "content", "train"), t)) for t in turns]}


def test_turns_marked_not_to_train_round_trip():
    raw = _messages(("user", "What is 3 x 4?"), ("assistant", "It is 12.", False), ("user", "Why?"),
                    ("assistant", "How many in 3 rows of 4?"))
    dialogue = dialogue_from_dict(raw)
    assert [t.train for t in dialogue.turns] == [True, False, True, True]
    assert dialogue.to_dict() == raw  # "train" is written only where it is false
    assert Turn("assistant", "x").to_dict() == {"role": "assistant", "content": "x"}
    assert dialogue_from_dict(_messages(("user", "q"), ("assistant", "a", True))).turns[1].train is True


@pytest.mark.parametrize("raw,needle", [
    (_messages(("user", "q"), ("assistant", "a", "no")), "messages[1].train must be true or false, got 'no'"),
    (_messages(("user", "q", False), ("assistant", "a")), "messages[0].train: only assistant turns"),
    (_messages(("user", "q"), ("assistant", "a", False)), "every one is marked train: false"),
])
def test_bad_train_marks_are_reported(raw, needle):
    with pytest.raises(RecordError) as err:
        dialogue_from_dict(raw)
    assert any(needle in m for m in err.value.messages), err.value.messages


def test_turn_train_defaults_to_true():
    assert Dialogue([Turn("user", "q"), Turn("assistant", "a")]).turns[1].train is True
