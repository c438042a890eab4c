"""Sampling (layer L3, inference): the next token from logits, and the sample settings of a run's recipe.

Temperature, top-k and top-p (nucleus, Holtzman et al. 2020); ``temperature=0`` is greedy; a generator makes
samples reproducible. Decoding itself (KV cache, batching, stops) is ``inference.engine``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SampleConfig:
    """Attributes: num_samples (posts to generate), max_new_tokens, temperature (0 = greedy), top_k (0 = off),
    top_p (1.0 = off), seed, tweet_mode (end at a complete post of at most 280 weighted characters)."""

    num_samples: int = 8
    max_new_tokens: int = 64
    temperature: float = 0.9
    top_k: int = 0
    top_p: float = 0.95
    seed: int = 42
    tweet_mode: bool = False


def sample_next(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float, gen: torch.Generator | None
) -> torch.Tensor:
    """Next ids ``(B,)`` from ``(B, V)`` logits."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove = cum - sorted_logits.softmax(-1) > top_p  # keep the token that crosses top_p
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(-1)
    return torch.multinomial(probs.cpu(), 1, generator=gen).squeeze(-1).to(logits.device)
