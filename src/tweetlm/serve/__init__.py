"""Serving layer (L5): the OpenAI-compatible HTTP API over the inference engine. Routes, schemas, limits and
auth only; generation lives in ``inference``."""
