"""Search-index write latency: what copy-on-write commits (issue 17) cost over writing a segment in place.

For each segment size N (posts in one month's segment), the same change is timed two ways, alternating:

- ``commit``: ``SearchIndex.add`` / ``SearchIndex.delete``: take the write lock, fork the segment (hard links),
  write the change into the fork, fsync it, rename ``index.json``, remove the old folder;
- ``in_place`` (the baseline): ``Segment.add`` / ``Segment.delete`` on an open segment, the primitive the commit
  wraps, with no lock, fork, fsync or commit (what the index did before issue 17, when a crash could corrupt it).

Vectors come from a stand-in embedder (seeded random unit vectors, 384 dimensions): the embedding model is not
what is measured, and writers embed before they take the lock.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_search_writes.py --sizes 2000 20000 --repeats 5

Prints a Markdown table, then one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


class RandomEmbedder:
    """Seeded random unit vectors in the ``Embedder`` interface the index uses."""

    model_id = "random-384"
    dim = 384
    num_computed = 0

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def encode(self, texts, progress=None):
        v = self.rng.standard_normal((len(texts), self.dim)).astype(np.float32)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)

    def encode_query(self, text):
        return self.encode([text])[0].astype(np.float32)


def _posts(start: int, n: int):
    from tweetlm.data.post import Post, Provenance

    words = "rain coffee flight delayed luggage lost weather london paris beach sunny cold snow train late".split()
    rng = np.random.default_rng(start)
    return [
        Post(
            id=str(i),
            text=" ".join(rng.choice(words, 8)) + f" w{i}",
            source="bench",
            provenance=Provenance("bench", i, "bench"),
            created_at=f"2015-02-{1 + i % 28:02d}T10:00:00Z",
        )
        for i in range(start, start + n)
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000], help="posts in the segment")
    ap.add_argument("--add", type=int, default=10, help="posts per add")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from tweetlm.search.index import SearchIndex, dup_key, parse_time

    rows_out = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_search_writes_"))
    try:
        for n in args.sizes:
            emb = RandomEmbedder()
            idx = SearchIndex.create(tmp / f"commit_{n}", embedder=emb)
            idx.add(_posts(0, n))
            raw = SearchIndex.create(tmp / f"inplace_{n}", embedder=emb)
            raw.add(_posts(0, n))
            seg = raw.segments["2015-02"]
            t = {"commit_add": [], "in_place_add": [], "commit_delete": [], "in_place_delete": []}
            next_id = 10 * n
            for r in range(args.repeats):
                new = _posts(next_id, args.add)
                next_id += args.add
                t0 = time.perf_counter()
                idx.add(new)
                t["commit_add"].append(time.perf_counter() - t0)
                cols = {
                    "id": [p.id for p in new],
                    "text": [p.text for p in new],
                    "created_at": [p.created_at for p in new],
                    "ts": [parse_time(p.created_at) for p in new],
                    "author_id": [None] * len(new),
                    "lang": [None] * len(new),
                    "kind": ["post"] * len(new),
                    "retweeted_id": [None] * len(new),
                    "dup_key": [dup_key(p.text) for p in new],
                    "source": ["bench"] * len(new),
                }
                vecs = emb.encode(cols["text"])
                t0 = time.perf_counter()
                seg.add(cols, vecs)
                t["in_place_add"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                idx.delete([str(r)])
                t["commit_delete"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                seg.delete([r])
                t["in_place_delete"].append(time.perf_counter() - t0)
            med = {k: statistics.median(v) * 1000 for k, v in t.items()}
            rows_out.append(
                {
                    "posts": n,
                    **{f"{k}_ms": round(v, 1) for k, v in med.items()},
                    "add_ratio": round(med["commit_add"] / med["in_place_add"], 2),
                    "delete_ratio": round(med["commit_delete"] / med["in_place_delete"], 2),
                }
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"| posts in segment | add {args.add}: commit ms | in place ms | ratio "
        "| delete 1: commit ms | in place ms | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows_out:
        print(
            f"| {r['posts']:,} | {r['commit_add_ms']} | {r['in_place_add_ms']} | {r['add_ratio']}x "
            f"| {r['commit_delete_ms']} | {r['in_place_delete_ms']} | {r['delete_ratio']}x |"
        )
    print(json.dumps({"bench": "search_writes", "repeats": args.repeats, "add": args.add, "rows": rows_out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
