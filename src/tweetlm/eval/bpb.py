"""Bits-per-byte on held-out posts (layer L3, eval).

bits-per-byte = (sum over predicted tokens of -ln p(token)) / ln 2 / (UTF-8 bytes of the posts' text).
It is independent of the tokenizer, so models with different vocabularies compare fairly (the measure of
nanochat and of "The Pile", Gao et al. 2020). Each post is scored on its own, starting from ``<|bos|>``, with
no context from other posts; the ``<|eos|>`` prediction is included in the loss (ending the post is part of
modelling it), the special tokens contribute no bytes. A document longer than the model's context is scored in
consecutive windows. Reads token shards through ``common.token_shards`` only.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tweetlm.common.token_shards import TokenShard


@dataclass
class EvalConfig:
    """Attributes:
    batch_size: rows per forward pass.
    max_docs_per_source: evaluate at most this many documents per source (0: all), the first ones in order.
    """

    batch_size: int = 64
    max_docs_per_source: int = 0


def _rows(shard: TokenShard, doc_ids: np.ndarray, window: int):
    """(source index, input ids, target ids) per window of at most ``window`` predictions."""
    for d in doc_ids:
        toks = np.asarray(shard.doc(int(d)), dtype=np.int64)
        for s in range(0, len(toks) - 1, window):
            yield int(shard.doc_source[d]), toks[s : s + window], toks[s + 1 : s + window + 1]


@torch.no_grad()
def evaluate_bpb(
    model: torch.nn.Module, shard: TokenShard, cfg: EvalConfig, pad_id: int, progress: bool = False
) -> dict:
    """Loss and bits-per-byte of ``model`` on ``shard``.

    Returns ``{"overall": {...}, "per_source": {source: {...}}}`` where each entry has ``loss`` (mean nats per
    predicted token), ``bpb``, ``tokens`` (predicted), ``bytes`` and ``docs``. Raises ``ValueError`` for an
    empty shard.
    """
    if shard.num_docs == 0:
        raise ValueError("validation shard has no documents: nothing to evaluate")
    device = next(model.parameters()).device
    window = model.cfg.max_seq_len
    # choose documents (optionally capped per source)
    doc_ids = np.arange(shard.num_docs)
    if cfg.max_docs_per_source > 0:
        keep, count = [], defaultdict(int)
        for d in doc_ids:
            s = shard.doc_source[d]
            if count[s] < cfg.max_docs_per_source:
                keep.append(d)
                count[s] += 1
        doc_ids = np.asarray(keep)
    rows = list(_rows(shard, doc_ids, window))
    rows.sort(key=lambda r: len(r[1]))  # similar lengths batch together: little padding
    nats = defaultdict(float)
    ntok = defaultdict(int)
    was_training = model.training
    model.eval()
    from tqdm import tqdm

    for b in tqdm(range(0, len(rows), cfg.batch_size), disable=not progress, desc="eval", unit="batch"):
        chunk = rows[b : b + cfg.batch_size]
        L = max(len(r[1]) for r in chunk)
        x = torch.full((len(chunk), L), pad_id, dtype=torch.long)
        y = torch.full((len(chunk), L), -100, dtype=torch.long)
        for i, (_, xi, yi) in enumerate(chunk):
            x[i, : len(xi)] = torch.from_numpy(xi)
            y[i, : len(yi)] = torch.from_numpy(yi)
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x)
        loss = F.cross_entropy(
            logits.float().view(-1, logits.size(-1)), y.view(-1), reduction="none", ignore_index=-100
        )
        per_row = loss.view(len(chunk), L).sum(1).cpu().tolist()
        for (src, _, yi), l in zip(chunk, per_row):
            nats[src] += l
            ntok[src] += len(yi)
    model.train(was_training)
    nbytes = defaultdict(int)
    ndocs = defaultdict(int)
    for d in doc_ids:
        nbytes[int(shard.doc_source[d])] += int(shard.doc_bytes[d])
        ndocs[int(shard.doc_source[d])] += 1

    def entry(n, t, by, dc):
        return {"loss": n / max(t, 1), "bpb": n / math.log(2) / max(by, 1), "tokens": t, "bytes": by, "docs": dc}

    per_source = {
        shard.sources[s]: entry(nats[s], ntok[s], nbytes[s], ndocs[s])
        for s in sorted(ndocs, key=lambda s: shard.sources[s])
    }
    overall = entry(sum(nats.values()), sum(ntok.values()), sum(nbytes.values()), sum(ndocs.values()))
    return {"overall": overall, "per_source": per_source}


def group_bpb(per_source: dict, prefix: str) -> dict | None:
    """Pool the per-source entries whose name starts with ``prefix`` (e.g. ``"tweeteval/"``) into one entry;
    ``None`` when none match."""
    items = [v for k, v in per_source.items() if k == prefix.rstrip("/") or k.startswith(prefix)]
    if not items:
        return None
    bpb_nats = sum(v["bpb"] * math.log(2) * v["bytes"] for v in items)
    by = sum(v["bytes"] for v in items)
    t = sum(v["tokens"] for v in items)
    return {
        "loss": sum(v["loss"] * v["tokens"] for v in items) / max(t, 1),
        "bpb": bpb_nats / math.log(2) / max(by, 1),
        "tokens": t,
        "bytes": by,
        "docs": sum(v["docs"] for v in items),
    }
