"""The fast path (packed rows, LM head on labelled positions only) computes the same numbers as the plain path."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import short_examples as examples

from edulora.formatting import collate_examples
from edulora.losses import token_loss_sum




@pytest.mark.parametrize("kind", ["tiny_llama", "tiny_gpt2"])
def test_packed_losses_equal_per_example_losses(kind, request):
    model = AutoModelForCausalLM.from_pretrained(request.getfixturevalue(kind), dtype=torch.float32).eval()
    exs = examples(model.config.vocab_size)
    separate = [token_loss_sum(model, collate_examples([e], 0), response_only_head=False) for e in exs]
    packed = collate_examples(exs, 0)
    assert packed["input_ids"].shape[0] == 1  # all four share one row
    fast_sum, fast_count = token_loss_sum(model, packed, response_only_head=True)
    plain_sum, plain_count = token_loss_sum(model, packed, response_only_head=False)
    assert fast_count == plain_count == sum(c for _, c in separate)
    assert torch.allclose(fast_sum, sum(s for s, _ in separate), rtol=1e-4)
    assert torch.allclose(fast_sum, plain_sum, rtol=1e-5)


def test_fast_and_plain_paths_give_the_same_gradients(tiny_llama):
    grads = []
    for fast in (True, False):
        model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
        batch = collate_examples(examples(model.config.vocab_size), 0)
        loss_sum, count = token_loss_sum(model, batch, response_only_head=fast)
        (loss_sum / count).backward()
        grads.append(model.model.layers[0].self_attn.q_proj.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def test_padded_rows_give_the_same_losses_as_packed_rows(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    exs = examples(model.config.vocab_size)
    packed = token_loss_sum(model, collate_examples(exs, 0, packing=True))
    padded = token_loss_sum(model, collate_examples(exs, 0, packing=False))
    assert packed[1] == padded[1] and torch.allclose(packed[0], padded[0], rtol=1e-5)


def test_rounding_row_width_up_changes_no_loss(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    exs = examples(model.config.vocab_size)
    tight = collate_examples(exs, 0, packing=False)
    rounded = collate_examples(exs, 0, packing=False, pad_to_multiple_of=32)
    assert tight["input_ids"].shape == (4, 14) and rounded["input_ids"].shape == (4, 32)
    assert rounded["real_tokens"] == tight["real_tokens"] == 40  # padding is not counted as work
    a, b = token_loss_sum(model, tight), token_loss_sum(model, rounded)
    assert a[1] == b[1] and torch.allclose(a[0], b[0], rtol=1e-5)
    packed = collate_examples(exs, 0, packing=True, pad_to_multiple_of=32)
    assert packed["input_ids"].shape == (1, 64)
    assert torch.allclose(token_loss_sum(model, packed)[0], a[0], rtol=1e-5)


def test_loss_does_not_depend_on_batching(tiny_llama):
    """Token-weighted: the sum over two half-batches equals the whole batch's sum."""
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    exs = examples(model.config.vocab_size)
    whole = token_loss_sum(model, collate_examples(exs, 0, packing=False))
    halves = [token_loss_sum(model, collate_examples(part, 0, packing=False)) for part in (exs[:1], exs[1:])]
    assert torch.allclose(whole[0], halves[0][0] + halves[1][0], rtol=1e-5)
    assert whole[1] == halves[0][1] + halves[1][1]


def test_frozen_head_loss_equals_full_logits_in_chunks(monkeypatch):
    from edulora import losses

    monkeypatch.setattr(losses._FrozenHeadCrossEntropy, "ROWS", 7)  # several chunks and a ragged last one
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False).requires_grad_(False)
    hidden = torch.randn(20, 16, requires_grad=True)
    targets = torch.randint(0, 50, (20,))
    plain = torch.nn.functional.cross_entropy(head(hidden), targets, reduction="sum")
    (plain_grad,) = torch.autograd.grad(plain * 0.5, hidden)
    fused = losses.head_loss_sum(hidden, head, targets)
    (fused_grad,) = torch.autograd.grad(fused * 0.5, hidden)
    assert torch.allclose(fused, plain, rtol=1e-6)
    assert torch.allclose(fused_grad, plain_grad, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(losses.head_loss_sum(hidden, head, targets), plain, rtol=1e-6)


def test_trainable_head_takes_the_plain_path_and_gets_its_gradient():
    from edulora.losses import head_loss_sum

    head = torch.nn.Linear(16, 50, bias=False)
    loss = head_loss_sum(torch.randn(5, 16), head, torch.randint(0, 50, (5,)))
    loss.backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
