"""One time window of the search index (layer L4, search): BM25 over tantivy, HNSW over usearch, post metadata.

A segment is a folder named after its window (``2015-02`` for a month, ``undated`` for posts without a
timestamp) holding:

- ``rows-NNNNN.parquet``: the posts of each add, in row order (id, text, created_at, ts, author_id, lang, kind,
  retweeted_id, dup_key, source); row numbers count across parts and never change;
- ``vecs-NNNNN.npy``: their float16 unit vectors, aligned with the rows part of the same number;
- ``deleted.npy``: one bool per row;
- ``lexical/``: a tantivy index of the pre-tokenized text (``analyze.tokenize`` joined by spaces, the
  ``whitespace`` tokenizer, BM25 with tantivy's k1=1.2, b=0.75) plus ``rid`` (row), ``ts``, ``lang``, ``author``
  and ``kind`` for filtering inside the engine;
- ``dense.usearch``: an HNSW graph (cosine, float16 vectors, keys = rows).

Segments are copy-on-write: a change never touches a committed folder. ``fork`` makes the next generation
(``2015-02@7``) with hard links to the current files, the change writes new files there (a changed file is
written aside and renamed over its link, never rewritten in place), and the index commits by renaming
``index.json`` to name the new folder (``search.index``). A process killed mid-change leaves the committed
generation intact; the next writer removes the unnamed folder.

An add appends a part and adds to both engines. A delete marks the row, blanks its text and other personal
fields (and zeroes its vector) in the part files, removes its key from usearch and rebuilds the segment's tantivy
index from the live rows (a tantivy delete alone keeps the terms on disk until a merge). BM25 statistics (IDF,
average length) are per segment, as in any sharded engine (Elasticsearch's default ``query_then_fetch``); fusion
uses ranks, not raw scores.

Why tantivy and not bm25s: tantivy adds and deletes documents in place and keeps its index on disk; bm25s builds
one sparse matrix per corpus and must rebuild it to add a post. Quality is compared in
``benchmarks/results/search_quality_cpu2_202611.md``. Why usearch: a single-file HNSW index with add, remove,
save and memory-mapped view, and a wheel without system BLAS.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tweetlm.search.analyze import tokenize

UNDATED = np.iinfo(np.int64).min
"""``ts`` of a post without ``created_at``."""

_ROW_COLUMNS = ("id", "text", "created_at", "ts", "author_id", "lang", "kind", "retweeted_id", "dup_key", "source")


@dataclass
class Filters:
    """What a query may return from a segment. Times are Unix seconds (UTC).

    ``lo``/``hi``: inclusive bounds on ``created_at`` (``None``: open); ``dated_only``: drop undated posts (set
    whenever the caller gave a time bound or a query time). ``langs``/``authors``/``kinds``: allowed values
    (``None``: any).
    """

    lo: int | None = None
    hi: int | None = None
    dated_only: bool = False
    langs: frozenset[str] | None = None
    authors: frozenset[str] | None = None
    kinds: frozenset[str] | None = None


def _import_onnxruntime_first() -> None:
    """Import onnxruntime (the query encoder's, ``embed.QUERY_ENCODERS``) before usearch when it is installed.
    usearch 2.26 loads its numkong library with ``RTLD_GLOBAL``; loaded first, its symbols take the place of
    onnxruntime's: ``import usearch.index; import onnxruntime`` segfaults (onnxruntime 1.23-1.32) or fails to load a
    model ("Type parameter (T) of Optype (Mul) bound to different types", 1.22). The other order works."""
    with contextlib.suppress(ImportError):
        import onnxruntime  # noqa: F401


class Segment:
    """The posts of one time window; see the module docstring for the files."""

    def __init__(self, path: str | Path, dim: int, name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name or self.path.name.split("@")[0]
        self.dim = dim
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.created_at: list[str | None] = []
        self.ts = np.zeros(0, np.int64)
        self.author = np.zeros(0, dtype=object)
        self.lang = np.zeros(0, dtype=object)
        self.kind = np.zeros(0, dtype=object)
        self.retweeted_id: list[str | None] = []
        self.dup_key: list[str] = []
        self.source: list[str] = []
        self.vecs = np.zeros((0, dim), np.float16)
        self.deleted = np.zeros(0, bool)
        self._ts_cache: tuple | None = None
        self._num_parts = 0
        self._lex = None
        self._ann = None

    # --- files -------------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, dim: int, name: str | None = None) -> Segment:
        """Load a segment folder written by ``add``: rows, vectors and flags into memory, the HNSW graph into
        memory and the tantivy index opened (its files memory-mapped), so a loaded segment keeps answering after
        a writer has replaced and removed its folder. Raises ``FileNotFoundError`` when the folder is gone."""
        import pyarrow.parquet as pq

        seg = cls(path, dim, name)
        if not seg.path.is_dir():
            raise FileNotFoundError(f"segment folder {seg.path} does not exist")
        parts = sorted(seg.path.glob("rows-*.parquet"))
        cols: dict[str, list] = {c: [] for c in _ROW_COLUMNS}
        vecs = []
        for part in parts:
            t = pq.read_table(part).to_pydict()
            for c in _ROW_COLUMNS:
                cols[c] += t[c]
            vecs.append(np.load(part.with_name(part.name.replace("rows-", "vecs-").replace(".parquet", ".npy"))))
        seg._num_parts = len(parts)
        seg._set_columns(cols, np.concatenate(vecs) if vecs else seg.vecs)
        dpath = seg.path / "deleted.npy"
        seg.deleted = np.load(dpath) if dpath.exists() else np.zeros(len(seg.ids), bool)
        if len(seg.deleted) != len(seg.ids):
            raise ValueError(f"{dpath}: {len(seg.deleted)} flags for {len(seg.ids)} rows; the segment is damaged")
        if len(seg.ids):
            # a folder a writer removed while this was loading: fail (the reader loads the newer commit) rather
            # than open, or create, empty engines inside it
            for f in ("lexical/meta.json", "dense.usearch"):
                if not (seg.path / f).exists():
                    raise FileNotFoundError(f"{seg.path / f} is missing: the segment folder was replaced or damaged")
            try:
                seg.lexical.searcher()
            except ValueError as e:  # tantivy: a file of the folder is gone
                raise FileNotFoundError(f"{seg.path}: {e}") from e
        seg.ann  # noqa: B018 (loads the graph)
        return seg

    def fork(self, path: str | Path) -> Segment:
        """The next generation of this segment at ``path`` (a new folder): every file hard-linked (tantivy's lock
        files excepted), the columns copied, so changes to the fork leave this segment and its folder as they
        were. Raises ``FileExistsError`` when ``path`` exists."""
        new = Segment(path, self.dim, self.name)
        new.path.mkdir(parents=True)
        if self.path.is_dir():
            for src in self.path.rglob("*"):
                dst = new.path / src.relative_to(self.path)
                if src.is_dir():
                    dst.mkdir(exist_ok=True)
                elif not (src.name.startswith(".tantivy-") and src.name.endswith(".lock")):
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.link(src, dst)
        new._set_columns({c: list(getattr(self, a)) for c, a in _ATTR.items()}, self.vecs.copy())
        new.deleted = self.deleted.copy()
        new._num_parts = self._num_parts
        return new

    def sync(self) -> None:
        """fsync every file of the folder and the folder itself (before the index names it in a commit)."""
        for f in [*self.path.rglob("*"), self.path]:
            if f.is_dir() or f.is_file():
                fd = os.open(f, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def _set_columns(self, cols: dict[str, list], vecs: np.ndarray) -> None:
        self.ids = list(cols["id"])
        self.texts = list(cols["text"])
        self.created_at = list(cols["created_at"])
        self.ts = np.asarray(cols["ts"], np.int64)
        self.author = np.asarray(cols["author_id"], dtype=object)
        self.lang = np.asarray(cols["lang"], dtype=object)
        self.kind = np.asarray(cols["kind"], dtype=object)
        self.retweeted_id = list(cols["retweeted_id"])
        self.dup_key = list(cols["dup_key"])
        self.source = list(cols["source"])
        self.vecs = vecs

    @property
    def lexical(self):
        """The tantivy index (created on first use)."""
        if self._lex is None:
            import tantivy

            d = self.path / "lexical"
            d.mkdir(parents=True, exist_ok=True)
            self._lex = tantivy.Index(lexical_schema(), path=str(d))
        return self._lex

    @property
    def ann(self):
        """The usearch HNSW index (loaded or created on first use)."""
        if self._ann is None:
            _import_onnxruntime_first()
            from usearch.index import Index

            self._ann = Index(ndim=self.dim, metric="cos", dtype="f16", connectivity=16, expansion_add=128)
            f = self.path / "dense.usearch"
            if f.exists():
                self._ann.load(str(f))
            self._ann.expansion_search = 64
        return self._ann

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_live(self) -> int:
        return int((~self.deleted).sum())

    # --- changes -----------------------------------------------------------------------------------------------

    def add(self, rows: dict[str, list], vecs: np.ndarray) -> list[int]:
        """Append posts (columns of ``_ROW_COLUMNS``) with their ``(n, dim)`` vectors; returns their rows."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        import tantivy

        n = len(rows["id"])
        if n == 0:
            return []
        if vecs.shape != (n, self.dim):
            raise ValueError(f"expected ({n}, {self.dim}) vectors, got {vecs.shape}")
        self.path.mkdir(parents=True, exist_ok=True)
        start = len(self.ids)
        part = self._num_parts
        if (self.path / f"rows-{part:05d}.parquet").exists():
            raise FileExistsError(f"{self.path}: part {part} exists; a segment folder is written by one writer")
        pq.write_table(pa.table({c: rows[c] for c in _ROW_COLUMNS}), self.path / f"rows-{part:05d}.parquet")
        _save_npy(self.path / f"vecs-{part:05d}.npy", vecs.astype(np.float16))
        self._num_parts += 1
        cols = {c: getattr(self, a) for c, a in _ATTR.items()}
        merged = {c: list(cols[c]) + list(rows[c]) for c in _ROW_COLUMNS}
        self._set_columns(merged, np.concatenate([self.vecs, vecs.astype(np.float16)]))
        self.deleted = np.concatenate([self.deleted, np.zeros(n, bool)])
        _save_npy(self.path / "deleted.npy", self.deleted)

        lex = self.lexical
        w = lex.writer(heap_size=64_000_000, num_threads=1)
        for i in range(n):
            w.add_document(
                tantivy.Document(
                    text=" ".join(tokenize(rows["text"][i])),
                    rid=start + i,
                    ts=int(rows["ts"][i]),
                    lang=rows["lang"][i] or "",
                    author=rows["author_id"][i] or "",
                    kind=rows["kind"][i] or "",
                )
            )
        w.commit()
        w.wait_merging_threads()
        lex.reload()
        keys = np.arange(start, start + n, dtype=np.uint64)
        self.ann.add(keys, vecs.astype(np.float16), threads=1)
        self._save_ann()
        return list(range(start, start + n))

    def delete(self, rows: list[int]) -> None:
        """Remove rows from both engines, mark them deleted and erase them from disk: the rows' ``id``, ``text``,
        ``author_id``, ``retweeted_id`` and ``dup_key`` are blanked and their vectors zeroed in the part files
        (row numbers do not change), and the tantivy index is rebuilt from the live rows so no term of a
        deleted post stays in its files. The usearch graph only drops the key (its file may keep the removed
        vector's bytes until the segment is rebuilt)."""
        rows = sorted({int(r) for r in rows if not self.deleted[r]})
        if not rows:
            return
        for r in rows:
            self.ann.remove(r)
        self.deleted[rows] = True
        self._erase_rows(rows)
        _save_npy(self.path / "deleted.npy", self.deleted)
        self._rebuild_lexical()
        self._save_ann()

    def _save_ann(self) -> None:
        tmp = self.path / "dense.usearch.tmp"
        self.ann.save(str(tmp))
        tmp.replace(self.path / "dense.usearch")

    def _erase_rows(self, rows: list[int]) -> None:
        """Blank the personal fields of ``rows`` in memory and rewrite the part files that hold them."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        for r in rows:
            self.ids[r] = ""
            self.texts[r] = ""
            self.author[r] = None
            self.retweeted_id[r] = None
            self.dup_key[r] = ""
            self.vecs[r] = 0
        start = 0
        for part in sorted(self.path.glob("rows-*.parquet")):
            table = pq.read_table(part)
            end = start + table.num_rows
            local = [r - start for r in rows if start <= r < end]
            if local:
                cols = table.to_pydict()
                for c in ("id", "text", "author_id", "retweeted_id", "dup_key"):
                    for i in local:
                        cols[c][i] = _BLANK[c]
                tmp = part.with_name(part.name + ".tmp")
                pq.write_table(pa.Table.from_pydict(cols, schema=table.schema), tmp)
                tmp.replace(part)
                vpath = part.with_name(part.name.replace("rows-", "vecs-").replace(".parquet", ".npy"))
                vecs = np.load(vpath)
                vecs[local] = 0
                _save_npy(vpath, vecs)
            start = end

    def _rebuild_lexical(self) -> None:
        """Replace every tantivy document with the live rows in one commit, then delete the old files: a
        tantivy delete alone only hides a document, its terms stay in the segment files until a merge."""
        import tantivy

        lex = self.lexical
        w = lex.writer(heap_size=64_000_000, num_threads=1)
        w.delete_documents_by_query(tantivy.Query.all_query())
        for r in np.flatnonzero(~self.deleted):
            w.add_document(
                tantivy.Document(
                    text=" ".join(tokenize(self.texts[r])),
                    rid=int(r),
                    ts=int(self.ts[r]),
                    lang=self.lang[r] or "",
                    author=self.author[r] or "",
                    kind=self.kind[r] or "",
                )
            )
        w.commit()
        w.garbage_collect_files()
        w.wait_merging_threads()
        lex.reload()

    # --- search ------------------------------------------------------------------------------------------------

    def _ts_range(self) -> tuple[int, int]:
        """``(first, last)`` dated ``ts`` (``(UNDATED, UNDATED)`` when none), cached per ``ts`` array (columns are
        replaced, never written in place)."""
        cached = self._ts_cache
        if cached is None or cached[0] is not self.ts:
            dated = self.ts[self.ts != UNDATED]
            span = (int(dated.min()), int(dated.max())) if len(dated) else (UNDATED, UNDATED)
            cached = self._ts_cache = (self.ts, span)
        return cached[1]

    def mask(self, f: Filters) -> np.ndarray:
        """Bool per row: live and passing ``f`` (the source of truth both engines are checked against). Time
        bounds every dated row meets (a query at ``now`` over past windows) cost nothing."""
        m = ~self.deleted
        first, last = self._ts_range()
        lo = None if f.lo is None or (last != UNDATED and first >= f.lo) else f.lo
        hi = None if f.hi is None or (last != UNDATED and last <= f.hi) else f.hi
        if f.dated_only or lo is not None or hi is not None:
            dated = self.ts != UNDATED
            if f.dated_only:
                m &= dated
            if lo is not None:
                m &= ~dated | (self.ts >= lo)
            if hi is not None:
                m &= ~dated | (self.ts <= hi)
        for allowed, col in ((f.langs, self.lang), (f.authors, self.author), (f.kinds, self.kind)):
            if allowed is not None:
                m &= np.isin(col, list(allowed))
        return m

    def term_stats(self, terms: list[str]) -> tuple[int, list[int]]:
        """``(documents, [document frequency of each term])`` of the lexical index (BM25's statistics)."""
        searcher = self.lexical.searcher()
        return searcher.num_docs, [searcher.doc_freq("text", t) for t in terms]

    def search_lexical(self, query, mask: np.ndarray, n: int) -> list[tuple[float, int]]:
        """Top ``n`` ``(bm25, row)`` among rows where ``mask`` holds; ``query`` from ``lexical_query`` (the
        filters run inside tantivy too)."""
        if not mask.any():
            return []
        lex = self.lexical
        searcher = lex.searcher()
        limit = n
        while True:
            hits = searcher.search(query, limit).hits
            if not hits:
                return []
            rids = np.asarray(searcher.fast_field_values("rid", [a for _, a in hits]), dtype=np.int64)
            inside = rids < len(mask)
            keep = np.flatnonzero(inside & mask[np.where(inside, rids, 0)])  # the mask checked in one call
            out = [(float(hits[i][0]), int(rids[i])) for i in keep[:n].tolist()]
            if len(out) >= n or len(hits) < limit:
                return out
            limit *= 4  # rows the mask drops but tantivy kept (e.g. undated posts when no bound was given)

    def search_dense(
        self, q: np.ndarray, mask: np.ndarray, n: int, exact: bool = False, exact_below: int = 20_000
    ) -> list[tuple[float, int]]:
        """Top ``n`` ``(cosine, row)`` among rows where ``mask`` holds. HNSW when most rows are allowed; exact
        (a matrix product over the allowed rows) when ``exact`` or at most ``exact_below`` rows are allowed or
        the graph returned too few allowed rows."""
        num_allowed = int(mask.sum())
        if num_allowed == 0:
            return []
        live = len(self.ids) - int(self.deleted.sum())
        if not exact and num_allowed > exact_below:
            want = min(live, int(n * live / num_allowed * 1.5) + 16)
            m = self.ann.search(q.astype(np.float16), want)
            out = [(1.0 - float(d), int(k)) for k, d in zip(m.keys, m.distances) if int(k) < len(mask) and mask[int(k)]]
            if len(out) >= n or want >= live:
                return out[:n]
        # usearch's SIMD brute force over float16: ~10x a numpy float16->float32 product (measured, 20k rows)
        return exact_cosine(self.vecs, mask, q, n)

    def info(self) -> dict:
        dated = self.ts[(self.ts != UNDATED) & ~self.deleted]
        return {
            "rows": len(self.ids),
            "live": self.num_live,
            "deleted": int(self.deleted.sum()),
            "first_ts": int(dated.min()) if len(dated) else None,
            "last_ts": int(dated.max()) if len(dated) else None,
        }


@lru_cache(maxsize=1)
def lexical_schema():
    """The tantivy schema of every segment's lexical index: analyzed ``text`` (BM25), ``rid`` (row), ``ts``, and
    ``lang``/``author``/``kind`` as raw terms for filters."""
    import tantivy

    sb = tantivy.SchemaBuilder()
    sb.add_text_field("text", stored=False, tokenizer_name="whitespace", index_option="freq")
    sb.add_integer_field("rid", stored=False, indexed=True, fast=True)
    sb.add_integer_field("ts", stored=False, indexed=True, fast=True)
    for f in ("lang", "author", "kind"):
        sb.add_text_field(f, stored=False, tokenizer_name="raw", index_option="basic")
    return sb.build()


def bm25_idf(num_docs: int, doc_freq: int) -> float:
    """BM25's inverse document frequency as tantivy (and Lucene) compute it: ``ln(1 + (N - n + 0.5) / (n + 0.5))``."""
    return math.log(1.0 + (num_docs - doc_freq + 0.5) / (doc_freq + 0.5))


def lexical_query(tokens: list[str], f: Filters, boosts: dict[str, float] | None = None):
    """The tantivy query of one search: any of ``tokens`` (analyzed terms, BM25 scored) and, scoring 0, ``f``'s
    time range, languages, authors and kinds. ``boosts``: only these terms, each term's BM25 score multiplied by
    its value (``SearchIndex`` sets ``global idf / segment idf``, so every segment scores with the statistics of
    the whole index); ``None``: every token, unboosted (one query serves all segments)."""
    import tantivy

    schema = lexical_schema()
    clauses = []
    for t in dict.fromkeys(tokens):
        if boosts is not None and t not in boosts:
            continue
        q = tantivy.Query.term_query(schema, "text", t)
        if boosts is not None and boosts[t] != 1.0:
            q = tantivy.Query.boost_query(q, boosts[t])
        clauses.append((tantivy.Occur.Should, q))
    text_q = tantivy.Query.boolean_query(clauses)
    must = [(tantivy.Occur.Must, text_q)]

    def const(q):
        return (tantivy.Occur.Must, tantivy.Query.const_score_query(q, 0.0))

    if f.dated_only or f.lo is not None or f.hi is not None:
        lo = max(f.lo if f.lo is not None else UNDATED + 1, UNDATED + 1) if f.dated_only else f.lo
        if lo is not None or f.hi is not None:
            must.append(const(tantivy.Query.range_query(schema, "ts", tantivy.FieldType.Integer, lo, f.hi)))
    for field, allowed in (("lang", f.langs), ("author", f.authors), ("kind", f.kinds)):
        if allowed is not None:
            must.append(
                const(
                    tantivy.Query.boolean_query(
                        [(tantivy.Occur.Should, tantivy.Query.term_query(schema, field, v)) for v in allowed]
                    )
                )
            )
    return must[0][1] if len(must) == 1 else tantivy.Query.boolean_query(must)


def exact_cosine(vecs: np.ndarray, mask: np.ndarray, q: np.ndarray, n: int) -> list[tuple[float, int]]:
    """Exact top ``n`` ``(cosine, row)`` of ``q`` (``(dim,)``) among the rows of ``vecs`` (``(rows, dim)``
    float16) where ``mask`` holds, by usearch's SIMD brute force on one thread. With few rows masked out the
    whole matrix is searched for ``n`` plus that many (no copy); otherwise the allowed rows are gathered."""
    from usearch.index import MetricKind
    from usearch.index import search as exact_search

    allowed = int(mask.sum())
    if allowed == 0:
        return []
    blocked = len(mask) - allowed
    q16 = q.astype(np.float16)
    if blocked <= 1024:
        m = exact_search(vecs, q16, min(n + blocked, len(mask)), MetricKind.Cos, exact=True, threads=1)
        return [(1.0 - float(d), int(k)) for k, d in zip(m.keys, m.distances) if mask[int(k)]][:n]
    rows = np.flatnonzero(mask)
    m = exact_search(vecs[rows], q16, min(n, allowed), MetricKind.Cos, exact=True, threads=1)
    return [(1.0 - float(d), int(rows[int(k)])) for k, d in zip(m.keys, m.distances)]


def _save_npy(path: Path, a: np.ndarray) -> None:
    """``np.save`` to a new file renamed over ``path``: a hard link shared with an older generation is never
    written through."""
    tmp = path.with_name(path.stem + ".tmp.npy")
    np.save(tmp, a)
    tmp.replace(path)


_BLANK = {"id": "", "text": "", "author_id": None, "retweeted_id": None, "dup_key": ""}
"""What the personal fields of a deleted row hold on disk."""

_ATTR = {
    "id": "ids",
    "text": "texts",
    "created_at": "created_at",
    "ts": "ts",
    "author_id": "author",
    "lang": "lang",
    "kind": "kind",
    "retweeted_id": "retweeted_id",
    "dup_key": "dup_key",
    "source": "source",
}
