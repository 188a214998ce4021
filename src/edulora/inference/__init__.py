"""Inference backends beside the transformers reference: llama.cpp (GGUF base + GGUF LoRA per request).

``gguf_lora`` writes a PEFT adapter as a GGUF LoRA file; ``llamacpp`` runs a GGUF base with such
adapters through xllamacpp, continuous batching across requests.
"""
