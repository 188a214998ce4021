import re
import shutil
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from edulora.cli import main
from edulora.config import MOVED, RunConfig, dump_config, load_config, validate_config
from edulora.configref import config_keys, config_reference
from edulora.errors import EduloraError
from edulora.rundir import RunDir
from edulora.training.sizing import RECIPE_KEYS

REPO = Path(__file__).resolve().parents[1]


def test_default_yaml_spells_out_the_model_defaults():
    text = (REPO / "configs" / "default.yaml").read_text()
    # The keys the model's size (and the device) decide stay unset, their small-model defaults in comments.
    unset = re.compile(r"^(\s+)# (\w+: \S+)\s+# unset:", re.M)
    assert {m.group(2).split(":")[0] for m in unset.finditer(text)} == {k for _, k in RECIPE_KEYS} | {"budget_gb"}
    config = load_config(REPO / "configs" / "default.yaml")
    assert not {k for _, k in RECIPE_KEYS} & (config.lora.model_fields_set | config.training.model_fields_set)
    values = yaml.safe_load(unset.sub(r"\1\2  #", text))
    values["data"]["train_file"] = ""
    assert values == RunConfig().to_dict()


def test_guide_defaults():
    config = RunConfig()
    assert (config.lora.r, config.lora.alpha, config.lora.dropout, config.lora.bias) == (16, 32, 0.05, "none")
    assert config.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert (config.training.batch_size, config.training.grad_accum, config.training.learning_rate) == (4, 4, 2e-4)
    assert (config.training.logging_steps, config.training.eval_steps, config.training.save_steps) == (10, 100, 100)
    assert (config.training.memory.budget_gb, config.training.selection.select_by) == (4.0, "eval_loss")


@pytest.mark.parametrize("name", ["default.yaml", "mathematics.yaml", "bridge.yaml", "mathdial.yaml"])
def test_every_preset_loads_without_a_notice(name):
    notices = []
    load_config(REPO / "configs" / name, notice=notices.append)
    assert notices == []


def test_mathematics_preset():
    config = load_config(REPO / "configs" / "mathematics.yaml")
    assert config.lora.r == 32 and config.lora.target_modules == ["q_proj", "v_proj"]
    assert config.adapter.subject == "mathematics"


def test_overrides_apply_in_order_with_types():
    config = load_config(REPO / "configs" / "default.yaml", ["lora.r=8", "training.learning_rate=1e-3", "lora.r=4",
                                                             "lora.target_modules=q_proj,v_proj", "data.packing=false",
                                                             "data.scrub_pii=false", "training.memory.budget_gb=6"])
    assert config.lora.r == 4 and config.training.learning_rate == 1e-3 and config.training.memory.budget_gb == 6.0
    assert config.lora.target_modules == ["q_proj", "v_proj"] and config.data.packing is False
    assert config.data.scrub_pii == "false"  # YAML's boolean, kept as the switch's word


@pytest.mark.parametrize("override,line", [
    # a typo: the closest known name
    ("trainng.lr=1", "--set trainng.lr=1: unknown key 'trainng' (did you mean 'training'?)"),
    ("training.learning_rat=1e-4",
     "--set training.learning_rat=1e-4: unknown key 'training.learning_rat' (did you mean 'training.learning_rate'?)"),
    ("training.budget_gb=8", "unknown key 'training.budget_gb' (did you mean 'training.memory.budget_gb'?)"),
    # a wrong choice: the allowed values
    ("model.precision=fp8", "--set model.precision=fp8: model.precision='fp8' is not allowed; "
                            "choose 'auto', 'bf16', 'fp16' or 'fp32'"),
    ("training.selection.select_by=leaks", "training.selection.select_by='leaks' is not allowed; choose 'eval_loss', "
                                           "'leak_rate', 'incorrect_answer_rate', 'style_adherence'"),
    # out of range: the range
    ("lora.dropout=1.5", "--set lora.dropout=1.5: lora.dropout=1.5 is out of range; allowed: a value in [0.0, 1.0)"),
    ("data.max_length=8", "data.max_length=8 is out of range; allowed: a value in [16, inf)"),
    ("lora.r=eight", "--set lora.r=eight: lora.r: expected a whole number, got 'eight'"),
    ("training=3", "--set training=3: training: expected a mapping of settings, got 3"),
    ("training.save_steps=150", "config: training.selection.keep_best needs training.save_steps to be a multiple of "
                                "training.eval_steps"),
    ("training.preference.loss_type=ipo", "config: training.preference.loss_type applies to training.method=dpo only"),
])
def test_a_bad_value_is_one_line_naming_the_key_and_what_is_allowed(override, line, capsys):
    assert main(["train", "--set", override]) == 2
    err = capsys.readouterr().err
    assert line in err and err.count("\n") == 1 and "Traceback" not in err


def test_file_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("lora:\n  r: 8\ntraining:\n  epochs: 1\n  learning_rat: 0.001\n")
    with pytest.raises(EduloraError, match=r"bad\.yaml:5: unknown key 'training\.learning_rat' \(did you mean"):
        load_config(path)
    path.write_text("model:\n  precision: fp8\n")
    with pytest.raises(EduloraError, match=r"bad\.yaml:2: model\.precision='fp8' is not allowed"):
        load_config(path)
    # the value a --set replaced is the --set's fault, not the file's
    with pytest.raises(EduloraError, match=r"^--set model\.precision=fp4: "):
        load_config(path, ["model.precision=fp4"])
    path.write_text("lora:\n  r: [1,\n")
    with pytest.raises(EduloraError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_config(path)


def test_old_flat_training_keys_are_read_with_one_line_each(tmp_path, capsys):
    path = tmp_path / "old.yaml"
    path.write_text("training:\n  epochs: 1\n  select_by: leak_rate\n  memory_budget_gb: 2\n  beta: 0.3\n")
    config = load_config(path, ["training.gradient_checkpointing=true"])
    t = config.training
    assert (t.selection.select_by, t.memory.budget_gb, t.preference.beta) == ("leak_rate", 2.0, 0.3)
    assert t.memory.gradient_checkpointing == "true"
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:3: training.select_by is now training.selection.select_by (the old name still works)",
        f"{path}:4: training.memory_budget_gb is now training.memory.budget_gb (the old name still works)",
        f"{path}:5: training.beta is now training.preference.beta (the old name still works)",
        "--set training.gradient_checkpointing=true: training.gradient_checkpointing is now "
        "training.memory.gradient_checkpointing (the old name still works)"]
    path.write_text("training:\n  select_by: leak_rate\n  selection:\n    select_by: eval_loss\n")
    with pytest.raises(EduloraError, match=r"old\.yaml:2: training\.select_by is training\.selection\.select_by now"):
        load_config(path, notice=None)


def test_every_moved_key_has_a_home():
    known = {item.key for item in config_keys()}
    assert all(f"training.{section}.{new}" in known for section, new in MOVED.values())


def test_an_old_runs_config_loads_silently(tmp_path, capsys):
    # tests/data/old_run_config.yaml: what a run saved before the sub-sections (edulora 10b1b42, flat training keys)
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    shutil.copy(REPO / "tests" / "data" / "old_run_config.yaml", run.config_file)
    config = run.read_config()
    assert (config.training.selection.select_by, config.training.memory.budget_gb) == ("leak_rate", 6.0)
    assert (config.training.max_steps, config.run_name, config.lora.r, config.adapter.subject) == (
        20, "algebra", 32, "mathematics")
    assert capsys.readouterr().err == ""


def test_dump_and_load_round_trip(tmp_path):
    config = load_config(REPO / "configs" / "mathdial.yaml", ["training.preference.beta=0.2", "lora.r=4",
                                                              "adapter.grade_level=Grade 7", "data.scrub_pii=false"])
    assert config.adapter.grade_level == "middle_school"  # stored normalized
    path = tmp_path / "again.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config(config)
    assert run.read_config() == config


def test_assignments_are_checked_and_validate_config_checks_the_whole(tmp_path):
    config = RunConfig()
    with pytest.raises(ValidationError):
        config.training.selection.select_by = "leaks"
    config.training.eval_steps = 30  # alone inconsistent with save_steps=100: rules between keys wait
    with pytest.raises(EduloraError, match="keep_best needs training.save_steps to be a multiple"):
        validate_config(config)
    config.training.save_steps = 60
    validate_config(config)


def test_docs_and_help_list_every_key_from_the_models(capsys):
    assert (REPO / "docs" / "config.md").read_text() == config_reference(), \
        "docs/config.md is out of date: python -m edulora.configref docs/config.md"
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for item in config_keys():
        assert f"  {item.key} = {item.default}  [{item.kind}]" in out
    assert "training.selection.select_by = eval_loss  [eval_loss | leak_rate | incorrect_answer_rate" in out
