import pytest
from transformers import AutoTokenizer

from edulora.data.schema import Dialogue, Example, Metadata, Turn, example_from_dict
from edulora.errors import EduloraError
from edulora.formatting import IGNORE_INDEX, EncodedExample, PromptFormat, collate_examples


def encode_record(record, tokenizer, template, max_length):
    return PromptFormat.create(tokenizer, template).encode(record, max_length)


def render_prompt(messages, tokenizer, template):
    return PromptFormat.create(tokenizer, template).render(messages)


def question_messages(question, context=None, metadata=None):
    return PromptFormat(None).question(question, context, metadata)


def record_messages(record, with_system=True):
    return PromptFormat(None, system_prompt=with_system).messages(record)


def resolve_template(template, tokenizer):
    return PromptFormat.create(tokenizer, template).template


@pytest.fixture(scope="module")
def tokenizer(packaged_model_dir):
    return AutoTokenizer.from_pretrained(packaged_model_dir)


EXAMPLE = example_from_dict({
    "instruction": "Why do we have seasons?", "context": "The student thinks Earth is closer to the Sun in summer.",
    "response": "It's a common idea, but the tilt of Earth's axis causes seasons.",
    "metadata": {"subject": "earth science", "grade_level": "middle school", "teaching_style": "misconception"}})


def labelled_text(tokenizer, encoded):
    return tokenizer.decode([t for t, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX])


@pytest.mark.parametrize("template", ["chat", "instruction"])
def test_labels_cover_exactly_the_reply_and_its_end_marker(tokenizer, template):
    encoded = encode_record(EXAMPLE, tokenizer, template, max_length=512)
    assert labelled_text(tokenizer, encoded).strip() == EXAMPLE.response + "<|im_end|>"
    # the labelled tokens form one block at the end: nothing of the prompt is learned
    first = encoded.labels.index(next(label for label in encoded.labels if label != IGNORE_INDEX))
    assert all(label == IGNORE_INDEX for label in encoded.labels[:first])
    assert all(label != IGNORE_INDEX for label in encoded.labels[first:])


def test_training_text_starts_with_the_generation_prompt(tokenizer):
    """Same formatting at training and generation time: the prompt ids are a prefix of the training ids."""
    for template in ("chat", "instruction"):
        encoded = encode_record(EXAMPLE, tokenizer, template, max_length=512)
        prompt = render_prompt(question_messages(EXAMPLE.instruction, EXAMPLE.context, EXAMPLE.metadata), tokenizer, template)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert encoded.input_ids[: len(prompt_ids)] == prompt_ids
        assert all(label == IGNORE_INDEX for label in encoded.labels[: len(prompt_ids)])


def test_guide_template_shape(tokenizer):
    prompt = render_prompt(record_messages(EXAMPLE, with_system=False)[:-1], tokenizer, "instruction")
    assert prompt == ("### Instruction: Why do we have seasons?\n\nThe student thinks Earth is closer to the Sun in summer.\n"
                      "### Response: ")
    with_persona = render_prompt(record_messages(EXAMPLE)[:-1], tokenizer, "instruction")
    assert with_persona.startswith("### Instruction: ") and "### Context: You are a patient earth science tutor" in with_persona


def test_system_prompt_carries_metadata(tokenizer):
    system = record_messages(EXAMPLE)[0]
    assert system["role"] == "system"
    assert "middle school" in system["content"] and "misconception correction" in system["content"]


def test_dialogue_learns_every_tutor_turn(tokenizer):
    dialogue = Dialogue([Turn("user", "What is 3 x 4?"), Turn("assistant", "What is 4 + 4 + 4?"),
                         Turn("user", "12!"), Turn("assistant", "Yes, well done.")], Metadata())
    encoded = encode_record(dialogue, tokenizer, "chat", max_length=512)
    text = labelled_text(tokenizer, encoded)
    assert "What is 4 + 4 + 4?" in text and "Yes, well done." in text
    assert "12!" not in text and "What is 3 x 4?" not in text


def test_long_text_is_cut_from_the_left_keeping_the_reply(tokenizer):
    long = Example(instruction="word " * 600, response="Short answer.")
    encoded = encode_record(long, tokenizer, "chat", max_length=64)
    assert encoded.truncated and len(encoded.input_ids) == 64
    assert labelled_text(tokenizer, encoded).startswith("Short answer.")


def test_auto_template_follows_the_tokenizer(tokenizer):
    assert resolve_template("auto", tokenizer) == "chat"

    class Plain:
        chat_template = None

    assert resolve_template("auto", Plain()) == "instruction"
    with pytest.raises(EduloraError):
        resolve_template("chat", Plain())


def test_packing_lays_a_batch_end_to_end_with_restarting_positions():
    examples = [EncodedExample([1, 2, 3], [-100, 2, 3]), EncodedExample([4, 5], [-100, 5]),
                EncodedExample([6, 7, 8, 9], [-100, -100, 8, 9])]
    batch = collate_examples(examples, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 9]]  # one row, no padding
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]
    # the last token of one example never learns to predict the next example's first token
    assert batch["shift_labels"].tolist() == [[2, 3, -100, 5, -100, -100, 8, 9, -100]]
    assert int(batch["real_tokens"]) == 9


def test_unpacked_mode_right_pads_each_example():
    batch = collate_examples([EncodedExample([1, 2, 3], [-100, 2, 3]), EncodedExample([4], [4])], 0, packing=False)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    # one causal run per row: real tokens never see the padding after them, so no mask is needed
    assert batch["position_ids"][1].tolist() == [0, 1, 2]
    assert batch["labels"][1].tolist() == [4, IGNORE_INDEX, IGNORE_INDEX]
    assert int(batch["real_tokens"]) == 4
