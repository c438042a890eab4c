"""Generic records (layer L1, data): JSON objects, CSV rows and Parquet rows of a user's own posts, and the column
mapping that says which field holds what.

Without a mapping a record's text is its ``text`` (CSV: also ``tweet``) field, its id ``id_str``, ``id`` or
``tweet_id``, and ``created_at``, ``lang``, ``author_id`` and ``split`` are read when present. A ``ColumnMap``
(``ColumnMap.parse("text=body,id=post_id,labels.sentiment=label")``; on the command line
``--map text=body,id=post_id``) names other columns for any of ``MAPPABLE`` and, with ``labels.<name>``, for
dataset labels; a field may be mapped once. A mapped text column that a record lacks quarantines it as
``missing_mapped_text_column:<column>``; a mapped ``id`` or ``created_at`` column that a record lacks, or a mapped
``created_at`` that holds no dates, gives a ``UserWarning`` naming the column (the field is left empty).

A text column cut at a fixed length (an export that capped snscrape's ``rawContent`` at 278 characters) is
found per file by ``mark_cut_column``: its posts of that length are marked ``truncated`` and a ``UserWarning``
names the file, the column and the length.

Parquet is read with ``pyarrow`` in record batches; ids stored as integers become strings. A record without an
id gets a ``<source>:<split or all>:<record>`` id; a record whose id is present but not an id (a float such as
``1.5`` or ``7.02608E+17``, whose digits are lost, a boolean, ``NaN``) is quarantined as ``bad_id``, and one
whose ``created_at`` is a date outside the range ``datetime`` holds as ``bad_created_at``. Entities of
generic records are found with the twitter-text rules on the text as given (nothing is unescaped).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from tweetlm.data.formats.base import Emitter, FieldError, id_or_none, is_missing, iso_utc, quarantines_bad_fields
from tweetlm.data.formats.entities import plain_text

READER = "generic"
MAPPABLE = ("text", "id", "created_at", "author_id", "lang", "split", "reply_to_id", "conversation_id")
_DEFAULTS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "id": ("id_str", "id", "tweet_id"),
    "created_at": ("created_at",),
    "author_id": ("author_id",),
    "lang": ("lang",),
    "split": ("split",),
    "reply_to_id": ("reply_to_id",),
    "conversation_id": ("conversation_id",),
}


@dataclass(frozen=True)
class ColumnMap:
    """Which source column holds each Post field: ``fields`` maps a name of ``MAPPABLE`` to a column,
    ``labels`` a label name to a column."""

    fields: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str | None) -> ColumnMap:
        """``"text=body,id=post_id,labels.sentiment=label"`` -> ``ColumnMap``.

        Raises:
            ValueError: an item is not ``field=column``, names a field outside ``MAPPABLE``/``labels.*``, or
                names a field twice.
        """
        fields: dict[str, str] = {}
        labels: dict[str, str] = {}
        for item in (spec or "").split(","):
            if not item.strip():
                continue
            key, sep, column = (s.strip() for s in item.partition("="))
            if not sep or not key or not column:
                raise ValueError(f"column mapping item {item!r} is not field=column (e.g. --map text=body,id=post_id)")
            if key.startswith("labels.") and len(key) > len("labels."):
                target, name = labels, key[len("labels.") :]
            elif key in MAPPABLE:
                target, name = fields, key
            else:
                raise ValueError(
                    f"column mapping names unknown field {key!r}; use one of {', '.join(MAPPABLE)} or labels.<name>"
                )
            if name in target:
                raise ValueError(
                    f"column mapping gives {key!r} twice ({key}={target[name]}, {key}={column}); give it once"
                )
            target[name] = column
        return cls(fields, labels)

    def __bool__(self) -> bool:
        return bool(self.fields or self.labels)

    def columns_for(self, name: str, csv: bool = False) -> tuple[str, ...]:
        """The columns to look in for Post field ``name``: the mapped one only, else the defaults."""
        if name in self.fields:
            return (self.fields[name],)
        return _DEFAULTS[name] + (("tweet",) if csv and name == "text" else ())


def _warn_once(msg: str) -> None:
    """A ``UserWarning`` (Python shows each distinct message once)."""
    import warnings

    warnings.warn(msg, UserWarning, stacklevel=4)  # past parse_generic and its wrapper


def _has(rec: Mapping[str, object], column: str, fold: bool) -> bool:
    return (column.lower() if fold else column) in rec


def _get(rec: Mapping[str, object], columns: tuple[str, ...], fold: bool) -> object:
    for c in columns:
        v = rec.get(c.lower() if fold else c)
        if v is not None:
            return v
    return None


@quarantines_bad_fields
def parse_generic(
    rec: Mapping[str, object], em: Emitter, record: int, columns: ColumnMap, *, reader: str, fold_case: bool = False
) -> None:
    """Emit one generic record: a Post when its text column holds a string, else ``missing_text``.
    ``fold_case`` looks columns up lower-cased (CSV headers are matched case-insensitively)."""
    text = _get(rec, columns.columns_for("text", csv=fold_case), fold_case)
    if not isinstance(text, str):
        mapped = columns.fields.get("text")
        if mapped is not None and not _has(rec, mapped, fold_case):
            em.quarantine(record, f"missing_mapped_text_column:{mapped}", dict(rec))
        else:
            em.quarantine(record, "missing_text", dict(rec))
        return
    for name in ("id", "created_at"):
        mapped = columns.fields.get(name)
        if mapped is not None and not _has(rec, mapped, fold_case):
            _warn_once(
                f"{em.file}: --map {name}={mapped}: no column {mapped!r} in its records; {name} left empty"
                + (" (a <source>:<split>:<record> id is made up)" if name == "id" else "")
            )
    split = _get(rec, columns.columns_for("split"), fold_case)
    split = split if split in ("train", "val") else em.split
    lang = _get(rec, columns.columns_for("lang"), fold_case)
    post_id = None
    refused = None
    for c in columns.columns_for("id"):
        raw = rec.get(c.lower() if fold_case else c)
        post_id = id_or_none(raw)
        if post_id:
            break
        refused = refused if refused is not None or is_missing(raw) else raw
    if post_id is None and refused is not None:
        raise FieldError("id", refused)
    labels = {}
    for name, c in columns.labels.items():
        v = rec.get(c.lower() if fold_case else c)
        if v is not None:
            labels[name] = str(v)
    created_raw = _get(rec, columns.columns_for("created_at"), fold_case)
    created_at = iso_utc(created_raw)
    if created_at is None and "created_at" in columns.fields and created_raw not in (None, ""):
        _warn_once(
            f"{em.file}: --map created_at={columns.fields['created_at']}: values like {str(created_raw)[:40]!r} "
            "are not dates (ISO 8601, 'Wed Aug 27 13:08:45 +0000 2008' or epoch seconds); created_at left empty"
        )
    final, entities = plain_text(text)
    em.post(
        record,
        id=post_id or em.fallback_id(record),
        text=final,
        entities=entities,
        split=split,
        lang=lang if isinstance(lang, str) and lang else None,
        created_at=created_at,
        author_id=id_or_none(_get(rec, columns.columns_for("author_id"), fold_case)),
        reply_to_id=id_or_none(_get(rec, columns.columns_for("reply_to_id"), fold_case)),
        conversation_id=id_or_none(_get(rec, columns.columns_for("conversation_id"), fold_case)),
        labels=labels,
        reader=reader,
    )


PLATFORM_LIMITS = (140, 280, 300, 500)
"""Post length limits (X before and after 2017, Bluesky, Mastodon's default) where real posts pile up at the
longest length without being cut: a cap at one of them cannot be told from posts that fill it, and is not
reported."""
# A cut column: at least _CUT_MIN_TEXTS distinct texts at the longest length, _CUT_SPIKE times the average of the
# 10 lengths just below. Measured on ../shared/corpora and ../shared/formats with every reader's texts, the largest
# such ratio at a file's longest length is 6 (6 texts, a 40-post tweeteval file) outside PLATFORM_LIMITS.
_CUT_MIN_TEXTS = 10
_CUT_SPIKE = 8.0


def mark_cut_column(em: Emitter, columns: ColumnMap) -> int:
    """Mark the generic posts of one file whose text column was cut at a fixed length; returns how many.

    The generic posts are those ``parse_generic`` emitted into ``em`` (their provenance reader is
    ``em.reader``). Let ``L`` be their longest text in code points. The column counts as cut at ``L`` when at
    least ``_CUT_MIN_TEXTS`` (10) distinct texts are exactly ``L`` long, ``_CUT_SPIKE`` (8) times as many as the
    average length among the 10 just below holds and as ``L - 1`` holds (a small file of two lengths is no
    cap), and ``L`` is not in ``PLATFORM_LIMITS``: lengths of real posts
    thin out towards the longest, a cap piles them up there. Those posts get ``truncated=True`` and a
    ``UserWarning`` names the file, the column and ``L``.
    """
    posts = [o.post for o in em.outcomes if o.post is not None and o.post.provenance.reader == em.reader]
    if not posts:
        return 0
    longest = max(len(p.text) for p in posts)
    at = {p.text for p in posts if len(p.text) == longest}
    below = {p.text for p in posts if longest - 10 <= len(p.text) < longest}
    just_below = {p.text for p in posts if len(p.text) == longest - 1}
    spike = _CUT_SPIKE * max(1.0, len(below) / 10, len(just_below))
    if longest in PLATFORM_LIMITS or len(at) < _CUT_MIN_TEXTS or len(at) < spike:
        return 0
    cut = [p for p in posts if len(p.text) == longest]
    for p in cut:
        p.truncated = True
    column = f"--map text={columns.fields['text']}" if "text" in columns.fields else "the text column"
    _warn_once(
        f"{em.file}: {column} looks cut at {longest} characters ({len(cut)} posts are exactly that long, none "
        "longer); they are marked truncated (drop them with --set drop_truncated=true)"
    )
    return len(cut)


def parquet_rows(data: bytes, where: str, batch_rows: int = 8192) -> Iterator[dict]:
    """Rows of a Parquet file as dicts, batch by batch.

    Raises:
        ValueError: the bytes are not a readable Parquet file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(io.BytesIO(data))
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{where} is not a readable Parquet file ({e})") from e
    for batch in pf.iter_batches(batch_size=batch_rows):
        yield from batch.to_pylist()


def parquet_columns(data: bytes) -> list[str]:
    """Column names of a Parquet file (empty when unreadable)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return list(pq.ParquetFile(io.BytesIO(data)).schema_arrow.names)
    except (pa.ArrowException, OSError):
        return []
