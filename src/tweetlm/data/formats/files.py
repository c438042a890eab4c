"""What every file reader shares (layer L1, data): the file being read, the corpus root, made-up ids, CSV rows.

``FileInfo`` is one file (or zip member) to read: its path, the path as the user wrote it, its path relative to
the corpus root (source names and made-up ids come from it) and its first bytes, which detection looks at.
``FileReader`` pairs a ``detect(info)`` with a ``read(info, ledger)``; each format module under
``data.formats`` exports its ``READERS`` and ``dispatch`` tries them in order. This module reads no posts.

Made-up ids: a post whose file gives no id gets ``"<source>:<file>:<record>"`` (``FileInfo.fallback_id``), the
file named by its path relative to the source's folder (``tweetqa:train.json:17``), so two files of one layout
in one folder never share an id; ``dispatch`` refuses two input files with one relative path.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath

from tweetlm.data.formats import compressed
from tweetlm.data.formats.base import Emitter, finish, has_surrogates, json_int
from tweetlm.data.formats.tabular import ColumnMap, mark_cut_column
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post, Provenance

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 100_000
"""Default cap on a post's text: a post longer than this is quarantined as ``too_long`` while it is read, before
any later step sees it. Posts on X hold at most 25,000 characters (Premium long posts); a 50 MB text made the
MinHash step allocate 12.5 GiB and a 200 MB one stalled language identification."""

LINE_BYTES_PER_CHAR = 200
"""A JSONL or text line over ``200 * max_chars`` bytes (20 MB by default; a v2 page of 500 posts with its
``includes`` is a few MB) is quarantined as ``too_long`` unparsed."""

CORPUS_HINT = "--corpus ../shared/corpora or a folder of post files (.jsonl/.json/.csv/.parquet/.txt, an X archive)"

HEAD_BYTES = 1 << 16


@dataclass
class FileInfo:
    """One file to read: where it is, its path relative to the corpus root, and its first bytes. A ``member``
    is a file inside the zip at ``path``; a compressed file (``.gz``, ``.zst``...) is seen decompressed."""

    path: Path
    display: str  # the path as the user would write it (the given path joined with the walked part)
    rel: tuple[str, ...]  # path parts relative to the root that source names are derived from
    head: bytes
    member: str | None = None
    columns: ColumnMap = field(default_factory=ColumnMap)
    truncated: bool = False
    max_chars: int = MAX_TEXT_CHARS
    _csv_header: list[str] | None = field(default=None, repr=False)
    _prefixes: dict[str, str] = field(default_factory=dict, repr=False)

    def line_too_long(self, raw: bytes) -> bool:
        """A line of a line-per-record file too long to hold one record worth parsing (``LINE_BYTES_PER_CHAR``)."""
        return bool(self.max_chars) and len(raw) > LINE_BYTES_PER_CHAR * self.max_chars

    @property
    def name(self) -> str:
        """The file name without a compression suffix (``posts.jsonl`` for ``posts.jsonl.gz``)."""
        return compressed.logical_name(PurePosixPath(self.member).name if self.member else self.path.name)

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    def id_prefix(self, source: str) -> str:
        """``"<source>:<file>"``: ``<file>`` is this file's path relative to the source's folder, without a
        compression suffix (``tweetqa:train.json``, ``tweeteval/emotion:train_text.txt``, ``myposts/a:a.jsonl``)."""
        cached = self._prefixes.get(source)
        if cached is not None:
            return cached
        parts = self.rel[:-1] + (self.name,)
        folders = source.split("/")
        k = 0
        while k < len(folders) and k < len(parts) - 1 and parts[k] == folders[k]:
            k += 1
        self._prefixes[source] = f"{source}:{'/'.join(parts[k:])}"
        return self._prefixes[source]

    def fallback_id(self, source: str, record: int) -> str:
        """The made-up id of record ``record`` (0-based) of this file: ``"<id_prefix>:<record>"``. Unique per
        file: two files of one layout in one folder differ in their path, and ``dispatch`` refuses two input
        files with one ``rel``."""
        return f"{self.id_prefix(source)}:{record}"

    @property
    def corpus(self) -> str:
        """The top folder of the source name (``tweeteval``), or the file stem when the file stands alone."""
        return self.rel[0] if len(self.rel) > 1 else self.stem

    @property
    def dir_source(self) -> str:
        """The file's folder as a source name (``tweeteval/stance/abortion``)."""
        return "/".join(self.rel[:-1]) or self.path.parent.name or self.stem

    @property
    def stem_source(self) -> str:
        """Folder plus file stem (``fivethirtyeight_tweets/mayweather-mcgregor_tweets``)."""
        return "/".join(self.rel[:-1] + (self.stem,))

    def read_bytes(self) -> bytes:
        """The file's bytes, decompressed; sets ``truncated`` when a compressed stream ends early.

        Raises:
            ValueError: the file cannot be read or decompressed at all.
        """
        decoded = compressed.read_bytes(self.path, self.member, self.display)
        if decoded.truncated:
            log.warning("%s ends early (truncated compressed stream); its last record is incomplete", self.display)
            self.truncated = True
        return decoded.data

    def csv_header(self) -> list[str]:
        """The first CSV row, read from the head bytes (latin-1 keeps every byte; headers are ASCII)."""
        if self._csv_header is None:
            text = self.head.decode("latin-1").removeprefix("\xef\xbb\xbf")  # a UTF-8 BOM, seen as latin-1
            try:
                first = next(csv.reader(io.StringIO(text, newline="")), [])
            except csv.Error:  # NUL bytes and the like: not a CSV any reader here can use
                first = []
            self._csv_header = [h.strip() for h in first]
        return self._csv_header


class RootFinder:
    """Finds the folder source names are relative to: the parent of the nearest folder holding ``SOURCE.txt``
    (the shared corpora mark each corpus so), else the parent of the folder passed in, else the file's folder."""

    def __init__(self) -> None:
        self._cache: dict[Path, Path | None] = {}

    def corpus_dir(self, d: Path) -> Path | None:
        if d not in self._cache:
            if (d / "SOURCE.txt").is_file():
                self._cache[d] = d
            else:
                self._cache[d] = None if d.parent == d else self.corpus_dir(d.parent)
        return self._cache[d]

    def root_for(self, file: Path, given: Path) -> Path:
        found = self.corpus_dir(file.parent)
        if found is not None:
            return found.parent
        return given.parent if given.is_dir() else file.parent


def walk(given: Path, skipped: list[str] | None = None) -> Iterator[Path]:
    """Files under ``given`` (``given`` itself when it is a file), in sorted order, hidden ones left out.

    Symbolic links to folders are followed, each real folder once: a link to a folder already walked (a loop
    back up the tree, or a second link to one folder) is not entered again, logged and listed in ``skipped``
    with the reason, never dropped without a word."""
    if given.is_file():
        yield given
        return
    visited: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(given, followlinks=True):
        here = Path(dirpath)
        visited.add(here.resolve())
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            real = (here / d).resolve()
            if real in visited or real in here.resolve().parents or real == here.resolve():
                why = f"{here / d} (a link to the folder {real}, already read: not read again)"
                log.warning("%s", why)
                if skipped is not None:
                    skipped.append(why)
                continue
            visited.add(real)
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            yield here / name


def split_lines(raw: bytes) -> list[bytes]:
    """Records of a line-per-record file: split on ``\\n`` only (U+2028 and friends stay inside a post),
    drop one ``\\r`` before it, and do not count the empty piece after a final newline."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def looks_binary(head: bytes) -> bool:
    """True for data that is not text: a NUL byte, or more than 30% control bytes or undecodable UTF-8."""
    if not head:
        return False
    if b"\x00" in head:
        return True
    text = head.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") + sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f\v\x1b")
    return bad > 0.3 * max(1, len(text))


def binary_error(info: FileInfo) -> ValueError:
    return ValueError(
        f"{info.display} is not a text file ({not_text_problem(info)[1]}); point the corpus at tweet files "
        f"instead: {CORPUS_HINT}"
    )


def not_text_problem(info: FileInfo) -> tuple[str, str]:
    """Why a file the readers would take by its name holds no text: ``(reason, words)``. The reason names the
    problem for the quarantine log: ``utf16_text`` (a UTF-16 byte order mark or every other byte NUL: save
    it as UTF-8), ``corrupt_compressed`` (a ``.gz``/``.zst``... that does not decompress), ``nul_byte`` or
    ``binary_data``."""
    head = info.head[:HEAD_BYTES]
    half = len(head) // 2
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (
        half >= 2 and max(head[::2].count(0), head[1::2].count(0)) > 0.4 * half
    ):
        return "utf16_text", "UTF-16 text; save it as UTF-8 and read it again"
    if not info.member and info.path.name.lower().endswith(".zip"):
        return "corrupt_compressed", "not a valid zip file: its members cannot be listed; re-download it"
    suffix = compressed.compression_of(info.member or info.path.name)
    if suffix is not None:
        return "corrupt_compressed", f"not a valid {suffix} file: it does not decompress; re-download it"
    if b"\x00" in head:
        return "nul_byte", f"a NUL byte at byte {head.index(0)}: binary data, or text in another encoding"
    return "binary_data", f"binary data: undecodable bytes in its first {len(head)} bytes"


def iso_local(naive: datetime, utc_offset_hours: float = 0.0) -> str:
    """Naive local time with a known UTC offset -> ``YYYY-MM-DDTHH:MM:SSZ``."""
    return (naive - timedelta(hours=utc_offset_hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str, fmt: str, utc_offset_hours: float = 0.0) -> str | None:
    try:
        return iso_local(datetime.strptime(value.strip(), fmt), utc_offset_hours)
    except ValueError:
        return None


@dataclass(frozen=True)
class FileReader:
    name: str
    detect: Callable[[FileInfo], bool]
    read: Callable[[FileInfo, Ledger], Iterator[Post]]


def prov(info: FileInfo, record: int, reader: str) -> Provenance:
    return Provenance(file=info.display, record=record, reader=reader)


class _LineFeed:
    """The physical lines of a text from ``start`` on, counting how many a ``csv.reader`` has taken
    (``next``: the index of the next line), so a record can be mapped back to the lines it spans."""

    def __init__(self, lines: list[str], start: int) -> None:
        self.lines, self.next = lines, start

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if self.next >= len(self.lines):
            raise StopIteration
        self.next += 1
        return self.lines[self.next - 1]


def _quote_runs_on(lines: list[str]) -> bool:
    """True when the lines of one multi-line CSV record are not one well-formed record: a quote opened and
    never closed (strict parsing reaches the end inside it), or closed by a quote of a later row so that text
    follows a closing quote. A well-formed quoted field with line breaks parses strictly as one record."""
    try:
        return len(list(csv.reader(lines, strict=True))) != 1
    except csv.Error:
        return True


def csv_records(info: FileInfo, text: str, ledger: Ledger, source: str) -> Iterator[tuple[int, list[str], list[str]]]:
    """(record number, header, row) for each data row; blank lines are not records. Rows whose field count
    differs from the header's are quarantined as ``wrong_field_count``. A record that spans several lines but
    does not parse strictly (an unterminated quote swallowing the rows after it) is quarantined as
    ``unterminated_quote`` with its first line only, and reading resumes at the next line, so the rows it
    swallowed are read as rows."""
    lines = io.StringIO(text, newline="").readlines()
    feed = _LineFeed(lines, 0)
    reader = csv.reader(feed)
    try:
        header = [h.strip() for h in next(reader, [])]
        record = 0
        while True:
            first = feed.next
            try:
                row = next(reader, None)
            except csv.Error as e:
                if "field larger than field limit" not in str(e):
                    raise
                # a field over csv.field_size_limit() (131,072 characters): too long to be a post; the record
                # is quarantined and reading resumes after the lines it took
                ledger.seen(source)
                ledger.quarantine(source, info.display, record, "too_long", lines[first].rstrip("\r\n")[:150])
                feed = _LineFeed(lines, max(feed.next, first + 1))
                reader = csv.reader(feed)
                record += 1
                continue
            if row is None:
                break
            if not row:
                continue
            if feed.next - first > 1 and _quote_runs_on(lines[first : feed.next]):
                ledger.seen(source)
                ledger.quarantine(source, info.display, record, "unterminated_quote", lines[first].rstrip("\r\n")[:150])
                feed = _LineFeed(lines, first + 1)
                reader = csv.reader(feed)
            elif len(row) != len(header):
                ledger.seen(source)
                ledger.quarantine(
                    source,
                    info.display,
                    record,
                    "wrong_field_count",
                    f"{len(row)} fields, header has {len(header)}: " + ",".join(row)[:150],
                )
            else:
                yield record, header, row
            record += 1
    except csv.Error as e:
        raise ValueError(f"{info.display}: malformed CSV near line {feed.next}: {e}") from e


def utf8_csv_rows(info: FileInfo, ledger: Ledger, source: str) -> Iterator[tuple[int, list[str], list[str]]]:
    """``csv_records`` of a UTF-8 CSV file, each record counted as seen; a record with bytes that are not
    UTF-8 is quarantined as ``invalid_utf8`` (the excerpt shows them as U+FFFD)."""
    text = info.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    for i, header, row in csv_records(info, text, ledger, source):
        ledger.seen(source)
        if has_surrogates(*row):
            excerpt = ",".join(row).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            ledger.quarantine(source, info.display, i, "invalid_utf8", excerpt)
            continue
        yield i, header, row


def decode_or_none(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def load_json(info: FileInfo) -> object:
    try:
        return json.loads(info.read_bytes(), parse_int=json_int)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{info.display} is not valid JSON ({e}); it cannot be read record by record") from e


def emitter(info: FileInfo, source: str, reader: str) -> Emitter:
    """The ``Emitter`` of one file's records; its made-up ids are ``info.fallback_id``'s."""
    return Emitter(source=source, file=info.display, reader=reader, id_prefix=info.id_prefix(source))


def finish_file(info: FileInfo, em: Emitter, ledger: Ledger, next_record: int) -> Iterator[Post]:
    """Account for a compressed stream that ended early (one ``truncated_file`` record), mark the posts of a
    text column cut at a fixed length (``formats.tabular.mark_cut_column``), then account for every outcome
    (``formats.base.finish``)."""
    if info.truncated:
        em.quarantine(next_record, "truncated_file", "the compressed stream ended before its end marker")
    mark_cut_column(em, info.columns)
    return finish(em, ledger)
