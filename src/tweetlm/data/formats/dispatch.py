"""The one way posts are read (layer L1, data): find the files under the given paths, match each to a format
reader, and yield ``Post`` records, accounting for every record.

``read_corpus(paths, ledger)`` walks folders (symbolic links followed, each real folder once: a link back up the
tree is not followed twice) and files, matches each file to the first reader of ``READERS`` whose ``detect``
accepts it (file name, header row, first bytes) and yields its Posts. Every format has its module under
``data.formats``: the research corpora (``text_labels``, ``semeval``, ``davidson``, ``airline``,
``fivethirtyeight``, ``ibrohim``, ``indolem``, ``tweetqa``) and the platform formats (``x_archive_files``,
``json_files`` for X API v1.1/v2, Gnip, Bluesky, Mastodon and generic objects, ``tables`` for CSV and Parquet,
``text_lines``). ``plan_corpus`` does the matching alone; ``read_corpus(..., files=)`` reads a subset of the
plan, so pipeline tasks read disjoint files.

For every raw record a reader calls ``ledger.seen`` once, then either yields a Post or quarantines the record
with a short snake_case reason (``invalid_utf8``, ``invalid_json``, ``not_an_object``, ``missing_text``,
``wrong_field_count``, ``unterminated_quote``, ``missing_label``, ``invalid_thread``, ``too_long``; a whole file
that holds no text or cannot be read: ``utf16_text``, ``nul_byte``, ``corrupt_compressed``, ``binary_data``,
``unreadable_file``). Readers never drop for cleaning reasons (empty text, duplicates across sources,
language): that is the pipeline's job (``data.pipeline.steps``). The drops made while reading are within a
file: TweetQA's repeated tweets (``same_tweet_as_earlier_question``), and the platform formats'
``duplicate_id``, ``superseded_by_edit``, ``deleted``, ``delete_event``, ``not_a_post`` and archive note records
(``formats.base``); they quarantine ``missing_id``, ``bad_id``, ``bad_created_at``, ``truncated``,
``api_error``, ``no_posts_in_zip`` and ``unsafe_path`` (a zip member named to leave the archive, never read).
Text repair happens while reading only where the damage is part of a file format (ARCHITECTURE.md "Formats";
``semeval``, ``ibrohim``, ``fivethirtyeight``); HTML entities, ``RT @user:`` prefixes and the rest are left for
the pipeline.

Conventions: ``Post.id`` is the real post id where the file has one (parsed as a string, never through
floats), else ``"<source>:<file>:<record>"`` (``files.FileInfo.fallback_id``; ``record`` the 0-based record
number in the file). ``split`` is set only where the corpus ships it. ``created_at`` is ISO 8601 UTC
(``2015-02-24T19:35:00Z``); each corpus's time zone was checked against the timestamp in its tweet ids.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from tweetlm.data.formats import (
    airline,
    compressed,
    davidson,
    fivethirtyeight,
    ibrohim,
    indolem,
    json_files,
    semeval,
    tables,
    text_labels,
    text_lines,
    tweetqa,
    x_archive_files,
)
from tweetlm.data.formats.base import Emitter, finish
from tweetlm.data.formats.files import (
    CORPUS_HINT,
    HEAD_BYTES,
    MAX_TEXT_CHARS,
    FileInfo,
    FileReader,
    RootFinder,
    binary_error,
    emitter,
    looks_binary,
    not_text_problem,
    walk,
)
from tweetlm.data.formats.records import is_schema_document
from tweetlm.data.formats.tabular import ColumnMap
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post

log = logging.getLogger(__name__)
__all__ = ["CORPUS_HINT", "MAX_TEXT_CHARS", "READERS", "plan_corpus", "read_corpus"]


def _read_zip_without_posts(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    """A zip in which no member holds posts: one quarantined record naming what it holds."""
    em = emitter(info, info.stem_source, "zip")
    members = compressed.zip_members(info.path)
    em.quarantine(0, "no_posts_in_zip", "members: " + ", ".join(members[:20]) if members else "an empty zip")
    return finish(em, ledger)


def _read_unsafe_zip_member(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    """A zip member whose name leaves the archive (``../../x.jsonl``, ``/etc/x``): one quarantined record
    (``unsafe_path``), counted under the zip's source; the member is never opened."""
    em = Emitter(source="/".join(info.rel), file=info.display, reader="zip")
    em.quarantine(0, "unsafe_path", f"zip member name {info.member!r} points outside the archive")
    return finish(em, ledger)


def _read_not_text(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    """A file named like posts that holds no text (UTF-16, a NUL byte, a corrupt ``.zst``): one quarantined
    record whose reason names the problem (``not_text_problem``), so a run over a folder goes on and says so."""
    em = emitter(info, info.stem_source, "not_text")
    reason, words = not_text_problem(info)
    em.quarantine(0, reason, f"{info.display}: {words}")
    return finish(em, ledger)


READERS: tuple[FileReader, ...] = (
    *text_labels.READERS,
    *semeval.READERS,
    *davidson.READERS,
    *airline.READERS,
    *fivethirtyeight.READERS,
    *ibrohim.READERS,
    *indolem.READERS,
    *tweetqa.READERS,
    *x_archive_files.READERS,
    *json_files.READERS,
    *tables.READERS,
    *text_lines.READERS,
)
"""Tried in order; the first whose ``detect`` accepts a file reads it. The ``jsonl`` and ``json`` readers
recognise X API v1.1/v2, Gnip, Bluesky and Mastodon shapes per value (``formats.records``)."""

_METADATA_NAMES = frozenset(
    {"source.txt", "license", "license.txt", "mapping.txt", "citation.bib", "citation.cff", "filename_map.txt"}
)

_METADATA_SUFFIXES = (".md", ".bib", ".pdf", ".py", ".ipynb", ".sh")

_WORD_LISTS = frozenset({"abusive.csv", "new_kamusalay.csv"})  # lexicons shipped beside re_dataset.csv

_ZIP_READER = FileReader("zip_without_posts", lambda info: False, _read_zip_without_posts)

_UNSAFE_MEMBER_READER = FileReader("zip_unsafe_member", lambda info: False, _read_unsafe_zip_member)

_NOT_TEXT_READER = FileReader("not_text", lambda info: False, _read_not_text)

_UNREADABLE = "unreadable_file"


def _is_metadata(path: Path) -> bool:
    """Documentation and side files that hold no posts (README*, LICENSE, SOURCE.txt, mapping.txt,
    FILENAME_MAP.txt, *.md, label files read with their ``*_text.txt``, the Indonesian word lists, hidden
    files)."""
    name = path.name.lower()
    if name.startswith(".") or name in _METADATA_NAMES or name.startswith("readme"):
        return True
    if name.endswith(_METADATA_SUFFIXES) or name.endswith("_labels.txt"):
        if name.endswith("_labels.txt") and not path.with_name(path.name[: -len("_labels.txt")] + "_text.txt").exists():
            log.warning("%s has no matching *_text.txt; labels without texts are not posts, skipped", path)
        return True
    return name in _WORD_LISTS and (path.parent / "re_dataset.csv").exists()


def plan_corpus(paths: Iterable[str | Path], columns: ColumnMap | None = None) -> list[tuple[Path, str, str]]:
    """Match every file under ``paths`` to a reader without reading it; returns ``(path, shown path, reader)``
    (for a zip member, ``path`` is the zip and the shown path is ``<zip>/<member>``).

    Raises ``ValueError`` for a path that does not exist, a file that is binary, or when no file matches any
    reader (the message lists what was found).
    """
    return [(info.path, info.display, reader.name) for info, reader in _plan(paths, columns)]


def _why_unmatched(info: FileInfo) -> str:
    """Why no reader took a file, in words a user can act on."""
    name = info.name.lower()
    if looks_binary(info.head):
        return "not a text file"
    if name.endswith(".csv"):
        mapped = info.columns.columns_for("text", csv=True) if info.columns else ()
        if mapped and info.columns.fields.get("text"):
            return f"CSV without the mapped text column {mapped[0]!r}; its columns: {', '.join(info.csv_header()[:12])}"
        return f"CSV without a 'text' or 'tweet' column; its columns: {', '.join(info.csv_header()[:12])}"
    return (
        "unknown format: posts are read from .txt (one per line), .csv (a text column), .jsonl/.json (X API, "
        "Bluesky, Mastodon or objects with a text field), .parquet, an X archive (.zip, data/ or tweets.js)"
    )


def _match(info: FileInfo, plan: list, unmatched: list[str], skipped: list[str]) -> None:
    role = x_archive_files.archive_role(info)
    if role in ("side", "other"):
        skipped.append(info.display)
        return
    if info.name.lower().endswith(".json") and is_schema_document(info.head):
        skipped.append(info.display)
        return
    try:
        reader = next((r for r in READERS if r.detect(info)), None)
    except ValueError:  # a detect that knows the file by name found binary data: the file is one bad record
        plan.append((info, _NOT_TEXT_READER))
        return
    if reader is None:
        unmatched.append(f"{info.display} ({_why_unmatched(info)})")
    else:
        plan.append((info, reader))


def _plan_zip(f: Path, rel: tuple[str, ...], columns: ColumnMap, plan: list, unmatched: list, skipped: list) -> None:
    """Plan every member of a zip as a file of its own; a zip where none holds posts is planned as one
    quarantined record (``no_posts_in_zip``), so a run over several inputs goes on and says so. A member whose
    name leaves the archive is planned as one quarantined record (``unsafe_path``) and never read."""
    before = len(plan)
    base = rel[:-1] + (PurePosixPath(f.name).stem,)
    for member in compressed.zip_members(f):
        if compressed.unsafe_member(member):
            unsafe = FileInfo(path=f, display=f"{f}/{member}", rel=base, head=b"", member=member, columns=columns)
            plan.append((unsafe, _UNSAFE_MEMBER_READER))
            continue
        name = PurePosixPath(member).name.lower()
        if name.startswith(".") or name in _METADATA_NAMES or name.startswith("readme") or name.endswith(".md"):
            skipped.append(f"{f}/{member}")
            continue
        head = compressed.read_head(f, member, HEAD_BYTES)
        info = FileInfo(
            path=f,
            display=f"{f}/{member}",
            rel=base + tuple(member.split("/")),
            head=head,
            member=member,
            columns=columns,
        )
        _match(info, plan, unmatched, skipped)
    if len(plan) == before:
        plan.append((FileInfo(path=f, display=str(f), rel=rel, head=b"", columns=columns), _ZIP_READER))


def _refuse_same_names(plan: list[tuple[FileInfo, FileReader]]) -> None:
    """Two input files named alike relative to their roots (``a/posts/x.jsonl`` and ``b/posts/x.jsonl`` given as
    ``a/posts`` and ``b/posts``) would share source names and made-up ids: ``ValueError`` naming both."""
    first: dict[tuple[str, ...], str] = {}
    for info, reader in plan:
        if reader in (_UNSAFE_MEMBER_READER, _ZIP_READER):
            continue
        other = first.setdefault(info.rel, info.display)
        if other != info.display:
            raise ValueError(
                f"{other} and {info.display} are both read as {'/'.join(info.rel)!r}: their posts would share source "
                "names and made-up ids; pass the folder that holds both (their common parent) instead, or rename one"
            )


def _plan(paths: Iterable[str | Path], columns: ColumnMap | None = None) -> list[tuple[FileInfo, FileReader]]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = list(paths)
    columns = columns or ColumnMap()
    if not paths:
        raise ValueError(f"no corpus paths given; pass {CORPUS_HINT}")
    roots = RootFinder()
    plan: list[tuple[FileInfo, FileReader]] = []
    seen_files: set[Path] = set()
    unmatched: list[str] = []
    skipped: list[str] = []
    for p in paths:
        given = Path(p)
        if not given.exists():
            raise ValueError(f"corpus path {str(p)!r} does not exist; pass {CORPUS_HINT}")
        given_abs = Path(os.path.abspath(given))  # links kept: a linked folder's files are named under the link
        for f in walk(given, skipped):
            try:
                f_abs = f.resolve(strict=True)
            except (OSError, RuntimeError) as e:  # a symlink loop (a -> b -> a) or a link to nothing
                log.warning("%s is a broken or looping symbolic link, not read: %s", f, e)
                skipped.append(f"{f} (broken or looping symbolic link)")
                continue
            if f_abs in seen_files or not f_abs.is_file():
                continue
            seen_files.add(f_abs)
            if _is_metadata(f):
                skipped.append(str(f))
                continue
            f_lex = Path(os.path.abspath(f))
            root = roots.root_for(f_lex, given_abs)
            try:
                rel = f_lex.relative_to(root).parts
            except ValueError:
                rel = (f_lex.name,)
            if f.name.lower().endswith(".zip"):
                before = len(plan)
                try:
                    _plan_zip(f, rel, columns, plan, unmatched, skipped)
                except ValueError:  # not a readable zip (or a member that does not open): one bad record
                    del plan[before:]
                    with open(f_abs, "rb") as fh:
                        head = fh.read(HEAD_BYTES)
                    plan.append((FileInfo(path=f_abs, display=str(f), rel=rel, head=head, columns=columns),
                                 _NOT_TEXT_READER))  # fmt: skip
                continue
            head = compressed.read_head(f_abs, None, HEAD_BYTES)
            info = FileInfo(path=f_abs, display=str(f), rel=rel, head=head, columns=columns)
            _match(info, plan, unmatched, skipped)
    _refuse_same_names(plan)
    bad = [info for info, reader in plan if reader is _NOT_TEXT_READER]
    if bad and len(bad) == len(plan):  # nothing given is readable: a clear error, not a run of quarantines
        raise binary_error(bad[0])
    if not plan:
        found = unmatched + [f"{s} (documentation, skipped)" for s in skipped]
        listing = ", ".join(found[:20]) + (f" and {len(found) - 20} more" if len(found) > 20 else "")
        raise ValueError(
            f"no readable posts in {[str(p) for p in paths]}: found {listing or 'no files'}; pass {CORPUS_HINT}"
        )
    if unmatched:
        log.warning("no reader for %d file(s), not read: %s", len(unmatched), ", ".join(unmatched[:20]))
    return plan


def assign_files(plan: list[tuple[FileInfo, FileReader]], world_size: int) -> list[int]:
    """The task (``0..world_size-1``) that reads each file of ``plan``: the largest files first, each to the task
    with the fewest bytes so far (ties to the lower rank), so tasks read disjoint files of about equal size.
    Bytes on disk stand in for work (a zip's members share its size)."""
    members: dict[Path, int] = {}
    for info, _ in plan:
        if info.member is not None:
            members[info.path] = members.get(info.path, 0) + 1
    sizes = []
    for info, _ in plan:
        try:
            size = info.path.stat().st_size
        except OSError:
            size = 0
        sizes.append(size // members[info.path] if info.member is not None else size)
    load = [0] * world_size
    owner = [0] * len(plan)
    for i in sorted(range(len(plan)), key=lambda i: (-sizes[i], i)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        owner[i] = rank
        load[rank] += sizes[i]
    return owner


ORDER_BITS = 32
"""A post's input position is ``(file index in the plan << ORDER_BITS) + its number among the file's posts``:
the same whatever task reads the file, so the pipeline puts posts back in one order for any number of tasks."""


def read_shard(
    paths: list[str | Path],
    ledger: Ledger,
    rank: int = 0,
    world_size: int = 1,
    columns: ColumnMap | None = None,
    max_chars: int = MAX_TEXT_CHARS,
    planning_warnings: bool = True,
) -> Iterator[tuple[int, Post]]:
    """``(input position, Post)`` from the files of ``paths`` that task ``rank`` of ``world_size`` reads
    (``assign_files``): tasks read disjoint files and never the others'. ``ledger`` accounts for this task's
    files only; the tasks' ledgers sum to ``read_corpus``'s. Positions: ``ORDER_BITS``. Raises as ``read_corpus``.
    ``planning_warnings=False``: what planning ``paths`` warns of (skipped files, broken links) is not logged again,
    for a task whose caller planned them and warned once already (``build_corpus``); errors still are.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not a task of {world_size}")
    level = log.level
    if not planning_warnings:
        log.setLevel(logging.ERROR)
    try:
        plan = _plan(paths, columns)
    finally:
        log.setLevel(level)
    owner = assign_files(plan, world_size)
    for info, _ in plan:
        info.max_chars = max_chars
    mine = [(i, info, reader) for i, ((info, reader), r) in enumerate(zip(plan, owner)) if r == rank]
    return _read_files(mine, ledger, max_chars, single=len(plan) == 1)


def _read_files(files: list, ledger: Ledger, max_chars: int, single: bool) -> Iterator[tuple[int, Post]]:
    for index, info, reader in files:
        k = 0
        try:
            for post in reader.read(info, ledger):
                if max_chars and len(post.text) > max_chars:
                    excerpt = f"{len(post.text)} characters: {post.text[:150]}"
                    ledger.quarantine(post.source, post.provenance.file, post.provenance.record, "too_long", excerpt)
                    continue
                yield (index << ORDER_BITS) + k, post
                k += 1
        except (ValueError, OSError, RecursionError) as e:  # OSError: pyarrow's IOError on a damaged Parquet
            if single:  # the one file given cannot be read: say so rather than build nothing
                if isinstance(e, ValueError):
                    raise
                raise ValueError(f"{info.display} cannot be read: {type(e).__name__}: {e}") from e
            # one unreadable file among others (a corrupt compressed stream, JSON that is not JSON): one
            # quarantined record under its source, and the rest is read. Readers that use an Emitter make
            # no ledger entry before the whole file has been parsed, so nothing is counted twice.
            log.warning("%s cannot be read, quarantined: %s", info.display, e)
            ledger.seen(info.stem_source)
            ledger.quarantine(info.stem_source, info.display, 0, _UNREADABLE, str(e))


def read_corpus(
    paths: list[str | Path], ledger: Ledger, columns: ColumnMap | None = None, max_chars: int = MAX_TEXT_CHARS
) -> Iterator[Post]:
    """Posts from every file under ``paths`` (folders walked recursively in sorted order, or single files;
    ``.zip`` members and ``.gz``/``.zst``/``.bz2``/``.xz`` files read transparently).

    Each file is matched to one reader by its name and first bytes (see ``READERS``); documentation files are
    skipped. ``columns`` maps Post fields to the columns of generic CSV/JSONL/Parquet records
    (``ColumnMap.parse("text=body,id=post_id")``). The walk and matching happen now, so a bad path fails before
    the first post; the files are read lazily as the iterator is consumed. For every raw record
    ``ledger.seen(source)`` is called once and the record is either yielded, dropped with a reason or
    quarantined, so per source ``records_in == yielded + dropped + quarantined``. A post whose text is longer
    than ``max_chars`` characters (0: no limit) is quarantined as ``too_long``, and a JSONL or ``.txt`` line over
    ``200 * max_chars`` bytes is quarantined so without being parsed. In a run over several files, a file that
    holds no text (``utf16_text``, ``nul_byte``, ``corrupt_compressed``, ``binary_data``) or cannot be read
    (``unreadable_file``) is one quarantined record and the others are read.

    Raises:
        ValueError: a path does not exist; every file given is binary; the one file given is not valid JSON
            where JSON is its format, or not readable at all (a corrupt zip or compressed file), or a CSV
            malformed beyond one record; or no file under ``paths`` matches a reader.
    """
    plan = _plan(paths, columns)
    for info, _ in plan:
        info.max_chars = max_chars
    files = [(i, info, reader) for i, (info, reader) in enumerate(plan)]
    return (post for _, post in _read_files(files, ledger, max_chars, single=len(plan) == 1))
