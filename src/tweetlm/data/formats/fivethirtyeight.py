"""The fivethirtyeight tweet CSVs (layer L1, data): ``twitter-ratio``, ``trump-twitter`` poll tweets and
``mayweather-mcgregor``.

The ``twitter-ratio`` CSVs had each UTF-8 byte read as cp1252 and written as MacRoman (once for
realDonaldTrump, twice for BarackObama), with bytes MacRoman cannot hold replaced by ``_`` and classic-Mac ``\\r``
line breaks. ``ftfy.fix_encoding`` repairs only the lossless triples of the one-round file (U+2019 seen as
a-circumflex, euro, trademark) and nothing of the two-round file, so ``_undo_macroman`` inverts the exact byte
mapping instead, trying every preimage of a ``_`` and keeping the readings that are valid UTF-8 (Shinzo with a
macron, Erdogan with a breve and Vietnamese names come back exactly); a character that stays ambiguous becomes
U+FFFD, except a lost ``E2 80 ??`` that ends the text or precedes a link, which is Twitter's truncation ellipsis
U+2026.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache

from tweetlm.data.formats.base import id_or_none as _id_or_none
from tweetlm.data.formats.files import FileInfo, FileReader, csv_records, parse_time, prov, utf8_csv_rows
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post

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


_RATIO_HEADER = ["created_at", "text", "url", "replies", "retweets", "favorites", "user"]

_MAYWEATHER_HEADER = ["created_at", "emojis", "id", "link", "retweeted", "screen_name", "text"]

_STATUS_ID = re.compile(r"/status(?:es)?/(\d+)")


def _detect_ratio(info: FileInfo) -> bool:
    return info.name.lower().endswith(".csv") and info.csv_header() == _RATIO_HEADER


def _read_ratio(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    source = info.stem_source
    raw = info.read_bytes()
    rounds = _macroman_rounds(raw)
    text = raw.decode("utf-8") if rounds == 0 else raw.decode("latin-1")  # latin-1: byte-exact, for the csv split
    for i, header, row in csv_records(info, text, ledger, source):
        ledger.seen(source)
        d = dict(zip(header, row))
        body = d["text"] if rounds == 0 else _undo_macroman(d["text"].encode("latin-1"), rounds)
        m = _STATUS_ID.search(d["url"])
        yield Post(
            id=m.group(1) if m else info.fallback_id(source, i),
            text=body,
            source=source,
            # "10/16/17 22:59" is UTC: every row is within a minute of its id's timestamp
            created_at=parse_time(d["created_at"], "%m/%d/%y %H:%M"),
            provenance=prov(info, i, "ratio_csv"),
        )


def _detect_mayweather(info: FileInfo) -> bool:
    return info.name.lower().endswith(".csv") and info.csv_header() == _MAYWEATHER_HEADER


def _read_mayweather(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    source = info.stem_source
    for i, header, row in utf8_csv_rows(info, ledger, source):
        d = dict(zip(header, row))
        yield Post(
            id=_id_or_none(d["id"]) or info.fallback_id(source, i),
            text=d["text"],
            source=source,
            # "2017-08-27 00:05:34" is US Eastern daylight time (UTC-4): the README's "12:05 a.m. EDT", and every
            # row matches its id's timestamp
            created_at=parse_time(d["created_at"], "%Y-%m-%d %H:%M:%S", utc_offset_hours=-4),
            provenance=prov(info, i, "mayweather_csv"),
        )


def _detect_trump_poll(info: FileInfo) -> bool:
    return (
        info.name.lower().startswith("trump-twitter")
        and info.name.lower().endswith(".csv")
        and info.csv_header() == ["id", "created_at", "text"]
    )


def _read_trump_poll(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    source = info.stem_source
    for i, header, row in utf8_csv_rows(info, ledger, source):
        d = dict(zip(header, row))
        yield Post(
            # 3 rows carry spreadsheet-rounded ids ("7.02608E+17"): they get the fallback id
            id=_id_or_none(d["id"]) or info.fallback_id(source, i),
            text=d["text"],
            source=source,
            created_at=parse_time(d["created_at"], "%m/%d/%Y %H:%M:%S"),  # UTC, checked against the ids
            provenance=prov(info, i, "trump_poll_csv"),
        )


READERS = (
    FileReader("ratio_csv", _detect_ratio, _read_ratio),
    FileReader("mayweather_csv", _detect_mayweather, _read_mayweather),
    FileReader("trump_poll_csv", _detect_trump_poll, _read_trump_poll),
)
