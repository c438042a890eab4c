"""SemEval-2017 Task 4 TSV files (layer L1, data): ``id<TAB>label<TAB>text``, real tweet ids.

The text field is CSV-quoted in the 2013-2015 files and 2016 test (inner quote marks doubled once or twice),
with JSON-style ``\\"`` and literal ``\\uXXXX`` escapes (surrogate pairs included). ``repair_semeval_text`` undoes
these layers and touches nothing else (the TweetEval ``sentiment`` and XLM-T ``english`` files built from these
use it too). Files that were never CSV-quoted (2016 train/dev/devtest, 2014 sarcasm) keep their quote marks:
there a tweet wrapped in quotes is a tweet quoting another. ``*train*`` and ``*dev*`` files keep their split;
``test``, ``devtest`` and ``sarcasm`` files get none (test sets of the original task, not ours).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from tweetlm.data.formats.base import id_or_none as _id_or_none
from tweetlm.data.formats.files import FileInfo, FileReader, decode_or_none, prov, split_lines
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post

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


def _detect_semeval(info: FileInfo) -> bool:
    return info.name.lower().endswith(".tsv") and bool(_SEMEVAL_LINE.match(info.head))


def _read_semeval(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    source = info.corpus
    split = _semeval_split(info.name)
    rows: list[tuple[bytes, str | None, list[str]]] = []
    for raw in split_lines(info.read_bytes()):
        line = decode_or_none(raw)
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
            id=_id_or_none(parts[0]) or info.fallback_id(source, i),
            text=repair_semeval_text(parts[2], csv_quoted),
            source=source,
            split=split,
            lang="en",
            labels={"sentiment": parts[1].strip()},
            provenance=prov(info, i, "semeval_tsv"),
        )


READERS = (FileReader("semeval_tsv", _detect_semeval, _read_semeval),)
