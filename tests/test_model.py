from __future__ import annotations

import pytest
import torch

from tweetlm.model.config import ModelConfig
from tweetlm.model.flops import matmul_params, train_flops_per_token
from tweetlm.model.gpt import GPT, apply_rope, rope_tables

CFG = ModelConfig(vocab_size=97, n_layer=2, n_embd=64, n_head=4, n_kv_head=2, max_seq_len=64)


def test_forward_shape_and_causality():
    m = GPT.build(CFG, seed=0)
    x = torch.randint(0, 97, (3, 20))
    y = m(x)
    assert y.shape == (3, 20, 97)
    # changing a later token never changes earlier logits
    x2 = x.clone()
    x2[:, 10:] = (x2[:, 10:] + 1) % 97
    assert torch.allclose(m(x2)[:, :10], y[:, :10], atol=1e-6)
    assert not torch.allclose(m(x2)[:, 10:], y[:, 10:])


def test_init_is_deterministic_and_tied():
    a, b = GPT.build(CFG, seed=3), GPT.build(CFG, seed=3)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n
    assert a.lm_head.weight is a.tok_emb.weight
    assert all(not n.endswith("bias") for n, _ in a.named_parameters())
    untied = GPT.build(ModelConfig(**{**CFG.__dict__, "tie_embeddings": False}))
    assert untied.num_params() == a.num_params() + 97 * 64


def test_param_and_flop_count():
    m = GPT.build(CFG)
    # every matmul weight: q,o (64x64), k,v (64x32), SwiGLU 3 x 64x192, head 64x97
    assert matmul_params(CFG) == 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 192) + 64 * 97
    assert m.num_params() == matmul_params(CFG) + 2 * 2 * 64 + 64  # + RMSNorm weights (tied head counted once)
    assert train_flops_per_token(CFG, 64) == 6 * matmul_params(CFG) + 12 * 2 * 64 * 64


def test_rope_is_a_rotation():
    cos, sin = rope_tables(16, 32, 10000.0)
    x = torch.randn(1, 1, 32, 16)
    r = apply_rope(x, cos, sin)
    assert torch.allclose(r.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    assert torch.allclose(r[..., 0, :], x[..., 0, :])  # position 0 is not rotated


def test_bad_config():
    with pytest.raises(ValueError, match="divisible"):
        GPT.build(ModelConfig(vocab_size=10, n_embd=30, n_head=4))
    m = GPT.build(CFG)
    with pytest.raises(ValueError, match="max_seq_len"):
        m(torch.zeros(1, 65, dtype=torch.long))


def test_attention_over_a_kv_cache_equals_full_recompute():
    """Prompt through the cache in two chunks, then one token: the logits equal those of the whole sequence."""
    from tweetlm.inference.kv_cache import SlotKVCache

    m = GPT.build(CFG, seed=1).eval()
    ids = torch.tensor([[1, 5, 7, 9, 2, 3, 4]])
    cache = SlotKVCache(CFG.n_layer, 2, CFG.kv_heads, 16, CFG.head_dim, "cpu")
    with torch.no_grad():
        full = m(ids)
        outs = []
        for start, end in ((0, 4), (4, 7)):
            T = end - start
            q = torch.arange(start, end).view(T, 1)
            mask = torch.zeros(1, 1, T, end).masked_fill(~(torch.arange(end).view(1, end) <= q), float("-inf"))
            pos = torch.arange(start, end).view(1, T)
            outs.append(m(ids[:, start:end], pos, cache.batch_views(torch.tensor([1]), pos, end), mask))
    assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5)
    assert cache.k[:, 0].abs().sum() == 0  # slot 0 untouched
