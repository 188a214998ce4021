"""How far llama.cpp's decoding is from the PyTorch network a tutor was trained as.

The served GGUF (a quantized or f16 file) and llama.cpp's arithmetic (8-bit activations for quantized
weights, f16 attention) move log-probabilities a little; ``greedy_log_prob_gaps`` measures by how much along
llama.cpp's own greedy path, so a tolerance can be tested (tests/test_llamacpp.py) and a base file chosen
(benchmarks/llamacpp_bases.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..generation import Request, Sampling
from .llamacpp import LlamaCppError

if TYPE_CHECKING:
    from .llamacpp import LlamaCpp


def greedy_log_prob_gaps(model: LlamaCpp, network, ids: Sequence[int], adapter: str | None, n: int,
                         **forward) -> tuple[list[int], list[float]]:
    """llama.cpp's greedy reply (up to ``n`` tokens, no repetition penalty) to prompt ``ids`` on ``model`` (a
    ``LlamaCpp`` with its tokenizer set), and for each of the top-4 candidates llama.cpp reports at every step
    the |difference| between its log-probability and the one ``network`` (the transformers model; ``forward``:
    extra arguments for it, e.g. PEFT's ``adapter_names``) gives at the same position. Raises ``LlamaCppError``
    when llama.cpp's pick was not its own top candidate (a greedy path must take it)."""
    import torch

    chunks: list[dict] = []
    model.send(Request(list(ids), Sampling(max_new_tokens=n, repetition_penalty=1.0), adapter),
               lambda chunk: chunks.append(chunk) and False, n_probs=4, post_sampling_probs=False)
    tokens: list[int] = []
    reported: list[tuple[int, list[tuple[int, float]]]] = []  # (position in the reply, [(token id, log-prob)])
    for chunk in chunks:
        for item in (chunk["choices"][0].get("logprobs") or {}).get("content") or ():
            tokens += model.vocab.tokens(int(item["id"]), bytes(item.get("bytes") or b""))
            reported.append((len(tokens) - 1, [(t["id"], t["logprob"]) for t in item["top_logprobs"]]))
    if not tokens:
        return tokens, []
    with torch.no_grad():
        logits = network(torch.tensor([list(ids) + tokens]), **forward).logits[0, len(ids) - 1:-1].double()
    expected = torch.log_softmax(logits, -1)
    gaps = []
    for position, top in reported:
        if top[0][0] != tokens[position]:
            raise LlamaCppError(f"llama.cpp's greedy pick at reply token {position} was not its top candidate")
        gaps += [abs(float(expected[position, t]) - lp) for t, lp in top]
    return tokens, gaps
