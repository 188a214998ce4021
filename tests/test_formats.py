"""Readers for every supported format, format detection, and every kind of malformed input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edulora.data import jsonscan
from edulora.data.formats import (
    detect_format,
    iter_format_records,
    load_records_with_lines,
    parse_column_map,
    validate_any,
)
from edulora.data.io import Problem
from edulora.data.schema import MAX_FIELD_CHARS, Dialogue, Example, GradeLevel, TeachingStyle
from edulora.errors import EduloraError

GUIDE = {"instruction": "What is 2+2?", "response": "Let's count: 2 and 2 more makes 4.",
         "metadata": {"subject": "math", "grade_level": "grade 2", "teaching_style": "step by step"}}


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, rows: list) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


def items(path: Path, fmt: str | None = None, column_map=None) -> list:
    return list(iter_format_records(path, fmt, column_map))


def problems(path: Path, fmt: str | None = None, column_map=None) -> list[str]:
    return [str(item) for _, item in items(path, fmt, column_map) if isinstance(item, Problem)]


# --------------------------------------------------------------------------- each format


def test_guide_jsonl(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [GUIDE, {"messages": [{"role": "user", "content": "hi"},
                                                            {"role": "assistant", "content": "hello"}]}])
    assert detect_format(path) == "edulora"
    (l1, ex), (l2, dia) = items(path)
    assert (l1, l2) == (1, 2)
    assert isinstance(ex, Example) and isinstance(dia, Dialogue)
    assert ex.metadata.grade_level is GradeLevel.ELEMENTARY
    assert ex.metadata.teaching_style is TeachingStyle.STEP_BY_STEP


def test_alpaca_jsonl_and_array(tmp_path):
    rows = [{"instruction": "Define a noun.", "input": "", "output": "A noun names a person, place or thing."},
            {"instruction": "Use it in a sentence.", "input": "word: river", "output": "The river is wide.",
             "id": 7}]
    for path in (jsonl(tmp_path / "a.jsonl", rows), write(tmp_path / "a.json", json.dumps(rows, indent=2))):
        assert detect_format(path) == "alpaca"
        records = [r for _, r in items(path)]
        assert records[0].context is None and records[0].response.startswith("A noun")
        assert records[1].context == "word: river" and records[1].extra == {"id": 7}


def test_alpaca_errors_use_alpaca_field_names(tmp_path):
    path = jsonl(tmp_path / "a.jsonl", [{"instruction": "x", "input": "y"}, {"instruction": "x", "output": 5}])
    assert problems(path, "alpaca") == [
        f"{path}:1: missing field 'output'",
        f"{path}:2: field 'output' must be a string, got int",
    ]


def test_openai_messages(tmp_path):
    row = {"messages": [{"role": "system", "content": "You are a tutor."}, {"role": "user", "content": "Why?"},
                        {"role": "assistant", "content": "What do you think?"}],
           "metadata": {"subject": "physics", "grade_level": "high_school", "teaching_style": "socratic"}}
    path = jsonl(tmp_path / "c.jsonl", [row])
    assert detect_format(path) == "openai"
    (_, record), = items(path)
    assert [t.role for t in record.turns] == ["system", "user", "assistant"]
    assert record.to_dict() == row


def test_sharegpt(tmp_path):
    row = {"conversations": [{"from": "human", "value": "What is a fraction?"},
                             {"from": "gpt", "value": "A part of a whole."}],
           "system": "Be kind.", "metadata": {"subject": "math"}}
    path = jsonl(tmp_path / "s.jsonl", [row])
    assert detect_format(path) == "sharegpt"
    (_, record), = items(path)
    assert [(t.role, t.content) for t in record.turns] == [
        ("system", "Be kind."), ("user", "What is a fraction?"), ("assistant", "A part of a whole.")]
    assert record.to_dict()["messages"][1] == {"role": "user", "content": "What is a fraction?"}


def test_sharegpt_errors(tmp_path):
    path = jsonl(tmp_path / "s.jsonl", [
        {"conversations": [{"from": "bot", "value": "x"}]},
        {"conversations": [{"from": "human", "value": "only a question"}]},
        {"conversations": []},
    ])
    assert problems(path, "sharegpt") == [
        f"{path}:1: conversations[0].from must be one of human, gpt, system, got 'bot'",
        f"{path}:2: conversation has no 'gpt' (tutor) turn to learn from",
        f"{path}:3: field 'conversations' must be a non-empty list",
    ]


def test_csv_default_columns_and_metadata(tmp_path):
    path = write(tmp_path / "d.csv", "instruction,response,subject,grade_level,teaching_style,metadata.topic\n"
                                     'What is 3x4?,"Think of 3 rows of 4, then count: 12.",math,grade 3,direct,times\n')
    assert detect_format(path) == "csv"
    (line, record), = items(path)
    assert line == 2
    assert record.response == "Think of 3 rows of 4, then count: 12."
    assert record.metadata.subject == "mathematics"
    assert record.metadata.extra == {"topic": "times"}


def test_csv_column_map_and_multiline_rows(tmp_path):
    path = write(tmp_path / "d.csv", 'question,answer,notes\n"Line one\nline two",ok,x\nq2,,y\nq3,a3,z\n')
    mapping = parse_column_map(["instruction=question", "response=answer"])
    result = items(path, column_map=mapping)
    assert [line for line, _ in result] == [2, 4, 5]
    assert result[0][1].instruction == "Line one\nline two"
    assert str(result[1][1]) == f"{path}:4: field 'response' is empty"


def test_csv_missing_columns(tmp_path):
    path = write(tmp_path / "d.csv", "question,answer\nq,a\n")
    (message,) = problems(path)
    assert message.startswith(f"{path}:1: CSV header has no column 'instruction', 'response'")
    assert "columns are: question, answer" in message
    (message,) = problems(path, column_map={"instruction": "question", "response": "reply"})
    assert "'reply' (for response)" in message


def test_csv_extra_fields_and_empty(tmp_path):
    path = write(tmp_path / "d.csv", "instruction,response\nq,a,surplus\n")
    assert problems(path) == [f"{path}:2: row has 3 fields but the header has 2"]
    assert problems(write(tmp_path / "e.csv", "")) == [f"{tmp_path / 'e.csv'}:1: file holds no records (no CSV header)"]
    assert problems(write(tmp_path / "h.csv", "instruction,response\n")) == [
        f"{tmp_path / 'h.csv'}:1: file holds no records (only a CSV header)"]


def test_bad_column_map():
    with pytest.raises(EduloraError, match="FIELD=COLUMN"):
        parse_column_map(["instruction"])
    with pytest.raises(EduloraError, match="^--map 'reply=response': unknown field 'reply'"):
        parse_column_map(["reply=response"])


@pytest.mark.parametrize("option,item,message", [
    ("--map", "instruction", "--map 'instruction': expected FIELD=COLUMN, e.g. instruction=question"),
    ("--map", "=question", "--map '=question': expected FIELD=COLUMN, e.g. instruction=question"),
    ("--map", "instruction= ", "--map 'instruction= ': expected FIELD=COLUMN, e.g. instruction=question"),
    ("--set", "lora.r", "--set 'lora.r': expected KEY=VALUE, e.g. lora.r=8"),
    ("--set", "=8", "--set '=8': expected KEY=VALUE, e.g. lora.r=8"),
    ("--teacher", "ana", "--teacher 'ana': expected NAME=TOKEN"),
    ("--teacher", "=secret-token-0001", "--teacher '': expected NAME=TOKEN"),  # never echoes a token
])
def test_name_value_options_share_one_parser_and_one_wording(option, item, message):
    from edulora.config import parse_override
    from edulora.serving.service import parse_teachers

    parse = {"--map": lambda: parse_column_map([item]), "--set": lambda: parse_override(item),
             "--teacher": lambda: parse_teachers([item])}[option]
    with pytest.raises(EduloraError) as caught:
        parse()
    assert str(caught.value) == message


def test_name_value_items_are_stripped_and_keep_later_equals_signs():
    from edulora.config import parse_override
    from edulora.namevalue import split_name_value
    from edulora.serving.service import parse_teachers

    assert split_name_value(" a = b=c ", "--x") == ("a", "b=c")
    assert parse_column_map([" instruction = question "]) == {"instruction": "question"}
    assert parse_override("data.system_prompt=") == {"data": {"system_prompt": ""}}  # --set may empty a value
    assert parse_override("lora.r = 8") == {"lora": {"r": 8}}
    assert parse_teachers(["ana=tok=en-of-ana-01"]) == {"ana": "tok=en-of-ana-01"}


def test_map_refused_for_json(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [GUIDE])
    with pytest.raises(EduloraError, match="--map applies to CSV input only"):
        items(path, column_map={"instruction": "q"})


def test_unknown_format_name(tmp_path):
    with pytest.raises(EduloraError, match="unknown format 'yaml'"):
        items(jsonl(tmp_path / "d.jsonl", [GUIDE]), "yaml")


# --------------------------------------------------------------------------- line numbers


def test_json_array_reports_the_line_where_each_element_starts(tmp_path):
    text = textwrap.dedent("""\
        [
          {"instruction": "a", "output": "b"},
          {
            "instruction": "c",
            "output": 3
          },
          {"instruction": "d",
           "output": "e" "oops"},
          {"instruction": "f]\\"", "output": "{g"}
        ]
        """)
    path = write(tmp_path / "a.json", text)
    result = items(path, "alpaca")
    assert [(line, type(item).__name__) for line, item in result] == [
        (2, "Example"), (3, "Problem"), (7, "Problem"), (9, "Example")]
    assert str(result[1][1]) == f"{path}:3: field 'output' must be a string, got int"
    # A JSON error inside a multi-line element is placed on its own line (8).
    assert str(result[2][1]).startswith(f"{path}:8: invalid JSON:")
    assert result[3][1].instruction == 'f]"'


def test_json_array_truncated(tmp_path):
    path = write(tmp_path / "a.json", '[\n{"instruction": "a", "output": "b"},\n{"instruction": "c", "outp')
    result = items(path)
    assert isinstance(result[0][1], Example)
    assert str(result[1][1]) == (f"{path}:3: JSON array ends inside this element "
                                 "(file truncated, or a bracket or quote missing?)")
    path = write(tmp_path / "b.json", '[\n{"instruction": "a", "output": "b"},\n')
    assert problems(path) == [f"{path}:3: JSON array is not closed with ']' (file truncated?)"]


def test_json_array_small_chunks_give_same_result(tmp_path, monkeypatch):
    rows = [{"instruction": f"q{i} \\ \" [ {{", "output": f"a{i}\n]"} for i in range(30)]
    path = write(tmp_path / "a.json", json.dumps(rows, indent=1))
    expected = items(path)
    monkeypatch.setattr(jsonscan, "_CHUNK_BYTES", 5)
    assert items(path) == expected
    assert [r.instruction for _, r in expected] == [r["instruction"] for r in rows]


def test_json_array_other_errors(tmp_path):
    path = write(tmp_path / "a.json", '[{"instruction": "a", "output": "b"} {"instruction": "c", "output": "d"}] x')
    assert problems(path) == [
        f"{path}:1: invalid JSON: expected ',' or ']' after array element",
        f"{path}:1: unexpected content after the end of the JSON array",
    ]
    path = write(tmp_path / "b.json", '[1, "two", null]')
    assert problems(path, "alpaca") == [f"{path}:1: a record must be a JSON object, got {t}" for t in ("int", "str", "NoneType")]


# --------------------------------------------------------------------------- the teacher's key


KEY = {"answer": "12", "solution": "3 rows of 4: 4 + 4 + 4 = 12."}


def test_key_survives_every_json_format(tmp_path):
    guide = dict(GUIDE, metadata={**GUIDE["metadata"], **KEY})
    messages = {"messages": [{"role": "user", "content": "What is 3 x 4?"},
                             {"role": "assistant", "content": "How many are in one row?"}], "metadata": KEY}
    alpaca = {"instruction": "What is 3 x 4?", "input": "", "output": "Count the rows.", "metadata": KEY}
    sharegpt = {"conversations": [{"from": "human", "value": "3 x 4?"}, {"from": "gpt", "value": "Rows?"}],
                "metadata": KEY}
    for name, row in (("edulora", guide), ("openai", messages), ("alpaca", alpaca), ("sharegpt", sharegpt)):
        path = jsonl(tmp_path / f"{name}.jsonl", [row])
        (_, record), = items(path, name)
        assert (record.metadata.answer, record.metadata.solution) == (KEY["answer"], KEY["solution"]), name
        assert {k: record.to_dict()["metadata"][k] for k in KEY} == KEY


def test_key_from_csv_columns_and_column_map(tmp_path):
    path = write(tmp_path / "d.csv", "instruction,response,answer,solution\n"
                                     'What is 3x4?,Count the rows.,12,"4 + 4 + 4 = 12"\nWhat is 2+2?,Count on.,,\n')
    (_, first), (_, second) = items(path)
    assert (first.metadata.answer, first.metadata.solution) == ("12", "4 + 4 + 4 = 12")
    assert second.metadata.answer is None and second.metadata.solution is None  # empty cells: no key
    path = write(tmp_path / "m.csv", "question,reply,key,worked\nWhat is 3x4?,Count the rows.,12,4+4+4\n")
    mapping = parse_column_map(["instruction=question", "response=reply", "answer=key", "solution=worked"])
    (_, record), = items(path, column_map=mapping)
    assert (record.metadata.answer, record.metadata.solution) == ("12", "4+4+4")
    # a column mapped to the reply is not read by its name as the key as well
    path = write(tmp_path / "r.csv", "question,answer\nWhat is 3x4?,Count the rows.\n")
    (_, record), = items(path, column_map=parse_column_map(["instruction=question", "response=answer"]))
    assert record.response == "Count the rows." and record.metadata.answer is None
    with pytest.raises(EduloraError):
        parse_column_map(["answers=key"])
    assert problems(path, column_map={"instruction": "question", "response": "answer", "answer": "key"}) == [
        f"{path}:1: CSV header has no column 'key' (for answer); columns are: question, answer; "
        "map columns with --map FIELD=COLUMN"]


def test_bad_key_is_a_file_line_problem(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [dict(GUIDE, metadata={"answer": ""}), dict(GUIDE, metadata={"answer": [1]}),
                                        dict(GUIDE, metadata={"solution": 3.5, "answer": 7})])
    assert problems(path) == [f"{path}:1: metadata.answer is empty",
                              f"{path}:2: metadata.answer must be a non-empty string or a number, got list"]
    path = write(tmp_path / "d.csv", "instruction,response,solution\nq,r,  \nq,r," + "x" * 20_001 + "\n")
    assert problems(path) == [f"{path}:3: metadata.solution is 20,001 characters long (limit 20,000)"]


# --------------------------------------------------------------------------- malformed input


def test_empty_and_blank_files(tmp_path):
    for name, text in (("e.jsonl", ""), ("b.jsonl", "\n  \n"), ("a.json", "[]"), ("w.json", "  ")):
        path = write(tmp_path / name, text)
        result = validate_any(path)
        assert not result.ok and [str(p) for p in result.problems] == [f"{path}:1: file holds no records"]


def test_invalid_json_lines(tmp_path):
    path = write(tmp_path / "d.jsonl", json.dumps(GUIDE) + "\n{not json}\n" + json.dumps(GUIDE) + "\n")
    assert problems(path) == [f"{path}:2: invalid JSON: Expecting property name enclosed in double quotes (column 2)"]


def test_pretty_printed_object_gets_a_hint(tmp_path):
    path = write(tmp_path / "d.json", json.dumps(GUIDE, indent=2))
    assert "one per line (JSONL) or one JSON array" in problems(path)[0]


@pytest.mark.parametrize("row, message", [
    ({"response": "x"}, "missing field 'instruction'"),
    ({"instruction": "  ", "response": "x"}, "field 'instruction' is empty"),
    ({"instruction": ["a"], "response": "x"}, "field 'instruction' must be a string, got list"),
    ({"instruction": "q", "response": "x", "metadata": "math"}, "field 'metadata' must be an object, got str"),
    ({"instruction": "q", "response": "x", "metadata": {"grade_level": "grade 99"}}, "metadata: unknown grade_level"),
    ({"instruction": "q", "response": "x", "metadata": {"teaching_style": "yelling"}}, "metadata: unknown teaching_style"),
    ({"instruction": "q", "response": "x", "metadata": {"subject": 5}}, "metadata.subject must be a non-empty string"),
    ({"instruction": "q", "response": "x" * (MAX_FIELD_CHARS + 1)}, "field 'response' is 20,001 characters long"),
    ({"messages": [{"role": "teacher", "content": "x"}]}, "messages[0].role must be one of"),
    ([1, 2], "a record must be a JSON object, got list"),
])
def test_bad_records(tmp_path, row, message):
    path = jsonl(tmp_path / "d.jsonl", [GUIDE, row])
    found = problems(path, "edulora")
    assert found and all(p.startswith(f"{path}:2: ") for p in found)
    assert any(message in p for p in found), found


def test_absurdly_long_line(tmp_path):
    path = write(tmp_path / "d.jsonl", json.dumps({"instruction": "q", "response": "x" * 1_100_000}) + "\n")
    assert problems(path) == [f"{path}:1: line is 1,100,037 bytes long (limit 1,000,000)"]


def test_utf8_bom_and_crlf_accepted(tmp_path):
    body = (json.dumps(GUIDE, ensure_ascii=False) + "\r\n") * 2
    path = write(tmp_path / "d.jsonl", b"\xef\xbb\xbf" + body.encode("utf-8"))
    assert validate_any(path).ok and validate_any(path).records == 2
    array = write(tmp_path / "a.json", b"\xef\xbb\xbf" + json.dumps([GUIDE], indent=2).replace("\n", "\r\n").encode())
    assert validate_any(array).ok
    csv_path = write(tmp_path / "d.csv", b"\xef\xbb\xbfinstruction,response\r\nq,\xc3\xa9t\xc3\xa9\r\n")
    (_, record), = items(csv_path)
    assert record.instruction == "q" and record.response == "été"


def test_latin1_refused_with_line(tmp_path):
    good = json.dumps(GUIDE).encode()
    bad = json.dumps({"instruction": "caf_", "response": "x"}).encode().replace(b"_", b"\xe9")
    path = write(tmp_path / "d.jsonl", good + b"\n" + bad + b"\n")
    assert problems(path) == [f"{path}:2: not valid UTF-8 (byte 21); save the file as UTF-8"]
    array = write(tmp_path / "a.json", b"[\n" + good + b",\n" + bad + b"\n]")
    assert problems(array) == [f"{array}:3: not valid UTF-8; save the file as UTF-8"]
    csv_path = write(tmp_path / "d.csv", b"instruction,response\nq,a\ncaf\xe9,b\n")
    assert problems(csv_path) == [f"{csv_path}:3: not valid UTF-8; save the file as UTF-8"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_utf16_and_utf32_refused(tmp_path, encoding):
    path = write(tmp_path / "d.jsonl", (json.dumps(GUIDE) + "\n").encode(encoding))
    (message,) = problems(path)
    assert message.startswith(f"{path}:1: ") and "UTF-8" in message


def test_load_records_raises_listing_problems(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [GUIDE, {"instruction": "x"}])
    with pytest.raises(EduloraError) as err:
        load_records_with_lines(path)
    assert str(err.value).splitlines()[0] == f"{path}:2: missing field 'response'"
    records, lines = load_records_with_lines(jsonl(tmp_path / "ok.jsonl", [GUIDE, GUIDE]))
    assert len(records) == 2 and lines == [1, 2]


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(EduloraError, match="no such file"):
        validate_any(tmp_path / "nope.jsonl")
    with pytest.raises(EduloraError, match="is a directory"):
        validate_any(tmp_path)


# --------------------------------------------------------------------------- memory


_MEASURE = """
import resource, subprocess, sys
# The validator runs as this small process's child: RUSAGE_CHILDREN then reports its own
# peak, not memory inherited from the (large) pytest process across fork/exec.
proc = subprocess.run([sys.executable, "-m", "edulora", "data", "validate", sys.argv[1]], capture_output=True, text=True)
print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, proc.stdout.strip())
"""


def _peak_rss_mb(path: Path) -> tuple[int, float, str]:
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, timeout=120)
    code, kilobytes, summary = out.stdout.split(maxsplit=2)
    return int(code), int(kilobytes) / 1024, summary.strip()


def test_validating_a_million_records_streams(tmp_path):
    line = (json.dumps({"instruction": "q", "response": "a", "metadata": {"subject": "math"}}) + "\n").encode()
    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    small.write_bytes(line * 10_000)
    with open(big, "wb") as handle:
        for _ in range(10):
            handle.write(line * 100_000)
    code, small_mb, _ = _peak_rss_mb(small)
    assert code == 0
    code, big_mb, summary = _peak_rss_mb(big)
    assert code == 0 and summary == f"{big}: 1000000 records, no problems"
    assert big_mb < 500
    assert big_mb - small_mb < 30, (small_mb, big_mb)  # memory does not grow with the record count


def test_json_array_streams(tmp_path):
    element = json.dumps({"instruction": "q", "output": "a"}).encode()
    small, big = tmp_path / "small.json", tmp_path / "big.json"
    small.write_bytes(b"[" + b",\n".join([element] * 1000) + b"]")
    with open(big, "wb") as handle:
        handle.write(b"[")
        chunk = b",\n".join([element] * 50_000)
        handle.write(b",\n".join([chunk] * 4))
        handle.write(b"]")
    _, small_mb, _ = _peak_rss_mb(small)
    code, big_mb, summary = _peak_rss_mb(big)
    assert code == 0 and summary.endswith("200000 records, no problems")
    assert big_mb - small_mb < 30, (small_mb, big_mb)


# --------------------------------------------------------------------------- the packaged samples


def test_sample_data_ships_inside_the_package():
    from edulora.data import sample_data_path

    path = sample_data_path()
    assert path.name == "tutoring.jsonl" and path.parent.name == "sample_data" and path.parent.parent.name == "edulora"
    assert validate_any(path).ok and validate_any(sample_data_path("dialogues.jsonl")).ok
    with pytest.raises(EduloraError, match="unknown sample dataset 'nope.jsonl'"):
        sample_data_path("nope.jsonl")


def test_sample_keys_agree_with_their_worked_solutions():
    import re

    from edulora.data import sample_data_path

    records = load_records_with_lines(sample_data_path())[0] + load_records_with_lines(sample_data_path("dialogues.jsonl"))[0]
    keyed = [r.metadata for r in records if r.metadata.answer is not None]
    assert len(keyed) > len(records) / 3
    for meta in keyed:
        number = re.search(r"-?\d+(?:[.,/]\d+)*", meta.answer)
        if number and meta.solution:  # a worked solution reaches the key's value
            assert number.group() in meta.solution, (meta.answer, meta.solution)
