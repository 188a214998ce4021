"""The fused LoRA update and the chunked frozen-head loss compute PEFT's / the plain path's numbers."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora.layer import Linear as LoraLinear
from transformers import AutoModelForCausalLM

from conftest import short_examples

from edulora import fused_lora
from edulora.config import LoraSettings
from edulora.formatting import collate_examples
from edulora.losses import token_loss_sum
from edulora.modeling import attach_lora




def _lora_model(path, dropout: float):
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    torch.manual_seed(0)
    model = attach_lora(model, LoraSettings(dropout=dropout))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero, which would hide errors in A's gradient
            torch.nn.init.normal_(param, std=0.05)
    return model


def _use_peft_forward(model) -> None:
    for module in model.modules():
        if isinstance(module, LoraLinear):
            module.__dict__.pop("forward", None)


def _loss_and_grads(model, batch, response_only_head: bool):
    model.train()
    loss_sum, count = token_loss_sum(model, batch, response_only_head)
    (loss_sum / count).backward()
    return loss_sum.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_attach_lora_routes_every_adapted_layer_through_the_fused_update(tiny_llama):
    model = _lora_model(tiny_llama, 0.05)
    lora_layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    assert lora_layers and all("forward" in m.__dict__ for m in lora_layers)


def test_fast_path_gives_peft_and_full_head_losses_and_gradients(tiny_llama):
    """Fused LoRA + chunked frozen head vs PEFT's layers + logits everywhere, on a tiny model in fp32."""
    fast_model = _lora_model(tiny_llama, 0.0)
    plain_model = _lora_model(tiny_llama, 0.0)
    _use_peft_forward(plain_model)
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
    net = get_peft_model(net, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["0"]))
    torch.nn.init.normal_(net.base_model.model[0].lora_B["default"].weight, std=0.1)
    fused_lora.install(net)
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
    assert torch.equal(net(x), type(layer).forward(layer, x))


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
        model = _lora_model(tiny_llama, 0.0).to(torch.bfloat16)
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.data = param.data.float()  # fp32 master LoRA weights, as in training
        if not fused:
            _use_peft_forward(model)
        grads = _loss_and_grads(model, batch, True)[1]
        return max(((grads[n] - reference[n]).norm() / reference[n].norm()).item() for n in reference)

    assert error(True) < 1.5 * error(False) + 1e-3
