"""MinHash signatures of posts: datasketch, tweetlm's numpy batches (``data.pipeline.minhash.signatures``) and
rensa (Rust), per post, in one process, alternating; and how close each one's Jaccard estimates come to the true
Jaccard of the posts' character 5-gram sets.

Usage:
    python benchmarks/bench_minhash.py                  # 40,000 TweetEval posts, 3 alternating passes
    python benchmarks/bench_minhash.py --posts 10000 --passes 2

Baseline: datasketch ``MinHash(64).update_batch`` of each post's shingle hashes (the library's documented use).
Candidates: ``signatures`` (what the pipeline runs; bit-identical to the baseline), rensa's bulk
``RMinHash.digest_matrix_from_flat_token_hashes`` over the same shingle hashes (``rensa_flat``: the min-hashing
alone, its digests left inside rensa), the same followed by ``to_rows()`` into a ``(n, 64)`` uint32 array
(``rensa_flat_array``: what the pipeline would need, as the prepared files and the LSH bands hold signatures as
arrays), and ``digest_matrix_from_token_sets`` over Python lists of the 5-gram strings (``rensa_tokens``).
CPU microseconds per post, the fastest pass of each. rensa is optional (``pip install rensa``): without it only
the first two run. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import random
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "corpora" / "tweeteval"


def shingle_hashes_flat(keys: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """``minhash.shingle_hash_rows`` as rensa's flat API takes them: the hashes as uint64 and the row offsets
    ``(len(keys) + 1,)`` uint64."""
    from tweetlm.data.pipeline.minhash import shingle_hash_rows

    hashes, counts = shingle_hash_rows(keys, n)
    return hashes.astype(np.uint64), np.concatenate([[0], np.cumsum(counts)]).astype(np.uint64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=40000, help="posts from TweetEval (emoji, hate, offensive)")
    ap.add_argument("--passes", type=int, default=3, help="alternating passes; the fastest of each is kept")
    ap.add_argument("--pairs", type=int, default=2000, help="post pairs for the Jaccard estimate error")
    args = ap.parse_args()

    from datasketch import MinHash

    from tweetlm.data.pipeline.minhash import permutations, shingle_hashes, signatures
    from tweetlm.data.pipeline.text import dedup_key

    lines: list[str] = []
    for task in ("emoji", "hate", "offensive"):
        lines += (SHARED / task / "train_text.txt").read_text(encoding="utf-8").splitlines()
    keys = [dedup_key(t) for t in lines[: args.posts]]
    n, num_perm = 5, 64
    perms = permutations(num_perm)

    def datasketch_batch():
        out = []
        for k in keys[: len(keys) // 10]:  # a tenth: the library is an order of magnitude slower
            m = MinHash(num_perm=num_perm, hashfunc=int)
            m.update_batch(shingle_hashes(k, n))
            out.append(m.hashvalues)
        return out

    def numpy_batches():
        return signatures(keys, n, perms)

    methods = {"datasketch": datasketch_batch, "tweetlm_numpy": numpy_batches}
    try:
        import rensa
    except ImportError:
        rensa = None
        print("rensa not installed (pip install rensa): measuring datasketch and tweetlm_numpy only")
    if rensa is not None:

        def rensa_flat():
            h, off = shingle_hashes_flat(keys, n)
            return rensa.RMinHash.digest_matrix_from_flat_token_hashes(h, off, num_perm, 1)

        def rensa_flat_array():
            return np.array(rensa_flat().to_rows(), dtype=np.uint32)

        def rensa_tokens():
            sets = [[k[i : i + n] for i in range(max(1, len(k) - n + 1))] for k in keys]
            return rensa.RMinHash.digest_matrix_from_token_sets(sets, num_perm, 1)

        methods |= {"rensa_flat": rensa_flat, "rensa_flat_array": rensa_flat_array, "rensa_tokens": rensa_tokens}

    best: dict[str, float] = {}
    for _ in range(args.passes):
        for name, fn in methods.items():
            t0 = time.process_time()
            fn()
            posts = len(keys) // 10 if name == "datasketch" else len(keys)
            us = (time.process_time() - t0) / posts * 1e6
            best[name] = min(best.get(name, us), us)
    for name, us in best.items():
        print(f"{name:18s} {us:7.2f} CPU us/post  ({best['datasketch'] / us:5.1f}x datasketch)")

    # Jaccard estimates against the true Jaccard of the 5-gram sets, on pairs of a post and an edited copy
    rng = random.Random(0)
    pairs = []
    for k in rng.sample([k for k in keys if len(k) >= 40], args.pairs):
        w = k.split()
        j = rng.randrange(len(w))
        pairs.append((k, " ".join(w[:j] + w[j + 1 :])))
    left, right = [a for a, _ in pairs], [b for _, b in pairs]

    def true_jaccard(a: str, b: str) -> float:
        sa, sb = set(shingle_hashes(a, n)), set(shingle_hashes(b, n))
        return len(sa & sb) / len(sa | sb)

    truth = np.array([true_jaccard(a, b) for a, b in pairs])
    errors, wrong = {}, {}  # mean absolute error; share of pairs decided otherwise than the truth at 0.8

    def score(name: str, est: np.ndarray) -> None:
        errors[name] = float(np.abs(est - truth).mean())
        wrong[name] = float(((est >= 0.8) != (truth >= 0.8)).mean())

    score("tweetlm_numpy", (signatures(left, n, perms) == signatures(right, n, perms)).mean(axis=1))
    if rensa is not None:
        hl, ol = shingle_hashes_flat(left, n)
        hr, orr = shingle_hashes_flat(right, n)
        sl = np.array(rensa.RMinHash.digest_matrix_from_flat_token_hashes(hl, ol, num_perm, 1).to_rows())
        sr = np.array(rensa.RMinHash.digest_matrix_from_flat_token_hashes(hr, orr, num_perm, 1).to_rows())
        score("rensa_flat", (sl == sr).mean(axis=1))
    print(f"{len(pairs)} pairs of a post and its copy less one word (true Jaccard mean {truth.mean():.3f}):")
    for name in errors:
        print(f"  {name}: mean |estimate - truth| {errors[name]:.4f}, decided wrongly at 0.8: {wrong[name]:.3f}")
    print(
        json.dumps(
            {
                "bench": "minhash",
                "posts": len(keys),
                "num_perm": num_perm,
                "shingle": n,
                "passes": args.passes,
                "cpu_us_per_post": {k: round(v, 2) for k, v in best.items()},
                "jaccard_mean_abs_error": {k: round(v, 4) for k, v in errors.items()},
                "wrong_at_threshold_0.8": {k: round(v, 4) for k, v in wrong.items()},
                "true_jaccard_mean": round(float(truth.mean()), 4),
                "rensa": importlib.metadata.version("rensa") if rensa is not None else None,
            }
        )
    )


if __name__ == "__main__":
    main()
