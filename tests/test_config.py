from pathlib import Path

import pytest
import yaml

from edulora.config import RunConfig, load_config
from edulora.errors import EduloraError

REPO = Path(__file__).resolve().parents[1]


def test_default_yaml_spells_out_the_dataclass_defaults():
    values = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    values["data"]["train_file"] = ""
    assert values == RunConfig().to_dict()


def test_guide_defaults():
    config = RunConfig()
    assert (config.lora.r, config.lora.alpha, config.lora.dropout, config.lora.bias) == (16, 32, 0.05, "none")
    assert config.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert (config.training.batch_size, config.training.grad_accum, config.training.learning_rate) == (4, 4, 2e-4)
    assert (config.training.logging_steps, config.training.eval_steps, config.training.save_steps) == (10, 100, 100)


def test_mathematics_preset():
    config = load_config(REPO / "configs" / "mathematics.yaml")
    assert config.lora.r == 32 and config.lora.target_modules == ["q_proj", "v_proj"]
    assert config.adapter.subject == "mathematics"


def test_overrides_apply_in_order_with_types():
    config = load_config(REPO / "configs" / "default.yaml", ["lora.r=8", "training.learning_rate=1e-3",
                                                             "lora.target_modules=q_proj,v_proj", "data.packing=false"])
    assert config.lora.r == 8 and config.training.learning_rate == 1e-3
    assert config.lora.target_modules == ["q_proj", "v_proj"] and config.data.packing is False


@pytest.mark.parametrize("override,needle", [
    ("lora.rr=8", "unknown key 'lora.rr'"),
    ("lora.r=eight", "expected int"),
    ("lora.r", "expected KEY=VALUE"),
    ("lora.dropout=1.5", "dropout"),
    ("model.precision=fp8", "precision"),
    ("training=3", "mapping"),
])
def test_bad_overrides_are_clear(override, needle):
    with pytest.raises(EduloraError, match=needle.replace(".", r"\.")):
        load_config(None, [override])


def test_bad_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("lora:\n  r: [1,\n")
    with pytest.raises(EduloraError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_config(path)
