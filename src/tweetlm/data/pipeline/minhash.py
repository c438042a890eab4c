"""MinHash signatures for many short posts at once (layer L1, data), identical to datasketch's.

``datasketch.MinHash.update_batch`` makes a Python call per shingle and a chain of numpy calls per post, which
would make signatures one of the slowest steps of the pipeline (``benchmarks/bench_data.py`` measures both).
Here a batch of posts is handled by a few numpy operations: the shingles are character ``n``-grams (posts are too
short for word n-grams), each hashed as a polynomial over its code points (``shingle_hashes``), then
datasketch's ``affine32`` permutations (MurmurHash3 finalizer, then ``a*h + b`` in uint32) and
``np.minimum.reduceat`` per post. The rows are bit-identical to
``MinHash(num_perm, seed, hashfunc=int).update_batch(shingle_hashes(key, n))`` (tested), so they plug into
datasketch's ``MinHashLSH`` as ``LeanMinHash`` objects. Clustering is ``decide.py``'s job.
"""

from __future__ import annotations

import numpy as np

_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
_P = np.uint32(0x01000193)  # the FNV-1 32-bit prime as the polynomial base


def _padded(key: str, n: int) -> str:
    return key if len(key) >= n else key + "\0" * (n - len(key))


def shingle_hashes(key: str, n: int) -> list[int]:
    """The 32-bit hash of every character ``n``-gram of ``key`` (padded with NUL to ``n`` characters):
    ``sum(ord(c_j) * P**(n-1-j)) mod 2**32``. The scalar reference of what ``signatures`` computes."""
    key = _padded(key, n)
    out = []
    for i in range(len(key) - n + 1):
        h = 0
        for ch in key[i : i + n]:
            h = (h * int(_P) + ord(ch)) & 0xFFFFFFFF
        out.append(h)
    return out


def permutations(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's ``(a, b)`` permutation parameters for the ``affine32`` scheme, ``(num_perm,)`` uint32 each."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return np.asarray(a, dtype=np.uint32), np.asarray(b, dtype=np.uint32)


def signatures(keys: list[str], n: int, perms: tuple[np.ndarray, np.ndarray], batch: int = 1024) -> np.ndarray:
    """MinHash signatures of ``keys``: ``(len(keys), num_perm)`` uint32, row ``i`` for ``keys[i]``."""
    a, b = perms
    out = np.empty((len(keys), len(a)), dtype=np.uint32)
    s1, m1, s2, m2, s3 = _FMIX32
    for start in range(0, len(keys), batch):
        chunk = [_padded(k, n) for k in keys[start : start + batch]]
        lengths = np.array([len(k) for k in chunk], dtype=np.int64)
        cp = np.frombuffer("".join(chunk).encode("utf-32-le"), dtype=np.uint32)
        m = len(cp) - n + 1
        h = np.zeros(m, dtype=np.uint32)
        for j in range(n):
            h = h * _P + cp[j : j + m]
        # window starts that stay inside one key: positions [begin, end - n] of each key
        ends = np.cumsum(lengths)
        begins = ends - lengths
        counts = lengths - n + 1
        starts = np.repeat(begins, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
        hv = h[starts]
        hv ^= hv >> s1
        hv *= m1
        hv ^= hv >> s2
        hv *= m2
        hv ^= hv >> s3
        phv = hv[:, None] * a[None, :] + b[None, :]  # (num_shingles, num_perm), uint32 wrap-around = mod 2**32
        offsets = np.cumsum(counts) - counts
        out[start : start + len(chunk)] = np.minimum.reduceat(phv, offsets, axis=0)
    return out
