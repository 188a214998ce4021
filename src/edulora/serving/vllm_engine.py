"""The serving engine in front of a vLLM server: edulora keeps the tutor, vLLM's GPUs decode.

For classrooms that outgrow one machine: ``vllm serve BASE --enable-lora --lora-modules NAME=ADAPTER ...``
decodes, with continuous batching over every adapter; edulora keeps the teacher page, routing, keys,
feedback and admin in front. Prompts are formatted and tokenized here, exactly as in training (template,
persona, the teacher's key), and sent as token ids to vLLM's *completions* endpoint: its chat endpoint
would apply a template of its own. vLLM streams back each new token's id (``return_token_ids``), and
those ids go through ``generation``'s row logic (stop tokens, stop strings, UTF-8-safe streaming,
cancellation), so a reply is cut and streamed as on the other backends. Closing the stream when a reply
ends here (a stop string, a client that left) makes vLLM abort the request.

Adapters' metadata (subject, grade, style, prompt format, key setting) comes from their local run
directories; at start every adapter must be among vLLM's models under the same name. Adding an
adapter at run time asks vLLM to load it (``/v1/load_lora_adapter``, which vLLM offers only when
started with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``); the folder path must be valid on vLLM's machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import EduloraError
from ..generation import Row, stop_token_ids
from ..modeling import load_tokenizer, resolve_model_path
from .engine import AdapterSpec, Generation, UpstreamFailed, display_name, resolve_adapters
from .workers import WorkerEngine

#: How long edulora waits for vLLM to answer (a first token, or the next one) before the reply fails with 502.
UPSTREAM_TIMEOUT_S = 600.0


def vllm_client(url: str, api_key: str | None = None, timeout: float = UPSTREAM_TIMEOUT_S):
    """The official ``openai`` client for the vLLM server at ``url`` (``http://host:8000/v1``)."""
    import openai

    # No retries: a failed reply is a 502 the client may retry; retrying here would hide a sick upstream.
    return openai.OpenAI(base_url=url.rstrip("/"), api_key=api_key or "none", timeout=timeout, max_retries=0)


def upstream_message(err: Exception) -> str:
    """vLLM's own words for a failed call (its error body's message when it sent one)."""
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error")
        body = body.get("message") or (inner.get("message") if isinstance(inner, dict) else inner)
    text = str(body or err)
    return text.splitlines()[0] if text.strip() else type(err).__name__


def load_vllm_engine(adapters: Sequence[tuple[str | None, str | Path]], url: str, api_key: str | None = None,
                     base: str | None = None, allow_pickle: bool = False, **engine_options) -> VllmEngine:
    """An engine in front of the vLLM server at ``url``; every adapter must be one of its LoRA modules, by name.

    The base's tokenizer and config are loaded here (no weights): prompts are tokenized as in training.
    """
    import openai
    from transformers import AutoConfig

    specs, base_model = resolve_adapters(adapters, base, allow_pickle)
    client = vllm_client(url, api_key)
    try:
        served = {m.id: m.model_extra or {} for m in client.models.list()}
    except openai.AuthenticationError:
        raise EduloraError(f"vLLM at {url} refused the key: set --vllm-api-key (or EDULORA_VLLM_API_KEY) to the "
                           "key vLLM was started with") from None
    except openai.APIError as err:
        raise EduloraError(f"cannot list the models of vLLM at {url}: {upstream_message(err)}") from None
    for spec in specs:
        if spec.name not in served:
            raise EduloraError(f"vLLM at {url} does not serve the LoRA module {spec.name!r}: start it with "
                               f"--enable-lora --lora-modules {spec.name}={spec.folder}")
    bases = [name for name, extra in served.items() if not extra.get("parent") and name not in {s.name for s in specs}]
    if not bases:
        raise EduloraError(f"vLLM at {url} lists no base model among {', '.join(served) or 'no models'}")
    folder = resolve_model_path(base_model)
    context = served[bases[0]].get("max_model_len") or getattr(AutoConfig.from_pretrained(folder),
                                                               "max_position_embeddings", None) or 2048
    return VllmEngine(client, load_tokenizer(folder), display_name(base_model), {s.name: s for s in specs},
                      upstream_base=bases[0], url=url, context_limit=int(context), base_model=base_model,
                      **engine_options)


class VllmEngine(WorkerEngine):
    """``Engine`` whose decoding is a vLLM server's: ``max_batch`` requests in flight to it at a time."""

    backend = "vllm"

    def __init__(self, client, tokenizer, base_id, adapters, upstream_base: str, url: str = "", **options):
        super().__init__(client, tokenizer, base_id, adapters, **options)
        #: The base model's name on the vLLM server (what a request for the base names as its ``model``).
        self.upstream_base = upstream_base
        self.url = url
        self._stop_ids = set(stop_token_ids(tokenizer))

    def request(self, gen: Generation) -> dict[str, Any]:
        """The completions call for ``gen``: its token ids, its adapter's module name, edulora's sampling rules."""
        s = gen.sampling
        extra = {"return_token_ids": True, "repetition_penalty": s.repetition_penalty, "top_k": -1, "min_p": 0.0,
                 # vLLM stops at the same tokens as edulora (the template's end-of-turn, not only EOS).
                 "stop_token_ids": sorted(self._stop_ids), "skip_special_tokens": True}
        return {"model": gen.target or self.upstream_base, "prompt": list(gen.prompt_ids),
                "max_tokens": s.max_new_tokens, "temperature": s.temperature,
                "top_p": s.top_p if s.temperature > 0 else 1.0, "stream": True, "extra_body": extra,
                **({"seed": s.seed} if s.seed is not None else {})}

    def _run(self, gen: Generation) -> None:
        import httpx
        import openai

        row = Row(gen, self.decode, self._stop_ids, torch.device("cpu"))
        ended = None
        try:
            with self.model.completions.create(**self.request(gen)) as stream:
                for chunk in stream:
                    if not chunk.choices:  # a usage-only chunk
                        continue
                    choice = chunk.choices[0]
                    ids = (choice.model_extra or {}).get("token_ids")
                    if ids is None and choice.text:
                        raise UpstreamFailed("vLLM sent text without token ids: edulora needs a vLLM whose "
                                             "completions accept return_token_ids")
                    if any(row.advance(int(token)) for token in ids or ()) or gen.cancelled:
                        break  # leaving the block closes the stream, and vLLM aborts the request
                    ended = choice.finish_reason or ended
        except (openai.APIError, httpx.HTTPError) as err:
            raise UpstreamFailed(f"vLLM failed: {upstream_message(err)}") from None
        if gen.finish_reason is None:
            if gen.cancelled:
                gen.finish("cancelled")
            else:  # vLLM ended first: a stop token (not streamed back) or its length limit
                row.finish(self.decode(row.tokens), "length" if ended == "length" else "stop")

    def _lora(self, action: str, body: dict[str, str]) -> None:
        import openai

        try:
            self.model.post(f"/{action}_lora_adapter", body=body, cast_to=str)
        except openai.NotFoundError:
            raise EduloraError(f"vLLM at {self.url} cannot {action} adapters at run time: start it with "
                               "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (or restart it with the --lora-modules you need)"
                               ) from None
        except openai.APIError as err:
            raise EduloraError(f"vLLM could not {action} adapter {body['lora_name']!r}: {upstream_message(err)}"
                               ) from None

    def _attach(self, spec: AdapterSpec) -> None:
        """Ask vLLM to load the adapter folder (the same path must exist on vLLM's machine)."""
        self._lora("load", {"lora_name": spec.name, "lora_path": str(spec.folder)})

    def _detach(self, name: str) -> None:
        self._lora("unload", {"lora_name": name})
