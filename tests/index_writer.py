"""A search-index writer process for the durability tests (``python tests/index_writer.py ...``).

    python tests/index_writer.py INDEX POSTS.jsonl [--batch N] [--die-at POINT] [--delete ID ...]

Adds the posts of POSTS.jsonl in batches of N (one ``SearchIndex.add`` each) and prints ``ack <first id>`` after
each add returned; with ``--delete`` it deletes those ids instead. ``--die-at`` sends this process SIGKILL at
one point of the first write, a real crash with no cleanup:

- ``segment-written``: the segment's rows, vectors, flags and tantivy files are written, its HNSW graph not;
- ``before-commit``: every file of the change is written and synced, ``index.json`` not renamed;
- ``after-commit``: ``index.json`` renamed, the replaced folders not removed yet;
- ``while-locked``: sleep 3 s holding the write lock (SIGKILL from outside, or a writer that waits for it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("index")
    ap.add_argument("posts", nargs="?")
    ap.add_argument("--batch", type=int, default=10**9)
    ap.add_argument("--die-at", default=None)
    ap.add_argument("--delete", nargs="*", default=None)
    ap.add_argument("--wait", type=float, default=600.0)
    args = ap.parse_args()

    from tweetlm.data.post import Post, Provenance
    from tweetlm.search import index as index_mod
    from tweetlm.search import segment as segment_mod

    def die(*_a, **_k):
        os.kill(os.getpid(), signal.SIGKILL)

    if args.die_at == "segment-written":
        segment_mod.Segment._save_ann = die
    elif args.die_at == "before-commit":
        index_mod._write_atomic = die
    elif args.die_at == "after-commit":
        real = index_mod._write_atomic

        def write_then_arm(path, text):
            out = real(path, text)
            index_mod.shutil.rmtree = die
            return out

        index_mod._write_atomic = write_then_arm
    elif args.die_at == "while-locked":
        real_commit = index_mod.SearchIndex._commit

        def slow_commit(self, ch):
            print("locked", flush=True)
            time.sleep(3)
            real_commit(self, ch)

        index_mod.SearchIndex._commit = slow_commit

    idx = index_mod.SearchIndex.open(args.index, wait_s=args.wait)
    if args.delete is not None:
        missing = idx.delete(args.delete)
        print("ack delete", json.dumps(missing), flush=True)
        return
    rows = [json.loads(line) for line in open(args.posts)]
    posts = [
        Post(
            id=r["id"],
            text=r["text"],
            source="test",
            provenance=Provenance("test", i, "test"),
            created_at=r.get("created_at"),
        )
        for i, r in enumerate(rows)
    ]
    for start in range(0, len(posts), args.batch):
        idx.add(posts[start : start + args.batch])
        print("ack", posts[start].id, flush=True)


if __name__ == "__main__":
    sys.exit(main())
