"""Ibrohim & Budi 2019 Indonesian hate speech CSV (layer L1, data): ``re_dataset.csv``.

The text is the body of a Python ``bytes`` repr with its leading ``b'`` cut off: literal ``\\xf0\\x9f..`` byte
escapes (decoded where they form valid UTF-8, kept literally where they do not, e.g. an escape truncated at the
end of a tweet), ``\\n``/``\\t``/``\\'``/``\\\\`` escapes and the closing ``'`` delimiter (stripped);
``repair_bytes_repr_text`` undoes that. The file also holds raw bytes that are not UTF-8; those decode to U+FFFD
instead of costing the record. The word lists shipped beside it are not posts (``dispatch`` skips them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from tweetlm.data.formats.files import FileInfo, FileReader, csv_records, prov
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post

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


def _detect_ibrohim(info: FileInfo) -> bool:
    h = info.csv_header() if info.name.lower().endswith(".csv") else []
    return h[:3] == ["Tweet", "HS", "Abusive"]


def _read_ibrohim(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    source = info.corpus
    # 341 lines hold bytes that are not UTF-8 (broken sequences with '?' in them): U+FFFD, record kept
    text = info.read_bytes().decode("utf-8-sig", errors="replace")
    for i, header, row in csv_records(info, text, ledger, source):
        ledger.seen(source)
        yield Post(
            id=info.fallback_id(source, i),
            text=repair_bytes_repr_text(row[0]),
            source=source,
            lang="id",
            labels={h: v.strip() for h, v in zip(header[1:], row[1:])},
            provenance=prov(info, i, "ibrohim_csv"),
        )


READERS = (FileReader("ibrohim_csv", _detect_ibrohim, _read_ibrohim),)
