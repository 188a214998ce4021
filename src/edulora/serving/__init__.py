"""Serving tutors: one base model with several LoRA adapters behind an OpenAI-compatible API.

``engine`` owns the model and batches requests for any mix of adapters, ``router`` picks an
adapter for ``model: "auto"``, ``api`` is the HTTP server (and the teacher page in ``web/``),
``feedback`` stores teachers' ratings and turns them into training data.
"""
