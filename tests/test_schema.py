import pytest

from edulora.data.schema import (GradeLevel, RecordError, TeachingStyle, example_from_dict, normalize_subject,
                                 parse_grade_level, parse_teaching_style)


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
