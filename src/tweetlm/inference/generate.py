"""Generation with a KV cache (layer L3, inference): batched prefill then token-by-token decode.

Sampling: temperature, top-k and top-p (nucleus, Holtzman et al. 2020); ``temperature=0`` is greedy. A
per-call seed makes samples reproducible. Generation of a post starts at ``<|bos|>`` and stops at
``<|eos|>`` or ``max_new_tokens``. Issue 5 grows this into the serving engine (continuous batching, stop
strings, tweet mode); the cache here is the simple preallocated kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class KVCache:
    """Preallocated keys and values for one block: ``(B, n_kv_head, max_len, head_dim)`` each."""

    def __init__(self, batch: int, n_kv: int, max_len: int, head_dim: int, device, dtype=torch.float32) -> None:
        self.k = torch.zeros(batch, n_kv, max_len, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.pos = 0

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``(B, H, T, D)`` keys/values; return everything cached so far."""
        t = k.shape[2]
        self.k[:, :, self.pos : self.pos + t] = k
        self.v[:, :, self.pos : self.pos + t] = v
        self.pos += t
        return self.k[:, :, : self.pos], self.v[:, :, : self.pos]


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


@torch.no_grad()
def generate(
    model, prompts: list[list[int]], cfg: SampleConfig, eos_id: int, use_cache: bool = True
) -> list[list[int]]:
    """Continue each prompt (equal lengths required) and return only the new ids, without ``eos_id``.

    ``use_cache=False`` recomputes the whole prefix each step (the reference the KV-cache path must match).
    Raises ``ValueError`` for prompts of different lengths or longer than the model's context.
    """
    if len({len(p) for p in prompts}) != 1:
        raise ValueError("prompts must have equal lengths")
    device = next(model.parameters()).device
    mcfg = model.cfg
    B, T0 = len(prompts), len(prompts[0])
    max_new = min(cfg.max_new_tokens, mcfg.max_seq_len - T0)
    if max_new <= 0:
        raise ValueError(f"prompt of {T0} tokens leaves no room in max_seq_len={mcfg.max_seq_len}")
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.tensor(prompts, dtype=torch.long, device=device)
    caches = None
    if use_cache:
        caches = [KVCache(B, mcfg.kv_heads, mcfg.max_seq_len, mcfg.head_dim, device) for _ in range(mcfg.n_layer)]
    logits = model(x, 0, caches)[:, -1]
    out = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool)
    seq = x
    for i in range(max_new):
        nxt = sample_next(logits, cfg.temperature, cfg.top_k, cfg.top_p, gen)
        for b in range(B):
            if not done[b]:
                if nxt[b].item() == eos_id:
                    done[b] = True
                else:
                    out[b].append(int(nxt[b]))
        if bool(done.all()) or i == max_new - 1:
            break
        if use_cache:
            logits = model(nxt.view(B, 1), T0 + i, caches)[:, -1]
        else:
            seq = torch.cat([seq, nxt.view(B, 1)], dim=1)
            logits = model(seq)[:, -1]
    return out
