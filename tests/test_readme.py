"""The README's "Your own data in three commands", run as a new user would: the fenced block, line by line.

The commands run as written, as child processes, from a folder laid out like the repository root
(``src`` and ``configs`` are the checkout's). Only the work is made small, by options appended to the
commands: training on the tiny Llama instead of the packaged model for two steps, evaluation with
short replies and no drift prompts, so the path is checked in about a minute.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Your own data in three commands"


def readme_commands() -> list[list[str]]:
    """The ``edulora`` command lines of the first ```sh block under SECTION, split as a shell would."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no '{SECTION}' section"
    block = re.search(r"```sh\n(.*?)```", text[text.index(SECTION):], re.S)
    assert block, f"no ```sh block under '{SECTION}'"
    return [shlex.split(line) for line in block.group(1).splitlines() if line.startswith("edulora ")]


def test_the_readme_own_data_commands_work_as_written(tiny_llama, tmp_path):
    commands = readme_commands()
    assert [c[:2] for c in commands] == [["edulora", "data"], ["edulora", "train"], ["edulora", "eval"]]
    for name in ("src", "configs"):
        (tmp_path / name).symlink_to(REPO / name)
    small = {"train": [f"--set=model.name={tiny_llama}", "--set=training.max_steps=2", "--set=model.precision=fp32",
                       "--set=training.selection.pedagogy_sample=0", "--set=training.selection.retention_sample=0"],
             "eval": ["--max-new-tokens=32", "--retention-prompts=0"]}
    edulora = str(Path(sys.executable).parent / "edulora")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for command in commands:
        argv = [edulora, *command[1:], *small.get(command[1], [])]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{shlex.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"

    dialogues = [json.loads(line) for line in (tmp_path / "my-dialogues.jsonl").read_text().splitlines()]
    assert len(dialogues) == 24 and all(d["messages"][-1]["role"] == "assistant" for d in dialogues)
    assert "Maya" not in json.dumps(dialogues)  # a student's name in the sample is scrubbed
    run = tmp_path / "runs" / "mine"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "done" and summary["optimizer_steps"] == 2
    report = (run / "report.html").read_text()
    assert "mine" in report and "base" in report


def test_the_readme_opens_with_the_setup_commands_then_the_own_data_path_and_its_links_resolve():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    first = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    assert first.startswith("make demo") and "\nmake test" in first
    assert re.findall(r"^## (.+)$", text, re.M)[0] == SECTION.removeprefix("## ")
    links = re.findall(r"\]\(([\w./-]+\.(?:md|csv|jsonl))(?:#[\w-]+)?\)", text)
    assert "docs/loop.md" in links and all((REPO / link).is_file() for link in links), links
