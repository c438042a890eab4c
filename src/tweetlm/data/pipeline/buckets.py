"""MinHash LSH buckets sharded across tasks (layer L1, data): which posts may have a near-duplicate.

Near-duplicate removal (``decide.near_duplicates``) visits posts one by one, but only a post that shares an LSH
band with another post can match or be matched. Finding those posts means grouping every post by each band: the
corpus-sized part of the work. It runs here, in parallel, so that the one-process decide stage visits only the
candidates (13,611 of the 241,092 posts of ../shared/corpora) and keeps only their signatures.

- ``BandHashWriter`` (in each prepare task, ``steps.PrepareWriter``): for every post of at least
  ``near_dedup_min_chars`` characters, the 64-bit hash of each of its ``b`` bands (``minhash.band_hashes``),
  appended as ``(order, hash)`` uint64 pairs to ``<work>/lsh/<band>-<part>/<rank>.u64``, the part being
  ``hash % parts`` with ``parts = ceil(bucket tasks / b)``: a band's hashes split by value, so that every task of
  the next stage has work and reads only its own folders.
- ``LshBuckets`` (stage ``buckets``, ``bucket_tasks``: as many tasks as the prepare stage, at most
  ``MAX_BUCKET_TASKS``): task ``rank`` takes the (band, part) folders ``j % world_size == rank`` in sorted order,
  reads every prepare task's file there, and writes the ``order`` of every post whose hash another post has in
  that (band, part) to ``<work>/lsh/candidates-<rank>.npy``.
- ``decide.py`` reads the union (``candidate_orders``), adds the thread documents it rebuilds (new texts, new
  signatures) and the posts that share one of their new band hashes (``orders_sharing``).

The same rows reach the band tables as when decide hashed every row's bands itself: a post missing from the
candidates shares no band hash with any post of ``near_dedup_min_chars`` or more (the only posts decide visits),
so it could neither match nor be matched (tests/test_pipeline.py). This is the bucket stage of datatrove's
``MinhashDedupBuckets``, over our signatures and banding (see ``decide.py`` for why not datatrove's steps);
clustering stays in decide, which keeps the validation copy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from tweetlm.data.pipeline.config import PipelineConfig
from tweetlm.data.pipeline.minhash import band_hashes, sharing_rows
from tweetlm.data.pipeline.steps import usage_written

LSH_DIR = "lsh"

MAX_BUCKET_TASKS = 64
"""The buckets stage runs ``min(tasks, MAX_BUCKET_TASKS)`` tasks (``bucket_tasks``): each prepare task keeps one
file open per (band, part), ``b * ceil(bucket tasks / b)`` of them, which must stay well under the usual limit of
1,024 open files (1,200 tasks would have needed 1,200)."""


def bucket_tasks(cfg: PipelineConfig) -> int:
    """Tasks of the buckets stage: ``min(cfg.task_count(), MAX_BUCKET_TASKS)``; 1 without ``near_dedup``."""
    return min(cfg.task_count(), MAX_BUCKET_TASKS) if cfg.near_dedup else 1


def _pair_dirs(work_dir: str | Path) -> dict[tuple[int, int], Path]:
    """``{(band, part): <work>/lsh/<band>-<part>}``: one folder per (band, part), a file per prepare task."""
    dirs = {}
    for d in (Path(work_dir) / LSH_DIR).glob("*-*"):
        if d.is_dir():
            band, part = d.name.split("-")
            dirs[(int(band), int(part))] = d
    return dirs


def _read_pairs(files: list[Path]) -> np.ndarray:
    """``(n, 2)`` uint64 ``(order, hash)`` rows of ``files``."""
    parts = [np.fromfile(f, dtype="<u8").reshape(-1, 2) for f in files]
    return np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.uint64)


class BandHashWriter:
    """A prepare task's band hashes, appended to ``<work>/lsh/<band>-<part>/<rank>.u64`` (a context manager: the
    files are written as ``.tmp`` and renamed only when the block ends without an error, so a task that failed
    leaves no file a later stage would read)."""

    def __init__(self, work_dir: str | Path, rank: int, banding: tuple[int, int], tasks: int):
        """``banding``: ``(b, r)`` (``minhash.lsh_banding``); ``tasks``: the buckets stage's (``bucket_tasks``)."""
        self.dir = Path(work_dir) / LSH_DIR
        self.rank = rank
        self.b, self.r = banding
        self.parts = max(1, -(-tasks // self.b))
        self.files: dict[tuple[int, int], object] = {}

    def __enter__(self) -> BandHashWriter:
        for t in range(self.b):
            for k in range(self.parts):
                d = self.dir / f"{t}-{k}"
                d.mkdir(parents=True, exist_ok=True)
                self.files[(t, k)] = open(d / f"{self.rank:05d}.tmp", "wb")
        return self

    def add(self, orders: np.ndarray, sig: np.ndarray) -> None:
        """``orders``: ``(n,)`` int64 input positions; ``sig``: ``(n, num_perm)`` uint32 signatures."""
        if not len(orders):
            return
        hashes = band_hashes(sig, self.b, self.r)
        pairs = np.empty((len(orders), 2), dtype="<u8")
        pairs[:, 0] = orders
        for t in range(self.b):
            pairs[:, 1] = hashes[:, t]
            part = hashes[:, t] % np.uint64(self.parts)
            for k in range(self.parts):
                pairs[part == k].tofile(self.files[(t, k)])

    def __exit__(self, exc_type, exc, tb) -> None:
        for f in self.files.values():
            f.close()
        if exc_type is None:
            for f in self.files.values():
                Path(f.name).replace(Path(f.name).with_suffix(".u64"))


class LshBuckets(PipelineStep):
    """Stage ``buckets``: the posts that share an LSH band hash with another post (module docstring); run with
    ``bucket_tasks(cfg)`` tasks. Writes ``<work>/lsh/candidates-<rank>.npy`` (sorted int64 input positions).

    Raises ``RuntimeError`` when a prepare task's band hashes are missing (a work folder an older tweetlm
    prepared, or files deleted): the candidates would be too few, and near-duplicates silently kept."""

    type = "🫂 - DEDUP"
    name = "MinHash LSH buckets"

    def __init__(self, cfg: PipelineConfig, work_dir: str | Path):
        super().__init__()
        self.cfg = cfg
        self.work_dir = str(work_dir)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.track_time("buckets"), usage_written(self.work_dir, "buckets", rank):
            dirs = _pair_dirs(self.work_dir) if self.cfg.near_dedup else {}
            if self.cfg.near_dedup and not dirs:
                self._missing(Path(self.work_dir) / LSH_DIR, "all")
            want = [f"{r:05d}.u64" for r in range(self.cfg.task_count())]
            found = [np.zeros(0, dtype=np.uint64)]
            for j, pair in enumerate(sorted(dirs)):
                if j % world_size != rank:
                    continue
                files = sorted(dirs[pair].glob("*.u64"))
                if [f.name for f in files] != want:
                    have = {f.name for f in files}
                    self._missing(dirs[pair], [w[:5] for w in want if w not in have] or "unknown")
                pairs = _read_pairs(files)
                self.stat_update("band_hashes", value=len(pairs))
                found.append(pairs[sharing_rows(pairs[:, 1]), 0])
            orders = np.unique(np.concatenate(found)).astype(np.int64)
            # summed over the stage's tasks: a post found in the (band, part)s of two tasks counts twice
            self.stat_update("candidates_per_task", value=len(orders))
            out = Path(self.work_dir) / LSH_DIR / f"candidates-{rank:05d}.npy"
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                np.save(f, orders)
            tmp.replace(out)
        return iter(())

    def _missing(self, where: Path, ranks) -> None:
        raise RuntimeError(
            f"{where}: the LSH band hashes of prepare task(s) {ranks} are missing (a work folder prepared by an "
            f"older tweetlm, or files deleted); delete {self.work_dir} and run the build again"
        )


def candidate_orders(work_dir: str | Path) -> np.ndarray:
    """Sorted int64 input positions of the posts ``LshBuckets`` found sharing a band hash (all its tasks).

    Raises ``FileNotFoundError`` when the stage has not run (no ``candidates-*.npy``)."""
    files = sorted((Path(work_dir) / LSH_DIR).glob("candidates-*.npy"))
    if not files:
        raise FileNotFoundError(f"no {Path(work_dir) / LSH_DIR}/candidates-*.npy: the buckets stage did not run")
    return np.unique(np.concatenate([np.load(f) for f in files])).astype(np.int64)


def orders_sharing(work_dir: str | Path, hashes: np.ndarray) -> np.ndarray:
    """Sorted int64 input positions of the prepared posts whose band ``t`` hash equals a row of ``hashes[:, t]``
    for some band ``t`` (``hashes``: ``(m, b)`` uint64, ``minhash.band_hashes`` of the rows decide rebuilt).
    Reads every band-hash file once: decide calls it only when it rebuilt threads."""
    found = [np.zeros(0, dtype=np.uint64)]
    for (t, _), d in sorted(_pair_dirs(work_dir).items()):
        want = np.unique(hashes[:, t])
        for f in sorted(d.glob("*.u64")):
            pairs = np.fromfile(f, dtype="<u8").reshape(-1, 2)
            found.append(pairs[np.isin(pairs[:, 1], want), 0])
    return np.unique(np.concatenate(found)).astype(np.int64)
