"""The global stage of the ingestion pipeline (layer L1, data): one datatrove task over every task's output.

``Decide`` reads ``<work>/prepared/*.parquet`` (see ``steps.PrepareWriter``), puts the posts back in input order
and applies, in this order, the steps that need the whole corpus:

0. one row per post id over all sources (the same post read from two files): the validation copy stays (a
   whole text before a ``truncated`` one), the others are dropped as ``duplicate_id_of_val`` / ``duplicate_id``,
   so a thread's ids are unique too;
1. retweet collapse: a retweet (``kind="retweet"`` with ``retweeted_id``, or a text ``RT @h: body``) whose
   original is in the corpus is dropped as ``retweet_collapsed`` and counted on the original (``retweets``,
   ``retweet_ids``); of several retweets of an absent original the first stays, standing in for it. A validation
   retweet moves its original to validation, so the text never trains. Then, with ``drop_truncated``, every
   post left whose text the source cut off (``truncated``) is dropped as ``truncated_text`` (after the
   collapse, so a cut retweet of an original in the corpus still counts on it).
2. threads: a reply whose parent is kept joins it; each tree becomes one ``kind="thread"`` document (the root's
   id, posts in depth-first order with siblings by time, joined by newlines; ``thread_ids``/``thread_texts``
   keep the members for deletions; ``truncated`` if any member is). Other members are dropped as
   ``joined_into_thread``. A thread with any validation post is validation. Threads come before de-duplication
   so that a short reply ("lol") is not torn out of its conversation as a duplicate of another "lol".
3. exact dedup on ``text.dedup_key`` (``duplicate_of_val`` / ``duplicate``) and
4. repeated templates (``repeated_template``) and
5. MinHash LSH near-duplicates (``near_duplicate_of_val`` / ``near_duplicate``), with datasketch's
   ``MinHashLSH`` banding (``near_duplicates``): candidates are confirmed by the estimated Jaccard similarity
   (share of equal signature slots) reaching ``minhash_threshold``.

Steps 3-5 visit validation posts first, then training posts, each in input order, so a training copy of a
validation post is dropped and never the validation copy.

Why datasketch and not datatrove's ``minhash`` steps: datatrove keeps the first document of a cluster by task
and position (no way to prefer the validation copy) and shingles words (5-grams; posts are too short). The
corpus-wide part of step 5, grouping every post by its LSH bands, runs before this stage in parallel tasks
(``buckets.py``, datatrove's bucket stage over our signatures): this stage visits only the posts found sharing a
band (the candidates) and keeps only their signatures (read a prepared file at a time). It still holds every
post's row (without its signature) in one process.

The kept posts are written as ``train.parquet`` and ``val.parquet`` in input order (``data.corpus`` layout plus
the pipeline's columns), so the output is the same whatever the number of tasks.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from tweetlm.data.pipeline.config import PipelineConfig
from tweetlm.data.pipeline.steps import PREPARED_DIR, gc_paused, key_hash, usage_written, write_drops
from tweetlm.data.pipeline.text import dedup_key

CORPUS_COLUMNS = (
    "id", "text", "source", "split", "created_at", "author_id", "lang", "kind", "reply_to_id", "conversation_id",
    "quoted_id", "retweeted_id", "hashtags", "mentions", "urls", "labels", "prov_file", "prov_record", "prov_reader",
    "truncated", "lang_detected", "retweets", "retweet_ids", "thread_ids", "thread_texts",
)  # fmt: skip
"""Columns of the corpus shards: ``Post.to_dict()`` (``labels`` as a JSON string) and the pipeline's own."""

DECIDE_CHANGES = ("text", "split", "kind", "truncated", "conversation_id", "retweets", "retweet_ids", "thread_ids",
                  "thread_texts")  # fmt: skip
"""Corpus columns ``Decide`` writes from its own rows (threads, retweet collapse and validation moves change
them); the other columns are copied from the prepared posts."""


class Columns(dict):
    """Prepared columns as Python lists, each converted from ``table`` when first read (``r["id"]``): the stage
    pays only for the columns its steps touch (``prov_file`` only for an error message, ``created_at`` only to
    order a thread's replies). A column a step creates (``r["retweets"] = ...``) is an ordinary entry; ``c in
    r`` says whether a column was read or made, without reading it."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def __missing__(self, column: str) -> list:
        values = self[column] = self.table.column(column).to_pylist()
        return values


def corpus_schema():
    import pyarrow as pa

    ls = pa.list_(pa.string())
    types = {
        "prov_record": pa.int64(), "retweets": pa.int64(), "hashtags": ls, "mentions": ls, "urls": ls,
        "retweet_ids": ls, "thread_ids": ls, "thread_texts": ls, "truncated": pa.bool_(),
    }  # fmt: skip
    return pa.schema([pa.field(c, types.get(c, pa.string())) for c in CORPUS_COLUMNS])


class Decide(PipelineStep):
    """Retweet collapse, threads, exact, template and near-duplicate removal over all tasks' posts; writes the
    corpus shards into ``out_dir`` and its drops to ``<work>/ledger/decide-00000.json``. Run with one task."""

    type = "🫂 - DEDUP"
    name = "retweets, threads, exact + MinHash dedup"

    def __init__(self, cfg: PipelineConfig, work_dir: str | Path, out_dir: str | Path):
        super().__init__()
        self.cfg = cfg
        self.work_dir = str(work_dir)
        self.out_dir = str(out_dir)
        self._banding: tuple[int, int] | None = None  # from the prepared files (``stored_banding``), in ``run``

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import pyarrow.parquet as pq

        files = sorted((Path(self.work_dir) / PREPARED_DIR).glob("*.parquet"))
        if not files:
            raise ValueError(f"no prepared posts in {Path(self.work_dir) / PREPARED_DIR}: run the per-task stage first")
        with self.track_time("corpus"), gc_paused(), usage_written(self.work_dir, "decide", rank):
            schema = pq.read_schema(files[0])
            self._banding = stored_banding(schema, self.cfg)
            # every column but the signatures: decide reads those of the near-duplicate candidates only
            columns = [c for c in schema.names if c != "minhash"]
            table = in_input_order([pq.read_table(f, columns=columns) for f in files])
            rows = Columns(table)
            keep = self._decide(rows, files)
            self._write(table, rows, keep)
        return iter(())

    # ------------------------------------------------------------------------------------------------------
    def _decide(self, r: Columns, files: list[Path]) -> list[int]:
        """The rows kept, in input order; ``r`` (``Columns`` of the prepared table) is changed in place where a
        step changes a row (``DECIDE_CHANGES``). ``files``: the prepared files (for the candidates' signatures)."""
        cfg = self.cfg
        n = len(r["id"])
        alive = [True] * n
        drops: Counter = Counter()
        r["retweets"] = [0] * n
        # one shared empty tuple per row (written as an empty list), replaced by a list where a step fills it:
        # a fresh list per row for three columns took a fifth of the stage (cProfile)
        r["retweet_ids"] = [()] * n
        r["thread_ids"] = [()] * n
        r["thread_texts"] = [()] * n

        rejects: list[tuple[int, str]] = []

        def drop(i: int, reason: str) -> None:
            alive[i] = False
            drops[(r["source"][i], reason)] += 1
            self.stat_update("dropped", f"dropped_{reason}")
            if cfg.write_rejects:
                rejects.append((i, reason))

        # ---- 0. one row per post id across all sources (a validation copy first, a whole text, input order)
        self._dedup_ids(r, alive, drop)
        is_rt = [r["kind"][i] == "retweet" and bool(r["retweeted_id"][i]) for i in range(n)]
        # ---- 1. retweet collapse
        if cfg.retweet_collapse:
            # the retweets, and the originals they name (by id, or by the key of the text after "RT @h:")
            rts = [i for i in range(n) if is_rt[i] or r["rt_key"][i] is not None]
            named_ids = {r["retweeted_id"][i] for i in rts if is_rt[i]}
            named_keys = {r["rt_key"][i] for i in rts if not is_rt[i]}
            by_id: dict[str, int] = {}
            by_key: dict[int, int] = {}
            for i in range(n) if rts else ():
                if alive[i] and not is_rt[i] and r["rt_key"][i] is None:
                    if r["id"][i] in named_ids:
                        by_id.setdefault(r["id"][i], i)
                    if r["key"][i] in named_keys:
                        by_key.setdefault(r["key"][i], i)
            stand_in: dict[object, int] = {}
            for i in rts:
                if not alive[i]:
                    continue
                if is_rt[i]:
                    target, group = by_id.get(r["retweeted_id"][i]), ("id", r["retweeted_id"][i])
                elif r["rt_key"][i] is not None:
                    target, group = by_key.get(r["rt_key"][i]), ("key", r["rt_key"][i])
                else:
                    continue
                if target is None:
                    target = stand_in.get(group)
                    if target is None:
                        stand_in[group] = i
                        continue
                drop(i, "retweet_collapsed")
                r["retweets"][target] += 1
                if not r["retweet_ids"][target]:
                    r["retweet_ids"][target] = []
                r["retweet_ids"][target].append(r["id"][i])
                if r["split"][i] == "val":
                    r["split"][target] = "val"
        # ---- 1b. texts the source cut off, after the collapse so that a cut retweet still counts on its original
        if cfg.drop_truncated:
            for i in range(n):
                if alive[i] and r["truncated"][i]:
                    drop(i, "truncated_text")
        # ---- 2. threads
        rebuilt: list[int] = []
        if cfg.threads:
            rebuilt = self._threads(r, alive, is_rt, drop)
        # ---- 3-5. exact, template, near-duplicate removal: validation first, then input order
        visit = [i for i in range(n) if r["split"][i] == "val"] + [i for i in range(n) if r["split"][i] != "val"]
        new_sig: dict[int, object] = {}  # row -> (num_perm,) uint32 signature of a rebuilt thread's text
        if rebuilt:  # thread documents have new text: new keys and signatures
            from tweetlm.data.pipeline.minhash import permutations, signatures
            from tweetlm.data.pipeline.steps import template_key

            keys = [dedup_key(r["text"][i]) for i in rebuilt]
            sigs = signatures(keys, cfg.minhash_shingle, permutations(cfg.minhash_num_perm))
            for j, i in enumerate(rebuilt):
                r["key"][i] = key_hash(keys[j])
                r["template"][i] = key_hash(template_key(r["text"][i], keys[j]))
                new_sig[i] = sigs[j]
        if cfg.exact_dedup:
            first_split: dict[int, str] = {}
            for i in visit:
                if not alive[i]:
                    continue
                k = r["key"][i]
                if k in first_split:
                    drop(i, "duplicate_of_val" if first_split[k] == "val" and r["split"][i] != "val" else "duplicate")
                else:
                    first_split[k] = r["split"][i]
        if cfg.max_template_repeats > 0:
            seen_t: Counter = Counter()
            for i in visit:
                if alive[i] and r["kind"][i] != "thread":
                    seen_t[r["template"][i]] += 1
                    if seen_t[r["template"][i]] > cfg.max_template_repeats:
                        drop(i, "repeated_template")
        if cfg.near_dedup:
            self._near_dedup(r, files, new_sig, alive, visit, drop)
        write_drops(self.work_dir, "decide", 0, drops)
        if rejects:
            self._write_rejects(r, rejects)
        keep = [i for i in range(n) if alive[i]]
        self.stat_update("kept", value=len(keep))
        return keep

    @staticmethod
    def _dedup_ids(r: dict[str, list], alive: list[bool], drop) -> None:
        """Keep one row per post id: the first validation copy if any, else the first in input order, a copy
        whose text is whole (not ``truncated``) before a cut one in either case; the other copies are dropped as
        ``duplicate_id_of_val`` (a training copy of a validation post) or ``duplicate_id``. Ids made up by a
        reader for posts without one (``<source>:<file>:<record>``) are unique by construction; two posts with
        one are refused (``ValueError`` naming both records) rather than one silently replacing the other."""
        n = len(r["id"])
        keeper: dict[str, int] = {}
        made_up: dict[str, int] = {}
        # only rows whose id another row has can be dropped or refused: the rest skip the sort
        counts = Counter(r["id"])
        shared = [i for i in range(n) if counts[r["id"][i]] > 1]
        for i in sorted(shared, key=lambda i: (r["split"][i] != "val", bool(r["truncated"][i]), i)):
            pid = r["id"][i]
            if not alive[i] or not pid:
                continue
            if pid.startswith(f"{r['source'][i]}:"):
                j = made_up.setdefault(pid, i)
                if j != i:
                    raise ValueError(
                        f"two posts share the made-up id {pid!r}: {r['prov_file'][j]} record {r['prov_record'][j]} "
                        f"and {r['prov_file'][i]} record {r['prov_record'][i]}; a reader gave one id twice: report it"
                    )
                continue
            k = keeper.setdefault(pid, i)
            if k != i:
                of_val = r["split"][k] == "val" and r["split"][i] != "val"
                drop(i, "duplicate_id_of_val" if of_val else "duplicate_id")

    def _write_rejects(self, r: dict[str, list], rejects: list[tuple[int, str]]) -> None:
        """Dropped posts with their reason, as datatrove Documents, to ``<work>/rejects/decide/``."""
        from datatrove.data import Document
        from datatrove.pipeline.writers import JsonlWriter

        writer = JsonlWriter(str(Path(self.work_dir) / "rejects" / "decide"), output_filename="${rank}.jsonl.gz")
        with writer:
            for i, reason in rejects:
                meta = {"source": r["source"][i], "split": r["split"][i], "kind": r["kind"][i], "drop_reason": reason}
                writer.write(Document(text=r["text"][i], id=r["id"][i], metadata=meta), 0)

    def _threads(self, r: dict[str, list], alive: list[bool], is_rt: list[bool], drop) -> list[int]:
        n = len(r["id"])
        if not any(r["reply_to_id"]):  # no replies: no threads (most research corpora)
            return []
        by_id: dict[str, int] = {}
        for i in range(n):
            if alive[i] and not is_rt[i] and r["kind"][i] != "thread":
                by_id.setdefault(r["id"][i], i)
        children: dict[int, list[int]] = defaultdict(list)
        has_parent = [False] * n
        for i in by_id.values():
            parent = by_id.get(r["reply_to_id"][i]) if r["reply_to_id"][i] else None
            if parent is not None and parent != i:
                children[parent].append(i)
                has_parent[i] = True
        rebuilt = []
        done: set[int] = set()
        for root in sorted(children):
            if has_parent[root]:
                continue
            members, stack = [], [root]
            while stack:
                i = stack.pop()
                if i in done:
                    continue
                done.add(i)
                members.append(i)
                kids = sorted(children.get(i, ()), key=lambda k: (r["created_at"][k] or "", r["order"][k]))
                stack.extend(reversed(kids))
            self._join(r, root, members, drop)
            rebuilt.append(root)
        return rebuilt

    def _join(self, r: dict[str, list], root: int, members: list[int], drop) -> None:
        r["thread_ids"][root] = [r["id"][i] for i in members]
        r["thread_texts"][root] = [r["text"][i] for i in members]
        if any(r["split"][i] == "val" for i in members):
            r["split"][root] = "val"
        r["text"][root] = "\n".join(r["thread_texts"][root])
        r["truncated"][root] = any(r["truncated"][i] for i in members)
        r["kind"][root] = "thread"
        r["conversation_id"][root] = r["conversation_id"][root] or r["id"][root]
        for i in members[1:]:
            drop(i, "joined_into_thread")
            r["retweets"][root] += r["retweets"][i]
        self.stat_update("threads")

    def _near_dedup(
        self, r: Columns, files: list[Path], new_sig: dict, alive: list[bool], visit: list[int], drop
    ) -> None:
        """Step 5 over the candidates only: the posts the buckets stage found sharing a band hash with another
        (``buckets.candidate_orders``), the rebuilt threads (``new_sig``) and the posts that share a band hash
        with a rebuilt thread's new signature. Any other post shares no band with a visited post: it could neither
        match nor be matched (``near_duplicates`` would keep it without a look)."""
        import numpy as np
        import pyarrow.parquet as pq

        from tweetlm.data.pipeline.buckets import candidate_orders, orders_sharing
        from tweetlm.data.pipeline.minhash import band_hashes, lsh_banding

        cfg = self.cfg
        b, rows = self._banding or lsh_banding(cfg.minhash_threshold, cfg.minhash_num_perm)
        order_col = r.table.column("order").to_numpy()  # ascending: the table is in input order
        cand = np.zeros(len(order_col), dtype=bool)
        found = [candidate_orders(self.work_dir)]
        if new_sig:
            found.append(orders_sharing(self.work_dir, band_hashes(np.stack(list(new_sig.values())), b, rows)))
            cand[list(new_sig)] = True
        for orders in found:
            cand[np.searchsorted(order_col, orders)] = True
        visited = [i for i in visit if cand[i] and alive[i] and len(r["text"][i]) >= cfg.near_dedup_min_chars]
        if not visited:
            return
        # the visited rows' signatures: the prepared ones a file at a time (one file's column in memory at once,
        # and only for files with a candidate), then the rebuilt threads' new ones
        sig = np.zeros((len(visited), cfg.minhash_num_perm), dtype=np.uint32)
        pos = {int(order_col[i]): j for j, i in enumerate(visited)}
        want = np.array(sorted(pos), dtype=np.int64)
        for f in files:
            file_orders = pq.read_table(f, columns=["order"]).column("order").to_numpy()
            hit = np.flatnonzero(np.isin(file_orders, want))
            if len(hit):
                column = pq.read_table(f, columns=["minhash"]).column("minhash").combine_chunks()
                flat = column.flatten().to_numpy(zero_copy_only=False)
                at = [pos[o] for o in file_orders[hit].tolist()]
                sig[at] = flat.reshape(len(file_orders), cfg.minhash_num_perm)[hit]
        for j, i in enumerate(visited):
            if i in new_sig:
                sig[j] = new_sig[i]
        found_nd = near_duplicates(
            sig, list(range(len(visited))), cfg.minhash_threshold, cfg.minhash_num_perm, (b, rows)
        )
        self.stat_update("near_dedup_candidates", value=len(visited))
        for j, matches in found_nd.items():
            i = visited[j]
            of_val = r["split"][i] != "val" and any(r["split"][visited[m]] == "val" for m in matches)
            drop(i, "near_duplicate_of_val" if of_val else "near_duplicate")

    def _write(self, table, rows: dict[str, list], keep: list[int]) -> None:
        """``train.parquet`` and ``val.parquet`` of the ``keep`` rows: the columns a step changed from ``rows``,
        the others taken from ``table`` as they are (no round trip through Python objects)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        out = Path(self.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        schema = corpus_schema()
        changed = [c for c in CORPUS_COLUMNS if c in DECIDE_CHANGES and c in rows]  # a column never read: unchanged
        copied = table.select([c for c in CORPUS_COLUMNS if c not in changed])  # not the signatures and keys
        for split in ("train", "val"):
            idx = [i for i in keep if rows["split"][i] == split]
            part = copied.take(pa.array(idx, type=pa.int64()))
            arrays = [
                pa.array([rows[c][i] for i in idx], type=schema.field(c).type)
                if c in changed
                else part.column(c).combine_chunks().cast(schema.field(c).type)
                for c in CORPUS_COLUMNS
            ]
            pq.write_table(pa.Table.from_arrays(arrays, schema=schema), out / f"{split}.parquet")
        summary = {"kept": len(keep), "threads": sum(1 for i in keep if rows["thread_ids"][i])}
        (Path(self.work_dir) / "decide.json").write_text(json.dumps(summary))


def in_input_order(tables: list):
    """One table of the prepared ``tables`` with its rows in input order (``order`` ascending).

    A task writes each of its input files' posts together and in order (its steps drop rows, never reorder
    them), and the files' ``order`` ranges do not overlap (``dispatch.ORDER_BITS``), so the rows are put in order
    by sorting the runs of one file each and joining slices of them, without copying a row. A full sort (what
    this returns in any case, checked) is the fallback where the runs are not increasing."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from tweetlm.data.formats.dispatch import ORDER_BITS

    runs = []
    for t in tables:
        order = t.column("order").to_numpy()
        if not len(order):
            continue
        file = order >> ORDER_BITS
        starts = np.flatnonzero(np.r_[True, file[1:] != file[:-1]])
        ends = np.r_[starts[1:], len(order)]
        runs += [(int(order[a]), t.slice(a, b - a)) for a, b in zip(starts, ends)]
    if not runs:
        return pa.concat_tables(tables)
    if len(runs) > MAX_RUNS:  # a chunk per run would slow every later column operation: sort instead
        table = pa.concat_tables(tables)
        return table.take(pc.sort_indices(table, [("order", "ascending")]))
    table = pa.concat_tables([run for _, run in sorted(runs, key=lambda x: x[0])])
    order = table.column("order").to_numpy()
    if len(order) > 1 and not (order[1:] > order[:-1]).all():
        table = table.take(pc.sort_indices(table, [("order", "ascending")]))
    return table


MAX_RUNS = 256
"""More input files than this in one build and ``in_input_order`` sorts the rows instead of joining the files' runs:
every run is a chunk of every column, and with 20,000 of them the join took 0.4 s against 0.05 s for the sort, and
the columns' later conversions several times as long (a review's measurement on 240k synthetic rows)."""


def stored_banding(schema, cfg: PipelineConfig) -> tuple[int, int] | None:
    """The ``(b, r)`` LSH banding a prepared file's ``schema`` metadata holds (``minhash.BANDING_KEY``), if it
    was made for ``cfg``'s threshold and ``num_perm``; else ``None`` (``near_duplicates`` asks datasketch)."""
    from tweetlm.data.pipeline.minhash import BANDING_KEY

    raw = (schema.metadata or {}).get(BANDING_KEY)
    if raw is None:
        return None
    b, r, threshold, num_perm = json.loads(raw)
    return (b, r) if (threshold, num_perm) == (cfg.minhash_threshold, cfg.minhash_num_perm) else None


def near_duplicates(
    sig, order: list[int], threshold: float, num_perm: int, banding: tuple[int, int] | None = None
) -> dict[int, list[int]]:
    """MinHash LSH near-duplicates, the first of each cluster kept: rows of ``sig`` (``(n, num_perm)`` uint32
    signatures, ``minhash.signatures``) are visited in ``order``; a row whose LSH candidates among the rows kept
    so far include one with estimated Jaccard (share of equal slots) >= ``threshold`` is a near-duplicate of
    those, else it is kept and indexed. Returns ``{row: [kept rows it matches]}`` for the near-duplicates.

    The same decisions as inserting into and querying datasketch's ``MinHashLSH(threshold, num_perm)`` row by
    row (tests/test_pipeline.py), with its banding (``b`` bands of ``r`` slots, chosen by the library), but with
    the band keys cut for all rows at once (a band's bytes) and plain dicts as tables: the library's per-band
    Python calls took 14 of the 17 s of the decide stage over the shared corpora (cProfile,
    ``benchmarks/results/data_cpu2_202612.md``). Rows whose band keys no other row has skip the tables.
    ``banding``: ``(b, r)`` as ``minhash.lsh_banding`` gives it (``None``: asked of datasketch here).
    """
    import numpy as np

    from tweetlm.data.pipeline.minhash import band_hashes, lsh_banding, sharing_rows

    if not order:
        return {}
    b, rows = banding or lsh_banding(threshold, num_perm)
    sig = np.ascontiguousarray(sig, dtype=np.uint32)
    visited = np.asarray(order, dtype=np.int64)
    band_keys = np.ascontiguousarray(sig[visited, : b * rows]).view(np.dtype((np.void, 4 * rows)))  # (m, b)
    # A row none of whose band keys another visited row has can neither match nor be matched: it is kept, and
    # what it would add to the tables is never looked up. Only the others go through the tables.
    # Found on a 64-bit hash of each band (sorting uint64 is several times faster than sorting the bands' bytes);
    # two bands that differ but share a hash only send their rows through the tables, which compare the bytes.
    shared = np.zeros(len(visited), dtype=bool)
    for h in band_hashes(sig[visited], b, rows).T:
        shared |= sharing_rows(h)
    bands = dict(zip(visited[shared].tolist(), band_keys[shared].tolist()))
    tables: list[dict[bytes, list[int]]] = [{} for _ in range(b)]
    out: dict[int, list[int]] = {}
    for i in order:
        keys = bands.get(i)
        if keys is None:
            continue
        cand = {j for t, key in zip(tables, keys) for j in t.get(key, ())}
        matches = sorted(j for j in cand if (sig[j] == sig[i]).mean() >= threshold)
        if matches:
            out[i] = matches
        else:
            for t, key in zip(tables, keys):
                t.setdefault(key, []).append(i)
    return out
