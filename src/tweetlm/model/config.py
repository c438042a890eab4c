"""Model configuration (layer L2): a plain dataclass from which the whole architecture is derived."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelConfig:
    """Shape of a Llama-style decoder.

    Attributes:
        vocab_size: number of token ids (set from the trained tokenizer when 0).
        n_layer: transformer blocks.
        n_embd: model width (residual stream size).
        n_head: attention heads; ``n_embd`` must be divisible by it.
        n_kv_head: key/value heads for grouped-query attention (GQA); divides ``n_head``; 0 means ``n_head``.
        ffn_mult: SwiGLU hidden size = ``ffn_mult * n_embd`` rounded up to a multiple of 32.
        ffn_hidden_size: the SwiGLU hidden size itself, overriding ``ffn_mult`` when > 0 (imported models state it:
            SmolLM2-135M 1536, Llama 3.2 1B 8192).
        max_seq_len: longest sequence the RoPE table covers, in tokens.
        rope_theta: RoPE base frequency.
        rope_scaling: ``""`` (none) or ``"llama3"``: Llama 3.1's frequency-dependent scaling of the RoPE
            frequencies (``rope_factor``, ``rope_low_freq_factor``, ``rope_high_freq_factor`` and the context
            ``rope_original_max_seq_len`` it was pretrained with), as in the Llama 3.1/3.2 ``config.json``.
        norm_eps: RMSNorm epsilon.
        tie_embeddings: share the input embedding and the output head.
        init_std: standard deviation of the normal init for weights (output projections are scaled by
            ``1/sqrt(2*n_layer)``, as GPT-2).
    """

    vocab_size: int = 0
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    n_kv_head: int = 0
    ffn_mult: float = 8 / 3
    ffn_hidden_size: int = 0
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    rope_scaling: str = ""
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_seq_len: int = 0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    init_std: float = 0.02

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def ffn_hidden(self) -> int:
        if self.ffn_hidden_size > 0:
            return self.ffn_hidden_size
        return int(-(-int(self.ffn_mult * self.n_embd) // 32) * 32)

    def validate(self) -> None:
        """Raise ``ValueError`` for an inconsistent shape."""
        if self.vocab_size <= 0:
            raise ValueError(f"model.vocab_size must be > 0, got {self.vocab_size}")
        if self.n_embd % self.n_head:
            raise ValueError(f"model.n_embd={self.n_embd} is not divisible by model.n_head={self.n_head}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")
        if self.rope_scaling not in ("", "llama3"):
            raise ValueError(f"model.rope_scaling must be '' or 'llama3', got {self.rope_scaling!r}")
        if self.rope_scaling == "llama3" and (self.rope_original_max_seq_len <= 0 or self.rope_factor <= 0):
            raise ValueError("model.rope_scaling=llama3 needs rope_original_max_seq_len > 0 and rope_factor > 0")
        if self.n_head % self.kv_heads:
            raise ValueError(f"model.n_head={self.n_head} is not divisible by model.n_kv_head={self.kv_heads}")
