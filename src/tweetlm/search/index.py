"""The search index (layer L4, search): time-partitioned segments, hybrid retrieval, fusion and ranking.

Layout of an index folder::

    index.json          model and its content id (``embed.model_identity``), vector size, granularity, segments
    embed_cache/        text -> vector cache (``embed.Embedder``), kept across rebuilds
    segments/<window>/  one ``segment.Segment`` per time window (``2015-02`` by month) plus ``undated``

A post goes to the segment of its ``created_at`` window. Old windows can be dropped (``drop_before``) or served
apart (``SearchIndex.open(dir, segments=[...])``), and a query skips segments outside its time range.

A query (``search``) runs, in every segment it may touch, BM25 (tantivy) and dense retrieval (usearch HNSW,
exact when filters leave few rows) for ``num_candidates`` each, merges each list across segments, then fuses:

- ``fusion="linear"`` (default): a convex combination of the two lists' scores, each standardized over its own
  list (z-scores of BM25 scores and of cosines), ``score = w * z_bm25 + (1 - w) * z_dense`` with
  ``w = bm25_weight`` (0.5); a post missing from one list takes that list's lowest z-score (it scored below
  everything retrieved there). Score fusion beats rank fusion when the scores are informative (Bruch, Gai and
  Ingber, "An Analysis of Fusion Functions for Hybrid Retrieval", TOIS 2023; Elasticsearch's ``linear``
  retriever): on held-out TweetQA questions MRR@10 0.583 against RRF's 0.536
  (benchmarks/results/search_quality_cpu2_202612.md);
- ``fusion="rrf"``: reciprocal rank fusion, ``score = sum_i 1 / (rrf_k + rank_i)`` over the two lists (ranks
  from 1; Cormack, Clarke and Buettcher, SIGIR 2009; ``rrf_k=60`` as in the paper);
- recency: with ``half_life_s`` set, a dated post's score is multiplied by ``0.5 ** (age / half_life_s)``, age
  taken at the query time ``as_of`` (undated posts are not decayed); a linear fusion's score, a sum of z-scores
  that may be negative, is treated as a logarithm: it loses ``ln 2`` per half-life (its exponential is halved);
- query time: no post created after ``as_of`` (default: now) is ever returned; with an explicit ``as_of``,
  ``since`` or ``until``, undated posts are left out too (their time is unknown);
- filters on time range, language, author and kind are applied inside both engines and checked against the
  segment's metadata;
- duplicate collapse: a retweet and its original, two retweets of one post, and posts whose text is the same
  once ``RT @user:``, mentions, links, case and punctuation are removed, share a key; only the best-ranked post
  of a key takes a result slot.

Vectors of two models never meet in one index: opening it with an embedder whose ``model_id`` differs from the
one in ``index.json`` is a ``ModelMismatch`` (a ``ValueError``) before anything is read or written. An index
written with the id of earlier versions (``embed.legacy_model_id``) is accepted when that formula matches the
model and gets the content id with its next ``add``.
"""

from __future__ import annotations

import copy
import hashlib
import heapq
import json
import math
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from functools import lru_cache
from operator import itemgetter
from pathlib import Path

import numpy as np

from tweetlm.data.post import POST_KINDS, Post
from tweetlm.search.analyze import tokenize
from tweetlm.search.embed import DEFAULT_MODEL, Embedder
from tweetlm.search.segment import UNDATED, Filters, Segment, bm25_idf, exact_cosine, lexical_query

GRANULARITIES = ("year", "month", "day")
MAX_K = 100
"""Largest ``k`` a query may ask for."""
PACK_ROWS = 4096
"""Segments of at most this many rows are searched densely as one matrix (``SearchIndex._search_small``); larger
ones alone (their own search costs far more than a call's fixed cost)."""
FUSIONS = ("linear", "rrf")
"""How ``hybrid`` fuses BM25 and dense lists (``SearchParams.fusion``)."""

_RT_PREFIX = re.compile(r"^\s*rt\s+@\w+:?\s*", re.IGNORECASE)
_STRIP = re.compile(r"https?://\S+|www\.\S+|@\w+|[^\w]+")


def parse_time(value: str | int | float | datetime | None, name: str = "time") -> int | None:
    """Unix seconds (UTC) of an ISO 8601 date or time (``2015-02-24``, ``2015-02-24T19:35:00Z``, with an offset or
    naive = UTC), a ``datetime``, or a number of seconds. ``None`` stays ``None``. Raises ``ValueError`` naming
    ``name`` for anything else."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected an ISO 8601 date or time, got {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, datetime):
        dt = value
    else:
        s = str(value).strip()
        try:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{name}: {value!r} is not an ISO 8601 date or time (e.g. 2015-02-24 or 2015-02-24T19:35:00Z)"
            ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())


def window_of(ts: int, granularity: str) -> str:
    """The segment name of a post created at ``ts`` (Unix seconds): ``2015``, ``2015-02`` or ``2015-02-24``."""
    if ts == UNDATED:
        return "undated"
    fmt = {"year": "%Y", "month": "%Y-%m", "day": "%Y-%m-%d"}[granularity]
    return datetime.fromtimestamp(ts, timezone.utc).strftime(fmt)


@lru_cache(maxsize=65536)
def window_bounds(name: str) -> tuple[int, int] | None:
    """``[start, end)`` Unix seconds of a segment name, ``None`` for ``undated``."""
    if name == "undated":
        return None
    parts = [int(x) for x in name.split("-")]
    y, m, d = (parts + [1, 1])[:3]
    start = datetime(y, m, d, tzinfo=timezone.utc)
    if len(parts) == 1:
        end = datetime(y + 1, 1, 1, tzinfo=timezone.utc)
    elif len(parts) == 2:
        end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=timezone.utc)
    else:
        end = datetime.fromtimestamp(start.timestamp() + 86400, timezone.utc)
    return int(start.timestamp()), int(end.timestamp())


def dup_key(text: str) -> str:
    """Near-duplicate key of a post: SHA-1 of its text without ``RT @user:``, links, mentions, case and
    punctuation (empty when nothing is left)."""
    core = _STRIP.sub(" ", _RT_PREFIX.sub("", text)).casefold().split()
    return hashlib.sha1(" ".join(core).encode()).hexdigest()[:16] if core else ""


@dataclass
class SearchParams:
    """One query's settings.

    Attributes:
        k: results wanted, 1..``MAX_K``.
        since, until: inclusive bounds on ``created_at`` (ISO 8601 or Unix seconds); a date alone as ``until``
            means the end of that day.
        as_of: query time; nothing created after it is returned (default: now).
        langs, authors, kinds: allowed values (empty: any).
        half_life_s: recency half-life in seconds (``None``: no decay).
        mode: ``hybrid`` (both, fused), ``bm25`` or ``dense``.
        fusion: how ``hybrid`` fuses the two lists: ``linear`` (z-scored scores, weighted) or ``rrf``.
        bm25_weight: BM25's weight in a ``linear`` fusion, 0..1 (dense gets the rest).
        global_idf: BM25 with the document frequencies of all the index's segments (else each segment's own, as
            Elasticsearch's default ``query_then_fetch`` uses each shard's; on held-out TweetQA questions MRR@10
            0.5019 global against 0.5049 per segment, at ~0.6 ms more per query: off by default).
        rrf_k: the RRF constant.
        num_candidates: results taken from each retriever before fusion.
        collapse: one slot per duplicate key.
        exact_dense: exact dense search instead of HNSW (for measuring ANN recall).
        rerank: reorder the top hits with the index's ``reranker`` when it has one.
        exact_below: a segment where at most this many rows pass the filters is searched exactly (HNSW's
            recall is not worth its approximation there); 0 forces HNSW.
    """

    k: int = 10
    since: str | int | None = None
    until: str | int | None = None
    as_of: str | int | None = None
    langs: list[str] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    half_life_s: float | None = None
    mode: str = "hybrid"
    fusion: str = "linear"
    bm25_weight: float = 0.5
    global_idf: bool = False
    rrf_k: float = 60.0
    num_candidates: int = 100
    collapse: bool = True
    exact_dense: bool = False
    exact_below: int = 20_000
    rerank: bool = True

    def resolve(self) -> tuple[Filters, int]:
        """The segment ``Filters`` and the query time; raises ``ValueError`` naming the bad field."""
        if not 1 <= self.k <= MAX_K:
            raise ValueError(f"k must be between 1 and {MAX_K}, got {self.k}")
        if self.mode not in ("hybrid", "bm25", "dense"):
            raise ValueError(f"mode must be hybrid, bm25 or dense, got {self.mode!r}")
        if self.half_life_s is not None and self.half_life_s <= 0:
            raise ValueError(f"half_life must be > 0, got {self.half_life_s}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if not 0.0 <= self.bm25_weight <= 1.0:
            raise ValueError(f"bm25_weight (--bm25-weight) must be between 0 and 1, got {self.bm25_weight}")
        if self.rrf_k < 0:
            raise ValueError(f"rrf_k must be >= 0, got {self.rrf_k}")
        bad = [k for k in self.kinds if k not in POST_KINDS]
        if bad:
            raise ValueError(f"kind must be one of {POST_KINDS}, got {bad[0]!r}")
        lo = parse_time(self.since, "since")
        hi = parse_time(self.until, "until")
        if hi is not None and isinstance(self.until, str) and len(self.until.strip()) == 10:
            hi += 86399  # a date alone: the whole day
        explicit_as_of = parse_time(self.as_of, "as_of")
        as_of = explicit_as_of if explicit_as_of is not None else int(time.time())
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"since ({self.since}) is after until ({self.until})")
        f = Filters(
            lo=lo,
            hi=as_of if hi is None else min(hi, as_of),
            dated_only=lo is not None or hi is not None or explicit_as_of is not None,
            langs=frozenset(self.langs) if self.langs else None,
            authors=frozenset(self.authors) if self.authors else None,
            kinds=frozenset(self.kinds) if self.kinds else None,
        )
        return f, as_of


@dataclass
class Hit:
    """One result. ``score`` is the fused score (after recency); ``bm25_rank``/``dense_rank`` are 1-based ranks
    in each retriever's merged list (``None``: not retrieved by it); ``collapsed``: lower-ranked candidates of
    the same post (retweets of it, the original, near-duplicates) hidden behind this one; ``matched_terms``:
    the query's analyzed terms (``analyze.tokenize``) found in the text, for highlighting; ``rerank_score``: the
    cross-encoder's logit when the hit was reranked (``search.rerank``)."""

    id: str
    text: str
    score: float
    created_at: str | None
    author_id: str | None
    lang: str | None
    kind: str
    source: str
    segment: str
    bm25_rank: int | None = None
    dense_rank: int | None = None
    bm25: float | None = None
    cosine: float | None = None
    collapsed: int = 0
    matched_terms: list[str] = field(default_factory=list)
    rerank_score: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class IndexBusy(TimeoutError):
    """Another process held the index's write lock for longer than the caller would wait."""


LOCK_FILE = "write.lock"
"""The file writers lock (``fcntl`` through ``filelock``; the kernel releases it when its process dies)."""


@dataclass
class _Change:
    """One write in progress: copies of the index's state that become the index's state at commit."""

    meta: dict
    segments: dict[str, Segment]
    where: dict[str, tuple[str, int]]
    forked: dict[str, Segment] = field(default_factory=dict)
    old_dirs: list[Path] = field(default_factory=list)


class SearchIndex:
    """A folder of time-window segments; see the module docstring.

    Concurrency and crashes: any number of processes may read an index while one writes it. A write (``add``,
    ``delete``, ``drop_before``, ``create(overwrite=True)``) takes ``write.lock`` in the index folder, waiting at
    most ``wait_s`` seconds (``IndexBusy`` after that, before anything was written), loads what other writers
    committed, writes the segments it changes as new copy-on-write generations (``segment.Segment.fork``) and
    commits by renaming a new ``index.json`` over the old one (fsynced first); only then are the replaced
    folders removed. A process killed before the rename leaves the index as it was (the next writer removes the
    unnamed folders); killed after it, the change is complete. Readers (``search``, ``get``, ``info``) load
    every commit before answering (one read of ``index.json`` when nothing changed), so a deleted post is gone
    from the next query.

    Example:
        >>> idx = SearchIndex.create("runs/demo/search")
        >>> idx.add(posts)
        >>> idx.search("rain in london", SearchParams(k=5, since="2015-02-01", langs=["en"]))
    """

    def __init__(
        self,
        root: Path,
        meta: dict,
        embedder: Embedder | None = None,
        only: Iterable[str] | None = None,
        wait_s: float = 600.0,
        query_encoder: str | None = None,
    ) -> None:
        self.root = root
        self.meta = meta
        self.granularity = meta["granularity"]
        self.dim = int(meta["dim"])
        self._embedder = embedder
        self._query_encoder = query_encoder
        self.segments: dict[str, Segment] = {}
        self._where: dict[str, tuple[str, int]] = {}
        self._only = None if only is None else set(only)
        self.wait_s = wait_s
        self._seen: bytes | None = None
        self._state_lock = threading.RLock()
        self._reset: dict | None = None  # create(overwrite=True) over a live index: the meta the next add commits
        self._packed: tuple | None = None  # (segments, their vectors concatenated, row offsets): _search_small
        self.reranker = None
        """A ``search.rerank.Reranker`` (or anything with ``top_n`` and ``rerank(query, hits, top_n)``): when set,
        ``search`` reorders its top ``top_n`` hits with it (``SearchParams.rerank`` turns it off per query)."""

    # --- life cycle --------------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: str | Path,
        model: str | Path = DEFAULT_MODEL,
        granularity: str = "month",
        overwrite: bool = False,
        embedder: Embedder | None = None,
        wait_s: float = 600.0,
    ) -> SearchIndex:
        """A new empty index at ``root``. ``overwrite`` replaces an existing index (its embedding cache is
        kept): nothing of the old one changes until the first ``add`` commits the new posts in its place, so a
        server keeps answering from the old index meanwhile and a build killed before then leaves it whole.
        Without ``overwrite`` an existing index that holds posts is a ``FileExistsError`` (an empty one, left by
        a build killed before its first commit, is built over). Takes the write lock (``IndexBusy`` after
        ``wait_s`` seconds)."""
        root = Path(root)
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")

        def holds_posts() -> bool:
            try:
                return bool(json.loads((root / "index.json").read_text()).get("segments"))
            except FileNotFoundError:
                return False

        if holds_posts() and not overwrite:
            raise FileExistsError(f"{root} already holds a search index (use overwrite / --overwrite)")
        emb = embedder or Embedder(model, cache_dir=root / "embed_cache")
        model = emb.model_name if embedder is not None else model
        meta = {
            "version": 1,
            "generation": 0,
            "model": str(model),
            "model_id": emb.model_id,
            "dim": emb.dim,
            "granularity": granularity,
            "tokenizer": "tweetlm.search.analyze/1",
            "segments": {},
        }
        root.mkdir(parents=True, exist_ok=True)
        idx = cls(root, meta, emb, wait_s=wait_s)
        with idx._locked():
            if holds_posts():
                if not overwrite:
                    raise FileExistsError(f"{root} already holds a search index (use overwrite / --overwrite)")
                idx._reset = copy.deepcopy(meta)  # the first add replaces the committed index in one commit
                return idx
            if (root / "index.json").exists():
                meta["generation"] = json.loads((root / "index.json").read_text()).get("generation", 0) + 1
            idx._seen = _write_atomic(root / "index.json", json.dumps(meta, indent=1))
            idx._remove_uncommitted()
        return idx

    @classmethod
    def open(
        cls,
        root: str | Path,
        segments: Iterable[str] | None = None,
        embedder: Embedder | None = None,
        wait_s: float = 600.0,
        query_encoder: str | None = None,
    ) -> SearchIndex:
        """Load the index at ``root`` (only the named ``segments`` when given, to serve windows apart; such an
        index is read-only). ``wait_s``: how long a write waits for another writer's lock. ``embedder``: the
        one to add and query with (default: one of the index's model, made on first use, with ``query_encoder``,
        see ``embed.QUERY_ENCODERS``). Raises ``FileNotFoundError`` when ``root`` holds no index, ``ValueError``
        for an unknown segment, ``ModelMismatch`` when ``embedder``'s model is not the index's."""
        root = Path(root)
        mf = root / "index.json"
        if not mf.exists():
            raise FileNotFoundError(f"no search index at {root} (build one with 'tweetlm search build')")
        meta = json.loads(mf.read_text())
        if segments is not None:
            for name in segments:
                if name not in meta["segments"]:
                    raise ValueError(f"{root}: no segment {name!r}; segments: {sorted(meta['segments'])}")
        if embedder is not None:
            check_model(root, meta, embedder)
        idx = cls(root, meta, embedder, only=segments, wait_s=wait_s, query_encoder=query_encoder)
        idx.refresh()
        return idx

    @property
    def embedder(self) -> Embedder:
        """The index's embedder, made on first use from ``index.json``'s model (``ModelMismatch`` when that
        folder's content changed since the index was built)."""
        if self._embedder is None:
            kw = {"query_encoder": self._query_encoder} if self._query_encoder else {}
            emb = Embedder(self.meta["model"], cache_dir=self.root / "embed_cache", **kw)
            check_model(self.root, self.meta, emb)
            self._embedder = emb
        return self._embedder

    def refresh(self) -> bool:
        """Load what writers committed since this object last looked; returns whether anything changed.
        Segments whose folder did not change are kept as loaded. Raises ``FileNotFoundError`` when the index
        is gone."""
        with self._state_lock:
            for _ in range(50):
                try:
                    raw = (self.root / "index.json").read_bytes()
                except FileNotFoundError:
                    raise FileNotFoundError(f"no search index at {self.root} any more") from None
                if raw == self._seen:
                    return False
                meta = json.loads(raw)
                try:
                    self._load(meta)
                except (OSError, ValueError):  # ValueError: tantivy's own "file does not exist"
                    if (self.root / "index.json").read_bytes() != raw:
                        continue  # a writer committed again and removed a folder being loaded: load the newer
                    raise
                self._seen = raw
                return True
            raise RuntimeError(f"{self.root} changed 50 times while being loaded")

    def _load(self, meta: dict) -> None:
        names = [n for n in meta["segments"] if self._only is None or n in self._only]
        segments = {}
        for name in names:
            path = self.root / "segments" / meta["segments"][name].get("dir", name)
            old = self.segments.get(name)
            segments[name] = old if old is not None and old.path == path else Segment.open(path, self.dim, name)
        where = {}
        for name, seg in segments.items():
            for r in np.flatnonzero(~seg.deleted):
                where[seg.ids[r]] = (name, int(r))
        self.meta, self.segments, self._where = meta, segments, where

    @contextmanager
    def _locked(self):
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.root / LOCK_FILE))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            print(
                f"{self.root}: another process is writing the index; waiting up to {self.wait_s:g} s", file=sys.stderr
            )
            try:
                lock.acquire(timeout=self.wait_s)
            except Timeout:
                raise IndexBusy(
                    f"{self.root}: another process held {self.root / LOCK_FILE} for over {self.wait_s:g} s; nothing "
                    "was written. Try again when it has finished, or wait longer (--wait SECONDS)"
                ) from None
        try:
            with self._state_lock:
                yield
        finally:
            lock.release()

    @contextmanager
    def _change(self):
        """The write lock, the committed state loaded, and a ``_Change`` committed when the block ends (its new
        folders removed instead when the block raises)."""
        if self._only is not None:
            raise ValueError(
                f"{self.root} was opened with some segments only ({sorted(self._only)}); open the "
                "whole index to change it"
            )
        with self._locked():
            if self._reset is not None:  # replace the whole committed index in this commit (its segments unread)
                self.meta = json.loads((self.root / "index.json").read_text())
                self._remove_uncommitted()
                gen = self.meta.get("generation", 0)
                ch = _Change(meta={**copy.deepcopy(self._reset), "generation": gen}, segments={}, where={})
                ch.old_dirs += [self.root / "segments" / i.get("dir", n) for n, i in self.meta["segments"].items()]
            else:
                self.refresh()
                self._remove_uncommitted()
                ch = _Change(meta=copy.deepcopy(self.meta), segments=dict(self.segments), where=dict(self._where))
            if self._embedder is not None and ch.meta.get("model_id") != self._embedder.model_id:
                check_model(self.root, ch.meta, self._embedder)  # a legacy id: written as the content id
                ch.meta["model_id"] = self._embedder.model_id
            try:
                yield ch
                self._commit(ch)
            except BaseException:
                for seg in ch.forked.values():
                    shutil.rmtree(seg.path, ignore_errors=True)
                raise

    def _remove_uncommitted(self) -> None:
        """Remove segment folders no commit names: left by a writer killed before its commit, or replaced
        folders a killed writer had not removed yet. Only under the write lock."""
        named = {info.get("dir", name) for name, info in self.meta["segments"].items()}
        d = self.root / "segments"
        for entry in d.iterdir() if d.is_dir() else []:
            if entry.name not in named:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        for tmp in self.root.glob(".index.json.*.tmp"):
            tmp.unlink()

    def _writable(self, ch: _Change, name: str) -> Segment:
        """The segment ``name`` as this change writes it: a fork of the committed one (or a new one)."""
        seg = ch.forked.get(name)
        if seg is None:
            path = self.root / "segments" / f"{name}@{ch.meta.get('generation', 0) + 1}"
            old = ch.segments.get(name)
            if old is None:
                seg = Segment(path, self.dim, name)
            else:
                seg = old.fork(path)
                ch.old_dirs.append(old.path)
            ch.forked[name] = ch.segments[name] = seg
        return seg

    def _commit(self, ch: _Change) -> None:
        if not ch.forked and ch.meta["segments"] == self.meta["segments"] and self._reset is None:
            return
        for seg in ch.forked.values():
            seg.sync()
        meta = ch.meta
        meta["generation"] = meta.get("generation", 0) + 1
        meta["segments"] = dict(
            sorted(
                {
                    **meta["segments"],
                    **{n: {**seg.info(), "dir": seg.path.name} for n, seg in ch.forked.items()},
                }.items()
            )
        )
        self._seen = _write_atomic(self.root / "index.json", json.dumps(meta, indent=1))
        self.meta, self.segments, self._where = meta, ch.segments, ch.where
        self._reset = None
        for d in ch.old_dirs:
            shutil.rmtree(d, ignore_errors=True)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, post_id: str) -> bool:
        return post_id in self._where

    # --- changes -----------------------------------------------------------------------------------------------

    def add(self, posts: Iterable[Post], progress: Callable[[int], None] | None = None) -> dict:
        """Add posts; a post whose id is already indexed replaces it (and a later copy of an id in ``posts``
        wins). Returns ``{"added", "replaced", "embedded", "segments"}``. Posts are embedded first (cached
        vectors are reused; other writers may run meanwhile), then appended to their segments under the write
        lock in one commit."""
        by_id: dict[str, Post] = {}
        for p in posts:
            by_id[p.id] = p
        todo = list(by_id.values())
        groups: dict[str, list[int]] = {}
        tss = []
        for i, p in enumerate(todo):
            ts = parse_time(p.created_at, f"post {p.id} created_at") if p.created_at else UNDATED
            tss.append(ts)
            groups.setdefault(window_of(ts, self.granularity), []).append(i)
        before = self.embedder.num_computed
        vecs = self.embedder.encode([p.text for p in todo], progress=progress)
        with self._change() as ch:
            replaced = [pid for pid in by_id if pid in ch.where]
            self._delete(ch, replaced)
            for name, idxs in sorted(groups.items()):
                seg = self._writable(ch, name)
                rows = {
                    "id": [todo[i].id for i in idxs],
                    "text": [todo[i].text for i in idxs],
                    "created_at": [todo[i].created_at for i in idxs],
                    "ts": [tss[i] for i in idxs],
                    "author_id": [todo[i].author_id for i in idxs],
                    "lang": [todo[i].lang for i in idxs],
                    "kind": [todo[i].kind for i in idxs],
                    "retweeted_id": [todo[i].retweeted_id for i in idxs],
                    "dup_key": [dup_key(todo[i].text) for i in idxs],
                    "source": [todo[i].source for i in idxs],
                }
                for pid, r in zip(rows["id"], seg.add(rows, vecs[idxs])):
                    ch.where[pid] = (name, r)
        return {
            "added": len(todo) - len(replaced),
            "replaced": len(replaced),
            "embedded": self.embedder.num_computed - before,
            "segments": sorted(groups),
        }

    def retweets_of(self, post_ids: Iterable[str]) -> list[str]:
        """Ids of the indexed retweets whose original is one of ``post_ids`` (a deletion request covers them)."""
        wanted = set(post_ids)
        return [pid for pid, (name, r) in self._where.items() if self.segments[name].retweeted_id[r] in wanted]

    def retweet_copies_of(self, texts: Iterable[str]) -> list[str]:
        """Ids of indexed retweets (``kind`` retweet, or a text starting ``RT @``) whose duplicate key equals that
        of one of ``texts``: retweets of a removed post indexed without a ``retweeted_id`` (raw X API v2 pages
        without ``referenced_tweets``). A deletion request covers them."""
        keys = {dup_key(t) for t in texts} - {""}
        out = []
        for pid, (name, r) in self._where.items():
            seg = self.segments[name]
            if seg.dup_key[r] in keys and (seg.kind[r] == "retweet" or _RT_PREFIX.match(seg.texts[r])):
                out.append(pid)
        return out

    def delete(self, post_ids: Iterable[str]) -> list[str]:
        """Remove posts from both engines and erase them from the index's files (one commit); returns the ids
        that were not in the index."""
        with self._change() as ch:
            return self._delete(ch, post_ids)

    def _delete(self, ch: _Change, post_ids: Iterable[str]) -> list[str]:
        missing, by_seg = [], {}
        for pid in post_ids:
            where = ch.where.pop(pid, None)
            if where is None:
                missing.append(pid)
            else:
                by_seg.setdefault(where[0], []).append(where[1])
        for name, rows in by_seg.items():
            self._writable(ch, name).delete(rows)
        return missing

    def drop_before(self, before: str | int) -> list[str]:
        """Delete every segment whose whole window ends at or before ``before``; returns their names."""
        cut = parse_time(before, "before")
        dropped = []
        with self._change() as ch:
            for name in list(ch.meta["segments"]):
                b = window_bounds(name)
                if b is not None and b[1] <= cut:
                    seg = ch.segments.pop(name)
                    for pid in seg.ids:
                        if ch.where.get(pid, (None,))[0] == name:
                            del ch.where[pid]
                    ch.meta["segments"].pop(name)
                    ch.old_dirs.append(seg.path)
                    dropped.append(name)
        return dropped

    # --- queries -----------------------------------------------------------------------------------------------

    @staticmethod
    def _segments_for(segments: dict[str, Segment], f: Filters) -> list[Segment]:
        out = []
        for name, seg in sorted(segments.items()):
            b = window_bounds(name)
            if b is None:
                if not f.dated_only:
                    out.append(seg)
            elif (f.lo is None or b[1] > f.lo) and (f.hi is None or b[0] <= f.hi):
                out.append(seg)
        return out

    def search(self, query: str, params: SearchParams | None = None, vector: np.ndarray | None = None) -> list[Hit]:
        """The top ``params.k`` posts for ``query``, best first. ``vector``: the query's embedding when already
        computed (``(dim,)`` unit vector; batch encoders and benchmarks). Raises ``ValueError`` for an empty
        query or a bad parameter. A query that fails because a writer replaced a segment under it (a file gone)
        is run again on the newer commit."""
        p = params or SearchParams()
        if not query or not query.strip():
            raise ValueError("query is empty")
        f, as_of = p.resolve()
        rr = self.reranker if p.rerank else None
        k = p.k
        if rr is not None and rr.top_n > k:
            p = replace(p, k=rr.top_n)
        for attempt in range(3):
            seen = self._seen
            try:
                hits = self._search(query, p, f, as_of, vector)
                break
            except (OSError, ValueError):
                self.refresh()
                if attempt == 2 or self._seen == seen:
                    raise  # not a race with a writer: a real error
        return hits if rr is None else rr.rerank(query, hits, rr.top_n)[:k]

    def _search(self, query: str, p: SearchParams, f: Filters, as_of: int, vector: np.ndarray | None) -> list[Hit]:
        self.refresh()
        segments = self.segments  # this query's snapshot: a commit replaces the dict, never changes it
        segs = self._segments_for(segments, f)
        n = max(p.num_candidates, p.k)
        lex: list[tuple[float, str, int]] = []
        dense: list[tuple[float, str, int]] = []
        tokens = tokenize(query) if p.mode != "dense" else []
        qv = None
        if p.mode != "bm25":
            qv = self.embedder.encode_query(query) if vector is None else np.asarray(vector, np.float32)
        queries = self._lexical_queries(tokens, f, segs, list(segments.values()), p.global_idf) if tokens else {}
        small: list[tuple[Segment, np.ndarray]] = []  # searched exactly, as one matrix
        for seg in segs:
            mask = seg.mask(f)
            if queries.get(seg.name) is not None:
                lex += [(s, seg.name, r) for s, r in seg.search_lexical(queries[seg.name], mask, n)]
            if qv is None:
                continue
            if len(seg) <= min(p.exact_below, PACK_ROWS):
                small.append((seg, mask))
            else:
                dense += [(s, seg.name, r) for s, r in seg.search_dense(qv, mask, n, p.exact_dense, p.exact_below)]
        if small:
            dense += self._search_small(qv, small, n, segments)
        # the n best of each list, ties in segment order: nlargest is sorted(..., reverse=True)[:n], a stable sort
        lex = heapq.nlargest(n, lex, key=itemgetter(0))
        dense = heapq.nlargest(n, dense, key=itemgetter(0))
        fused = fuse(lex, dense, p)
        if p.half_life_s is not None:
            additive = fuses_linearly(lex, dense, p)  # scores on a log scale
            for (seg_name, r), e in fused.items():
                ts = int(segments[seg_name].ts[r])
                if ts != UNDATED:
                    halvings = max(0, as_of - ts) / p.half_life_s
                    if additive:
                        e["score"] -= halvings * math.log(2)
                    else:
                        e["score"] *= 0.5**halvings
        order = sorted(fused.items(), key=lambda kv: (-kv[1]["score"], kv[1].get("bm25_rank") or n + 1))
        out: list[Hit] = []
        owner: dict[str, Hit] = {}  # duplicate key -> the hit that took its slot
        query_terms = set(tokenize(query))
        for (seg_name, r), e in order:
            seg = segments[seg_name]
            pid = seg.ids[r]
            assert seg.ts[r] == UNDATED or seg.ts[r] <= as_of, "a post from after the query time was retrieved"
            keys = {"id:" + (seg.retweeted_id[r] or pid)}
            if seg.dup_key[r]:
                keys.add("text:" + seg.dup_key[r])
            taken = next((owner[k] for k in keys if k in owner), None)
            if p.collapse and taken is not None:
                taken.collapsed += 1
                continue
            if len(out) == p.k:
                if not p.collapse:
                    break
                continue  # the rest only counts what the returned hits hide
            out.append(
                Hit(
                    id=pid,
                    text=seg.texts[r],
                    score=e["score"],
                    created_at=seg.created_at[r],
                    author_id=seg.author[r],
                    lang=seg.lang[r],
                    kind=seg.kind[r],
                    source=seg.source[r],
                    segment=seg_name,
                    bm25_rank=e.get("bm25_rank"),
                    dense_rank=e.get("dense_rank"),
                    bm25=e.get("bm25"),
                    cosine=e.get("dense"),
                    matched_terms=sorted(query_terms & set(tokenize(seg.texts[r]))) if query_terms else [],
                )
            )
            for k in keys:
                owner.setdefault(k, out[-1])
        return out

    @staticmethod
    def _lexical_queries(tokens: list[str], f: Filters, segs: list[Segment], every: list[Segment],
                         global_idf: bool) -> dict:  # fmt: skip
        """``{segment name: tantivy query or None}`` for the segments ``segs`` searched. With ``global_idf`` and
        more than one segment in the index (``every``), each segment's query weights a term by ``idf(every
        segment) / idf(segment)`` (``segment.bm25_idf``), so BM25 scores with the document frequencies of the
        whole index and a post's score does not depend on the time window it landed in (the document length
        normalisation still uses the segment's average length); a segment holding none of the terms is not
        searched (``None``)."""
        if not global_idf or len(every) < 2:
            q = lexical_query(tokens, f)
            return {seg.name: q for seg in segs}
        terms = list(dict.fromkeys(tokens))
        stats = {seg.name: seg.term_stats(terms) for seg in every}
        total = sum(docs for docs, _ in stats.values())
        df = [sum(dfs[i] for _, dfs in stats.values()) for i in range(len(terms))]
        out = {}
        for seg in segs:
            docs, dfs = stats[seg.name]
            boosts = {t: bm25_idf(total, df[i]) / bm25_idf(docs, dfs[i]) for i, t in enumerate(terms) if dfs[i]}
            out[seg.name] = lexical_query(terms, f, boosts) if boosts else None
        return out

    def _search_small(self, qv: np.ndarray, small: list[tuple[Segment, np.ndarray]], n: int,
                      segments: dict[str, Segment]) -> list:  # fmt: skip
        """Exact top ``n`` ``(cosine, segment name, row)`` over the allowed rows of ``small`` segments (each at most
        ``PACK_ROWS`` rows), searched as one matrix: one SIMD pass instead of one call per segment, whose fixed
        cost dominated queries over many small time windows. The matrix holds every small segment of the
        snapshot ``segments`` (concatenated once per snapshot, whatever the query's time range); rows of segments
        this query does not touch are masked out."""
        packed = self._packed
        if packed is None or packed[0] is not segments:
            segs = [seg for _, seg in sorted(segments.items()) if len(seg) <= PACK_ROWS]
            vecs = np.concatenate([seg.vecs for seg in segs]) if segs else np.zeros((0, self.dim), np.float16)
            starts = np.cumsum([0] + [len(seg) for seg in segs])
            packed = self._packed = (segments, segs, vecs, starts, {seg.name: i for i, seg in enumerate(segs)})
        _, segs, vecs, starts, position = packed
        mask = np.zeros(len(vecs), bool)
        for seg, m in small:
            i = position[seg.name]
            mask[starts[i] : starts[i + 1]] = m
        found = exact_cosine(vecs, mask, qv, n)
        where = np.searchsorted(starts, [k for _, k in found], side="right") - 1
        return [(s, segs[i].name, k - int(starts[i])) for (s, k), i in zip(found, where)]

    def get(self, post_id: str) -> dict | None:
        """The stored fields of one post (``id``, ``text``, ``created_at``, ``author_id``, ``lang``, ``kind``,
        ``retweeted_id``, ``source``, ``segment``), or ``None``."""
        self.refresh()
        segments, where = self.segments, self._where.get(post_id)
        if where is None:
            return None
        seg, r = segments[where[0]], where[1]
        return {
            "id": post_id,
            "text": seg.texts[r],
            "created_at": seg.created_at[r],
            "author_id": seg.author[r],
            "lang": seg.lang[r],
            "kind": seg.kind[r],
            "retweeted_id": seg.retweeted_id[r],
            "source": seg.source[r],
            "segment": seg.name,
        }

    def info(self) -> dict:
        """Posts, segments and bytes on disk."""
        self.refresh()
        size = sum(f.stat().st_size for f in (self.root / "segments").rglob("*") if f.is_file())
        return {
            "root": str(self.root),
            "posts": len(self),
            "segments": self.meta["segments"],
            "granularity": self.granularity,
            "model": self.meta["model"],
            "bytes": size,
        }


def fuses_linearly(lex: list, dense: list, p: SearchParams) -> bool:
    """Whether ``fuse`` combines z-scores (a log-scale score) rather than reciprocal ranks: a ``linear`` fusion
    with both lists non-empty."""
    return p.fusion == "linear" and bool(lex) and bool(dense)


def fuse(lex: list[tuple[float, str, int]], dense: list[tuple[float, str, int]], p: SearchParams) -> dict:
    """Fuse two ranked lists of ``(score, segment, row)`` (best first) into ``{(segment, row): entry}``, each
    entry ``{"score": fused, "bm25_rank"/"dense_rank": 1-based rank, "bm25"/"dense": the list's raw score}`` for
    the lists the row is in. ``p.fusion`` ``linear``: ``bm25_weight * z_bm25 + (1 - bm25_weight) * z_dense``,
    z-scores over each list (a list of one or of equal scores gives 0), a row missing from a list taking that
    list's lowest z-score; ``rrf``: ``sum 1 / (rrf_k + rank)``. A ``bm25``/``dense`` query passes one empty list
    and gets the other's order."""
    fused: dict[tuple[str, int], dict] = {}
    lists = (("bm25", lex, p.bm25_weight), ("dense", dense, 1.0 - p.bm25_weight))
    for name, hits, _ in lists:
        for rank, (s, seg_name, r) in enumerate(hits, 1):
            e = fused.setdefault((seg_name, r), {"score": 0.0})
            e[name + "_rank"] = rank
            e[name] = s
    if not fuses_linearly(lex, dense, p):
        for e in fused.values():
            e["score"] = sum(1.0 / (p.rrf_k + e[name + "_rank"]) for name, _, _ in lists if name + "_rank" in e)
        return fused
    for name, hits, weight in lists:
        v = np.fromiter((h[0] for h in hits), np.float64, len(hits))
        sd = float(v.std())
        mean = float(v.mean())
        lowest = (float(v.min()) - mean) / sd if sd > 0 else 0.0
        for e in fused.values():
            z = (e[name] - mean) / sd if name in e and sd > 0 else (0.0 if name in e else lowest)
            e["score"] += weight * z
    return fused


class ModelMismatch(ValueError):
    """The embedding model given is not the one an index was built with (their vectors cannot be mixed)."""


def check_model(root: Path, meta: dict, emb: Embedder) -> None:
    """Raise ``ModelMismatch`` unless ``emb`` is the model of the index at ``root`` (``meta``: its
    ``index.json``): same content id, or a legacy id (``embed.legacy_model_id``) that the model matches. The
    message names both models and how to re-embed."""
    built = meta.get("model_id")
    if built == emb.model_id or (built == emb.legacy_id and "-blake2b-" not in str(built)):
        return
    raise ModelMismatch(
        f"{root} was built with embedding model {meta.get('model')!r} (id {built}), not {emb.model_name!r} "
        f"(id {emb.model_id}): the weights differ, and vectors of two models cannot be mixed in one index. "
        f"To re-embed every post with the new model: tweetlm search build --overwrite --model {emb.model_name} "
        f"--corpus ... --index {root}; to keep the index, use the model it was built with"
    )


def _write_atomic(path: Path, text: str) -> bytes:
    """Write ``text`` to ``path`` by fsyncing a new file, renaming it over ``path`` and fsyncing the folder; a
    crash leaves either the old or the new file. Returns the bytes written."""
    data = text.encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return data
