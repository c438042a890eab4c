"""Encode step (layer L1, tokenizer): clean-corpus texts -> token shards, with a lossless round-trip check.

Each post becomes one document ``<|bos|> ids <|eos|>``. Training documents are shuffled with a fixed seed so the
packed stream mixes sources; validation keeps corpus order. Every post is decoded back and compared with its
text: a mismatch is a ``ValueError`` naming the first offending post (byte-level BPE should never produce one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tweetlm.common.token_shards import ShardWriter
from tweetlm.tokenizer.bpe import PostTokenizer


def encode_split(
    texts: list[str], sources: list[str], tok: PostTokenizer, stem: str | Path, shuffle_seed: int | None = None
) -> dict:
    """Write one token shard at ``stem``; returns ``{"docs", "tokens", "bytes"}``."""
    ids = tok.encode_batch(texts)
    decoded = tok.tok.decode_batch(ids, skip_special_tokens=True)
    for i, (t, d) in enumerate(zip(texts, decoded)):
        if t != d:
            raise ValueError(f"tokenizer round trip failed on post {i} from {sources[i]}: {t[:80]!r} != {d[:80]!r}")
    order = np.arange(len(texts))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(texts))
    w = ShardWriter(stem, tok.vocab_size)
    n_tokens = n_bytes = 0
    for i in order:
        doc = [tok.bos_id, *ids[i], tok.eos_id]
        nb = len(texts[i].encode("utf-8"))
        w.add(doc, sources[i], nb)
        n_tokens += len(doc)
        n_bytes += nb
    w.close()
    return {"docs": len(texts), "tokens": n_tokens, "bytes": n_bytes}
