"""Short-row attention computes SDPA's numbers (to bf16 rounding), is chosen only where it applies,
and its memory is in the training memory estimate."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from conftest import short_examples

from edulora import attention
from edulora.config import LoraSettings, ModelConfig
from edulora.formatting import collate_examples
from edulora.losses import token_loss_sum
from edulora.modeling import attach_lora, load_base_model
from edulora.training.memory import estimate_peak_bytes


def _qkv(batch=3, heads=4, length=24, dim=16, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, length, dim, generator=generator, dtype=dtype) for _ in range(3)]


def _padded_causal(batch, length, real):
    """Right padding: row i has real[i] tokens; a query sees earlier, non-padding keys (SDPA's mask)."""
    keys = torch.arange(length)[None, :] < torch.tensor(real)[:, None]
    return (torch.ones(length, length, dtype=torch.bool).tril()[None] & keys[:, None, :])[:, None]


@pytest.mark.parametrize("masked", [False, True])
def test_short_attention_forward_and_backward_match_sdpa_to_bf16_rounding(masked):
    q, k, v = _qkv()
    keep = _padded_causal(3, 24, [24, 17, 9]) if masked else torch.ones(24, 24, dtype=torch.bool).tril()
    grad = torch.randn(q.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    reference = F.scaled_dot_product_attention(*leaves, attn_mask=keep)
    reference.backward(grad)
    ours = [t.to(torch.bfloat16).requires_grad_() for t in (q, k, v)]
    out = attention.ShortAttention.apply(*ours, keep, 16 ** -0.5)
    out.backward(grad.to(torch.bfloat16))
    assert (out.double() - reference).abs().max() < 0.03
    for mine, theirs in zip(ours, leaves, strict=True):
        scale = theirs.grad.abs().max()
        assert (mine.grad.double() - theirs.grad).abs().max() < 0.03 * scale
    # A wrong mask or a missing softmax-backward term is far outside that tolerance.
    wrong = attention.ShortAttention.apply(*[t.detach() for t in ours], torch.ones_like(keep), 16 ** -0.5)
    assert (wrong.double() - reference).abs().max() > 0.1


def test_the_path_is_taken_only_for_short_bf16_rows_with_plain_arithmetic():
    q, k, _ = _qkv(dtype=torch.bfloat16)
    mask = _padded_causal(3, 24, [24, 17, 9])
    assert attention.takes_short_path(q, k, mask)
    assert attention.takes_short_path(q, k, None)  # purely causal: SDPA's mask function leaves it out
    assert not attention.takes_short_path(q.float(), k.float(), mask)  # fp32: SDPA is as fast
    assert not attention.takes_short_path(q[:, :, :1], k, mask[:, :, :1])  # one query: decoding
    assert not attention.takes_short_path(q[:, :, :5], k, None)  # fewer queries than keys and no mask
    assert not attention.takes_short_path(q, k, mask, dropout=0.1)
    assert not attention.takes_short_path(q, k, mask, softcap=30.0)
    assert not attention.takes_short_path(q, k, mask.float())
    long_q, long_k, _ = _qkv(batch=1, heads=1, length=attention.SHORT_KEYS + 1, dtype=torch.bfloat16)
    assert not attention.takes_short_path(long_q, long_k, None)
    many = attention.MAX_SCORES // (24 * 24) + 1  # rows short enough, but too many query-key pairs in all
    wide_q, wide_k, _ = _qkv(batch=many, heads=1, length=24, dim=2, dtype=torch.bfloat16)
    assert not attention.takes_short_path(wide_q, wide_k, None)


def _grad_nodes(tensor) -> set[str]:
    """Names of the autograd nodes that produced ``tensor``."""
    seen, names, todo = set(), set(), [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        todo.extend(parent for parent, _ in node.next_functions)
    return names


def _loss_and_grads(model, batch):
    model.zero_grad()
    loss, count = token_loss_sum(model, batch)
    mean = loss / count
    mean.backward()
    grads = {n: p.grad.float().clone() for n, p in model.named_parameters() if p.requires_grad}
    return mean.item(), grads, _grad_nodes(mean)


def _lora(base):
    torch.manual_seed(0)
    model = attach_lora(base, LoraSettings(dropout=0.0))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero, which would hide errors in A's gradient
            torch.nn.init.normal_(param, std=0.05)
    return model


def _error(grads, reference) -> float:
    return max(((grads[n] - g).norm() / g.norm()).item() for n, g in reference.items())


def test_a_bf16_lora_step_with_short_attention_is_as_accurate_as_sdpa(tiny_llama):
    """Against the same step in fp32, the bf16 step's loss and LoRA gradients are as close with short
    attention as with transformers' eager attention (the same rounding points) and near SDPA's kernel."""
    batch = collate_examples(short_examples(1000), 0, packing=False)  # padded rows of different lengths
    reference = _lora(AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32))
    exact_loss, exact_grads, _ = _loss_and_grads(reference, batch)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.bfloat16)
    assert attention.use_short_attention(base) and base.config._attn_implementation == attention.NAME
    model = _lora(base)
    short_loss, short_grads, nodes = _loss_and_grads(model, batch)
    assert "ShortAttentionBackward" in nodes
    errors = {}
    for other in ("eager", "sdpa"):
        base.set_attn_implementation(other)
        loss, grads, nodes = _loss_and_grads(model, batch)
        assert "ShortAttentionBackward" not in nodes
        errors[other] = (abs(loss - exact_loss), _error(grads, exact_grads))
    short = (abs(short_loss - exact_loss), _error(short_grads, exact_grads))
    assert short[0] <= 1.05 * errors["eager"][0] + 1e-4 and short[1] <= 1.05 * errors["eager"][1] + 1e-3
    assert short[0] <= 2 * errors["sdpa"][0] + 2e-3 and short[1] <= 1.5 * errors["sdpa"][1] + 0.01


def test_loading_chooses_it_for_bf16_on_a_cpu_only(tiny_llama):
    fp32, _, _ = load_base_model(ModelConfig(name=str(tiny_llama), precision="fp32"))
    assert fp32.config._attn_implementation == "sdpa"
    bf16, _, _ = load_base_model(ModelConfig(name=str(tiny_llama), precision="bf16"))
    assert bf16.config._attn_implementation == attention.NAME
    eager = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.bfloat16, attn_implementation="eager")
    assert not attention.use_short_attention(eager)  # a choice made by the caller is kept


def test_generation_with_short_attention_gives_sdpas_tokens(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.bfloat16).eval()
    ids = torch.tensor([[0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])  # left padding, as generation batches
    settings = dict(attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
    reference = model.generate(ids, **settings)
    attention.use_short_attention(model)
    assert torch.equal(model.generate(ids, **settings), reference)


def test_the_memory_estimate_counts_what_short_attention_keeps(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.bfloat16)
    sdpa = estimate_peak_bytes(model, 1_000, 0.5, False, 4)
    attention.use_short_attention(model)
    short = estimate_peak_bytes(model, 1_000, 0.5, False, 4)
    config = model.config
    assert short - sdpa == pytest.approx(config.num_hidden_layers * 2 * config.num_attention_heads * 1_000
                                         * attention.SHORT_KEYS)
    huge = estimate_peak_bytes(model, 10**7, 0.5, False, 4) - estimate_peak_bytes(model, 10**7 - 1, 0.5, False, 4)
    assert huge < short - sdpa  # capped at MAX_SCORES pairs per layer


def test_the_row_length_benchmark_runs_on_the_tiny_model(tiny_llama, tmp_path):
    """``benchmarks/attention_rows.py`` end to end (2 rows, 2 lengths, 1 pair), so it cannot rot."""
    import importlib.util
    from pathlib import Path

    from edulora.modeling import cpu_has_fast_bf16

    if not cpu_has_fast_bf16():
        pytest.skip("this CPU trains in fp32, where the short-row path is not used")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "attention_rows.py"
    spec = importlib.util.spec_from_file_location("attention_rows", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "rows.json"
    results = module.main(["--base", str(tiny_llama), "--rows", "2", "--lengths", "2", "--repeats", "1",
                           "--json-out", str(out)])
    assert [r["rows"] for r in results] == [2, 2] and results[0]["length"] < results[1]["length"]
    assert all(r["ratio"] > 0 and r["sdpa_tok_s"] > 0 and r["short_tok_s"] > 0 for r in results)
    assert out.exists()
