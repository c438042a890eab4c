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


def shingle_hash_rows(keys: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """``shingle_hashes`` of every key at once: ``(hashes, counts)``, the hashes flat in key order (uint32) and
    ``counts[i]`` (int64) of them for ``keys[i]``."""
    chunk = [_padded(k, n) for k in keys]
    lengths = np.fromiter(map(len, chunk), dtype=np.int64, count=len(chunk))
    cp = np.frombuffer("".join(chunk).encode("utf-32-le"), dtype=np.uint32)
    m = len(cp) - n + 1
    h = cp[:m].copy()
    for j in range(1, n):
        h *= _P
        h += cp[j : j + m]
    # the n - 1 windows that start before a key's end and run into the next key are not shingles
    inside = np.ones(m, dtype=bool)
    ends = np.cumsum(lengths)[:-1]
    for j in range(1, n):
        inside[ends - j] = False
    return h[inside], lengths - n + 1


def signatures(keys: list[str], n: int, perms: tuple[np.ndarray, np.ndarray], batch: int = 32) -> np.ndarray:
    """MinHash signatures of ``keys``: ``(len(keys), num_perm)`` uint32, row ``i`` for ``keys[i]``.

    ``batch`` keys at a time keeps their ``(shingles, num_perm)`` hash matrix small (about 0.6 MB for 32 tweets and
    64 permutations). Over 60k shared posts, two passes: 32 keys 6.6-7.7 us a post, 256 keys 8.3-11.2 us, 8 keys
    8.3-8.4 us (Python's share grows); 1,024 took half again as long as 256 (``benchmarks/results/
    data_cpu2_202612.md``)."""
    a, b = perms
    out = np.empty((len(keys), len(a)), dtype=np.uint32)
    s1, m1, s2, m2, s3 = _FMIX32
    for start in range(0, len(keys), batch):
        hv, counts = shingle_hash_rows(keys[start : start + batch], n)
        hv ^= hv >> s1
        hv *= m1
        hv ^= hv >> s2
        hv *= m2
        hv ^= hv >> s3
        phv = np.multiply.outer(hv, a)  # (num_shingles, num_perm), uint32 wrap-around = mod 2**32
        phv += b
        out[start : start + len(counts)] = np.minimum.reduceat(phv, np.cumsum(counts) - counts, axis=0)
    return out


def lsh_banding(threshold: float, num_perm: int) -> tuple[int, int]:
    """datasketch's ``MinHashLSH`` banding for ``threshold`` and ``num_perm``: ``(b, r)``, ``b`` bands of ``r``
    signature slots (the library minimizes its weighted false positive and negative probabilities).

    ``PrepareWriter`` stores it in each prepared file's schema metadata (``BANDING_KEY``), so that ``decide.py``
    can band the signatures without importing datasketch and scipy (0.4 s) where its process has not yet: the
    parent process of a build with 2 or more workers, a Slurm or Ray job (a one-task build has imported them in
    its prepare task already; a rebuilt thread needs ``permutations``, which imports them too)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return int(lsh.b), int(lsh.r)


def band_hashes(sig: np.ndarray, b: int, r: int) -> np.ndarray:
    """A 64-bit hash of each LSH band of each signature: ``(n, b)`` uint64 for ``sig`` ``(n, num_perm)`` uint32,
    band ``t`` being slots ``t*r .. (t+1)*r - 1`` (``lsh_banding``). An FNV-1a-style fold over the band's 32-bit
    slots (xor, then multiply by FNV-1a's 64-bit prime). Equal bands hash equal; two different bands may share a
    hash (rarely), so a hash only says that two rows *may* share a band: ``decide.near_duplicates`` compares the
    bands' slots before it calls two rows candidates."""
    sig = np.asarray(sig, dtype=np.uint32)
    out = np.zeros((len(sig), b), dtype=np.uint64)
    for t in range(b):
        band = sig[:, t * r : (t + 1) * r].astype(np.uint64)
        h = out[:, t]
        for j in range(r):
            h ^= band[:, j]
            h *= np.uint64(0x100000001B3)
    return out


def sharing_rows(hashes: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: which of ``hashes`` (``(n,)`` uint64, one band's ``band_hashes``) another row also has."""
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    return counts[inverse.ravel()] > 1


BANDING_KEY = b"tweetlm.minhash_banding"
"""Schema metadata key of a prepared file: ``json.dumps([b, r, threshold, num_perm])`` (``lsh_banding``)."""
