"""The per-task steps of the ingestion pipeline (layer L1, data), each a datatrove ``PipelineStep``.

A task runs, in order: ``PostReader`` (Post records from ``data.formats.dispatch.read_shard`` as Documents, the
Post fields in ``metadata``) -> ``Normalize`` -> ``LanguageID`` -> ``QualityFilter`` (length, language,
hashtag/mention/URL ratios) -> ``PIIScrub`` (e-mail addresses, phone numbers, optionally handles) ->
``PrepareWriter`` (dedup keys and MinHash signatures, written as one Parquet file per task). What needs every
task's posts at once (retweet collapse, threads, exact and near-duplicate removal, repeated templates) happens
after all tasks are done, in ``decide.py``, like datatrove's own two-stage MinHash (signatures per task, then
clustering).

Accounting: every step counts what it drops per ``(source, reason)`` and writes the counts to
``<work>/ledger/<step>-<rank>.json`` when its input is exhausted, so ``build.py`` can sum them into the Ledger
(``in = kept + dropped + quarantined`` per source). With ``write_rejects`` each dropped Document goes, with its
``drop_reason``, to ``<work>/rejects/<step>/<rank>.jsonl.gz`` through datatrove's ``JsonlWriter``.

Sharding: each task reads its own files of the input (``data.formats.dispatch.read_shard``: the largest files
first, each to the task with the fewest bytes so far), never the others', and writes its reader accounting
(records seen, quarantined, dropped while reading) to ``<work>/ledger/reader-<rank>.json``. A post's input
position (``order``) comes from its file's place in the plan and its place in the file, so the output is the same
for any number of tasks. A file is the unit: one file larger than the others bounds how far tasks spread.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.typeshelper import StatHints

from tweetlm.data.ledger import Ledger
from tweetlm.data.pipeline.config import PipelineConfig
from tweetlm.data.pipeline.text import dedup_key, hash_split, normalize_text, sub_mention, sub_url
from tweetlm.data.post import Post

PREPARED_DIR = "prepared"
LEDGER_DIR = "ledger"

_DIGITS = re.compile(r"\d+")
_RT_PREFIX = re.compile(r"^RT @\w{1,15}:?\s+")
# Phone numbers: North American 3-3-4 groups (optionally with parentheses) and "+<country code>" forms of 8-15
# digits. A general matcher (the phonenumbers library) needs a region per post and costs far more per post.
_PHONE = re.compile(
    r"(?<![\w+])(?:\(\d{3}\)\s?|\d{3}[-.\s])\d{3}[-.\s]\d{4}(?![\w])"
    r"|(?<![\w+])\+\d{1,3}(?:[-.\s]?\(?\d{1,4}\)?){2,5}(?![\w])"
)
# What every ``_PHONE`` match holds: four digits in a row (the 3-3-4 form) or ``+`` (the other). Searching for it
# first, and ``_PHONE`` only where it is found (9.0% of the shared posts), took 1.2 us a post against 3.7 us for
# ``_PHONE`` on every post (three alternating passes over the 241k shared posts; no match missed).
_PHONE_GATE = re.compile(r"\d\d\d\d")


def key_hash(key: str) -> int:
    """A signed 64-bit hash of a dedup or template key (BLAKE2b), stable across processes and machines."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


def template_key(text: str, key: str | None = None) -> str:
    """``text`` case-folded with URLs, @mentions and digit runs masked, whitespace collapsed: posts a bot
    writes from one template share it ("Day 12 of asking @x" and "Day 13 of asking @y"). ``key``, when given,
    must be ``text.dedup_key(text)`` (case-folded and collapsed already: the masks neither make nor remove
    whitespace, so they give the same result on it)."""
    if key is None:
        key = dedup_key(text)
    return _DIGITS.sub("0", sub_mention("@u", sub_url("<url>", key)))


@functools.lru_cache(maxsize=4096)
def _labels_json(items: tuple) -> str:
    return json.dumps(dict(items), ensure_ascii=False)


def labels_json(labels: dict | None) -> str:
    """``labels`` as the JSON object the corpus stores (``"{}"`` for none). A corpus repeats a few label sets
    (``{"sentiment": "negative"}``), so string-valued sets are cached by their items; others are encoded each time
    (a cache key of ``1`` would also match ``True`` and ``1.0``)."""
    if not labels:
        return "{}"
    if all(type(v) is str for v in labels.values()):
        return _labels_json(tuple(labels.items()))
    return json.dumps(labels, ensure_ascii=False)


@contextlib.contextmanager
def gc_frozen():
    """The objects alive at the start (modules, functions, the executor's: a task starts with about 85-105k) moved
    out of reach of CPython's cyclic garbage collector for the block (``gc.freeze``), back after (``gc.unfreeze``).
    Where objects are frozen already (an outer block, or a host process that froze its own before forking), it
    does nothing: ``gc.unfreeze`` would release theirs too.
    The posts streaming through a task keep triggering full collections, and each walked all of those objects
    too: in a one-task build of the shared corpora 29 full collections took 2.24 s, 0.32 s with this (timed with
    ``gc.callbacks``); three alternating one-task builds gave the prepare stage 22.3, 21.7, 20.2 CPU s with it
    against 23.3, 24.3, 20.5 s without (a shared, noisy machine)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def gc_paused():
    """CPython's cyclic garbage collector off for the block (back on after, if it was on). ``decide.Decide`` holds
    every post's row as Python objects; the full collections that allocating more of them triggers walked all of
    them again and again (over the shared corpora's prepared files, alternating in one process: 2.21 and 1.95 s
    with the collector off, 3.73 (the first run) and 2.44 s with it on). Nothing there makes reference cycles that
    must be collected before the block ends."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def post_to_document(post: Post, order: int, split: str) -> Document:
    """A datatrove Document for ``post``: ``text`` and ``id`` as given, every other Post field (provenance
    flattened, ``labels`` a dict) in ``metadata``, plus ``order`` (position in the input) and the ``split``. The
    Document takes over the Post's lists and ``labels`` (not copies): the reader made the Post for it alone."""
    meta = post.to_dict(copy=False)
    text = meta.pop("text")
    doc_id = meta.pop("id")
    meta["split"] = split
    meta["order"] = order
    return Document(text=text, id=doc_id, metadata=meta)


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False))
    tmp.replace(path)


@contextlib.contextmanager
def usage_written(work_dir: str | Path, stage: str, rank: int):
    """Times the block and writes ``<work>/usage/<stage>-<rank>.json``: ``cpu_s`` (this process's CPU seconds,
    all threads), ``wall_s``, and ``start``/``end`` (Unix time, s), so that a stage's wall time over all its
    tasks is ``max(end) - min(start)`` (``benchmarks/bench_data.py``). Written only when the block succeeds."""
    import time

    cpu0, wall0, start = time.process_time(), time.perf_counter(), time.time()
    yield
    usage = {"cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - wall0, "start": start}
    usage["end"] = time.time()
    write_json(Path(work_dir) / "usage" / f"{stage}-{rank:05d}.json", usage)


def write_drops(work_dir: str | Path, step: str, rank: int, drops: Counter) -> None:
    """``<work>/ledger/<step>-<rank>.json``: ``{"dropped": [[source, reason, n], ...]}``."""
    rows = [[s, r, n] for (s, r), n in sorted(drops.items())]
    write_json(Path(work_dir) / LEDGER_DIR / f"{step}-{rank:05d}.json", {"dropped": rows})


class TweetStep(PipelineStep):
    """A map/filter step over Documents: ``process(doc)`` edits ``doc`` and returns ``None`` to keep it or a drop
    reason. Counts drops per ``(source, reason)`` (datatrove stats ``dropped_<reason>`` too), writes them to the
    work folder at the end, and writes rejects when ``cfg.write_rejects``."""

    slug = "step"
    batch_size = 1024

    def __init__(self, cfg: PipelineConfig, work_dir: str | Path):
        super().__init__()
        self.cfg = cfg
        self.work_dir = str(work_dir)

    def setup(self) -> None:
        """Per-task preparation (models, compiled patterns) done in the task's process, not pickled."""

    def process(self, doc: Document) -> str | None:
        raise NotImplementedError

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self.setup()
        drops: Counter = Counter()
        writer = None
        if self.cfg.write_rejects:
            from datatrove.pipeline.writers import JsonlWriter

            writer = JsonlWriter(str(Path(self.work_dir) / "rejects" / self.slug), output_filename="${rank}.jsonl.gz")
        from datatrove.utils.batching import batched

        # stats and timing per batch: per document, datatrove's running statistics cost more than most steps
        # (a third of a one-task run's CPU time, measured with cProfile on TweetEval)
        for batch in batched(data or (), self.batch_size):
            kept, dropped = [], Counter()
            with self.track_time("batch"):
                for doc in batch:
                    reason = self.process(doc)
                    if reason is None:
                        kept.append(doc)
                        continue
                    dropped[reason] += 1
                    drops[(doc.metadata["source"], reason)] += 1
                    if writer is not None:
                        doc.metadata["drop_reason"] = reason
                        writer.write(doc, rank)
            self.stat_update(StatHints.total, value=len(batch))
            self.stat_update(StatHints.forwarded, value=len(kept))
            for reason, n in dropped.items():
                self.stat_update(StatHints.dropped, f"dropped_{reason}", value=n)
            yield from kept
        if writer is not None:
            writer.close()
        write_drops(self.work_dir, self.slug, rank, drops)


class PostReader(PipelineStep):
    """Documents from the files this task reads (``data.formats.dispatch.read_shard``).

    Posts without a split of their own get one here with ``hash_split`` (stable per id). Each task writes the
    reader's accounting of its files (records in, reader drops, the quarantine log) to
    ``<work>/ledger/reader-<rank>.json``. ``planned``: the caller planned ``paths`` already and logged what
    planning warns of (``build_corpus`` does), so this task's planning logs errors only; ``clean_posts`` leaves it
    off. Raises what ``read_shard`` raises (``ValueError`` for a path that does not exist or cannot be read).
    """

    type = "📖 - READER"
    name = "tweetlm posts"

    def __init__(
        self,
        paths: list[str],
        cfg: PipelineConfig,
        work_dir: str | Path,
        quiet: bool = False,
        progress: bool = False,
        planned: bool = False,
    ):
        super().__init__()
        self.planned = planned
        self.paths = [str(p) for p in paths]
        self.cfg = cfg
        self.work_dir = str(work_dir)
        self.quiet = quiet
        self.progress = progress

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from tweetlm.data.formats.dispatch import read_shard

        if self.quiet:  # also in a worker process of the local executor, which has its own logger
            from loguru import logger

            logger.disable("datatrove")

        from tqdm import tqdm

        ledger = Ledger()
        bar = tqdm(
            desc=f"task {rank} posts read", unit="post", disable=not (self.progress and rank == 0), mininterval=1
        )
        c = self.cfg
        # a task's planning of paths the build planned (and warned of) before starting its tasks: errors only
        posts = read_shard(
            self.paths, ledger, rank, world_size, c.column_map(), c.max_record_chars, planning_warnings=not self.planned
        )
        n = 0
        for order, post in posts:
            split = post.split or hash_split(post.source, post.id, self.cfg.val_fraction)
            n += 1
            if not n & 1023:  # the bar moves by 1,024 (a tqdm update per post: 0.33 us, 0.1 us disabled)
                bar.update(1024)
            yield post_to_document(post, order, split)
        bar.update(n & 1023)
        bar.close()
        self.stat_update(StatHints.total, value=n)
        write_json(Path(self.work_dir) / LEDGER_DIR / f"reader-{rank:05d}.json", ledger_to_json(ledger))


def ledger_to_json(ledger: Ledger) -> dict:
    return {
        "sources": {
            s: {"in": c.records_in, "dropped": dict(c.dropped), "quarantined": c.quarantined}
            for s, c in ledger.sources.items()
        },
        "quarantine_log": [q.__dict__ for q in ledger.quarantine_log],
    }


@functools.cache
def mojibake_gate() -> re.Pattern | None:
    """A character class of the characters at least one of which any match of ftfy's mojibake heuristic
    (``ftfy.badness.BADNESS_RE``, what ``is_bad`` searches) contains; ``None`` where that cannot be shown.

    Read from the library's own pattern with Python's regex parser (``re._parser``): each alternative of the
    pattern must have a required element (a literal or a character class, no ``\\w``/``\\s``/negation, not inside
    a group or repeat) whose characters are all non-ASCII; the class is the union of each alternative's smallest
    such element. A text with none of those characters cannot match, so ``is_bad`` is ``False`` without a search.
    Of the 73,162 non-ASCII posts of ../shared/corpora, 13,076 have one: ``is_bad`` on all of them took 1.1-1.5 CPU s,
    the class and ``is_bad`` where it hits 0.3 s (tests/test_pipeline.py checks that no ``is_bad`` is missed).
    ``None`` (``is_bad`` on every text) for a pattern this cannot read: another ftfy, or case-insensitive flags.
    """
    try:
        from re import _constants as C
        from re import _parser

        from ftfy.badness import BADNESS_RE

        if BADNESS_RE.flags & re.IGNORECASE:
            return None
        tree = [item for item in _parser.parse(BADNESS_RE.pattern, BADNESS_RE.flags)]
        if len(tree) != 1 or tree[0][0] is not C.BRANCH:
            return None

        def chars(item) -> set[str] | None:
            op, av = item
            if op is C.LITERAL:
                return {chr(av)}
            if op is not C.IN:
                return None
            out: set[str] = set()
            for sop, sav in av:
                if sop is C.LITERAL:
                    out.add(chr(sav))
                elif sop is C.RANGE:
                    out.update(map(chr, range(sav[0], sav[1] + 1)))
                else:  # NEGATE, CATEGORY (\w, \s): any character may match
                    return None
            return out

        needed: set[str] = set()
        for branch in tree[0][1][1]:
            sets = [c for c in map(chars, branch) if c and all(ord(ch) > 127 for ch in c)]
            if not sets:
                return None
            needed |= min(sets, key=len)
        return re.compile("[" + "".join(re.escape(ch) for ch in sorted(needed)) + "]")
    except Exception:  # a private module of another Python, another pattern layout: search every text
        return None


class Normalize(TweetStep):
    """``text.normalize_text``: HTML entities, Unicode repair (ftfy), whitespace, optional ``@user`` /
    ``http`` placeholders. Drops ``empty`` posts. ftfy runs only on posts with ``&`` or where ``needs_ftfy`` says
    a fixer would change something: 7.2% of the 241k shared posts, with outputs identical to running ftfy on every
    post (tested), and ``normalize_text`` over all of them took 6.3 CPU s against 13.0 s (ftfy on every post)
    and 10.6 s (ftfy skipped on printable ASCII without ``&`` only)."""

    type = "✂️ - FORMAT"
    name = "normalize"
    slug = "normalize"

    # What ``ftfy.fix_text`` with the settings of ``normalize_text`` (ftfy 6.3) changes besides mojibake: the
    # characters ``remove_control_chars`` drops (C0 controls but tab, newline and form feed; DEL; U+206A-206F;
    # U+FEFF; U+FFF9-FFFC), C1 controls (``fix_c1_controls``), CR, U+2028/2029 (``fix_line_breaks``), ESC
    # (``remove_terminal_escapes``) and surrogates (``fix_surrogates``).
    _FTFY_CHARS = re.compile(
        "[\x00-\x08\x0b\x0d-\x1f\x7f-\x9f\u2028\u2029\u206a-\u206f\ufeff\ufff9-\ufffc\ud800-\udfff]"
    )

    @staticmethod
    def needs_ftfy(text: str) -> bool:
        """``False`` only where ``ftfy.fix_text`` (as ``normalize_text`` calls it, on text without HTML escapes)
        provably returns ``text`` unchanged: none of ``_FTFY_CHARS``, NFC-normalized, and ASCII or not mojibake by
        ftfy's own ``badness.is_bad`` (``fix_encoding`` changes nothing else). ``is_bad`` runs only on text with
        one of the characters every mojibake pattern needs (``mojibake_gate``)."""
        if Normalize._FTFY_CHARS.search(text):
            return True
        if text.isascii():
            return False
        import unicodedata

        from ftfy.badness import is_bad

        if not unicodedata.is_normalized("NFC", text):
            return True
        gate = mojibake_gate()
        return (gate is None or gate.search(text) is not None) and is_bad(text)

    def setup(self) -> None:
        from dataclasses import replace

        self._plain = replace(self.cfg, fix_unicode=False)

    def process(self, doc: Document) -> str | None:
        t = doc.text
        # "&": normalize_text undoes HTML escapes first, and those can make anything, mojibake included
        fast = "&" not in t and not self.needs_ftfy(t)
        doc.text = normalize_text(t, self._plain if fast else self.cfg)
        return None if doc.text else "empty"


class LanguageID(TweetStep):
    """Language of each post among ``cfg.languages`` with ``langid.LanguageDetector``: by default fastText's
    ``lid.176.ftz`` with lingua deciding where fastText is unsure (``cfg.lang_detector``; both offline).

    URLs, @mentions and hashtags are removed before detection; a post with no letters left, or one the detector
    cannot decide, is ``und``. Writes ``metadata["lang_detected"]`` (ISO 639-1) and fills ``lang`` where the reader
    left it empty. Drops nothing.
    """

    type = "🌐 - LANGUAGE"
    name = "language id"
    slug = "lang"

    def setup(self) -> None:
        from tweetlm.data.pipeline.langid import LanguageDetector

        c = self.cfg
        self._detector = LanguageDetector(c.language_list(), c.lang_detector, c.lang_unsure_below, c.lang_short_below)

    def process(self, doc: Document) -> str | None:
        meta = doc.metadata
        mode = self.cfg.lang_detect
        skip = mode == "off" or (mode == "missing" and meta.get("lang"))
        meta["lang_detected"] = None if skip else self._detector.detect(doc.text)
        if not meta.get("lang") and meta["lang_detected"]:
            meta["lang"] = meta["lang_detected"]
        return None


def spam_reason(text: str, cfg: PipelineConfig) -> str | None:
    """``spam_hashtags`` / ``spam_mentions`` / ``spam_urls`` when that share of whitespace tokens exceeds its
    limit in ``cfg`` (posts of at least ``cfg.spam_min_tokens`` tokens), else ``None``."""
    tokens = text.split()
    if len(tokens) < cfg.spam_min_tokens:
        return None
    n = len(tokens)
    # each count only where its character is in the text at all (a substring test costs far less than the loop)
    if "#" in text or "\uff03" in text:
        tags = sum(1 for t in tokens if t[0] in "#\uff03" and len(t) > 1)
        if tags / n > cfg.max_hashtag_ratio:
            return "spam_hashtags"
    if "@" in text:
        mentions = sum(1 for t in tokens if t[0] == "@" and len(t) > 1)
        if mentions / n > cfg.max_mention_ratio:
            return "spam_mentions"
    if "http" in text or "www." in text:
        urls = sum(1 for t in tokens if t.startswith(("http://", "https://", "www.")))
        if urls / n > cfg.max_url_ratio:
            return "spam_urls"
    return None


class QualityFilter(TweetStep):
    """Drops ``too_short`` (< ``min_chars``), ``too_long`` (> ``max_chars``), ``language`` (not in
    ``keep_languages``) and the ratio-based spam of ``spam_reason``. Repeated templates need every task's posts
    and are dropped in ``decide.py``."""

    type = "🔻 - FILTER"
    name = "length, language, spam"
    slug = "filter"

    def setup(self) -> None:
        self._keep = set(self.cfg.keep_language_list())

    def process(self, doc: Document) -> str | None:
        n = len(doc.text)
        if n < self.cfg.min_chars:
            return "too_short"
        if self.cfg.max_chars and n > self.cfg.max_chars:
            return "too_long"
        if self._keep and doc.metadata.get("lang") not in self._keep:
            return "language"
        if doc.metadata.get("kind") == "thread":  # a conversation document is judged by its posts
            return None
        return spam_reason(doc.text, self.cfg)


class PIIScrub(TweetStep):
    """Replaces e-mail addresses with ``<email>`` (datatrove's ``PIIFormatter`` pattern), phone numbers with
    ``<phone>`` and, with ``scrub_handles``, ``@handle`` with ``@user``. Counts replacements in the stats
    (``emails``, ``phones``); drops nothing."""

    type = "✂️ - FORMAT"
    name = "PII scrub"
    slug = "pii"

    def setup(self) -> None:
        from datatrove.pipeline.formatters import PIIFormatter

        self._emails = PIIFormatter(remove_ips=False, email_replacement="<email>")

    def process(self, doc: Document) -> str | None:
        t = doc.text
        if self.cfg.scrub_emails and "@" in t and "." in t:
            new = self._emails.format(t)
            if new != t:
                self.stat_update("emails", value=new.count("<email>") - t.count("<email>"))
                t = new
        if self.cfg.scrub_phones and ("+" in t or _PHONE_GATE.search(t)):
            t, n = _PHONE.subn("<phone>", t)
            if n:
                self.stat_update("phones", value=n)
        if self.cfg.scrub_handles:
            t = sub_mention("@user", t)
        doc.text = t
        return None


PREPARED_COLUMNS = (
    "order", "id", "text", "source", "split", "created_at", "author_id", "lang", "lang_detected", "kind",
    "reply_to_id", "conversation_id", "quoted_id", "retweeted_id", "hashtags", "mentions", "urls", "labels",
    "prov_file", "prov_record", "prov_reader", "truncated", "key", "rt_key", "template",
)  # fmt: skip


def prepared_schema(num_perm: int):
    import pyarrow as pa

    s, i64, ls = pa.string(), pa.int64(), pa.list_(pa.string())
    types = {
        "order": i64, "prov_record": i64, "key": i64, "rt_key": i64, "template": i64,
        "hashtags": ls, "mentions": ls, "urls": ls, "truncated": pa.bool_(),
    }  # fmt: skip
    fields = [pa.field(c, types.get(c, s)) for c in PREPARED_COLUMNS]
    return pa.schema(fields + [pa.field("minhash", pa.list_(pa.uint32(), num_perm))])


class PrepareWriter(PipelineStep):
    """Sink of a task: adds the dedup key (``text.dedup_key``, hashed), the retweet key of an ``RT @h:``
    post (the key of the text after the prefix), the template key and the MinHash signature (``minhash.py``), and
    writes ``<work>/prepared/<rank>.parquet`` in batches. ``decide.py`` reads these files. With ``near_dedup``, the
    LSH band hashes of the posts long enough for it go to ``<work>/lsh/`` (``buckets.BandHashWriter``). The task's
    CPU and wall seconds (all its steps) go to ``<work>/usage/prepare-<rank>.json`` (``usage_written``)."""

    type = "💽 - WRITER"
    name = "keys + MinHash signatures"

    def __init__(self, cfg: PipelineConfig, work_dir: str | Path, batch: int = 8192):
        super().__init__()
        self.cfg = cfg
        self.work_dir = str(work_dir)
        self.batch = batch

    def _flush(self, writer, docs: list[Document], perms, band_writer=None) -> None:
        import numpy as np
        import pyarrow as pa

        from tweetlm.data.pipeline.minhash import signatures

        keys = [dedup_key(d.text) for d in docs]
        with self.track_time("batch"):
            sigs = signatures(keys, self.cfg.minhash_shingle, perms)
        # column by column: one list per column, no per-post row dict
        metas = [d.metadata for d in docs]
        computed = {"id", "text", "labels", "key", "rt_key", "template"}
        cols: dict[str, list] = {c: [m.get(c) for m in metas] for c in PREPARED_COLUMNS if c not in computed}
        cols["id"] = [d.id for d in docs]
        cols["text"] = [d.text for d in docs]
        cols["labels"] = [labels_json(m.get("labels")) for m in metas]
        cols["key"] = [key_hash(k) for k in keys]
        cols["rt_key"] = [
            key_hash(dedup_key(d.text[rt.end() :])) if (rt := _RT_PREFIX.match(d.text)) and not m.get("retweeted_id")
            else None
            for d, m in zip(docs, metas)
        ]  # fmt: skip
        cols["template"] = [key_hash(template_key(d.text, k)) for d, k in zip(docs, keys)]
        schema = writer.schema
        arrays = [pa.array(cols[c], type=schema.field(c).type) for c in PREPARED_COLUMNS]
        flat = pa.array(np.ascontiguousarray(sigs).ravel(), type=pa.uint32())
        arrays.append(pa.FixedSizeListArray.from_arrays(flat, self.cfg.minhash_num_perm))
        writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        if band_writer is not None:  # the posts near-duplicate removal will look at (decide.py)
            long = np.fromiter(
                (len(d.text) >= self.cfg.near_dedup_min_chars for d in docs), dtype=bool, count=len(docs)
            )
            band_writer.add(np.asarray(cols["order"], dtype=np.int64)[long], sigs[long])
        self.stat_update("written", value=len(docs))

    def _write_all(self, data: DocumentsPipeline, rank: int) -> None:
        import pyarrow.parquet as pq

        from tweetlm.data.pipeline.buckets import BandHashWriter, bucket_tasks
        from tweetlm.data.pipeline.minhash import BANDING_KEY, lsh_banding, permutations

        perms = permutations(self.cfg.minhash_num_perm)
        out = Path(self.work_dir) / PREPARED_DIR / f"{rank:05d}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        buf: list[Document] = []
        c = self.cfg
        b, r = lsh_banding(c.minhash_threshold, c.minhash_num_perm)
        banding = json.dumps([b, r, c.minhash_threshold, c.minhash_num_perm])
        schema = prepared_schema(c.minhash_num_perm).with_metadata({BANDING_KEY: banding})
        bands = BandHashWriter(self.work_dir, rank, (b, r), bucket_tasks(c)) if c.near_dedup else None
        # no dictionary encoding: it was 4 of the 5 us a row of writing this file and saved 3% of its size here
        # (a 52k-row prepared file, snappy: 4.99 -> 0.96 us a row written, 17.8 -> 18.4 MB)
        with (
            pq.ParquetWriter(tmp, schema, use_dictionary=False) as writer,
            bands or contextlib.nullcontext(),
            gc_frozen(),
        ):
            for doc in data or ():
                buf.append(doc)
                if len(buf) >= self.batch:
                    self._flush(writer, buf, perms, bands)
                    buf = []
            if buf:
                self._flush(writer, buf, perms, bands)
        tmp.replace(out)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        with usage_written(self.work_dir, "prepare", rank):  # upstream steps are lazy: nothing ran yet
            self._write_all(data, rank)
        return iter(())
