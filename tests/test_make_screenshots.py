"""``docs/img/make_screenshots.py``'s arguments: a RUN that is no trained run is refused in one line, before any
server or browser starts. (The browser run itself is the command: ``make screenshots RUN=…``.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "img" / "make_screenshots.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("make_screenshots", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def refusal(script, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        script.parse_args(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]  # after argparse's usage line: the one reason


def test_a_missing_or_untrained_run_is_refused_in_one_line(script, tmp_path, capsys):
    missing = tmp_path / "no-such-run"
    assert refusal(script, [str(missing)], capsys).endswith(f"{missing}: not a trained run "
                                                            "(no adapter/adapter_config.json in it)")
    (tmp_path / "half" / "adapter").mkdir(parents=True)  # a run that never finished training
    assert "not a trained run" in refusal(script, [str(tmp_path / "half")], capsys)
    assert "required: run" in refusal(script, [], capsys)


def test_a_trained_run_is_accepted_and_the_pngs_go_to_docs_img_unless_told(script, tmp_path, capsys, monkeypatch):
    (tmp_path / "run" / "adapter").mkdir(parents=True)
    (tmp_path / "run" / "adapter" / "adapter_config.json").write_text("{}")
    monkeypatch.setattr(script, "CHROMIUM", str(tmp_path / "chromium"))  # the script's own constant
    assert "chromium is missing" in refusal(script, [str(tmp_path / "run")], capsys)
    (tmp_path / "chromium").touch()
    args = script.parse_args([str(tmp_path / "run")])
    assert args.run == tmp_path / "run" and args.out == SCRIPT.parent
    assert script.parse_args([str(tmp_path / "run"), "--out", str(tmp_path)]).out == tmp_path
