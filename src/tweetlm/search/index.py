"""The search index (layer L4, search): time-partitioned segments, hybrid retrieval, fusion and ranking.

Layout of an index folder::

    index.json          model, vector size, granularity, segment list
    embed_cache/        text -> vector cache (``embed.Embedder``), kept across rebuilds
    segments/<window>/  one ``segment.Segment`` per time window (``2015-02`` by month) plus ``undated``

A post goes to the segment of its ``created_at`` window. Old windows can be dropped (``drop_before``) or served
apart (``SearchIndex.open(dir, segments=[...])``), and a query skips segments outside its time range.

A query (``search``) runs, in every segment it may touch, BM25 (tantivy) and dense retrieval (usearch HNSW,
exact when filters leave few rows) for ``num_candidates`` each, merges each list across segments, then fuses:

- reciprocal rank fusion, ``score = sum_i 1 / (rrf_k + rank_i)`` over the two lists (ranks from 1; Cormack,
  Clarke and Buettcher, SIGIR 2009; ``rrf_k=60`` as in the paper);
- recency: with ``half_life_s`` set, a dated post's score is multiplied by ``0.5 ** (age / half_life_s)``, age
  taken at the query time ``as_of`` (undated posts are not decayed);
- query time: no post created after ``as_of`` (default: now) is ever returned; with an explicit ``as_of``,
  ``since`` or ``until``, undated posts are left out too (their time is unknown);
- filters on time range, language, author and kind are applied inside both engines and checked against the
  segment's metadata;
- duplicate collapse: a retweet and its original, two retweets of one post, and posts whose text is the same
  once ``RT @user:``, mentions, links, case and punctuation are removed, share a key; only the best-ranked post
  of a key takes a result slot.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tweetlm.data.post import POST_KINDS, Post
from tweetlm.search.analyze import tokenize
from tweetlm.search.embed import DEFAULT_MODEL, Embedder
from tweetlm.search.segment import UNDATED, Filters, Segment

GRANULARITIES = ("year", "month", "day")
MAX_K = 100
"""Largest ``k`` a query may ask for."""

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
        mode: ``hybrid`` (RRF of both), ``bm25`` or ``dense``.
        rrf_k: the RRF constant.
        num_candidates: results taken from each retriever before fusion.
        collapse: one slot per duplicate key.
        exact_dense: exact dense search instead of HNSW (for measuring ANN recall).
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
    rrf_k: float = 60.0
    num_candidates: int = 100
    collapse: bool = True
    exact_dense: bool = False
    exact_below: int = 20_000

    def resolve(self) -> tuple[Filters, int]:
        """The segment ``Filters`` and the query time; raises ``ValueError`` naming the bad field."""
        if not 1 <= self.k <= MAX_K:
            raise ValueError(f"k must be between 1 and {MAX_K}, got {self.k}")
        if self.mode not in ("hybrid", "bm25", "dense"):
            raise ValueError(f"mode must be hybrid, bm25 or dense, got {self.mode!r}")
        if self.half_life_s is not None and self.half_life_s <= 0:
            raise ValueError(f"half_life must be > 0, got {self.half_life_s}")
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
    in each retriever's merged list (``None``: not retrieved by it)."""

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

    def to_dict(self) -> dict:
        return asdict(self)


class SearchIndex:
    """A folder of time-window segments; see the module docstring.

    Example:
        >>> idx = SearchIndex.create("runs/demo/search")
        >>> idx.add(posts)
        >>> idx.search("rain in london", SearchParams(k=5, since="2015-02-01", langs=["en"]))
    """

    def __init__(self, root: Path, meta: dict, embedder: Embedder | None = None) -> None:
        self.root = root
        self.meta = meta
        self.granularity = meta["granularity"]
        self.dim = int(meta["dim"])
        self._embedder = embedder
        self.segments: dict[str, Segment] = {}
        self._where: dict[str, tuple[str, int]] = {}

    # --- life cycle --------------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: str | Path,
        model: str | Path = DEFAULT_MODEL,
        granularity: str = "month",
        overwrite: bool = False,
        embedder: Embedder | None = None,
    ) -> SearchIndex:
        """A new empty index at ``root``. ``overwrite`` replaces an existing index (its embedding cache is
        kept); without it an existing index is a ``FileExistsError``."""
        root = Path(root)
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
        if (root / "index.json").exists():
            if not overwrite:
                raise FileExistsError(f"{root} already holds a search index (use overwrite / --overwrite)")
            shutil.rmtree(root / "segments", ignore_errors=True)
        emb = embedder or Embedder(model, cache_dir=root / "embed_cache")
        meta = {
            "version": 1,
            "model": str(model),
            "model_id": emb.model_id,
            "dim": emb.dim,
            "granularity": granularity,
            "tokenizer": "tweetlm.search.analyze/1",
            "segments": {},
        }
        root.mkdir(parents=True, exist_ok=True)
        idx = cls(root, meta, emb)
        idx._save_meta()
        return idx

    @classmethod
    def open(
        cls, root: str | Path, segments: Iterable[str] | None = None, embedder: Embedder | None = None
    ) -> SearchIndex:
        """Load the index at ``root`` (only the named ``segments`` when given, to serve windows apart).
        Raises ``FileNotFoundError`` when ``root`` holds no index, ``ValueError`` for an unknown segment."""
        root = Path(root)
        mf = root / "index.json"
        if not mf.exists():
            raise FileNotFoundError(f"no search index at {root} (build one with 'tweetlm search build')")
        meta = json.loads(mf.read_text())
        idx = cls(root, meta, embedder)
        names = list(meta["segments"]) if segments is None else list(segments)
        for name in names:
            if name not in meta["segments"]:
                raise ValueError(f"{root}: no segment {name!r}; segments: {sorted(meta['segments'])}")
            idx._load_segment(name)
        return idx

    def _load_segment(self, name: str) -> Segment:
        seg = Segment.open(self.root / "segments" / name, self.dim)
        self.segments[name] = seg
        for r, pid in enumerate(seg.ids):
            if not seg.deleted[r]:
                self._where[pid] = (name, r)
        return seg

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(self.meta["model"], cache_dir=self.root / "embed_cache")
            if self._embedder.model_id != self.meta["model_id"]:
                raise ValueError(f"{self.root} was built with {self.meta['model_id']}, found {self._embedder.model_id}")
        return self._embedder

    def _save_meta(self) -> None:
        self.meta["segments"] = {
            **{n: s for n, s in self.meta["segments"].items() if n not in self.segments},
            **{n: seg.info() for n, seg in sorted(self.segments.items())},
        }
        tmp = self.root / "index.json.tmp"
        tmp.write_text(json.dumps(self.meta, indent=1))
        tmp.replace(self.root / "index.json")

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, post_id: str) -> bool:
        return post_id in self._where

    # --- changes -----------------------------------------------------------------------------------------------

    def add(self, posts: Iterable[Post], progress: Callable[[int], None] | None = None) -> dict:
        """Add posts; a post whose id is already indexed replaces it (and a later copy of an id in ``posts``
        wins). Returns ``{"added", "replaced", "embedded", "segments"}``. Posts are embedded in one pass (cached
        vectors are reused), then appended to their segments."""
        by_id: dict[str, Post] = {}
        for p in posts:
            by_id[p.id] = p
        todo = list(by_id.values())
        replaced = [pid for pid in by_id if pid in self._where]
        if replaced:
            self.delete(replaced)
        before = self.embedder.num_computed
        vecs = self.embedder.encode([p.text for p in todo], progress=progress)
        groups: dict[str, list[int]] = {}
        tss = []
        for i, p in enumerate(todo):
            ts = parse_time(p.created_at, f"post {p.id} created_at") if p.created_at else UNDATED
            tss.append(ts)
            groups.setdefault(window_of(ts, self.granularity), []).append(i)
        for name, idxs in sorted(groups.items()):
            seg = self.segments.get(name)
            if seg is None:
                seg = Segment(self.root / "segments" / name, self.dim)
                self.segments[name] = seg
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
                self._where[pid] = (name, r)
        self._save_meta()
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

    def delete(self, post_ids: Iterable[str]) -> list[str]:
        """Remove posts from both engines; returns the ids that were not in the index."""
        missing, by_seg = [], {}
        for pid in post_ids:
            where = self._where.pop(pid, None)
            if where is None:
                missing.append(pid)
            else:
                by_seg.setdefault(where[0], []).append(where[1])
        for name, rows in by_seg.items():
            self.segments[name].delete(rows)
        if by_seg:
            self._save_meta()
        return missing

    def drop_before(self, before: str | int) -> list[str]:
        """Delete every segment whose whole window ends at or before ``before``; returns their names."""
        cut = parse_time(before, "before")
        dropped = []
        for name in list(self.meta["segments"]):
            b = window_bounds(name)
            if b is not None and b[1] <= cut:
                seg = self.segments.pop(name, None)
                if seg is not None:
                    for pid in seg.ids:
                        if self._where.get(pid, (None,))[0] == name:
                            del self._where[pid]
                self.meta["segments"].pop(name)
                shutil.rmtree(self.root / "segments" / name, ignore_errors=True)
                dropped.append(name)
        self._save_meta()
        return dropped

    # --- queries -----------------------------------------------------------------------------------------------

    def _segments_for(self, f: Filters) -> list[Segment]:
        out = []
        for name, seg in sorted(self.segments.items()):
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
        query or a bad parameter."""
        p = params or SearchParams()
        if not query or not query.strip():
            raise ValueError("query is empty")
        f, as_of = p.resolve()
        segs = self._segments_for(f)
        n = max(p.num_candidates, p.k)
        lex: list[tuple[float, str, int]] = []
        dense: list[tuple[float, str, int]] = []
        tokens = tokenize(query) if p.mode != "dense" else []
        qv = None
        if p.mode != "bm25":
            qv = self.embedder.encode_query(query) if vector is None else np.asarray(vector, np.float32)
        for seg in segs:
            mask = seg.mask(f)
            if p.mode != "dense":
                lex += [(s, seg.name, r) for s, r in seg.search_lexical(tokens, f, mask, n)]
            if qv is not None:
                dense += [(s, seg.name, r) for s, r in seg.search_dense(qv, mask, n, p.exact_dense, p.exact_below)]
        lex.sort(key=lambda x: -x[0])
        dense.sort(key=lambda x: -x[0])
        fused: dict[tuple[str, int], dict] = {}
        for name, hits in (("bm25", lex[:n]), ("dense", dense[:n])):
            for rank, (s, seg_name, r) in enumerate(hits, 1):
                e = fused.setdefault((seg_name, r), {"score": 0.0})
                e["score"] += 1.0 / (p.rrf_k + rank)
                e[name + "_rank"] = rank
                e[name] = s
        if p.half_life_s is not None:
            for (seg_name, r), e in fused.items():
                ts = int(self.segments[seg_name].ts[r])
                if ts != UNDATED:
                    e["score"] *= 0.5 ** (max(0, as_of - ts) / p.half_life_s)
        order = sorted(fused.items(), key=lambda kv: (-kv[1]["score"], kv[1].get("bm25_rank") or n + 1))
        out: list[Hit] = []
        seen: set[str] = set()
        for (seg_name, r), e in order:
            seg = self.segments[seg_name]
            pid = seg.ids[r]
            assert seg.ts[r] == UNDATED or seg.ts[r] <= as_of, "a post from after the query time was retrieved"
            keys = {"id:" + (seg.retweeted_id[r] or pid)}
            if seg.dup_key[r]:
                keys.add("text:" + seg.dup_key[r])
            if p.collapse and keys & seen:
                continue
            seen |= keys
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
                )
            )
            if len(out) == p.k:
                break
        return out

    def get(self, post_id: str) -> dict | None:
        """The stored fields of one post, or ``None``."""
        where = self._where.get(post_id)
        if where is None:
            return None
        seg, r = self.segments[where[0]], where[1]
        return {"id": post_id, "text": seg.texts[r], "created_at": seg.created_at[r], "segment": seg.name}

    def info(self) -> dict:
        """Posts, segments and bytes on disk."""
        size = sum(f.stat().st_size for f in (self.root / "segments").rglob("*") if f.is_file())
        return {
            "root": str(self.root),
            "posts": len(self),
            "segments": self.meta["segments"],
            "granularity": self.granularity,
            "model": self.meta["model"],
            "bytes": size,
        }
