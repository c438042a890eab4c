"""Sampling (layer L3, inference): the next token from logits, and the sample settings of a run's recipe.

Temperature, top-k, min-p (Nguyen et al. 2024, "Turning Up the Heat: Min-p Sampling"; vLLM's ``min_p``) and top-p
(nucleus, Holtzman et al. 2020), applied in that order; ``temperature=0`` is greedy; a generator makes
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


GREEDY_BELOW = 1e-5  # a temperature this small samples the argmax (dividing by it would overflow), as vLLM


def candidates(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float, min_p: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens a sample may take and their probabilities, for ``logits`` ``(1, V)``: ``(ids (n,), probs
    (n,))`` (probabilities renormalised over the candidates), or ``(None, probs (V,))`` when every token may come.

    Top-k keeps the ``top_k`` best logits; min-p then keeps the tokens whose probability (after temperature) is at
    least ``min_p`` times the best token's, so the cut follows the model's confidence (0 = off); top-p then keeps
    the smallest set of the best tokens whose probability (renormalised over what top-k and min-p kept) reaches
    ``top_p``, the token that crosses it included. Top-p sorts only the tokens of probability at least ``eps``,
    for the largest ``eps`` of 1e-3, 1e-4, 1e-5, 0 whose excluded mass is at most ``1 - top_p`` (the nucleus
    then lies inside them): the same set as sorting the whole vocabulary, for a fraction of the cost.
    """
    x = logits[0].float() / temperature
    V = x.numel()
    ids = None
    if 0 < top_k < V:
        x, ids = torch.topk(x, top_k)
    probs = torch.softmax(x, -1)
    if not bool(torch.isfinite(probs).all()):
        raise ValueError("the model's next-token probabilities are not finite (NaN or inf logits)")
    if min_p > 0.0:
        kept = (probs >= min_p * probs.max()).nonzero().squeeze(-1)
        ids = kept if ids is None else ids[kept]
        probs = probs[kept] / probs[kept].sum()
    if top_p >= 1.0:
        return ids, probs
    for eps in (1e-3, 1e-4, 1e-5, 0.0):
        sel = (probs >= eps).nonzero().squeeze(-1)
        if eps == 0.0 or 1.0 - float(probs[sel].sum()) <= 1.0 - top_p:
            break
    p, order = torch.sort(probs[sel], descending=True)
    keep = (p.cumsum(-1) - p) <= top_p
    kept = sel[order[keep]]
    return (kept if ids is None else ids[kept]), p[keep] / p[keep].sum()


def sample_next(
    logits: torch.Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    gen: torch.Generator | None,
    min_p: float = 0.0,
) -> torch.Tensor:
    """Next id ``(1,)`` from ``(1, V)`` logits (``temperature`` below ``GREEDY_BELOW``: the argmax; any batch size
    then). The draw is
    one uniform number from ``gen`` mapped through the candidates' cumulative probabilities."""
    if temperature < GREEDY_BELOW:
        return logits.argmax(-1)
    ids, probs = candidates(logits, temperature, top_k, top_p, min_p)
    cdf = probs.cumsum(-1)
    u = torch.rand(1, generator=gen).to(cdf.device) * cdf[-1]
    i = torch.searchsorted(cdf, u).clamp(max=cdf.numel() - 1)
    return i if ids is None else ids[i]
