"""Corpus readers (layer L1, data): turn files on disk into ``Post`` records, accounting for every record.

``read_corpus(paths, ledger)`` walks folders and files, matches each file to one reader by its path and shape
(file name, header row, first bytes), and yields Posts. For every raw record a reader calls ``ledger.seen``
once, then either yields a Post or calls ``ledger.quarantine`` with a short snake_case reason
(``invalid_utf8``, ``invalid_json``, ``not_an_object``, ``missing_text``, ``wrong_field_count``,
``unterminated_quote``, ``missing_label``, ``invalid_thread``, ``too_long``; a whole file that holds no text or
cannot be read: ``utf16_text``, ``nul_byte``, ``corrupt_compressed``, ``binary_data``, ``unreadable_file``).
Readers never drop for cleaning reasons (empty text, duplicates across sources, language): that is
``data.clean``'s job. The one drop made here is within a
file: TweetQA repeats a tweet once per question, and repeats are dropped as ``same_tweet_as_earlier_question``.

Text repair happens here only where the damage is part of a file format (see ARCHITECTURE.md "Formats"):

- SemEval-2017 Task 4 TSV (and the TweetEval ``sentiment`` / XLM-T ``english`` files built from it): the
  text field is CSV-quoted in the 2013-2015 files and 2016 test (inner quote marks doubled once or twice),
  with JSON-style ``\\"`` and literal ``\\uXXXX`` escapes (surrogate pairs included). These layers are
  undone; nothing else is touched. Files that were never CSV-quoted (2016 train/dev/devtest, 2014 sarcasm)
  keep their quote marks: there a tweet wrapped in quotes is a tweet quoting another.
- Ibrohim & Budi 2019 (Indonesian): the text is the body of a Python ``bytes`` repr with its leading ``b'``
  cut off: literal ``\\xf0\\x9f..`` byte escapes (decoded where they form valid UTF-8, kept literally where
  they do not, e.g. an escape truncated at the end of a tweet), ``\\n``/``\\t``/``\\'``/``\\\\`` escapes and
  the closing ``'`` delimiter (stripped). The file also holds raw bytes that are not UTF-8; those decode to
  U+FFFD instead of costing the record.
- fivethirtyeight ``twitter-ratio`` CSVs: each UTF-8 byte was read as cp1252 and written as MacRoman (once for
  realDonaldTrump, twice for BarackObama), with bytes MacRoman cannot hold replaced by ``_`` and classic-Mac
  ``\\r`` line breaks. ``ftfy.fix_encoding`` repairs only the lossless triples of the one-round file (U+2019
  seen as a-circumflex, euro, trademark) and nothing of the two-round file, so ``_undo_macroman`` inverts the
  exact byte mapping instead, trying every preimage of a ``_`` and keeping the readings that are valid UTF-8
  (Shinzo with a macron, Erdogan with a breve and Vietnamese names come back exactly); a character that stays
  ambiguous becomes U+FFFD, except a lost ``E2 80 ??`` that ends the text or precedes a link, which is
  Twitter's truncation ellipsis U+2026.

Platform formats (X API v1.1 and v2, the X archive, Bluesky, Mastodon, Parquet, compressed and zipped files)
are parsed by ``data.formats``; the ``jsonl``/``json``/``parquet``/``csv``/``x_archive`` readers here find the
files and hand each record to it. Those readers also drop ``duplicate_id``, ``superseded_by_edit``,
``deleted``, ``delete_event``, ``not_a_post`` and the archive's note records, and quarantine ``missing_id``,
``bad_id``, ``bad_created_at``, ``truncated``, ``api_error``, ``no_posts_in_zip`` and ``unsafe_path`` (a zip
member named to leave the archive, never read; see ``data.formats.base``).

For the shared research corpora, HTML entities (``&amp;``), ``RT @user:`` prefixes, trailing spaces and every
other oddity are left for ``data.clean``. Readers do not split, de-duplicate or filter by language.

Conventions: ``Post.id`` is the real tweet id where the corpus has one (always parsed as a string by the stdlib
``csv``/``json`` modules, never through floats), else ``"<source>:<split or all>:<record>"`` with ``record``
the 0-based record number in the file. ``split`` is set only where the corpus ships it: TweetEval and XLM-T
``train_``/``val_`` files, IndoLEM ``train*``/``dev*``, SemEval ``*train*``/``*dev*`` (SemEval ``test``,
``devtest`` and ``sarcasm`` files and IndoLEM ``test*`` get ``None``: they are test sets of the original
tasks, not ours, and the cleaning step splits them by id hash like any other post). ``created_at`` is ISO 8601
UTC (``2015-02-24T19:35:00Z``); each corpus's time zone was checked against the timestamp in its tweet ids.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path, PurePosixPath

from tweetlm.data.formats import compressed, x_archive
from tweetlm.data.formats.base import Emitter, finish, iter_json_values, json_int
from tweetlm.data.formats.base import id_or_none as _id_or_none
from tweetlm.data.formats.records import is_schema_document, parse_value
from tweetlm.data.formats.tabular import ColumnMap, mark_cut_column, parquet_rows, parse_generic
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post, Provenance

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 100_000
"""Default cap on a post's text: a post longer than this is quarantined as ``too_long`` while it is read, before
any later step sees it. Posts on X hold at most 25,000 characters (Premium long posts); a 50 MB text made the
MinHash step allocate 12.5 GiB and a 200 MB one stalled language identification."""
_LINE_BYTES_PER_CHAR = 200
"""A JSONL or text line over ``200 * max_chars`` bytes (20 MB by default; a v2 page of 500 posts with its
``includes`` is a few MB) is quarantined as ``too_long`` unparsed."""
CORPUS_HINT = "--corpus ../shared/corpora or a folder of post files (.jsonl/.json/.csv/.parquet/.txt, an X archive)"
_HEAD_BYTES = 1 << 16

# ----------------------------------------------------------------------------------------------------------
# locating files and naming sources


@dataclass
class _FileInfo:
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

    def line_too_long(self, raw: bytes) -> bool:
        """A line of a line-per-record file too long to hold one record worth parsing (``_LINE_BYTES_PER_CHAR``)."""
        return bool(self.max_chars) and len(raw) > _LINE_BYTES_PER_CHAR * self.max_chars

    @property
    def name(self) -> str:
        """The file name without a compression suffix (``posts.jsonl`` for ``posts.jsonl.gz``)."""
        return compressed.logical_name(PurePosixPath(self.member).name if self.member else self.path.name)

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

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


class _RootFinder:
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


def _walk(given: Path) -> Iterator[Path]:
    if given.is_file():
        yield given
        return
    for dirpath, dirnames, filenames in os.walk(given):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            yield Path(dirpath) / name


# ----------------------------------------------------------------------------------------------------------
# small helpers


def _split_lines(raw: bytes) -> list[bytes]:
    """Records of a line-per-record file: split on ``\\n`` only (U+2028 and friends stay inside a post),
    drop one ``\\r`` before it, and do not count the empty piece after a final newline."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def _looks_binary(head: bytes) -> bool:
    """True for data that is not text: a NUL byte, or more than 30% control bytes or undecodable UTF-8."""
    if not head:
        return False
    if b"\x00" in head:
        return True
    text = head.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") + sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f\v\x1b")
    return bad > 0.3 * max(1, len(text))


def _binary_error(info: _FileInfo) -> ValueError:
    return ValueError(
        f"{info.display} is not a text file ({_not_text_problem(info)[1]}); point the corpus at tweet files "
        f"instead: {CORPUS_HINT}"
    )


def _not_text_problem(info: _FileInfo) -> tuple[str, str]:
    """Why a file the readers would take by its name holds no text: ``(reason, words)``. The reason names the
    problem for the quarantine log: ``utf16_text`` (a UTF-16 byte order mark or every other byte NUL: save
    it as UTF-8), ``corrupt_compressed`` (a ``.gz``/``.zst``... that does not decompress), ``nul_byte`` or
    ``binary_data``."""
    head = info.head[:_HEAD_BYTES]
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


def _fallback_id(source: str, split: str | None, record: int) -> str:
    return f"{source}:{split or 'all'}:{record}"


def _iso_utc(naive: datetime, utc_offset_hours: float = 0.0) -> str:
    """Naive local time with a known UTC offset -> ``YYYY-MM-DDTHH:MM:SSZ``."""
    return (naive - timedelta(hours=utc_offset_hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str, fmt: str, utc_offset_hours: float = 0.0) -> str | None:
    try:
        return _iso_utc(datetime.strptime(value.strip(), fmt), utc_offset_hours)
    except ValueError:
        return None


def _parse_any_time(value: object) -> str | None:
    """Generic formats: ISO 8601 (naive means UTC) or the X API v1.1 form ``Wed Aug 27 13:08:45 +0000 2008``."""
    if not isinstance(value, str) or not value.strip():
        return None
    s = value.strip()
    for parse in (datetime.fromisoformat, lambda v: datetime.strptime(v, "%a %b %d %H:%M:%S %z %Y")):
        try:
            dt = parse(s)
        except ValueError:
            continue
        if dt.tzinfo is not None:
            dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
        return _iso_utc(dt)
    return None


_U_ESCAPE = re.compile(r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})")


def _decode_u_escapes(text: str) -> str:
    """Literal ``\\uXXXX`` escapes -> characters; a surrogate pair becomes one character, a lone surrogate
    escape stays literal (it has no character)."""

    def sub(m: re.Match) -> str:
        if m.group(1):
            return chr(0x10000 + ((int(m.group(1), 16) - 0xD800) << 10) + (int(m.group(2), 16) - 0xDC00))
        cp = int(m.group(3), 16)
        return m.group(0) if 0xD800 <= cp <= 0xDFFF else chr(cp)

    return _U_ESCAPE.sub(sub, text) if "\\u" in text else text


_QUOTE_RUN = re.compile(r'"+')


def _has_odd_quote_run(s: str) -> bool:
    return any(len(r) % 2 for r in _QUOTE_RUN.findall(s))


def _looks_csv_escaped(rest: str) -> bool:
    """What is left of a field that lost one outer quote still shows CSV escaping: doubled inner quotes, or no
    inner quote but a comma (the reason it was quoted)."""
    if '"' not in rest:
        return "," in rest
    return '""' in rest and not _has_odd_quote_run(rest)


def repair_semeval_text(text: str, csv_quoted: bool = True) -> str:
    """Undo the SemEval-2017 Task 4 text-field encoding: CSV quoting (applied once or twice to inner quotes),
    JSON-style ``\\"`` and literal ``\\uXXXX`` escapes. Trailing spaces (TweetEval adds one) are kept.

    With ``csv_quoted`` a field is unquoted when it starts and ends with ``"`` and every run of ``"`` inside has
    even length; inner runs are then halved while they all stay even (a backslash and four quote marks become
    one ``"``). A field that kept only one of its outer quotes (TweetEval's ``@user`` masking ate some) is
    unquoted the same way when the rest still looks CSV-escaped (``_looks_csv_escaped``). Without
    ``csv_quoted`` (SemEval files that were never CSV-quoted) only the ``\\uXXXX`` escapes are decoded.
    """
    core = text.rstrip(" ")
    tail = text[len(core) :]
    if csv_quoted and '"' in core:
        inner = None
        if len(core) >= 2 and core[0] == '"' and core[-1] == '"' and not _has_odd_quote_run(core[1:-1]):
            inner = core[1:-1]
        elif core[0] == '"' and _looks_csv_escaped(core[1:]):
            inner = core[1:]
        elif core[-1] == '"' and _looks_csv_escaped(core[:-1]):
            inner = core[:-1]
        if inner is not None:
            core = inner
            while '""' in core:
                core = core.replace('""', '"')
                if _has_odd_quote_run(core):
                    break
        if '\\"' in core:
            core = core.replace('\\"', '"')
    return _decode_u_escapes(core) + tail


def _semeval_file_is_csv_quoted(texts: list[str]) -> bool:
    """True when the file quotes its text fields like CSV: no unquoted field holds a comma or a quote mark.
    (2013-2015 files and 2016 test do; 2016 train/dev/devtest and 2014 sarcasm hold raw text, where a field
    wrapped in quotes is a tweet quoting another.)"""
    for t in texts:
        if not (len(t) >= 2 and t[0] == '"' and t[-1] == '"') and ("," in t or '"' in t):
            return False
    return True


_PY_ESCAPE = re.compile(
    r"\\(?:x([0-9a-fA-F]{2})|u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|([nrt'\\]))"
)
_PY_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "'": "'", "\\": "\\"}


def _decode_utf8_keep_invalid(b: bytes) -> str:
    """Decode UTF-8, writing bytes that do not decode back as literal ``\\xhh`` escapes."""
    out, i = [], 0
    while i < len(b):
        try:
            out.append(b[i:].decode("utf-8"))
            break
        except UnicodeDecodeError as e:
            out.append(b[i : i + e.start].decode("utf-8"))
            out.append("".join(f"\\x{c:02x}" for c in b[i + e.start : i + e.end]))
            i += e.end
    return "".join(out)


def repair_bytes_repr_text(text: str) -> str:
    """Undo a Python ``bytes`` repr body (the Ibrohim & Budi 2019 texts): strip the closing ``'`` delimiter
    (when not itself escaped), turn runs of ``\\xhh`` into the UTF-8 characters they spell (invalid or truncated
    runs stay literal), and decode ``\\n \\r \\t \\' \\\\`` and ``\\uXXXX``. Other backslashes stay as they are."""
    if text.endswith("'"):
        n_bs = len(text[:-1]) - len(text[:-1].rstrip("\\"))
        if n_bs % 2 == 0:
            text = text[:-1]
    if "\\" not in text:
        return text
    out: list[str] = []
    pending = bytearray()

    def flush() -> None:
        if pending:
            out.append(_decode_utf8_keep_invalid(bytes(pending)))
            pending.clear()

    pos = 0
    for m in _PY_ESCAPE.finditer(text):
        if m.start() > pos:
            flush()
            out.append(text[pos : m.start()])
        hx, hi, lo, u, simple = m.groups()
        if hx is not None:
            pending.append(int(hx, 16))
        else:
            flush()
            if hi is not None:
                out.append(chr(0x10000 + ((int(hi, 16) - 0xD800) << 10) + (int(lo, 16) - 0xDC00)))
            elif u is not None:
                cp = int(u, 16)
                out.append(m.group(0) if 0xD800 <= cp <= 0xDFFF else chr(cp))
            else:
                out.append(_PY_SIMPLE[simple])
        pos = m.end()
    flush()
    out.append(text[pos:])
    return "".join(out)


# ----------------------------------------------------------------------------------------------------------
# MacRoman-of-cp1252 mojibake (fivethirtyeight twitter-ratio)

_CP1252_UNDEFINED = frozenset({0x81, 0x8D, 0x8F, 0x90, 0x9D})  # passed through unchanged by the damage
_UNDERSCORE = 0x5F


def _damage_byte(x: int) -> int:
    """One round of the damage on one byte: read as cp1252, write as MacRoman (``_`` when MacRoman lacks it)."""
    if x < 0x80 or x in _CP1252_UNDEFINED:
        return x
    try:
        return bytes([x]).decode("cp1252").encode("mac_roman")[0]
    except UnicodeEncodeError:
        return _UNDERSCORE


@lru_cache(maxsize=4)
def _preimages(rounds: int) -> dict[int, tuple[int, ...]]:
    """For each damaged byte, the original bytes that ``rounds`` rounds of damage map to it (itself first)."""
    one: dict[int, set[int]] = {}
    for x in range(256):
        one.setdefault(_damage_byte(x), set()).add(x)
    table = {y: {y} for y in range(256)}
    for _ in range(rounds):
        table = {y: set().union(*(one.get(z, set()) for z in s)) for y, s in table.items()}
    return {y: tuple(sorted(s, key=lambda v: (v != y, v))) for y, s in table.items()}


def _utf8_shape(lead: int) -> tuple[int, int, int]:
    """(sequence length, allowed range of the 2nd byte) for a UTF-8 lead byte; length 0 if it cannot lead."""
    if lead < 0x80:
        return 1, 0, 0
    if 0xC2 <= lead <= 0xDF:
        return 2, 0x80, 0xBF
    if lead == 0xE0:
        return 3, 0xA0, 0xBF
    if lead == 0xED:
        return 3, 0x80, 0x9F
    if 0xE1 <= lead <= 0xEF:
        return 3, 0x80, 0xBF
    if lead == 0xF0:
        return 4, 0x90, 0xBF
    if 0xF1 <= lead <= 0xF3:
        return 4, 0x80, 0xBF
    if lead == 0xF4:
        return 4, 0x80, 0x8F
    return 0, 0, 0


def _run_decodings(run: bytes, pre: dict[int, tuple[int, ...]], limit: int) -> list[str] | None:
    """Every valid UTF-8 reading of a damaged byte run (None when there are more than ``limit``)."""
    out: list[str] = []
    overflow = False

    def seq(i: int, j: int, n: int, lo: int, hi: int, acc: list[int]) -> None:
        nonlocal overflow
        if overflow:
            return
        if j == n:
            start(i + n, acc)
            return
        for c in pre[run[i + j]]:
            if (lo if j == 1 else 0x80) <= c <= (hi if j == 1 else 0xBF):
                seq(i, j + 1, n, lo, hi, acc + [c])

    def start(i: int, acc: list[int]) -> None:
        nonlocal overflow
        if overflow:
            return
        if i == len(run):
            out.append(bytes(acc).decode("utf-8"))
            overflow = len(out) > limit
            return
        for lead in pre[run[i]]:
            n, lo, hi = _utf8_shape(lead)
            if n and i + n <= len(run):
                seq(i, 1, n, lo, hi, acc + [lead])

    start(0, [])
    return None if overflow else out


_OK_FORMAT = frozenset("\u200d\ufe0f\u20e3")  # ZWJ, emoji presentation selector, keycap


def _plausible(s: str) -> bool:
    """Rejects decodings no English tweet would contain: unassigned, private, control and format characters,
    combining marks other than emoji modifiers, and letters outside the Latin script (Cyrillic, Hebrew, CJK...)."""
    for ch in s:
        if ch in _OK_FORMAT:
            continue
        cat = unicodedata.category(ch)
        if cat[0] in "CM" or (cat[0] == "L" and not unicodedata.name(ch, "").startswith("LATIN")):
            return False
    return True


def _choose(decodings: list[str], ellipsis_ok: bool) -> str:
    """One text from several candidate decodings: characters they all agree on, U+FFFD where they differ
    (U+2026 instead when it is a candidate and the run ends the text or precedes a link)."""
    if len(decodings) == 1:
        return decodings[0]
    if len({len(d) for d in decodings}) == 1:
        chars = []
        for pos, options in enumerate(zip(*decodings)):
            if len(set(options)) == 1:
                chars.append(options[0])
            elif ellipsis_ok and pos == len(decodings[0]) - 1 and "\u2026" in options:
                chars.append("\u2026")
            else:
                chars.append("\ufffd")
        return "".join(chars)
    prefix = os.path.commonprefix(decodings)
    suffix = os.path.commonprefix([d[::-1] for d in decodings])[::-1]
    shortest = min(len(d) for d in decodings)
    suffix = suffix[: max(0, shortest - len(prefix))]
    return prefix + "\ufffd" + suffix


_HIGH_RUN = re.compile(rb"[_\x80-\xff]*[\x80-\xff][_\x80-\xff]*")


def _undo_macroman(raw: bytes, rounds: int) -> str:
    """Invert ``rounds`` rounds of cp1252->MacRoman damage on one field; ``\\r`` line breaks become ``\\n``."""
    pre = _preimages(rounds)
    out, pos = [], 0
    for m in _HIGH_RUN.finditer(raw):
        out.append(raw[pos : m.start()].decode("ascii"))
        found = _run_decodings(m.group(), pre, limit=4096)
        plausible = [d for d in found if _plausible(d)] if found else []
        if not plausible:  # too many readings, or none a tweet would contain: the characters are lost
            out.append("\ufffd")
        else:
            rest = raw[m.end() : m.end() + 4]
            out.append(_choose(plausible, ellipsis_ok=not rest or rest[:1].isspace() or rest == b"http"))
        pos = m.end()
    out.append(raw[pos:].decode("ascii"))
    return "".join(out).replace("\r\n", "\n").replace("\r", "\n")


def _macroman_rounds(raw: bytes) -> int:
    """How many damage rounds a file went through: 0 if it is valid UTF-8, else the round count (1 or 2) under
    which the most byte runs have a valid reading."""
    try:
        raw.decode("utf-8")
        return 0
    except UnicodeDecodeError:
        pass
    runs = set(_HIGH_RUN.findall(raw))
    failures = {k: sum(1 for r in runs if _run_decodings(r, _preimages(k), limit=0) == []) for k in (1, 2)}
    return min(failures, key=lambda k: (failures[k], k))


# ----------------------------------------------------------------------------------------------------------
# readers


@dataclass(frozen=True)
class _Reader:
    name: str
    detect: Callable[[_FileInfo], bool]
    read: Callable[[_FileInfo, Ledger], Iterator[Post]]


def _prov(info: _FileInfo, record: int, reader: str) -> Provenance:
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


def _csv_records(info: _FileInfo, text: str, ledger: Ledger, source: str) -> Iterator[tuple[int, list[str], list[str]]]:
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


def _utf8_csv_rows(info: _FileInfo, ledger: Ledger, source: str) -> Iterator[tuple[int, list[str], list[str]]]:
    """``_csv_records`` of a UTF-8 CSV file, each record counted as seen; a record with bytes that are not
    UTF-8 is quarantined as ``invalid_utf8`` (the excerpt shows them as U+FFFD)."""
    text = info.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    for i, header, row in _csv_records(info, text, ledger, source):
        ledger.seen(source)
        if _has_surrogates(row):
            excerpt = ",".join(row).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            ledger.quarantine(source, info.display, i, "invalid_utf8", excerpt)
            continue
        yield i, header, row


def _decode_or_none(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _has_surrogates(row: Iterable[str]) -> bool:
    return any(any("\udc80" <= ch <= "\udcff" for ch in f) for f in row)


# --- TweetEval-style text/labels pairs (tweeteval, xlmt_umsab_sentiment) ---------------------------------

_PAIR_TEXT = re.compile(r"^(train|val|dev|test)_text\.txt$")
_PAIR_SPLIT = {"train": "train", "val": "val", "dev": "val", "test": None}
_XLMT_LANG = {
    "arabic": "ar",
    "english": "en",
    "french": "fr",
    "german": "de",
    "hindi": "hi",
    "italian": "it",
    "portuguese": "pt",
    "spanish": "es",
}
_XLMT_SENTIMENT = {"0": "negative", "1": "neutral", "2": "positive"}  # cardiffnlp/xlm-t README


def _load_mapping(folder: Path, stop: int) -> dict[str, str]:
    """``mapping.txt`` (``id<TAB>name[<TAB>...]``) from the folder or up to ``stop`` folders above it."""
    for d in [folder, *list(folder.parents)[:stop]]:
        m = d / "mapping.txt"
        if m.is_file():
            out = {}
            for line in m.read_text(encoding="utf-8").splitlines():
                parts = line.split("\t")
                if len(parts) >= 2 and parts[0].strip():
                    out[parts[0].strip()] = parts[1].strip()
            return out
    return {}


def _read_text_labels(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    prefix = _PAIR_TEXT.match(info.name).group(1)
    split = _PAIR_SPLIT[prefix]
    source = info.dir_source
    corpus = info.rel[0] if len(info.rel) > 2 else ""
    sub = info.rel[1] if len(info.rel) > 2 else ""
    lang = None
    repair = False
    if corpus == "tweeteval":
        key, lang, mapping = sub, "en", _load_mapping(info.path.parent, stop=len(info.rel) - 2)
        repair = sub == "sentiment"  # built from the SemEval-2017 files, escapes and all
    elif corpus == "xlmt_umsab_sentiment":
        key, lang, mapping = "sentiment", _XLMT_LANG.get(sub), _XLMT_SENTIMENT
        repair = sub == "english"
    else:
        key, mapping = "label", _load_mapping(info.path.parent, stop=1)
    extra = {"target": info.rel[2]} if corpus == "tweeteval" and sub == "stance" and len(info.rel) > 3 else {}

    labels_path = info.path.with_name(f"{prefix}_labels.txt")
    label_lines = None
    if labels_path.is_file():
        label_lines = [ln.decode("utf-8", errors="replace").strip() for ln in _split_lines(labels_path.read_bytes())]
    lines = _split_lines(info.read_bytes())
    if label_lines is not None and len(label_lines) != len(lines):
        log.warning("%s has %d lines but %s has %d", info.display, len(lines), labels_path.name, len(label_lines))
    for i, raw in enumerate(lines):
        ledger.seen(source)
        text = _decode_or_none(raw)
        if text is None:
            ledger.quarantine(source, info.display, i, "invalid_utf8", raw.decode("utf-8", errors="replace"))
            continue
        labels: dict[str, str] = {}
        if label_lines is not None:
            if i >= len(label_lines):
                ledger.quarantine(source, info.display, i, "missing_label", text)
                continue
            value = label_lines[i]
            labels = {key: mapping.get(value, value), **extra}
        if repair:
            text = repair_semeval_text(text)
        yield Post(
            id=_fallback_id(source, split, i),
            text=text,
            source=source,
            split=split,
            lang=lang,
            labels=labels,
            provenance=_prov(info, i, "text_labels"),
        )


def _detect_text_labels(info: _FileInfo) -> bool:
    return bool(_PAIR_TEXT.match(info.name))


# --- SemEval-2017 Task 4 TSV ------------------------------------------------------------------------------

_SEMEVAL_LINE = re.compile(rb"^\d+\t[A-Za-z-]+\t")


def _semeval_split(name: str) -> str | None:
    n = name.lower()
    if "devtest" in n:
        return None
    if "dev" in n:
        return "val"
    if "train" in n:
        return "train"
    return None


def _detect_semeval(info: _FileInfo) -> bool:
    return info.name.lower().endswith(".tsv") and bool(_SEMEVAL_LINE.match(info.head))


def _read_semeval(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    source = info.corpus
    split = _semeval_split(info.name)
    rows: list[tuple[bytes, str | None, list[str]]] = []
    for raw in _split_lines(info.read_bytes()):
        line = _decode_or_none(raw)
        rows.append((raw, line, line.split("\t") if line is not None else []))
    csv_quoted = _semeval_file_is_csv_quoted([parts[2] for _, _, parts in rows if len(parts) in (3, 4)])
    for i, (raw, line, parts) in enumerate(rows):
        ledger.seen(source)
        if line is None:
            ledger.quarantine(source, info.display, i, "invalid_utf8", raw.decode("utf-8", errors="replace"))
            continue
        # id, label, text; twitter-2016test adds a 4th column, empty except on 10 rows where it holds a v1.1
        # "+0000" time that is off from the id's own timestamp by whole hours (-2 to +9): local times mislabelled
        # as UTC, so it is not used
        if len(parts) not in (3, 4):
            ledger.quarantine(source, info.display, i, "wrong_field_count", line)
            continue
        yield Post(
            id=_id_or_none(parts[0]) or _fallback_id(source, split, i),
            text=repair_semeval_text(parts[2], csv_quoted),
            source=source,
            split=split,
            lang="en",
            labels={"sentiment": parts[1].strip()},
            provenance=_prov(info, i, "semeval_tsv"),
        )


# --- Davidson et al. 2017 ---------------------------------------------------------------------------------

_DAVIDSON_CLASS = {"0": "hate_speech", "1": "offensive_language", "2": "neither"}  # the corpus readme


def _detect_davidson(info: _FileInfo) -> bool:
    h = info.csv_header() if info.name.lower().endswith(".csv") else []
    return bool(h) and h[-1] == "tweet" and {"hate_speech", "offensive_language", "neither", "class"} <= set(h)


def _read_davidson(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    source = info.corpus
    text = info.read_bytes().decode("utf-8", errors="surrogateescape")
    for i, header, row in _csv_records(info, text, ledger, source):
        ledger.seen(source)
        if _has_surrogates(row):
            ledger.quarantine(source, info.display, i, "invalid_utf8", ",".join(row))
            continue
        d = dict(zip(header, row))
        cls = d["class"].strip()
        yield Post(
            id=_fallback_id(source, None, i),
            text=d["tweet"],
            source=source,
            lang="en",
            labels={"class": _DAVIDSON_CLASS.get(cls, cls)},
            provenance=_prov(info, i, "davidson_csv"),
        )


# --- Twitter US Airline Sentiment (Crowdflower) -----------------------------------------------------------

_AIRLINE_COLS = {"tweet_id", "airline_sentiment", "airline", "text", "tweet_created"}


def _detect_airline(info: _FileInfo) -> bool:
    return info.name.lower().endswith(".csv") and _AIRLINE_COLS <= set(info.csv_header())


def _read_airline(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    source = info.corpus
    for i, header, row in _utf8_csv_rows(info, ledger, source):
        d = dict(zip(header, row))
        labels = {"sentiment": d["airline_sentiment"], "brand": d["airline"]}
        if d.get("negativereason"):
            labels["negative_reason"] = d["negativereason"]
        yield Post(
            id=_id_or_none(d["tweet_id"]) or _fallback_id(source, None, i),
            text=d["text"],
            source=source,
            lang="en",
            # "2/24/2015 11:35" is US Pacific time (UTC-8 in Feb 2015): all 14,640 rows match their id's timestamp
            created_at=_parse_time(d["tweet_created"], "%m/%d/%Y %H:%M", utc_offset_hours=-8),
            labels=labels,
            provenance=_prov(info, i, "airline_csv"),
        )


# --- fivethirtyeight: twitter-ratio, trump-twitter, mayweather-mcgregor -------------------------------------

_RATIO_HEADER = ["created_at", "text", "url", "replies", "retweets", "favorites", "user"]
_MAYWEATHER_HEADER = ["created_at", "emojis", "id", "link", "retweeted", "screen_name", "text"]
_STATUS_ID = re.compile(r"/status(?:es)?/(\d+)")


def _detect_ratio(info: _FileInfo) -> bool:
    return info.name.lower().endswith(".csv") and info.csv_header() == _RATIO_HEADER


def _read_ratio(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    source = info.stem_source
    raw = info.read_bytes()
    rounds = _macroman_rounds(raw)
    text = raw.decode("utf-8") if rounds == 0 else raw.decode("latin-1")  # latin-1: byte-exact, for the csv split
    for i, header, row in _csv_records(info, text, ledger, source):
        ledger.seen(source)
        d = dict(zip(header, row))
        body = d["text"] if rounds == 0 else _undo_macroman(d["text"].encode("latin-1"), rounds)
        m = _STATUS_ID.search(d["url"])
        yield Post(
            id=m.group(1) if m else _fallback_id(source, None, i),
            text=body,
            source=source,
            # "10/16/17 22:59" is UTC: every row is within a minute of its id's timestamp
            created_at=_parse_time(d["created_at"], "%m/%d/%y %H:%M"),
            provenance=_prov(info, i, "ratio_csv"),
        )


def _detect_mayweather(info: _FileInfo) -> bool:
    return info.name.lower().endswith(".csv") and info.csv_header() == _MAYWEATHER_HEADER


def _read_mayweather(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    source = info.stem_source
    for i, header, row in _utf8_csv_rows(info, ledger, source):
        d = dict(zip(header, row))
        yield Post(
            id=_id_or_none(d["id"]) or _fallback_id(source, None, i),
            text=d["text"],
            source=source,
            # "2017-08-27 00:05:34" is US Eastern daylight time (UTC-4): the README's "12:05 a.m. EDT", and every
            # row matches its id's timestamp
            created_at=_parse_time(d["created_at"], "%Y-%m-%d %H:%M:%S", utc_offset_hours=-4),
            provenance=_prov(info, i, "mayweather_csv"),
        )


def _detect_trump_poll(info: _FileInfo) -> bool:
    return (
        info.name.lower().startswith("trump-twitter")
        and info.name.lower().endswith(".csv")
        and info.csv_header() == ["id", "created_at", "text"]
    )


def _read_trump_poll(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    source = info.stem_source
    for i, header, row in _utf8_csv_rows(info, ledger, source):
        d = dict(zip(header, row))
        yield Post(
            # 3 rows carry spreadsheet-rounded ids ("7.02608E+17"): they get the fallback id
            id=_id_or_none(d["id"]) or _fallback_id(source, None, i),
            text=d["text"],
            source=source,
            created_at=_parse_time(d["created_at"], "%m/%d/%Y %H:%M:%S"),  # UTC, checked against the ids
            provenance=_prov(info, i, "trump_poll_csv"),
        )


# --- Ibrohim & Budi 2019, Indonesian hate speech ----------------------------------------------------------


def _detect_ibrohim(info: _FileInfo) -> bool:
    h = info.csv_header() if info.name.lower().endswith(".csv") else []
    return h[:3] == ["Tweet", "HS", "Abusive"]


def _read_ibrohim(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    source = info.corpus
    # 341 lines hold bytes that are not UTF-8 (broken sequences with '?' in them): U+FFFD, record kept
    text = info.read_bytes().decode("utf-8-sig", errors="replace")
    for i, header, row in _csv_records(info, text, ledger, source):
        ledger.seen(source)
        yield Post(
            id=_fallback_id(source, None, i),
            text=repair_bytes_repr_text(row[0]),
            source=source,
            lang="id",
            labels={h: v.strip() for h, v in zip(header[1:], row[1:])},
            provenance=_prov(info, i, "ibrohim_csv"),
        )


# --- IndoLEM: sentiment CSVs and tweet-ordering threads ----------------------------------------------------

_INDOLEM_SENTIMENT = {"0": "negative", "1": "positive"}


def _stem_split(stem: str) -> str | None:
    s = stem.lower()
    if s.startswith("train"):
        return "train"
    if s.startswith(("dev", "val")):
        return "val"
    return None


def _detect_indolem_sentiment(info: _FileInfo) -> bool:
    return info.name.lower().endswith(".csv") and info.csv_header() == ["sentence", "sentiment"]


def _read_indolem_sentiment(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    source = info.dir_source
    split = _stem_split(info.stem)
    for i, _header, row in _utf8_csv_rows(info, ledger, source):
        value = row[1].strip()
        yield Post(
            id=_fallback_id(source, split, i),
            text=row[0],
            source=source,
            split=split,
            lang="id",
            labels={"sentiment": _INDOLEM_SENTIMENT.get(value, value)},
            provenance=_prov(info, i, "indolem_sentiment_csv"),
        )


_JSON_LIST_OF = re.compile(rb'^\s*\[\s*\{\s*"(\w+)"')


def _load_json(info: _FileInfo) -> object:
    try:
        return json.loads(info.read_bytes(), parse_int=json_int)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{info.display} is not valid JSON ({e}); it cannot be read record by record") from e


def _detect_indolem_ordering(info: _FileInfo) -> bool:
    return info.name.lower().endswith(".json") and b'"tweets"' in info.head[:4096] and b'"order"' in info.head


def _read_indolem_ordering(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    """One thread document per record. ``order[i]`` is the position of ``tweets[i]`` in the thread (the IndoLEM
    model predicts a position per tweet), so the thread reads ``sorted(range(n), key=order.__getitem__)``."""
    source = info.dir_source
    split = _stem_split(info.stem)
    data = _load_json(info)
    if not isinstance(data, list):
        raise ValueError(f"{info.display}: expected a JSON list of {{tweets, order}} objects")
    for i, rec in enumerate(data):
        ledger.seen(source)
        tweets = rec.get("tweets") if isinstance(rec, dict) else None
        order = rec.get("order") if isinstance(rec, dict) else None
        if (
            not isinstance(tweets, list)
            or not all(isinstance(t, str) for t in tweets)
            or not isinstance(order, list)
            or sorted(order) != list(range(len(tweets)))
        ):
            ledger.quarantine(source, info.display, i, "invalid_thread", json.dumps(rec, ensure_ascii=False))
            continue
        text = "\n".join(tweets[j] for j in sorted(range(len(tweets)), key=order.__getitem__))
        yield Post(
            id=_fallback_id(source, split, i),
            text=text,
            source=source,
            split=split,
            lang="id",
            kind="thread",
            provenance=_prov(info, i, "indolem_ordering_json"),
        )


# --- TweetQA ----------------------------------------------------------------------------------------------


def _detect_tweetqa(info: _FileInfo) -> bool:
    h = info.head[:4096]
    return info.name.lower().endswith(".json") and b'"Tweet"' in h and b'"qid"' in h and b'"Question"' in h


TWEETQA_LABEL = "tweetqa"
"""Label of a TweetQA tweet: a JSON list of ``{"qid", "question", "answers"}``, every question asked about it
(the supervised fine-tuning set turns them into grounded question answering, ``data.sft``)."""


def _read_tweetqa(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    """The source tweet of each question, once, with all its questions and answers as the ``tweetqa`` label.
    The tweet text keeps its trailing attribution as the dataset scraped it from the embed
    (``#PatriotPride\u2014 Doug Ducey (@dougducey) February 12, 2016``): it is what the questions were asked
    about, and cutting it reliably would need the original markup."""
    source = info.corpus
    data = _load_json(info)
    if not isinstance(data, list):
        raise ValueError(f"{info.display}: expected a JSON list of TweetQA question objects")
    questions: dict[str, list[dict]] = {}
    for rec in data:
        if isinstance(rec, dict) and isinstance(rec.get("Tweet"), str) and isinstance(rec.get("Question"), str):
            answers = [a for a in rec.get("Answer") or [] if isinstance(a, str) and a.strip()]
            if answers:
                questions.setdefault(rec["Tweet"], []).append(
                    {"qid": str(rec.get("qid", "")), "question": rec["Question"], "answers": answers}
                )
    seen_texts: set[str] = set()
    for i, rec in enumerate(data):
        ledger.seen(source)
        tweet = rec.get("Tweet") if isinstance(rec, dict) else None
        if not isinstance(tweet, str):
            ledger.quarantine(source, info.display, i, "missing_text", json.dumps(rec, ensure_ascii=False))
            continue
        if tweet in seen_texts:
            ledger.drop(source, "same_tweet_as_earlier_question")
            continue
        seen_texts.add(tweet)
        yield Post(
            id=_fallback_id(source, None, i),
            text=tweet,
            source=source,
            lang="en",
            labels={TWEETQA_LABEL: json.dumps(questions[tweet], ensure_ascii=False)} if tweet in questions else {},
            provenance=_prov(info, i, "tweetqa_json"),
        )


# --- generic formats for a user's own posts, and the social-media formats of data.formats -----------------

_JSON_LINE_NAMES = (".jsonl", ".ndjson")
_JSON_DOC_NAMES = (".json",)


def _detect_json_lines(info: _FileInfo) -> bool:
    if not info.name.lower().endswith(_JSON_LINE_NAMES):
        return False
    if _looks_binary(info.head):
        raise _binary_error(info)
    return True


def _emitter(info: _FileInfo, source: str, reader: str) -> Emitter:
    return Emitter(source=source, file=info.display, reader=reader)


def _finish(info: _FileInfo, em: Emitter, ledger: Ledger, next_record: int) -> Iterator[Post]:
    """Account for a compressed stream that ended early (one ``truncated_file`` record), mark the posts of a
    text column cut at a fixed length (``formats.tabular.mark_cut_column``), then account for every outcome
    (``formats.base.finish``)."""
    if info.truncated:
        em.quarantine(next_record, "truncated_file", "the compressed stream ended before its end marker")
    mark_cut_column(em, info.columns)
    return finish(em, ledger)


def _read_json_lines(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    """One JSON value per line (JSON Lines; X API v2 pages as twarc writes them, v1.1 stream dumps, Jetstream
    events, generic ``{"text": ...}`` objects). Blank lines are not records; a line that is not UTF-8 or not
    JSON is quarantined (``invalid_utf8``, ``invalid_json``). Each value goes to ``formats.records``."""
    em = _emitter(info, info.stem_source, "jsonl")
    record = 0
    for raw in _split_lines(info.read_bytes()):
        if not raw.strip():
            continue
        i, record = record, record + 1
        if info.line_too_long(raw):
            em.quarantine(i, "too_long", f"a line of {len(raw)} bytes: " + raw[:150].decode("utf-8", "replace"))
            continue
        line = _decode_or_none(raw)
        if line is None:
            em.quarantine(i, "invalid_utf8", raw.decode("utf-8", errors="replace"))
            continue
        try:
            value = json.loads(line, parse_int=json_int)
        except json.JSONDecodeError:
            em.quarantine(i, "invalid_json", line)
            continue
        except RecursionError:
            em.quarantine(i, "too_deep", f"JSON nested deeper than {sys.getrecursionlimit()} levels: {line[:150]}")
            continue
        parse_value(value, em, i, info.columns, "jsonl")
    return _finish(info, em, ledger, record)


def _detect_json_doc(info: _FileInfo) -> bool:
    if not info.name.lower().endswith(_JSON_DOC_NAMES):
        return False
    if _looks_binary(info.head):
        raise _binary_error(info)
    return True


def _read_json_doc(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    """A ``.json`` file: one value, an array of values (elements are records), or values written back to back
    (``formats.base.iter_json_values``: broken pieces quarantined, reading resumes at the next object)."""
    em = _emitter(info, info.stem_source, "json")
    text = info.read_bytes().decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    n = 0
    for n, value in enumerate(iter_json_values(text), start=1):
        parse_value(value, em, n - 1, info.columns, "json")
    return _finish(info, em, ledger, n)


def _detect_parquet(info: _FileInfo) -> bool:
    return info.name.lower().endswith(".parquet")


def _read_parquet(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    """Parquet rows as generic records (``formats.tabular``: a ``text`` column or the mapped one)."""
    em = _emitter(info, info.stem_source, "parquet")
    data = info.read_bytes()
    n = 0
    for n, row in enumerate(parquet_rows(data, info.display), start=1):
        parse_generic(row, em, n - 1, info.columns, reader="parquet")
    return _finish(info, em, ledger, n)


def _archive_role(info: _FileInfo) -> str | None:
    """``"primary"`` for the first tweet part of an X archive (it reads the whole archive), ``"side"`` for its
    other parts, notes and account file, ``"other"`` for archive data that holds no posts of the account (likes,
    DMs, deleted tweets...), ``None`` for a file that is not archive data."""
    if not info.name.lower().endswith(".js") or not re.match(rb"\A(\xef\xbb\xbf)?\s*window\.YTD\.", info.head):
        return None
    part = x_archive.tweet_part_index(info.name)
    if part is not None:
        parts = [x_archive.tweet_part_index(n) for n in _sibling_names(info)]
        return "primary" if part == min(p for p in parts if p is not None) else "side"
    if x_archive.is_note_file(info.name) or info.name.lower() == "account.js":
        return "side"
    return "other"


def _sibling_names(info: _FileInfo) -> list[str]:
    if info.member is None:
        return sorted(p.name for p in info.path.parent.iterdir() if p.is_file())
    folder = str(PurePosixPath(info.member).parent)
    return sorted(
        PurePosixPath(m).name for m in compressed.zip_members(info.path) if str(PurePosixPath(m).parent) == folder
    )


def _sibling_text(info: _FileInfo, name: str) -> tuple[str, str]:
    """(shown path, text) of a file beside ``info`` (same folder, or same folder of the same zip)."""
    if info.member is None:
        path = info.path.parent / name
        shown = str(Path(info.display).parent / name)
        data = compressed.read_bytes(path, None, shown).data
    else:
        member = str(PurePosixPath(info.member).parent / name).removeprefix("./")
        shown = f"{info.path}/{member}"
        data = compressed.read_bytes(info.path, member, shown).data
    return shown, data.decode("utf-8", errors="surrogateescape")


def _detect_x_archive(info: _FileInfo) -> bool:
    return _archive_role(info) == "primary"


def _read_x_archive(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    """The whole X archive around this tweet file: every ``tweets*.js`` part in part order, ``note-tweet*.js``
    joined in, ``account.js`` for the author id (``formats.x_archive``)."""
    names = _sibling_names(info)
    parts = sorted((x_archive.tweet_part_index(n), n) for n in names if x_archive.tweet_part_index(n) is not None)
    rel = info.rel[:-2] if len(info.rel) > 2 and info.rel[-2] == "data" else info.rel[:-1]
    source = "/".join(rel) or info.stem
    em = _emitter(info, source, "x_archive")
    account = None
    if "account.js" in names:
        account = x_archive.account_id(_sibling_text(info, "account.js")[1])
    part_texts = [_sibling_text(info, n) for _, n in parts]
    notes = [_sibling_text(info, n) for n in names if x_archive.is_note_file(n)]
    x_archive.read_archive(part_texts, notes, account, em)
    return finish(em, ledger)


def _read_zip_without_posts(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    """A zip in which no member holds posts: one quarantined record naming what it holds."""
    em = _emitter(info, info.stem_source, "zip")
    members = compressed.zip_members(info.path)
    em.quarantine(0, "no_posts_in_zip", "members: " + ", ".join(members[:20]) if members else "an empty zip")
    return finish(em, ledger)


def _read_unsafe_zip_member(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    """A zip member whose name leaves the archive (``../../x.jsonl``, ``/etc/x``): one quarantined record
    (``unsafe_path``), counted under the zip's source; the member is never opened."""
    em = Emitter(source="/".join(info.rel), file=info.display, reader="zip")
    em.quarantine(0, "unsafe_path", f"zip member name {info.member!r} points outside the archive")
    return finish(em, ledger)


def _read_not_text(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    """A file named like posts that holds no text (UTF-16, a NUL byte, a corrupt ``.zst``): one quarantined
    record whose reason names the problem (``_not_text_problem``), so a run over a folder goes on and says so."""
    em = _emitter(info, info.stem_source, "not_text")
    reason, words = _not_text_problem(info)
    em.quarantine(0, reason, f"{info.display}: {words}")
    return finish(em, ledger)


def _text_column(header: list[str], columns: ColumnMap | None = None) -> str | None:
    low = {h.lower(): h for h in header}
    candidates = columns.columns_for("text", csv=True) if columns else ("text", "tweet")
    return next((low[c.lower()] for c in candidates if c.lower() in low), None)


def _detect_generic_csv(info: _FileInfo) -> bool:
    if not info.name.lower().endswith(".csv"):
        return False
    if _looks_binary(info.head):
        raise _binary_error(info)
    return _text_column(info.csv_header(), info.columns) is not None


def _read_generic_csv(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    """CSV with a ``text`` or ``tweet`` column (or the mapped one); ``id``/``tweet_id``, ``created_at``,
    ``lang``, ``author_id`` if present (header names matched case-insensitively)."""
    source = info.stem_source
    em = _emitter(info, source, "csv")
    scratch = Ledger()  # _utf8_csv_rows counts and quarantines per row; the emitter does the real accounting
    n = 0
    for i, header, row in _utf8_csv_rows(info, scratch, source):
        n = i + 1
        parse_generic({h.lower(): v for h, v in zip(header, row)}, em, i, info.columns, reader="csv", fold_case=True)
    for q in scratch.quarantine_log:
        em.quarantine(q.record, q.reason, q.excerpt)
    em.outcomes.sort(key=lambda o: o.record)
    return _finish(info, em, ledger, n)


def _detect_txt(info: _FileInfo) -> bool:
    if not info.name.lower().endswith(".txt"):
        return False
    if _looks_binary(info.head):
        raise _binary_error(info)
    return True


def _read_txt(info: _FileInfo, ledger: Ledger) -> Iterator[Post]:
    """One post per line; an empty line is an (empty) post, which cleaning drops with its reason."""
    source = info.stem_source
    for i, raw in enumerate(_split_lines(info.read_bytes())):
        ledger.seen(source)
        if info.line_too_long(raw):
            ledger.quarantine(source, info.display, i, "too_long", f"a line of {len(raw)} bytes")
            continue
        text = _decode_or_none(raw)
        if text is None:
            ledger.quarantine(source, info.display, i, "invalid_utf8", raw.decode("utf-8", errors="replace"))
            continue
        yield Post(id=_fallback_id(source, None, i), text=text, source=source, provenance=_prov(info, i, "txt"))


READERS: tuple[_Reader, ...] = (
    _Reader("text_labels", _detect_text_labels, _read_text_labels),
    _Reader("semeval_tsv", _detect_semeval, _read_semeval),
    _Reader("davidson_csv", _detect_davidson, _read_davidson),
    _Reader("airline_csv", _detect_airline, _read_airline),
    _Reader("ratio_csv", _detect_ratio, _read_ratio),
    _Reader("mayweather_csv", _detect_mayweather, _read_mayweather),
    _Reader("trump_poll_csv", _detect_trump_poll, _read_trump_poll),
    _Reader("ibrohim_csv", _detect_ibrohim, _read_ibrohim),
    _Reader("indolem_sentiment_csv", _detect_indolem_sentiment, _read_indolem_sentiment),
    _Reader("indolem_ordering_json", _detect_indolem_ordering, _read_indolem_ordering),
    _Reader("tweetqa_json", _detect_tweetqa, _read_tweetqa),
    _Reader("x_archive", _detect_x_archive, _read_x_archive),
    _Reader("jsonl", _detect_json_lines, _read_json_lines),
    _Reader("json", _detect_json_doc, _read_json_doc),
    _Reader("parquet", _detect_parquet, _read_parquet),
    _Reader("csv", _detect_generic_csv, _read_generic_csv),
    _Reader("txt", _detect_txt, _read_txt),
)
"""Tried in order; the first whose ``detect`` accepts a file reads it. The ``jsonl`` and ``json`` readers
recognise X API v1.1/v2, Gnip, Bluesky and Mastodon shapes per value (``formats.records``)."""

_METADATA_NAMES = frozenset(
    {"source.txt", "license", "license.txt", "mapping.txt", "citation.bib", "citation.cff", "filename_map.txt"}
)
_METADATA_SUFFIXES = (".md", ".bib", ".pdf", ".py", ".ipynb", ".sh")
_WORD_LISTS = frozenset({"abusive.csv", "new_kamusalay.csv"})  # lexicons shipped beside re_dataset.csv
_ZIP_READER = _Reader("zip_without_posts", lambda info: False, _read_zip_without_posts)
_UNSAFE_MEMBER_READER = _Reader("zip_unsafe_member", lambda info: False, _read_unsafe_zip_member)
_NOT_TEXT_READER = _Reader("not_text", lambda info: False, _read_not_text)
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


def _why_unmatched(info: _FileInfo) -> str:
    """Why no reader took a file, in words a user can act on."""
    name = info.name.lower()
    if _looks_binary(info.head):
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


def _match(info: _FileInfo, plan: list, unmatched: list[str], skipped: list[str]) -> None:
    role = _archive_role(info)
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
            unsafe = _FileInfo(path=f, display=f"{f}/{member}", rel=base, head=b"", member=member, columns=columns)
            plan.append((unsafe, _UNSAFE_MEMBER_READER))
            continue
        name = PurePosixPath(member).name.lower()
        if name.startswith(".") or name in _METADATA_NAMES or name.startswith("readme") or name.endswith(".md"):
            skipped.append(f"{f}/{member}")
            continue
        head = compressed.read_head(f, member, _HEAD_BYTES)
        info = _FileInfo(
            path=f,
            display=f"{f}/{member}",
            rel=base + tuple(member.split("/")),
            head=head,
            member=member,
            columns=columns,
        )
        _match(info, plan, unmatched, skipped)
    if len(plan) == before:
        plan.append((_FileInfo(path=f, display=str(f), rel=rel, head=b"", columns=columns), _ZIP_READER))


def _plan(paths: Iterable[str | Path], columns: ColumnMap | None = None) -> list[tuple[_FileInfo, _Reader]]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = list(paths)
    columns = columns or ColumnMap()
    if not paths:
        raise ValueError(f"no corpus paths given; pass {CORPUS_HINT}")
    roots = _RootFinder()
    plan: list[tuple[_FileInfo, _Reader]] = []
    seen_files: set[Path] = set()
    unmatched: list[str] = []
    skipped: list[str] = []
    for p in paths:
        given = Path(p)
        if not given.exists():
            raise ValueError(f"corpus path {str(p)!r} does not exist; pass {CORPUS_HINT}")
        given_abs = given.resolve()
        for f in _walk(given):
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
            root = roots.root_for(f_abs, given_abs)
            try:
                rel = f_abs.relative_to(root).parts
            except ValueError:
                rel = (f_abs.name,)
            if f.name.lower().endswith(".zip"):
                before = len(plan)
                try:
                    _plan_zip(f, rel, columns, plan, unmatched, skipped)
                except ValueError:  # not a readable zip (or a member that does not open): one bad record
                    del plan[before:]
                    with open(f_abs, "rb") as fh:
                        head = fh.read(_HEAD_BYTES)
                    plan.append((_FileInfo(path=f_abs, display=str(f), rel=rel, head=head, columns=columns),
                                 _NOT_TEXT_READER))  # fmt: skip
                continue
            head = compressed.read_head(f_abs, None, _HEAD_BYTES)
            info = _FileInfo(path=f_abs, display=str(f), rel=rel, head=head, columns=columns)
            _match(info, plan, unmatched, skipped)
    bad = [info for info, reader in plan if reader is _NOT_TEXT_READER]
    if bad and len(bad) == len(plan):  # nothing given is readable: a clear error, not a run of quarantines
        raise _binary_error(bad[0])
    if not plan:
        found = unmatched + [f"{s} (documentation, skipped)" for s in skipped]
        listing = ", ".join(found[:20]) + (f" and {len(found) - 20} more" if len(found) > 20 else "")
        raise ValueError(
            f"no readable posts in {[str(p) for p in paths]}: found {listing or 'no files'}; pass {CORPUS_HINT}"
        )
    if unmatched:
        log.warning("no reader for %d file(s), not read: %s", len(unmatched), ", ".join(unmatched[:20]))
    return plan


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

    def gen() -> Iterator[Post]:
        for info, reader in plan:
            try:
                for post in reader.read(info, ledger):
                    if max_chars and len(post.text) > max_chars:
                        excerpt = f"{len(post.text)} characters: {post.text[:150]}"
                        ledger.quarantine(
                            post.source, post.provenance.file, post.provenance.record, "too_long", excerpt
                        )
                        continue
                    yield post
            except (ValueError, OSError, RecursionError) as e:  # OSError: pyarrow's IOError on a damaged Parquet
                if len(plan) == 1:  # the one file given cannot be read: say so rather than build nothing
                    if isinstance(e, ValueError):
                        raise
                    raise ValueError(f"{info.display} cannot be read: {type(e).__name__}: {e}") from e
                # one unreadable file among others (a corrupt compressed stream, JSON that is not JSON): one
                # quarantined record under its source, and the rest is read. Readers that use an Emitter make
                # no ledger entry before the whole file has been parsed, so nothing is counted twice.
                log.warning("%s cannot be read, quarantined: %s", info.display, e)
                ledger.seen(info.stem_source)
                ledger.quarantine(info.stem_source, info.display, 0, _UNREADABLE, str(e))

    return gen()
