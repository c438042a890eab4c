"""JSON Lines and JSON files of posts (layer L1, data): X API v1.1 and v2 pages, Gnip, Bluesky, Mastodon and
generic ``{"text": ...}`` objects, each value handed to ``formats.records``. Blank lines are not records; a line
that is not UTF-8 or not JSON is quarantined (``invalid_utf8``, ``invalid_json``, ``too_deep``, ``too_long``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

from tweetlm.data.formats.base import iter_json_values, json_int
from tweetlm.data.formats.files import (
    FileInfo,
    FileReader,
    binary_error,
    decode_or_none,
    emitter,
    finish_file,
    looks_binary,
    split_lines,
)
from tweetlm.data.formats.records import parse_value
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post

_JSON_LINE_NAMES = (".jsonl", ".ndjson")

_JSON_DOC_NAMES = (".json",)


def _detect_json_lines(info: FileInfo) -> bool:
    if not info.name.lower().endswith(_JSON_LINE_NAMES):
        return False
    if looks_binary(info.head):
        raise binary_error(info)
    return True


def _read_json_lines(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    """One JSON value per line (JSON Lines; X API v2 pages as twarc writes them, v1.1 stream dumps, Jetstream
    events, generic ``{"text": ...}`` objects). Blank lines are not records; a line that is not UTF-8 or not
    JSON is quarantined (``invalid_utf8``, ``invalid_json``). Each value goes to ``formats.records``."""
    em = emitter(info, info.stem_source, "jsonl")
    record = 0
    for raw in split_lines(info.read_bytes()):
        if not raw.strip():
            continue
        i, record = record, record + 1
        if info.line_too_long(raw):
            em.quarantine(i, "too_long", f"a line of {len(raw)} bytes: " + raw[:150].decode("utf-8", "replace"))
            continue
        line = decode_or_none(raw)
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
    return finish_file(info, em, ledger, record)


def _detect_json_doc(info: FileInfo) -> bool:
    if not info.name.lower().endswith(_JSON_DOC_NAMES):
        return False
    if looks_binary(info.head):
        raise binary_error(info)
    return True


def _read_json_doc(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    """A ``.json`` file: one value, an array of values (elements are records), or values written back to back
    (``formats.base.iter_json_values``: broken pieces quarantined, reading resumes at the next object)."""
    em = emitter(info, info.stem_source, "json")
    text = info.read_bytes().decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    n = 0
    for n, value in enumerate(iter_json_values(text), start=1):
        parse_value(value, em, n - 1, info.columns, "json")
    return finish_file(info, em, ledger, n)


READERS = (
    FileReader("jsonl", _detect_json_lines, _read_json_lines),
    FileReader("json", _detect_json_doc, _read_json_doc),
)
