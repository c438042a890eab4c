"""Bits-per-byte on held-out posts (layer L3, eval).

bits-per-byte = (sum over predicted tokens of -ln p(token)) / ln 2 / (UTF-8 bytes of the posts' text).
It is independent of the tokenizer, so models with different vocabularies compare fairly (the measure of
nanochat and of "The Pile", Gao et al. 2020). Each post is scored on its own, starting from ``<|bos|>``, with
no context from other posts; the ``<|eos|>`` prediction is included in the loss (ending the post is part of
modelling it), the special tokens contribute no bytes. A document longer than the model's context is scored in
consecutive windows. Reads token shards through ``common.token_shards`` only.

A seeded sample of documents (``EvalConfig.sample_docs``) keeps evaluation of a large model affordable; the
standard error of bits-per-byte over the sampled posts is reported with it (``bpb_se``: the ratio estimator's
linearised standard error, Cochran 1977 ch. 6). Two tokenizers encoding the same validation texts in the same
order give shards with the same document indices, so the same sample scores the same posts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tweetlm.common.token_shards import TokenShard
from tweetlm.model.precision import autocast


@dataclass
class EvalConfig:
    """Attributes:
    batch_size: rows per forward pass.
    max_docs_per_source: evaluate at most this many documents per source (0: all), the first ones in order.
    sample_docs: evaluate a uniform random sample of this many documents (0: all), drawn with ``sample_seed``
        after the per-source cap.
    precision: ``"auto"`` (bf16 autocast on CUDA, fp32 on CPU), ``"bf16"`` or ``"fp32"``.
    """

    batch_size: int = 64
    max_docs_per_source: int = 0
    sample_docs: int = 0
    sample_seed: int = 0
    precision: str = "auto"


def select_docs(shard: TokenShard, cfg: EvalConfig) -> np.ndarray:
    """Sorted indices of the documents ``cfg`` selects (per-source cap, then the seeded sample)."""
    doc_ids = np.arange(shard.num_docs)
    if cfg.max_docs_per_source > 0:
        keep, count = [], defaultdict(int)
        for d in doc_ids:
            s = shard.doc_source[d]
            if count[s] < cfg.max_docs_per_source:
                keep.append(d)
                count[s] += 1
        doc_ids = np.asarray(keep, dtype=np.int64)
    if 0 < cfg.sample_docs < len(doc_ids):
        rng = np.random.default_rng(cfg.sample_seed)
        doc_ids = np.sort(rng.choice(doc_ids, size=cfg.sample_docs, replace=False))
    return doc_ids


def bpb_entry(nats: np.ndarray, tokens: np.ndarray, nbytes: np.ndarray) -> dict:
    """Pooled loss and bits-per-byte of documents with per-document ``nats``, predicted ``tokens`` and ``bytes``
    (each ``(n_docs,)``), with ``bpb_se``, the standard error of the bits-per-byte ratio over documents."""
    n, t, b = float(nats.sum()), int(tokens.sum()), int(nbytes.sum())
    bpb = n / math.log(2) / max(b, 1)
    k = len(nats)
    se = 0.0
    if k > 1 and b > 0:
        resid = nats / math.log(2) - bpb * nbytes
        se = float(math.sqrt(k / (k - 1) * float((resid**2).sum())) / b)
    return {"loss": n / max(t, 1), "bpb": bpb, "bpb_se": se, "tokens": t, "bytes": b, "docs": k}


@torch.no_grad()
def score_docs(
    model: torch.nn.Module, shard: TokenShard, doc_ids: np.ndarray, cfg: EvalConfig, pad_id: int, progress=False
) -> tuple[np.ndarray, np.ndarray]:
    """Summed next-token loss in nats and the number of predicted tokens of each document in ``doc_ids``;
    two ``(len(doc_ids),)`` arrays (float64, int64) in the order of ``doc_ids``. On a shard with a loss mask
    (supervised fine-tuning) only the masked-in targets (assistant tokens) are predicted and counted."""
    device = next(model.parameters()).device
    window = model.cfg.max_seq_len
    pos = {int(d): i for i, d in enumerate(doc_ids)}
    rows = [(pos[int(d)], x, y) for d in doc_ids for x, y in _rows(shard, [d], window)]
    rows.sort(key=lambda r: len(r[1]))  # similar lengths batch together: little padding
    nats = np.zeros(len(doc_ids), dtype=np.float64)
    ntok = np.zeros(len(doc_ids), dtype=np.int64)
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
        with autocast(device, cfg.precision):
            logits = model(x)
        loss = F.cross_entropy(
            logits.float().view(-1, logits.size(-1)), y.view(-1), reduction="none", ignore_index=-100
        )
        per_row = loss.view(len(chunk), L).sum(1).cpu().tolist()
        for (i, _, yi), l in zip(chunk, per_row):
            nats[i] += l
            ntok[i] += int((yi != -100).sum())
    model.train(was_training)
    return nats, ntok


def _rows(shard: TokenShard, doc_ids: np.ndarray, window: int):
    """(input ids, target ids) per window of at most ``window`` predictions; targets outside a shard's loss mask
    are -100 (ignored)."""
    for d in doc_ids:
        toks = np.asarray(shard.doc(int(d)), dtype=np.int64)
        targets = toks
        if shard.loss_mask is not None:
            a = shard.offsets[int(d)]
            keep = np.asarray(shard.loss_mask[a : a + len(toks)], dtype=bool)
            targets = np.where(keep, toks, -100)
        for s in range(0, len(toks) - 1, window):
            yield toks[s : s + window], targets[s + 1 : s + window + 1]


def group_mask(shard: TokenShard, doc_ids: np.ndarray, prefix: str) -> np.ndarray:
    """Bool ``(len(doc_ids),)``: documents whose source is ``prefix`` (without its ``/``) or starts with it."""
    src = np.asarray(shard.doc_source)[np.asarray(doc_ids, dtype=np.int64)]
    ok = {i for i, n in enumerate(shard.sources) if n == prefix.rstrip("/") or n.startswith(prefix)}
    return np.asarray([s in ok for s in src.tolist()], dtype=bool)


def evaluate_bpb(
    model: torch.nn.Module,
    shard: TokenShard,
    cfg: EvalConfig,
    pad_id: int,
    progress: bool = False,
    groups: dict[str, str] | None = None,
    doc_ids: np.ndarray | list[int] | None = None,
) -> dict:
    """Loss and bits-per-byte of ``model`` on ``shard``: the documents ``select_docs`` picks, or exactly
    ``doc_ids`` (to score another model on the same posts).

    Returns ``{"overall": {...}, "per_source": {source: {...}}, "doc_ids": [...]}`` plus one entry per name of
    ``groups`` (name -> source prefix, e.g. ``{"tweeteval_val": "tweeteval/"}``) that matches any document.
    Each entry has ``loss`` (mean nats per predicted token), ``bpb``, ``bpb_se``, ``tokens`` (predicted),
    ``bytes`` and ``docs``. Raises ``ValueError`` for an empty shard.
    """
    if shard.num_docs == 0:
        raise ValueError("validation shard has no documents: nothing to evaluate")
    doc_ids = select_docs(shard, cfg) if doc_ids is None else np.asarray(doc_ids, dtype=np.int64)
    nats, ntok = score_docs(model, shard, doc_ids, cfg, pad_id, progress)
    nbytes = np.asarray(shard.doc_bytes, dtype=np.int64)[doc_ids]
    src = np.asarray(shard.doc_source)[doc_ids]
    per_source = {}
    for s in sorted(set(src.tolist()), key=lambda s: shard.sources[s]):
        m = src == s
        per_source[shard.sources[s]] = bpb_entry(nats[m], ntok[m], nbytes[m])
    out = {"overall": bpb_entry(nats, ntok, nbytes), "per_source": per_source}
    for name, prefix in (groups or {}).items():
        m = group_mask(shard, doc_ids, prefix)
        if m.any():
            out[name] = bpb_entry(nats[m], ntok[m], nbytes[m])
    out["doc_ids"] = doc_ids.tolist()
    return out
