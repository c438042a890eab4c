"""Inference layer (L3): KV cache, sampling and generation. Never imports training."""
