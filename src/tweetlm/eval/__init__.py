"""Evaluation layer (L3): bits-per-byte on held-out posts, overall and per source. Never imports training."""
