"""CSV and Parquet files of a user's own posts (layer L1, data): a ``text`` or ``tweet`` column, or the one
``--map`` names, parsed by ``formats.tabular``. The research corpora's CSV layouts have modules of their own and
are tried first."""

from __future__ import annotations

from collections.abc import Iterator

from tweetlm.data.formats.files import (
    FileInfo,
    FileReader,
    binary_error,
    emitter,
    finish_file,
    looks_binary,
    utf8_csv_rows,
)
from tweetlm.data.formats.tabular import ColumnMap, parquet_rows, parse_generic
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post


def _detect_parquet(info: FileInfo) -> bool:
    return info.name.lower().endswith(".parquet")


def _read_parquet(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    """Parquet rows as generic records (``formats.tabular``: a ``text`` column or the mapped one)."""
    em = emitter(info, info.stem_source, "parquet")
    data = info.read_bytes()
    n = 0
    for n, row in enumerate(parquet_rows(data, info.display), start=1):
        parse_generic(row, em, n - 1, info.columns, reader="parquet")
    return finish_file(info, em, ledger, n)


def text_column(header: list[str], columns: ColumnMap | None = None) -> str | None:
    low = {h.lower(): h for h in header}
    candidates = columns.columns_for("text", csv=True) if columns else ("text", "tweet")
    return next((low[c.lower()] for c in candidates if c.lower() in low), None)


def _detect_generic_csv(info: FileInfo) -> bool:
    if not info.name.lower().endswith(".csv"):
        return False
    if looks_binary(info.head):
        raise binary_error(info)
    return text_column(info.csv_header(), info.columns) is not None


def _read_generic_csv(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    """CSV with a ``text`` or ``tweet`` column (or the mapped one); ``id``/``tweet_id``, ``created_at``,
    ``lang``, ``author_id`` if present (header names matched case-insensitively)."""
    source = info.stem_source
    em = emitter(info, source, "csv")
    scratch = Ledger()  # utf8_csv_rows counts and quarantines per row; the emitter does the real accounting
    n = 0
    for i, header, row in utf8_csv_rows(info, scratch, source):
        n = i + 1
        parse_generic({h.lower(): v for h, v in zip(header, row)}, em, i, info.columns, reader="csv", fold_case=True)
    for q in scratch.quarantine_log:
        em.quarantine(q.record, q.reason, q.excerpt)
    em.outcomes.sort(key=lambda o: o.record)
    return finish_file(info, em, ledger, n)


READERS = (
    FileReader("parquet", _detect_parquet, _read_parquet),
    FileReader("csv", _detect_generic_csv, _read_generic_csv),
)
