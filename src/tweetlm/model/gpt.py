"""A Llama-style decoder-only transformer for one device (layer L2).

RoPE positions, RMSNorm (pre-norm), SwiGLU feed-forward, grouped-query attention, no biases, optional tied
embeddings -- the Llama 2 recipe (Touvron et al. 2023). Attention uses ``F.scaled_dot_product_attention``.
The module is built on the meta device and materialised by ``init_weights`` (as torchtitan does), so
a large model never allocates twice. It knows nothing about data, optimisers, distribution or sampling:
``training/parallelize.py`` wraps it, ``inference/`` drives it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tweetlm.model.config import ModelConfig


def rope_tables(
    head_dim: int, max_seq_len: int, theta: float, device=None, cfg: ModelConfig | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each ``(max_seq_len, head_dim // 2)`` float32.

    With ``cfg.rope_scaling == "llama3"`` the inverse frequencies are rescaled as Llama 3.1 does (Meta's
    reference ``apply_scaling``; ``transformers``' ``_compute_llama3_parameters``): wavelengths longer than
    ``original / low_freq_factor`` are divided by ``factor``, shorter than ``original / high_freq_factor`` kept,
    and the band between interpolated smoothly.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    if cfg is not None and cfg.rope_scaling == "llama3":
        old_len, factor = cfg.rope_original_max_seq_len, cfg.rope_factor
        low_wavelen = old_len / cfg.rope_low_freq_factor
        high_wavelen = old_len / cfg.rope_high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        smooth = (old_len / wavelen - cfg.rope_low_freq_factor) / (cfg.rope_high_freq_factor - cfg.rope_low_freq_factor)
        smoothed = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        inv_freq = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv_freq = torch.where(medium, smoothed, inv_freq)
    t = torch.arange(max_seq_len, device=device, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    return freqs.cos(), freqs.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` of shape ``(B, H, T, D)`` by position; ``cos``/``sin`` are ``(T, D/2)``. Half-split layout
    (as Hugging Face Llama), so exported weights need no permutation."""
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv, self.hd = cfg.n_head, cfg.kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.n_embd, self.n_head * self.hd, bias=False)
        self.wk = nn.Linear(cfg.n_embd, self.n_kv * self.hd, bias=False)
        self.wv = nn.Linear(cfg.n_embd, self.n_kv * self.hd, bias=False)
        self.wo = nn.Linear(self.n_head * self.hd, cfg.n_embd, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        kv_cache=None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_head, self.hd).transpose(1, 2)
        k = self.wk(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        v = self.wv(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache.update(k, v)
        gqa = self.n_kv != self.n_head  # SDPA repeats the key/value heads itself (no copy of the cache)
        if attn_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, enable_gqa=gqa)
        return self.wo(y.transpose(1, 2).reshape(B, T, self.n_head * self.hd))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.n_embd, cfg.ffn_hidden, bias=False)  # gate
        self.w3 = nn.Linear(cfg.n_embd, cfg.ffn_hidden, bias=False)  # up
        self.w2 = nn.Linear(cfg.ffn_hidden, cfg.n_embd, bias=False)  # down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.ffn = SwiGLU(cfg)

    def forward(self, x, cos, sin, kv_cache=None, attn_mask=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, kv_cache, attn_mask)
        return x + self.ffn(self.ffn_norm(x))


class GPT(nn.Module):
    """Decoder-only transformer: ``(B, T)`` int64 token ids -> ``(B, T, vocab_size)`` float logits."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.tie_weights()
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta, self.tok_emb.weight.device, cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    @classmethod
    def build(cls, cfg: ModelConfig, device: str | torch.device = "cpu", seed: int = 0) -> GPT:
        """Construct on the meta device, move to ``device`` uninitialised, then ``init_weights(seed)``."""
        with torch.device("meta"):
            model = cls(cfg)
        model.to_empty(device=device)
        model.tie_weights()
        model.init_weights(seed)
        return model

    def tie_weights(self) -> None:
        """Share the embedding with the output head when ``tie_embeddings`` (again after ``to_empty``, which
        allocates every parameter separately)."""
        if self.cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight

    @torch.no_grad()
    def init_weights(self, seed: int = 0) -> None:
        """Normal(0, init_std) weights, output projections scaled by ``1/sqrt(2*n_layer)``, norms to 1.
        Deterministic for a given seed regardless of the device."""
        gen = torch.Generator(device="cpu").manual_seed(seed)
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
                continue
            s = std / math.sqrt(2 * self.cfg.n_layer) if name.endswith(("wo.weight", "w2.weight")) else std
            p.copy_(torch.empty(p.shape, dtype=torch.float32).normal_(0.0, s, generator=gen))
        cos, sin = rope_tables(
            self.cfg.head_dim, self.cfg.max_seq_len, self.cfg.rope_theta, self.rope_cos.device, self.cfg
        )
        self.rope_cos.copy_(cos)
        self.rope_sin.copy_(sin)

    def forward(
        self,
        idx: torch.Tensor,
        positions: torch.Tensor | None = None,
        kv_caches=None,
        attn_mask: torch.Tensor | None = None,
        logits_at: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``(B, T, vocab_size)`` for token ids ``idx`` ``(B, T)``.

        Training calls ``model(idx)``: plain causal attention from position 0. Inference (``inference.engine``)
        adds ``positions`` ``(B, T)`` int64 RoPE positions per row, ``kv_caches`` (one per block, each with an
        ``update(k, v)`` that stores the new ``(B, n_kv_head, T, head_dim)`` keys and values and returns every key
        and value the queries may see, ``(B, n_kv_head, S, head_dim)``) and ``attn_mask`` ``(B, 1, T, S)``
        additive float (0 where a query sees a key, ``-inf`` elsewhere; every query must see at least one key);
        ``logits_at`` ``(B,)`` int64 computes the logits of one position per row alone (``(B, 1, vocab_size)``;
        a prefill needs only its last prompt token's).
        Raises ``ValueError`` when a sequence would exceed ``max_seq_len``.
        """
        B, T = idx.shape
        if positions is None:
            if T > self.cfg.max_seq_len:
                raise ValueError(f"sequence of {T} tokens exceeds max_seq_len={self.cfg.max_seq_len}")
            cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        else:
            cos, sin = self.rope_cos[positions].unsqueeze(1), self.rope_sin[positions].unsqueeze(1)
        x = self.tok_emb(idx)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, None if kv_caches is None else kv_caches[i], attn_mask)
        if logits_at is not None:
            x = x[torch.arange(B, device=x.device), logits_at].unsqueeze(1)
        return self.lm_head(self.norm(x))

    def num_params(self, exclude_embedding: bool = False) -> int:
        """Parameter count (a tied embedding counted once); optionally without the token embedding."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embedding:
            n -= self.tok_emb.weight.numel()
        return n
