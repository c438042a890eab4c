"""``tweetlm eval`` (layer L4): bits-per-byte of any checkpoint on any posts, overall, per source and per
language.

The posts go through the same ingestion pipeline as training (``data.pipeline.build_corpus``: readers,
normalization, language id, filters, PII scrub, de-duplication), into ``<out>/data``; every post kept, from
both splits, is then encoded with the checkpoint's own tokenizer (``<out>/tokens``) and scored by
``eval.bpb.score_docs``. Bits-per-byte does not depend on the tokenizer, so checkpoints with different
vocabularies (an imported base, a continued model, a from-scratch one) compare on the same posts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def _read_posts(data_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """``(texts, sources, langs)`` of every post of both splits of a built corpus."""
    import pyarrow.parquet as pq

    texts, sources, langs = [], [], []
    for split in ("train", "val"):
        path = data_dir / f"{split}.parquet"
        if not path.exists() or pq.read_schema(path).names == ["id"]:
            continue
        cols = [c for c in ("text", "source", "lang") if c in pq.read_schema(path).names]
        t = pq.read_table(path, columns=cols)
        texts += t.column("text").to_pylist()
        sources += t.column("source").to_pylist()
        langs += t.column("lang").to_pylist() if "lang" in cols else [None] * t.num_rows
    return texts, sources, [lang or "und" for lang in langs]


def eval_posts(
    checkpoint: str | Path,
    corpus: list[str],
    out: str | Path,
    data_cfg=None,
    eval_cfg=None,
    progress: bool = True,
) -> dict:
    """Score ``checkpoint`` (a checkpoint folder, or a run folder's latest) on the posts at ``corpus``; write
    ``<out>/eval.json`` and return it: ``{"overall", "per_source", "per_language"}`` entries of ``loss`` (nats
    per predicted token), ``bpb``, ``bpb_se``, ``tokens``, ``bytes``, ``docs``, plus ``records`` (the data
    equation) and ``checkpoint``.

    Raises ``FileNotFoundError`` for a missing checkpoint and ``ValueError`` when no post is left to score.
    """
    import numpy as np

    from tweetlm.common.token_shards import open_shard
    from tweetlm.data.pipeline.build import build_corpus
    from tweetlm.data.pipeline.config import PipelineConfig
    from tweetlm.eval.bpb import EvalConfig, bpb_entry, score_docs, select_docs
    from tweetlm.model.load import load_model, resolve_checkpoint
    from tweetlm.tokenizer.bpe import PostTokenizer
    from tweetlm.tokenizer.encode import encode_split

    t0 = time.perf_counter()
    ckpt = resolve_checkpoint(checkpoint)
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out {out} is a file; give a folder (created if missing)")
    tok = PostTokenizer.load(ckpt / "tokenizer.json")
    out = Path(out)
    data_cfg = data_cfg or PipelineConfig(tasks=1)
    eval_cfg = eval_cfg or EvalConfig()
    report = build_corpus(corpus, out / "data", data_cfg, quiet=True)
    texts, sources, langs = _read_posts(out / "data")
    if not texts:
        raise ValueError(f"no posts left to score in {corpus}: {report['equation'][-1]}")
    enc = encode_split(texts, sources, tok, out / "tokens" / "posts")
    shard = open_shard(out / "tokens" / "posts")
    model = load_model(ckpt)
    doc_ids = select_docs(shard, eval_cfg)
    nats, ntok = score_docs(model, shard, doc_ids, eval_cfg, tok.pad_id, progress)
    nbytes = np.asarray(shard.doc_bytes, dtype=np.int64)[doc_ids]
    src = np.asarray(sources, dtype=object)[doc_ids]
    lang = np.asarray(langs, dtype=object)[doc_ids]

    def grouped(keys: np.ndarray) -> dict:
        return {k: bpb_entry(nats[keys == k], ntok[keys == k], nbytes[keys == k]) for k in sorted(set(keys))}

    res = {
        "checkpoint": str(ckpt),
        "params": model.num_params(),
        "overall": bpb_entry(nats, ntok, nbytes),
        "per_source": grouped(src),
        "per_language": grouped(lang),
        "records": report["equation"],
        "corpus": [str(c) for c in corpus],
        "settings": {
            "sample_docs": eval_cfg.sample_docs,
            "sample_seed": eval_cfg.sample_seed,
            "precision": eval_cfg.precision,
            "max_docs_per_source": eval_cfg.max_docs_per_source,
        },
        "tokens": enc["tokens"],
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(res, indent=1, ensure_ascii=False))
    return res


def summary(res: dict, out: str | Path) -> str:
    """The terminal table: overall, per source and per language bits-per-byte with standard errors."""
    o = res["overall"]
    lines = [
        f"checkpoint {res['checkpoint']} ({res['params']:,} parameters)",
        *res["records"][-1:],
        f"bits-per-byte {o['bpb']:.3f} +/- {o['bpb_se']:.3f} over {o['docs']:,} posts ({o['bytes']:,} bytes, "
        f"{o['tokens']:,} predicted tokens, loss {o['loss']:.3f} nats/token)",
    ]
    for title, key in (("source", "per_source"), ("language", "per_language")):
        lines.append(f"{'per ' + title:<40} {'posts':>7} {'bpb':>7} {'+/-':>6}")
        for k, e in res[key].items():
            se = f"{e['bpb_se']:>6.3f}" if e["docs"] > 1 else f"{'n/a':>6}"  # no spread from one post
            lines.append(f"  {str(k)[:38]:<38} {e['docs']:>7,} {e['bpb']:>7.3f} {se}")
    lines.append(f"wrote {Path(out) / 'eval.json'} in {res['wall_s']:.0f} s")
    return "\n".join(lines)
