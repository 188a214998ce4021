"""Scrubbing personal information: each kind, the false positives that must survive, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edulora.data.pii.evaluate import PiiItem, PiiMessage, evaluate_pii, leaked, load_pii_set
from edulora.data.privacy import Roster, ScrubReport, intro_names, load_roster, scrub_records, scrub_text
from edulora.data.schema import Dialogue, Example, Metadata, Turn
from edulora.errors import EduloraError


def scrubbed(text: str, roster: Roster | None = None) -> str:
    return scrub_text(text, roster)[0]


@pytest.mark.parametrize("text, expected", [
    ("Email me at ana.lopez+hw@school.k12.ca.us please", "Email me at [EMAIL] please"),
    ("My mom's email is JOHN_doe@Example.COM.", "My mom's email is [EMAIL]."),
    ("Call (555) 123-4567 tonight", "Call [PHONE] tonight"),
    ("my number is 555-123-4567.", "my number is [PHONE]."),
    ("or 555.987.6543 or +1 555 987 6543", "or [PHONE] or [PHONE]"),
    ("UK: +44 20 7946 0958", "UK: [PHONE]"),
    ("text me 5551234567", "text me [PHONE]"),
    ("see https://example.com/a?b=1, then", "see [URL], then"),
    ("try www.khanacademy.org.", "try [URL]."),
    ("go to mathisfun.com/fractions for help", "go to [URL] for help"),
    ("I live at 123 Main Street, Apt 4B.", "I live at [ADDRESS]."),
    ("Send it to 42 Elm St., Springfield, IL 62704 today", "Send it to [ADDRESS] today"),
    ("We met at 725 5th Avenue", "We met at [ADDRESS]"),
    ("P.O. Box 1234", "[ADDRESS]"),
    ("My student ID is 20231234.", "My student ID is [STUDENT_ID]."),
    ("student number: 445566", "student number: [STUDENT_ID]"),
    ("ID# 98765 and ID: S-12345", "ID# [STUDENT_ID] and ID: [STUDENT_ID]"),
    ("badge S1234567 please", "badge [STUDENT_ID] please"),
    ("Hi, I'm Ana Lopez and I need help", "Hi, I'm [NAME] and I need help"),
    ("my name is jose. what is 3+4?", "my name is [NAME]. what is 3+4?"),
    ("You can call me Bobby!", "You can call me [NAME]!"),
    ("I am Priya, and Priya likes math", "I am [NAME], and [NAME] likes math"),
])
def test_each_kind_is_replaced(text, expected):
    assert scrubbed(text) == expected


@pytest.mark.parametrize("text", [
    "In May we learned fractions.",
    "Will you help me? I will try.",
    "I'm Confused about this. I'm Not sure. I'm Trying. I'm So lost. I'm Ready!",
    "I am 12 years old and I'm in Grade 7.",
    "What is 345 * 12?",
    "Columbus sailed in the year 1492.",
    "Pi is about 3.14159, and e is 2.71828.",
    "If x = 12345, what is x + 1?",
    "The population was 1234567 in 2020.",
    "Multiply 123.45 by 6.78 and round to 3 places.",
    "Add 3 apples on the way home.",
    "Solve 2x - 345 = 1234 for x.",
    "The answer is 1,234,567.",
    "The date 2024-05-17 is a Friday.",
    "She said so.Me too, the end.",
    "Read chapter 12, pages 100-120.",
    "My name is not important, what is 7 x 8?",
])
def test_false_positives_survive(text):
    assert scrubbed(text) == text


def test_intro_names():
    assert intro_names("Hello! I'm Maria Gonzalez, and I'm Stuck.") == ["Maria Gonzalez"]
    assert intro_names("I’m Li.") == ["Li"]
    assert intro_names("I'm Working on it") == []


def test_roster_names():
    roster = Roster(["Maria Gonzalez", "May Chen", "Will", "  ", "Okonkwo"])
    text = "Maria and maria gonzalez met May Chen. Chen came in May. Thanks, Will! Will you? I will. Okonkwo too."
    assert scrubbed(text, roster) == (
        "[NAME] and [NAME] met [NAME]. [NAME] came in May. Thanks, [NAME]! Will you? I will. [NAME] too.")


def test_load_roster(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("\ufeff# class 5B\nAna Lopez\n\n  Ben Ito  \n", encoding="utf-8")
    assert load_roster(path).names == ["Ana Lopez", "Ben Ito"]
    with pytest.raises(EduloraError, match="no such roster"):
        load_roster(tmp_path / "missing.txt")
    (tmp_path / "bad.txt").write_bytes(b"Jos\xe9\n")
    with pytest.raises(EduloraError, match="not valid UTF-8"):
        load_roster(tmp_path / "bad.txt")


def test_scrub_records_covers_every_field_and_learns_names_per_record():
    example = Example(
        instruction="I'm Ana. Email ana@x.org",
        context="Phone 555-123-4567",
        response="Great question, Ana! Visit https://k.org",
        metadata=Metadata(subject="math", extra={"student": "Ana", "notes": ["id: 123456"]}),
        extra={"source_url": "www.school.edu/ana"},
    )
    dialogue = Dialogue(turns=[Turn("user", "call me Sam"), Turn("assistant", "Hi Sam, and hi Ana.")])
    out, report = scrub_records([example, dialogue], roster=["Ben Ito"])
    ex, dia = out
    assert ex.instruction == "I'm [NAME]. Email [EMAIL]"
    assert ex.context == "Phone [PHONE]"
    assert ex.response == "Great question, [NAME]! Visit [URL]"
    assert ex.metadata.extra == {"student": "[NAME]", "notes": ["id: [STUDENT_ID]"]}
    assert ex.extra == {"source_url": "[URL]"}
    # "Ana" was introduced in the first record only, so the dialogue keeps that word.
    assert [t.content for t in dia.turns] == ["call me [NAME]", "Hi [NAME], and hi Ana."]
    assert example.instruction == "I'm Ana. Email ana@x.org"  # the input is not modified
    assert report.records == 2 and report.records_changed == 2
    assert report.counts == {"NAME": 5, "EMAIL": 1, "PHONE": 1, "URL": 2, "STUDENT_ID": 1}
    assert set(report.by_line) == {1, 2}


def test_report_never_holds_the_values():
    records = [Example(instruction="I'm Zelda, zelda@mail.com, 555-222-3333", response="ok")]
    _, report = scrub_records(records, lines=[17])
    dumped = json.dumps(report.to_dict()) + "\n".join(report.summary_lines())
    for secret in ("Zelda", "zelda", "mail.com", "555", "222-3333"):
        assert secret not in dumped
    assert report.to_dict()["by_line"] == {"17": {"NAME": 1, "EMAIL": 1, "PHONE": 1}}
    assert report.summary_lines()[1] == "  line 17: EMAIL 1, PHONE 1, NAME 1"


def test_clean_records_report_nothing():
    _, report = scrub_records([Example(instruction="What is 7 x 8?", response="56")])
    assert report.total == 0 and report.by_line == {} and isinstance(report, ScrubReport)
    assert report.summary_lines() == ["replaced 0 value(s) in 0 of 1 record(s)"]


# --------------------------------------------------------------------------- each new kind, several languages


@pytest.mark.parametrize("text, expected", [
    # names in several scripts, after self-introductions
    ("Hi, I'm José and I need help", "Hi, I'm [NAME] and I need help"),
    ("Hola soy Camila García, no entiendo", "Hola soy [NAME], no entiendo"),
    ("hey it's kevin, stuck on #4", "hey it's [NAME], stuck on #4"),
    ("hello this is Priya. Can you check it?", "hello this is [NAME]. Can you check it?"),
    ("my real name is Zoë Lindqvist", "my real name is [NAME]"),
    ("je m'appelle Léa, merci", "je m'appelle [NAME], merci"),
    ("Ich heiße Jonas Müller.", "Ich heiße [NAME]."),
    ("Меня зовут Анна Петрова, помогите", "Меня зовут [NAME], помогите"),
    ("我叫王小明，今年十二岁", "我叫[NAME]，今年十二岁"),
    ("मेरा नाम राहुल शर्मा है", "मेरा नाम [NAME] है"),
    ("Με λένε Νίκος και έχω απορία", "Με λένε [NAME] και έχω απορία"),
    ("제 이름은 김민준입니다.", "제 이름은 [NAME]입니다."),
    ("hey, Mateo here. is 3/4 > 2/3?", "hey, [NAME] here. is 3/4 > 2/3?"),
    ("Thanks for the help! - Kwame", "Thanks for the help! - [NAME]"),
    ("Great job, Aisha! Next one.", "Great job, [NAME]! Next one."),
    # other people's names
    ("my mom Linda Okafor said so, Linda is nice", "my mom [NAME] said so, [NAME] is nice"),
    ("Mr. Tanaka gave us this", "Mr. [NAME] gave us this"),
    ("ask for Tommy, he's my brother", "ask for [NAME], he's my brother"),
    ("grandma Rosa helps me", "grandma [NAME] helps me"),
    ("my parents are Ahmed and Fatima Hassan", "my parents are [NAME] and [NAME]"),
    ("mi abuela Carmen me ayuda", "mi abuela [NAME] me ayuda"),
    ("Frau Schneider ist meine Lehrerin", "Frau [NAME] ist meine Lehrerin"),
    ("my sister Ana's phone", "my sister [NAME]'s phone"),
    # a third person's relatives count in a student's own message, not in a history lesson (above)
    ("My friend Björn and I built it, his mom Ingrid helped", "My friend [NAME] and I built it, his mom [NAME] helped"),
    ("Im Hamid, can u explain ratios", "Im [NAME], can u explain ratios"),
    ("My full name is María José Rodríguez Pérez", "My full name is [NAME]"),
    ("Me llamo Juan Carlos de la Cruz y tengo 12", "Me llamo [NAME] y tengo 12"),
    ("my mom's name is Patricia. My dad (Carlos) says hi", "my mom's name is [NAME]. My dad ([NAME]) says hi"),
    ("tell Jamal I said hi", "tell [NAME] I said hi"),
    ("Regards,\nSunita Rao", "Regards,\n[NAME]"),
    ("Mit freundlichen Grüßen, Jonas", "Mit freundlichen Grüßen, [NAME]"),
])
def test_names_from_cue_words(text, expected):
    assert scrubbed(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("I go to Roosevelt High School now", "I go to [SCHOOL] now"),
    ("she is at Oak Ridge Elementary.", "she is at [SCHOOL]."),
    ("Year 9 at St. Bartholomew's Academy", "Year 9 at [SCHOOL]"),
    ("voy a la Escuela Benito Juárez", "voy a la [SCHOOL]"),
    ("ich bin am Goethe-Gymnasium", "ich bin am [SCHOOL]"),
    ("call me at 020 7946 0958 after 5", "call me at [PHONE] after 5"),
    ("mobile +44 7700 900456", "mobile [PHONE]"),
    ("Nummer 0151 23456789.", "Nummer [PHONE]."),
    ("whatsapp my dad on 98765-12345 pls", "whatsapp my dad on [PHONE] pls"),
    ("su teléfono es 55 1234 5678", "su teléfono es [PHONE]"),
    ("她的电话是13812345678", "她的电话是[PHONE]"),
    ("j'habite au 17 Rue de la Paix, 75002 Paris", "j'habite au [ADDRESS]"),
    ("Calle Mayor 10, 28013 Madrid es mi dirección", "[ADDRESS] es mi dirección"),
    ("meine Adresse ist Lindenstraße 23, 10969 Berlin", "meine Adresse ist [ADDRESS]"),
    ("my postcode is SW1A 1AA", "my postcode is [ADDRESS]"),
    ("my SSN is 123-45-6789.", "my SSN is [NATIONAL_ID]."),
    ("NI number QQ 12 34 56 C", "NI number [NATIONAL_ID]"),
    ("born on 14 March 2012 so I'm 12", "born on [BIRTH_DATE] so I'm 12"),
    ("my birthday is 03/14/2012!", "my birthday is [BIRTH_DATE]!"),
    ("nací el 5 de mayo de 2012", "nací el [BIRTH_DATE]"),
    ("ich bin am 3. Mai 2012 geboren", "ich bin am [BIRTH_DATE] geboren"),
    ("my locker is 7B-0192", "my locker is [STUDENT_ID]"),
    ("exam number AB-445-993", "exam number [STUDENT_ID]"),
    ("follow me @sofia_m_2011 on insta", "follow me [HANDLE] on insta"),
    ("my tiktok is mateo.draws08 lol", "my tiktok is [HANDLE] lol"),
    ("add me on discord: pixelpanda#4821", "add me on discord: [HANDLE]"),
])
def test_new_kinds_are_replaced(text, expected):
    assert scrubbed(text) == expected


@pytest.mark.parametrize("text", [
    "Rosa Parks refused to give up her seat in 1955.",
    "The speed of light is 299792458 m/s.",
    "Why does Mr. Darcy change his mind in Pride and Prejudice?",
    "Mr. Bennet has five daughters in the novel.",
    "Dr. Martin Luther King Jr. gave the speech in 1963.",
    "The Declaration of Independence was signed on July 4, 1776.",
    "Gandhi was born on 2 October 1869 in Porbandar.",
    "Children born in the year 2012 are about twelve now.",
    "On page 3/14 the fraction is not simplified yet.",
    "What is 98765 - 12345?",
    "Balance Fe2O3 + 3CO → 2Fe + 3CO2.",
    "This is Newton's third law in action.",
    "It's Paris, the capital of France.",
    "Sara has 12 marbles and gives 5 to Ben.",
    "The Frankfurt School influenced critical theory.",
    "Ms. Frizzle takes her class on field trips in The Magic School Bus.",
    "10 Downing Street is the home of the British Prime Minister.",
    "Hello World is the first program many people write.",
    "Call me crazy, but isn't 0.999... equal to 1?",
    "Mother Teresa worked in Kolkata. Uncle Sam is a symbol.",
    "Im Mai haben wir Brüche gelernt. Ich bin Schüler.",
    "我是初二的学生，我喜欢物理。",
    "The COVID-19 pandemic began in 2019; the F-16 first flew in 1974.",
    "The @ symbol is read as \"at\". The High Middle Ages came later.",
    "Henry VIII and his wife Anne Boleyn had a daughter. Queen Victoria and her husband Albert had nine children.",
    "Madame Curie discovered radium. Professor McGonagall teaches at Hogwarts.",
    "Key organelles:\n- Nucleus\n- Mitochondria",
    "Gravity here on Earth pulls at 9.8 m/s². Photosynthesis here means making food from light.",
    "It's Halloween again! If in doubt, ask Google.",
    "hello i am kinda lost, my name isn't important",
    "Wir treffen uns im Zentrum. La madre Teresa ayudó a los pobres.",
    "Ask Maria how many apples she has. Tell Ben to bring 3 pencils.",
    "Imagination is more important than knowledge. - Albert Einstein",
])
def test_ordinary_lesson_text_survives(text):
    assert scrubbed(text) == text


# --------------------------------------------------------------------------- the measured recall


DATA = Path(__file__).resolve().parent / "data"


def test_our_message_set_is_large_enough_and_labels_are_in_the_text():
    messages = load_pii_set(DATA / "pii_messages.jsonl")
    pii = [m for m in messages if m.items]
    assert len(pii) >= 60 and sum(len(m.items) for m in pii) >= 100 and len(messages) - len(pii) >= 60
    assert len({i.type for m in pii for i in m.items}) >= 10


@pytest.mark.parametrize("name", ["pii_messages.jsonl", "pii_messages_batch2.jsonl", "pii_messages_batch3.jsonl",
                                  "pii_messages_batch4.jsonl"])
def test_recall_at_least_95_percent_and_no_ordinary_text_changed(name):
    result = evaluate_pii(DATA / name)
    assert result.recall >= 0.95, result.summary_lines(show_misses=True)
    assert result.false_positives == 0, result.summary_lines(show_misses=True)


def test_the_evaluation_counts_a_partly_kept_value_as_missed():
    assert leaked("Hola soy Camila García", "Hola soy [NAME] García", "Camila García")
    assert not leaked("Hola soy Camila García", "Hola soy [NAME]", "Camila García")
    assert leaked("我叫王小明", "我叫[NAME]明", "王小明") and not leaked("我叫王小明", "我叫[NAME]", "王小明")
    # every occurrence counts: a name removed once but left later is a leak
    assert leaked("I'm Ana. Bye, Ana", "I'm [NAME]. Bye, Ana", "Ana")
    messages = [PiiMessage(1, "call me Jay", (PiiItem("name", "Jay"),)), PiiMessage(2, "In May we met.", ())]
    result = evaluate_pii(messages, scrub=lambda text: text.replace("May", "[NAME]"))
    assert (result.replaced, result.items, result.changed) == (0, 1, [2])
    assert result.summary_lines()[:2] == ["recall 0.0%: 0 of 1 PII items replaced in 1 messages",
                                         "false positives: 1 of 1 ordinary messages changed"]


def test_a_label_missing_from_its_text_is_an_error(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps({"text": "hi I'm Ana", "pii": [{"type": "name", "value": "Anna"}]}) + "\n",
                    encoding="utf-8")
    with pytest.raises(EduloraError, match="not in the text"):
        load_pii_set(path)


# --------------------------------------------------------------------------- training data of any shape


SINGLE = {"instruction": "Hi, I'm Camila García, email camila.g@example.com. What is 3 x 4?",
          "response": "Good question, Camila! Count 3 groups of 4.", "metadata": {"subject": "mathematics"}}
DIALOGUE = {"messages": [{"role": "user", "content": "hey it's camila, call 020 7946 0958 or camila.g@example.com"},
                         {"role": "assistant", "content": "Hi Camila, what is 7 x 8?"}]}


@pytest.mark.parametrize("shape", ["single-turn", "dialogue"])
@pytest.mark.parametrize("setting, scrubbed_expected", [("auto", True), ("true", True), ("false", False)])
def test_training_data_is_scrubbed_whatever_its_shape(write_jsonl, shape, setting, scrubbed_expected):
    from edulora.config import RunConfig
    from edulora.training.data import load_data

    row = SINGLE if shape == "single-turn" else DIALOGUE
    config = RunConfig()
    # every record of the run has this one shape: a single-turn export is scrubbed as well as dialogues
    config.data.train_file = str(write_jsonl([row, row], "train.jsonl"))
    config.data.eval_file = str(write_jsonl([row], "eval.jsonl"))
    config.data.scrub_pii = setting
    split = load_data(config)
    text = json.dumps([r.to_dict() for r in split.train + split.eval], ensure_ascii=False)
    for secret in ("Camila", "camila", "camila.g@example.com"):
        assert (secret in text) is not scrubbed_expected, (secret, text)
    if scrubbed_expected:
        counts = split.info["pii_scrubbed"]
        assert counts["train"]["EMAIL"] == 2 and counts["eval"]["EMAIL"] == 1 and counts["eval"]["NAME"] >= 2
    else:
        assert "pii_scrubbed" not in split.info


def test_the_authored_sample_lessons_keep_their_text():
    """Training now scrubs single-turn data too: 506 written lessons full of historical figures,
    dates, numbers and word problems must come through it unchanged (one public website aside)."""
    from edulora.data import sample_data_path
    from edulora.data.formats import load_records

    records = load_records(sample_data_path("tutoring.jsonl"))
    _, report = scrub_records(records)
    assert report.records == 506 and dict(report.counts) == {"URL": 1}


def test_a_found_name_is_removed_throughout_the_record_with_its_parts():
    assert scrubbed("I'm Hope. I hope you can help, Hope") == "I'm [NAME]. I hope you can help, [NAME]"
    assert scrubbed("my name is kevin. Kevin likes maths") == "my name is [NAME]. [NAME] likes maths"
    assert scrubbed("Me llamo Juan Carlos de la Cruz. The van is red. Juan is here, Cruz too") == (
        "Me llamo [NAME]. The van is red. [NAME] is here, [NAME] too")
    assert scrubbed("my mom Linda Okafor said Mrs. Okafor signs, Linda knows") == (
        "my mom [NAME] said Mrs. [NAME] signs, [NAME] knows")


# --------------------------------------------------------------------------- issue 38: what export still let through


# Each finding: (text, what scrubbing must make of it); a text that must come through unchanged maps to itself.
FINDINGS = {
    "greeting a full name": [("Hi Fatima Khan, what is 3/4 as a percent?", "Hi [NAME], what is 3/4 as a percent?"),
                             ("Hello Fatima Khan! I need help.", "Hello [NAME]! I need help."),
                             ("Hi Ahmed and Sara, here is our poster", "Hi [NAME] and [NAME], here is our poster")],
    "a name to contact": [("call Fatima Khan at 555-123-4567", "call [NAME] at [PHONE]"),
                          ("Call Newton's law to mind at 9 am.", None)],
    "a name alone on the last line": [("Can you explain it again?\nFatima", "Can you explain it again?\n[NAME]"),
                                      ("Who wrote Hamlet?\nShakespeare", None),  # a quiz answer
                                      ("Thank you so much!\nSee you tomorrow.", None)],
    "a name addressed in a reply": [("Fatima, can you count by fours?", "[NAME], can you count by fours?"),
                                    ("Finally, what is 3 x 4? Hmm, can we check?", None)],
    "a house number with a letter": [("I live at 221B Baker Street now", "I live at [ADDRESS] now"),
                                     ("We moved to 14b Elm Road last week", "We moved to [ADDRESS] last week"),
                                     ("Sherlock Holmes lived at 221B Baker Street.", None)],  # the lesson's
    "a school after at": [("At Riverside High School we do labs.", "At [SCHOOL] we do labs."),
                          ("In High School you choose subjects.", None)],
    "a closing bracket after a phone number": [("(call me at +44 20 7946 0958)", "(call me at [PHONE])"),
                                               ("ring +44 (0)20 7946 0958 now", "ring [PHONE] now"),
                                               ("(text me on 555-123-4567)", "(text me on [PHONE])")],
}


def check(finding: str) -> None:
    for text, expected in FINDINGS[finding]:
        assert scrubbed(text) == (text if expected is None else expected), text


def test_hi_and_hello_greet_a_full_name():
    check("greeting a full name")


def test_a_name_to_contact_is_replaced_with_the_number():
    check("a name to contact")


def test_a_name_alone_on_the_last_line_is_replaced():
    check("a name alone on the last line")


def test_a_name_addressed_at_the_start_of_a_reply_is_replaced():
    check("a name addressed in a reply")


def test_a_house_number_with_a_letter_is_an_address():
    check("a house number with a letter")


def test_a_school_after_at_or_in_is_replaced():
    check("a school after at")


def test_the_phone_rule_keeps_a_closing_bracket():
    check("a closing bracket after a phone number")


def test_new_student_messages_at_least_97_percent_replaced_and_no_clean_sentence_changed():
    """Batch 5: student messages written for issue 38 (names in greetings and sign-offs, full names,
    house numbers like 221B, numbers in brackets, e-mails, schools) and lesson sentences full of
    capitalised places, people and maths that must come through unchanged."""
    messages = load_pii_set(DATA / "pii_messages_batch5.jsonl")
    assert sum(len(m.items) for m in messages) >= 70 and sum(not m.items for m in messages) >= 50
    result = evaluate_pii(messages)
    assert result.recall >= 0.97, result.summary_lines(show_misses=True)
    assert result.false_positives == 0, result.summary_lines(show_misses=True)
