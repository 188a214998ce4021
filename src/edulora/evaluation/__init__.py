"""Pedagogical evaluation of tutor replies: pure metrics, sentence embeddings and MRBench calibration."""
