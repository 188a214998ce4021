"""The fused LoRA update and the chunked frozen-head loss compute PEFT's / the plain path's numbers;
PEFT builds the fused layer itself, and a PEFT that no longer does is an error at attach time."""

import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora.layer import Linear as LoraLinear
from transformers import AutoModelForCausalLM

from conftest import short_examples

from edulora import fused_lora
from edulora.config import LoraSettings
from edulora.formatting import collate_examples
from edulora.losses import token_loss_sum
from edulora.modeling import attach_lora, map_target_modules


def _lora_model(path, dropout: float, fused: bool = True):
    """The model ``attach_lora`` builds, or (fused=False) the same LoRA from PEFT's own layer classes."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    torch.manual_seed(0)
    lora = LoraSettings(dropout=dropout)
    if fused:
        model = attach_lora(model, lora)
    else:
        model = get_peft_model(model, _plain_config(model, lora))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero, which would hide errors in A's gradient
            torch.nn.init.normal_(param, std=0.05)
    return model


def _plain_config(model, lora: LoraSettings) -> LoraConfig:
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias=lora.bias,
                      target_modules=map_target_modules(model, lora.target_modules), task_type="CAUSAL_LM")


def _loss_and_grads(model, batch, response_only_head: bool):
    model.train()
    loss_sum, count = token_loss_sum(model, batch, response_only_head)
    (loss_sum / count).backward()
    return loss_sum.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_attach_lora_routes_every_adapted_layer_through_the_fused_update(tiny_llama):
    model = _lora_model(tiny_llama, 0.05)
    lora_layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    assert lora_layers and all(type(m) is fused_lora.FusedLinear for m in lora_layers)
    assert fused_lora.check(model) == len(lora_layers)


def test_fast_path_gives_peft_and_full_head_losses_and_gradients(tiny_llama):
    """Fused LoRA + chunked frozen head vs PEFT's layers + logits everywhere, on a tiny model in fp32."""
    fast_model = _lora_model(tiny_llama, 0.0)
    plain_model = _lora_model(tiny_llama, 0.0, fused=False)
    batch = collate_examples(short_examples(fast_model.config.vocab_size), 0, packing=False)
    fast_loss, fast_grads = _loss_and_grads(fast_model, batch, response_only_head=True)
    plain_loss, plain_grads = _loss_and_grads(plain_model, batch, response_only_head=False)
    assert torch.allclose(fast_loss, plain_loss, rtol=1e-5)
    assert fast_grads.keys() == plain_grads.keys() and len(fast_grads) > 0
    for name in fast_grads:
        scale = plain_grads[name].abs().max()
        assert scale > 0 and (fast_grads[name] - plain_grads[name]).abs().max() <= 1e-5 * scale, name


def _one_layer(dropout: float):
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(24, 20, bias=False))
    net = get_peft_model(net, fused_lora.lora_config(net, r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["0"]))
    torch.nn.init.normal_(net.base_model.model[0].lora_B["default"].weight, std=0.1)
    assert fused_lora.check(net) == 1
    return net, net.base_model.model[0]


def test_dropout_update_matches_the_formula_with_the_same_mask():
    p = 0.3
    net, layer = _one_layer(p)
    net.train()
    x = torch.randn(2, 5, 24, requires_grad=True)
    torch.manual_seed(7)
    out = net(x)
    out.pow(2).sum().backward()
    got = (out.detach(), x.grad.clone(), layer.lora_A["default"].weight.grad.clone(),
           layer.lora_B["default"].weight.grad.clone())

    for param in (x, layer.lora_A["default"].weight, layer.lora_B["default"].weight):
        param.grad = None
    torch.manual_seed(7)
    dropped = fused_lora.dropout_mask(torch.Size((10, 24)), p, x.device).view(2, 5, 24)
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    want = layer.base_layer(x) + (x.masked_fill(dropped, 0) / (1 - p)) @ a.t() @ b.t() * layer.scaling["default"]
    want.pow(2).sum().backward()
    assert torch.allclose(got[0], want.detach(), atol=1e-6)
    assert torch.allclose(got[1], x.grad, atol=1e-5)
    assert torch.allclose(got[2], a.grad, atol=1e-5)
    assert torch.allclose(got[3], b.grad, atol=1e-5)


def test_dropout_mask_drops_about_p_of_the_elements():
    torch.manual_seed(0)
    for p in (0.05, 0.3):
        rate = fused_lora.dropout_mask(torch.Size((400, 500)), p, torch.device("cpu")).float().mean().item()
        assert abs(rate - p) < 0.005


def test_eval_mode_answers_exactly_as_peft():
    net, layer = _one_layer(0.5)
    net.eval()
    x = torch.randn(3, 24)
    assert torch.equal(net(x), LoraLinear.forward(layer, x))  # PEFT's own forward, called on our layer


@pytest.mark.parametrize("state", ["merged", "disabled"])
def test_merged_or_disabled_adapters_use_peft_forward(state):
    net, layer = _one_layer(0.0)
    net.train()
    x = torch.randn(3, 24)
    with_adapter = net(x)
    if state == "merged":
        layer.merge()
        assert torch.allclose(net(x), with_adapter, atol=1e-5)
    else:
        with net.disable_adapter():
            assert torch.allclose(net(x), layer.base_layer(x))


def test_bf16_fused_update_is_as_close_to_fp32_as_peft(tiny_llama):
    """bf16 rounds at other points than PEFT; the error against fp32 must stay of the same size."""
    batch = collate_examples(short_examples(64), 0, packing=False)
    reference = _loss_and_grads(_lora_model(tiny_llama, 0.0), batch, True)[1]

    def error(fused: bool) -> float:
        model = _lora_model(tiny_llama, 0.0, fused).to(torch.bfloat16)
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.data = param.data.float()  # fp32 master LoRA weights, as in training
        grads = _loss_and_grads(model, batch, True)[1]
        return max(((grads[n] - reference[n]).norm() / reference[n].norm()).item() for n in reference)

    assert error(True) < 1.5 * error(False) + 1e-3


def test_mixed_adapter_batches_use_peft_forward():
    """The server's batches mixing adapters (PEFT allows them in eval mode only) reach PEFT's forward."""
    net, layer = _one_layer(0.0)
    net.add_adapter("other", LoraConfig(r=2, lora_alpha=4, target_modules=["0"]))
    torch.nn.init.normal_(layer.lora_B["other"].weight, std=0.1)
    assert type(layer) is fused_lora.FusedLinear and fused_lora.check(net) == 1
    net.eval()
    x = torch.randn(3, 24)
    names = ["default", "other", "__base__"]
    got = net(x, adapter_names=names)
    assert torch.equal(got, LoraLinear.forward(layer, x, adapter_names=names))
    assert not torch.allclose(got[0], got[1]) and torch.allclose(got[2], layer.base_layer(x[2]))


def test_saved_adapter_is_plain_peft_and_answers_the_same(tiny_llama, tmp_path):
    """The custom layer lives on the in-memory config only: the saved adapter loads with PEFT's own classes."""
    model = _lora_model(tiny_llama, 0.05)
    model.save_pretrained(tmp_path / "adapter", safe_serialization=True)
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert "FusedLinear" not in json.dumps(saved) and not any("custom" in key for key in saved)

    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    reloaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    layers = [m for m in reloaded.modules() if isinstance(m, LoraLinear)]
    assert layers and all(type(m) is LoraLinear for m in layers)
    ids = torch.tensor([[1, 5, 9, 12, 40, 7]])
    model.eval()
    reloaded.eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, reloaded(input_ids=ids).logits)


def test_check_fails_loudly_when_peft_builds_its_own_layer(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    plain = get_peft_model(model, _plain_config(model, LoraSettings()))
    with pytest.raises(RuntimeError, match=r"PEFT built peft\.tuners\.lora\.layer\.Linear for .*q_proj"):
        fused_lora.check(plain)


def test_attach_fails_loudly_without_peft_custom_module_hook(tiny_llama, monkeypatch):
    monkeypatch.delattr(LoraConfig, "_register_custom_module")  # as a PEFT that dropped the hook
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="_register_custom_module is gone.*peft 0.21"):
        attach_lora(model, LoraSettings())


def test_check_fails_loudly_when_peft_changes_forward_signature(monkeypatch):
    net, _ = _one_layer(0.0)
    monkeypatch.setattr(LoraLinear, "forward", lambda self, x, adapter_names=None: x)  # as a PEFT that changed it
    with pytest.raises(RuntimeError, match=r"lora\.Linear\.forward takes"):
        fused_lora.check(net)


@pytest.mark.parametrize("change", ["scaling gone", "other dropout", "lora_B not a Linear"])
def test_check_fails_loudly_when_what_the_update_reads_moves(change):
    net, layer = _one_layer(0.1)
    if change == "scaling gone":
        del layer.scaling
    elif change == "other dropout":
        layer.lora_dropout["default"] = torch.nn.AlphaDropout(0.1)
    else:
        layer.lora_B["default"] = torch.nn.Sequential(layer.lora_B["default"])
    with pytest.raises(RuntimeError, match="does not fit peft"):
        fused_lora.check(net)


def test_conv1d_models_keep_peft_layers(tiny_gpt2):
    """GPT-2's Conv1D projections are not nn.Linear: PEFT's own layer, nothing to check, no error."""
    model = attach_lora(AutoModelForCausalLM.from_pretrained(tiny_gpt2), LoraSettings(r=4))
    layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    assert layers and all(type(m) is LoraLinear for m in layers) and fused_lora.check(model) == 0
