"""Where dialogues are evaluated (every turn where telling is still possible) and splits that keep a problem on one side."""

from edulora.data.schema import Dialogue, Example, Metadata, Turn
from edulora.data.split import split_records
from edulora.evaluation.cuts import cut, open_turns, resolve_turns


def dialogue(answer="30"):
    return Dialogue([
        Turn("user", "A triangle has base 10 and height 6. What is its area? My answer: 60"),
        Turn("assistant", "What do you do with base times height for a triangle?"),
        Turn("user", "Hmm, I multiply them?"),
        Turn("assistant", "Yes, and then? Think about half of a rectangle."),
        Turn("user", "Oh, half of 60, so the area is 30"),
        Turn("assistant", "Exactly, 30 square units!"),
    ], Metadata(subject="mathematics", extra={"answer": answer}))


def test_open_turns_stop_where_the_student_reached_the_key():
    cuts = open_turns([dialogue()])
    assert [c.turns[-1].content for c in cuts] == ["What do you do with base times height for a triangle?",
                                                    "Yes, and then? Think about half of a rectangle."]
    assert all(c.metadata.answer == "30" for c in cuts)


def test_records_without_a_key_or_a_dialogue_stay_whole():
    unkeyed = dialogue()
    unkeyed.metadata = Metadata()
    example = Example("What is 2+2?", "What do you get if you count on?", metadata=Metadata(extra={"answer": "4"}))
    assert cut([unkeyed, example], "open") == [unkeyed, example]
    assert cut([dialogue()], "last") == [dialogue()]


def test_auto_opens_turns_only_where_dialogues_have_several_tutor_turns():
    example = Example("What is 2+2?", "What do you get if you count on?", metadata=Metadata(extra={"answer": "4"}))
    one_turn = Dialogue(dialogue().turns[:2], dialogue().metadata)
    assert resolve_turns([example, one_turn], "auto") == "last"
    assert resolve_turns([example, dialogue()], "auto") == "open"
    assert resolve_turns([example, dialogue()], "last") == "last"
    assert len(cut([example, dialogue()], "auto")) == 3  # the example, and the dialogue's two open turns


def test_a_never_reached_key_gives_a_cut_at_every_tutor_turn():
    assert len(open_turns([dialogue(answer="45")])) == 3


def test_group_by_keeps_a_problem_on_one_side():
    records = [Dialogue([Turn("user", f"Student {i} tried problem {i % 5}: my answer is {i}"),
                         Turn("assistant", f"Tell me how you got {i}, step {i}?")],
                        Metadata(subject="mathematics", extra={"qid": i % 5})) for i in range(40)]
    train, held_out = split_records(records, 0.2, seed=1, near_threshold=None, group_by="qid")
    assert held_out and train
    assert not {r.metadata.extra["qid"] for r in train} & {r.metadata.extra["qid"] for r in held_out}
    loose_train, loose_eval = split_records(records, 0.2, seed=1, near_threshold=None)
    assert {r.metadata.extra["qid"] for r in loose_train} & {r.metadata.extra["qid"] for r in loose_eval}
