"""Reranking retrieved posts with a cross-encoder (layer L4, search).

The hybrid retriever (``SearchIndex.search``: BM25 and dense vectors fused by RRF) ranks posts by scores computed
for the query and each post separately. A cross-encoder reads the query and a post together and scores the pair,
which ranks better and costs one transformer pass per candidate, so it only reorders the retriever's top
``top_n``. The model is a sentence-transformers ``CrossEncoder`` folder with one output logit, e.g. the
``reranker/`` that ``tweetlm search train`` writes (``search.tune``); nothing is downloaded
(``HF_HUB_OFFLINE=1``).

Set ``index.reranker = Reranker(path, top_n=20)`` on a ``SearchIndex``: its ``search`` (so ``tweetlm search query``,
``ask``, grounded chat and the server alike) then retrieves ``max(top_n, k)`` hits, reorders the first ``top_n`` and
returns ``k``; hits past ``top_n`` keep their retrieval order after the reranked ones. ``SearchParams(rerank=False)``
skips it per query.

The order is an interpolation of the two stages, as in BERT reranking of tweets (Yang, Zhang and Lin, "Simple
Applications of BERT for Ad Hoc Document Retrieval", 2019): ``weight * z(cross-encoder logit) + (1 - weight) *
z(retrieval score)``, each z-scored over the ``top_n`` candidates (``weight=1``: the cross-encoder alone). The
1-layer cross-encoder ``search train`` makes by default ranks the top 20 worse alone than the retriever does
(MRR@10 0.3328 against 0.5833 on held-out TweetQA questions) but the two together rank far better (0.6562 at
``weight=0.6``, the default, chosen on each half of the questions; benchmarks/results/search_quality_cpu2_202612.md).
``Hit.rerank_score`` is the logit; the retriever's ``score`` is kept.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tweetlm.search.index import Hit

DEFAULT_TOP_N = 20
"""Candidates reranked per query (chosen in benchmarks/results/search_quality_cpu2_202612.md)."""
DEFAULT_WEIGHT = 0.6
"""The cross-encoder's share of the reranked order (chosen in benchmarks/results/search_quality_cpu2_202612.md)."""


BACKENDS = ("onnx-int8", "onnx", "torch")
"""How a ``Reranker`` runs its cross-encoder: ONNX Runtime with int8 weights (dynamic, per channel), ONNX Runtime
in fp32 (the same scores as torch), or sentence-transformers' ``CrossEncoder.predict`` in torch (any device)."""
ONNX_BATCH = 2
"""Pairs per ONNX Runtime call, sorted by length: short batches of like lengths pad far less than one batch of all
candidates padded to the longest (2 measured fastest of 2/4/8/20, 20 candidates at one thread)."""
DEFAULT_BACKEND = "onnx-int8"
"""Chosen in benchmarks/results/search_quality_cpu2_202612.md: the fastest, same ranking quality."""


@lru_cache(maxsize=2)
def _load(path: str, max_length: int, device: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import CrossEncoder

    return CrossEncoder(path, max_length=max_length, device=device)


@lru_cache(maxsize=4)
def _onnx(path: str, max_length: int, int8: bool):
    """``(tokenizer, session, input names)``: the cross-encoder exported once per content id (``embed.
    model_identity``) into ``embed.query_encoder_dir`` (int8: quantized there too)."""
    from tweetlm.search.embed import export_onnx, model_identity, onnx_session, query_encoder_dir

    model = _load(path, max_length, "cpu")
    tok = model.tokenizer

    def export(out: Path) -> None:  # a padded batch of two, so the attention mask is part of the traced graph
        sample = tok(["an example question", "a question"], ["an example post, long enough", "short"],
                     padding=True, return_tensors="pt")  # fmt: skip
        export_onnx(model.model, sample, "logits", out, path, 'reranker backend "torch"')

    folder = query_encoder_dir("reranker-" + model_identity(path, max_length))
    sess = onnx_session(folder, int8, export, "reranker backend 'onnx'", 'reranker backend "torch"')
    return tok, sess, [i.name for i in sess.get_inputs()]


class Reranker:
    """A cross-encoder over ``(query, post text)`` pairs, loaded on first use.

    Args:
        path: a sentence-transformers CrossEncoder folder with one output (``config.json`` with
            ``num_labels: 1``). ``ValueError`` when it is not one.
        max_length: tokens of query and post together (longer pairs are cut; ``search train`` trains at 128).
        batch_size: pairs per forward pass.
        device: ``"cpu"`` or ``"cuda"``.
        top_n: candidates a ``SearchIndex`` with this reranker reorders per query (1..100).
        weight: the cross-encoder's share of the order, 0..1 (see the module docstring).
        backend: one of ``BACKENDS`` (``onnx*``: CPU only; the export runs on first use, once per model: 1.5-13 s
            measured here).
    """

    def __init__(self, path: str | Path, max_length: int = 128, batch_size: int = 32, device: str = "cpu",
                 top_n: int = DEFAULT_TOP_N, weight: float = DEFAULT_WEIGHT,
                 backend: str = DEFAULT_BACKEND) -> None:  # fmt: skip
        if not 1 <= top_n <= 100:  # index.MAX_K
            raise ValueError(f"--rerank-top must be in 1..100, got {top_n}")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"--rerank-weight must be in 0..1, got {weight}")
        if backend not in BACKENDS:
            raise ValueError(f"--reranker-backend must be one of {BACKENDS}, got {backend!r}")
        if backend != "torch" and device != "cpu":
            raise ValueError(f"--reranker-backend {backend} runs on the CPU; use torch on {device!r}")
        self.top_n = top_n
        self.weight = weight
        self.backend = backend
        self.path = Path(path)
        if not (self.path / "config.json").exists():
            raise ValueError(f"reranker {str(path)!r} is not a cross-encoder folder (no config.json): give the "
                             "reranker/ folder written by tweetlm search train")  # fmt: skip
        import json

        arch = json.loads((self.path / "config.json").read_text()).get("architectures") or []
        if not any(a.endswith("ForSequenceClassification") for a in arch):
            raise ValueError(f"reranker {str(path)!r} is not a cross-encoder (its model is {arch or 'unnamed'}, not a "
                             "...ForSequenceClassification): an embedding model (e.g. retriever/) cannot rerank; "
                             "give the reranker/ folder written by tweetlm search train")  # fmt: skip
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device

    @property
    def model(self):
        return _load(str(self.path.resolve()), self.max_length, self.device)

    def scores(self, query: str, texts: list[str]) -> np.ndarray:
        """``(len(texts),)`` float32 logits, higher is more relevant."""
        if not texts:
            return np.zeros(0, np.float32)
        if self.backend != "torch":
            tok, sess, names = _onnx(str(self.path.resolve()), self.max_length, self.backend == "onnx-int8")
            lengths = tok([query] * len(texts), texts, truncation=True, max_length=self.max_length)["input_ids"]
            order = sorted(range(len(texts)), key=lambda i: len(lengths[i]))  # like lengths together: little padding
            out = np.zeros(len(texts), np.float32)
            for i in range(0, len(order), ONNX_BATCH):
                rows = order[i : i + ONNX_BATCH]
                enc = tok([query] * len(rows), [texts[r] for r in rows], padding=True, truncation=True,
                          max_length=self.max_length, return_tensors="np")  # fmt: skip
                out[rows] = sess.run(None, {n: enc[n].astype(np.int64) for n in names})[0].reshape(-1)
            return out
        import torch

        s = self.model.predict(  # activation_fn=None would mean the model's default (a sigmoid): logits asked for
            [(query, t) for t in texts],
            batch_size=self.batch_size,
            show_progress_bar=False,
            activation_fn=torch.nn.Identity(),
        )
        return np.asarray(s, dtype=np.float32).reshape(-1)

    def rerank(self, query: str, hits: list[Hit], top_n: int = DEFAULT_TOP_N) -> list[Hit]:
        """``hits`` with the first ``top_n`` reordered by ``interpolate`` of their retrieval scores and the
        cross-encoder's logits (best first; ties keep retrieval order), each given ``rerank_score`` (the logit);
        the rest follow unchanged."""
        head, tail = hits[:top_n], hits[top_n:]
        s = self.scores(query, [h.text for h in head])
        combined = interpolate([h.score for h in head], s, self.weight)
        order = sorted(range(len(head)), key=lambda i: (-float(combined[i]), i))
        for i in order:
            head[i].rerank_score = float(s[i])
        return [head[i] for i in order] + tail


LOGIT_SPREAD_FLOOR = 1.0
"""The least a cross-encoder's logits are divided by when standardized (``interpolate``): a reranker that barely
separates the candidates (an untrained one: spread ~0.005) gets little say instead of its noise being blown up to
the weight of a trained one. The 1-layer reranker of search_quality_cpu2_202612.md spreads its top-20 logits by
1.08 (10th percentile) to 2.36 (90th); with this floor its MRR@10 there is 0.6582 against 0.6568 without."""


def interpolate(
    retrieval: list[float] | np.ndarray, rerank: np.ndarray, weight: float, floor: float = LOGIT_SPREAD_FLOOR
) -> np.ndarray:
    """``weight * z(rerank) + (1 - weight) * z(retrieval)`` (``(n,)`` float64), z-scores over the ``n``
    candidates (all-equal scores give 0); the reranker's standard deviation is taken as at least ``floor``
    (default ``LOGIT_SPREAD_FLOOR``, for cross-encoder logits; 0: plain z-scores)."""

    def z(a, min_sd: float = 0.0) -> np.ndarray:
        a = np.asarray(a, np.float64)
        sd = max(float(a.std()) if len(a) else 0.0, min_sd)
        return (a - a.mean()) / sd if sd > 0 else np.zeros_like(a)

    return weight * z(rerank, floor) + (1.0 - weight) * z(retrieval)
