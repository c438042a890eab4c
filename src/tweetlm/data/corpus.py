"""Clean-corpus files (layer L1, data): Parquet shards of Post records (``labels`` as a
JSON string), a manifest of post ids per shard and a
corpus hash, plus the record accounting and the quarantine log.

``write_corpus`` is the only writer and ``read_corpus_texts`` the reader the later stages use.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post


def write_corpus(splits: dict[str, list[Post]], ledger: Ledger, out_dir: str | Path) -> dict:
    """Write ``<split>.parquet`` for each split, ``manifest.json`` (ids per shard, corpus hash),
    ``accounting.json`` and ``quarantine.jsonl``. Returns the manifest.

    The corpus hash is the SHA-256 of every kept ``(split, source, id, text)`` in file order; a checkpoint
    records it so a deletion request can find the checkpoints trained on a post.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    manifest: dict = {"shards": {}}
    for split, posts in splits.items():
        rows = [p.to_dict() for p in posts]
        for r in rows:  # label names differ per corpus: one JSON string column, not a ragged struct
            r["labels"] = json.dumps(r["labels"], ensure_ascii=False)
        for p in posts:
            h.update(f"{split}\x1f{p.source}\x1f{p.id}\x1f{p.text}\x1e".encode())
        table = pa.Table.from_pylist(rows) if rows else pa.table({"id": pa.array([], pa.string())})
        pq.write_table(table, out / f"{split}.parquet")
        manifest["shards"][f"{split}.parquet"] = {"num_posts": len(posts), "ids": [p.id for p in posts]}
    manifest["corpus_hash"] = h.hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "accounting.json").write_text(json.dumps(ledger.to_dict(), indent=1, ensure_ascii=False))
    with open(out / "quarantine.jsonl", "w", encoding="utf-8") as f:
        for q in ledger.quarantine_log:
            f.write(json.dumps(q.__dict__, ensure_ascii=False) + "\n")
    return manifest


def read_corpus_texts(out_dir: str | Path, split: str) -> tuple[list[str], list[str]]:
    """``(texts, sources)`` of one split written by ``write_corpus``."""
    import pyarrow.parquet as pq

    path = Path(out_dir) / f"{split}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"clean corpus split {path} not found (run the data stage first)")
    table = pq.read_table(path, columns=["text", "source"]) if pq.read_schema(path).names != ["id"] else None
    if table is None:
        return [], []
    return table.column("text").to_pylist(), table.column("source").to_pylist()


def read_corpus_posts(out_dir: str | Path, split: str) -> tuple[list[Post], dict[str, list[str]], dict[str, list[str]]]:
    """``(posts, thread_ids, thread_texts)`` of one split written by the pipeline: Post records (labels decoded,
    provenance from the ``prov_*`` columns) and, per thread document id, its members' ids and texts.
    ``FileNotFoundError`` naming the missing split file."""
    import pyarrow.parquet as pq

    from tweetlm.data.post import Provenance

    path = Path(out_dir) / f"{split}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"clean corpus split {path} not found (a folder written by tweetlm data build)")
    names = set(pq.read_schema(path).names)
    if "text" not in names:
        return [], {}, {}
    fields = ("id", "text", "source", "created_at", "author_id", "lang", "kind", "reply_to_id", "conversation_id",
              "quoted_id", "retweeted_id", "hashtags", "mentions", "urls", "truncated")  # fmt: skip
    posts, tids, ttexts = [], {}, {}
    for i, r in enumerate(pq.read_table(path).to_pylist()):
        kw = {k: r[k] for k in fields if k in names and r.get(k) is not None}
        kw["id"] = str(kw["id"])
        prov = Provenance(r.get("prov_file") or str(path), int(r.get("prov_record") or i), r.get("prov_reader") or "")
        labels = json.loads(r["labels"]) if r.get("labels") else {}
        posts.append(Post(**kw, split=split, labels=labels, provenance=prov))
        if r.get("thread_ids"):
            tids[kw["id"]] = list(r["thread_ids"])
            ttexts[kw["id"]] = list(r.get("thread_texts") or [])
    return posts, tids, ttexts
