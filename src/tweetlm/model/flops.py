"""FLOP count per token (layer L2), for MFU and throughput reports.

Training FLOPs per token = 6 * N_matmul + 12 * n_layer * n_embd * seq_len (attention scores and values,
forward and backward), the PaLM appendix B / nanoGPT convention. N_matmul counts every weight used in a matmul,
including the output head (the tied embedding lookup itself is free).
"""

from __future__ import annotations

from tweetlm.model.config import ModelConfig


def matmul_params(cfg: ModelConfig) -> int:
    """Weights that take part in matrix multiplies for one token: attention, SwiGLU and the output head."""
    d, hd = cfg.n_embd, cfg.head_dim
    attn = d * cfg.n_head * hd * 2 + d * cfg.kv_heads * hd * 2
    ffn = 3 * d * cfg.ffn_hidden
    return cfg.n_layer * (attn + ffn) + d * cfg.vocab_size


def train_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Forward + backward FLOPs for one token of a sequence of ``seq_len`` tokens."""
    return 6.0 * matmul_params(cfg) + 12.0 * cfg.n_layer * cfg.n_embd * seq_len
