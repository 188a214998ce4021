"""Prompts per family: the persona and the teacher's key reach the model whatever its chat template does with a
system turn, and the loss covers exactly the tutor's tokens, under each family's template shape."""

from __future__ import annotations

import pytest
from model_families import SPECIAL_TOKENS, TEMPLATES

from edulora.data.schema import Dialogue, Example, Metadata, Turn, parse_metadata
from edulora.formatting import IGNORE_INDEX, PromptFormat

CHATML = "chatml"


@pytest.fixture(scope="module")
def tokenizers(packaged_model_dir):
    from transformers import AutoTokenizer

    out = {}
    for kind in (CHATML, *TEMPLATES):
        tokenizer = AutoTokenizer.from_pretrained(packaged_model_dir)
        if kind in TEMPLATES:
            tokenizer.chat_template = TEMPLATES[kind]
            tokenizer.add_tokens(SPECIAL_TOKENS.get(kind, []), special_tokens=True)
        out[kind] = tokenizer
    return out


def _meta() -> Metadata:
    return parse_metadata({"subject": "mathematics", "grade_level": "middle_school", "teaching_style": "socratic",
                           "answer": "56"}, "test")


@pytest.mark.parametrize("kind", [CHATML, *TEMPLATES])
def test_persona_and_key_reach_the_model_in_every_familys_template(tokenizers, kind):
    fmt = PromptFormat.create(tokenizers[kind], "auto")
    assert fmt.template == "chat"
    prompt = fmt.render(fmt.question("What is 7 times 8?", metadata=_meta()))
    assert "patient mathematics tutor" in prompt and "Final answer: 56." in prompt
    assert prompt.index("Final answer: 56.") < prompt.index("What is 7 times 8?")
    # Gemma 2's and Mistral's templates refuse a system turn: it is folded into the first user turn.
    assert fmt.system_role == (kind in (CHATML, "gemma3", "phi3"))


@pytest.mark.parametrize("kind", [CHATML, *TEMPLATES])
def test_the_loss_covers_exactly_the_tutors_tokens_in_every_familys_template(tokenizers, kind):
    tokenizer = tokenizers[kind]
    fmt = PromptFormat.create(tokenizer, "auto")
    dialogue = Dialogue(turns=[Turn(role="user", content="Is 7 x 8 = 54?"),
                               Turn(role="assistant", content="Count by sevens: what comes after 49?"),
                               Turn(role="user", content="56!"),
                               Turn(role="assistant", content="Yes. How did you get there?")], metadata=_meta())
    encoded = fmt.encode(dialogue, max_length=4096)
    learned = tokenizer.decode([t for t, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX])
    assert "Count by sevens: what comes after 49?" in learned and "Yes. How did you get there?" in learned
    for hidden in ("Is 7 x 8 = 54?", "56!", "Final answer", "patient mathematics tutor"):
        assert hidden not in learned
    assert tokenizer.eos_token in learned  # every tutor turn learns to stop
    whole = tokenizer.decode(encoded.input_ids)
    assert whole.count("Final answer: 56.") == 1  # the key sits once, in the prompt


def test_a_single_turn_record_is_masked_alike(tokenizers):
    for kind in (CHATML, *TEMPLATES):
        fmt = PromptFormat.create(tokenizers[kind], "auto")
        encoded = fmt.encode(Example(instruction="Why is the sky blue?", response="What colour scatters most?",
                                     metadata=_meta()), max_length=4096)
        learned = [t for t, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX]
        assert tokenizers[kind].decode(learned).startswith("What colour scatters most?"), kind
