"""Plain text files (layer L1, data): one post per line, ids made up. An empty line is an (empty) post, which
the pipeline's ``Normalize`` drops with its reason."""

from __future__ import annotations

from collections.abc import Iterator

from tweetlm.data.formats.files import (
    FileInfo,
    FileReader,
    binary_error,
    decode_or_none,
    looks_binary,
    prov,
    split_lines,
)
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post


def _detect_txt(info: FileInfo) -> bool:
    if not info.name.lower().endswith(".txt"):
        return False
    if looks_binary(info.head):
        raise binary_error(info)
    return True


def _read_txt(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    """One post per line; an empty line is an (empty) post, which cleaning drops with its reason."""
    source = info.stem_source
    for i, raw in enumerate(split_lines(info.read_bytes())):
        ledger.seen(source)
        if info.line_too_long(raw):
            ledger.quarantine(source, info.display, i, "too_long", f"a line of {len(raw)} bytes")
            continue
        text = decode_or_none(raw)
        if text is None:
            ledger.quarantine(source, info.display, i, "invalid_utf8", raw.decode("utf-8", errors="replace"))
            continue
        yield Post(id=info.fallback_id(source, i), text=text, source=source, provenance=prov(info, i, "txt"))


READERS = (FileReader("txt", _detect_txt, _read_txt),)
