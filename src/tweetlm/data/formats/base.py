"""What every format reader shares (layer L1, data): record outcomes, the per-file rules, JSON value streams.

A format module never touches the ``Ledger`` directly. For each record it finds it calls one ``Emitter``
method: ``post`` (a Post), ``drop`` (a valid record that is not a post, with a reason), ``quarantine`` (a record
that cannot be read, with a reason) or ``delete`` (a deletion request for another record). ``finish`` then
applies the rules that need the whole file and makes exactly one ledger entry per outcome, so per source
``records in = kept + dropped + quarantined`` holds by construction:

- ``delete``: the targeted post (by id, or every post by an author for an account-level request) is dropped as
  ``deleted``; the request itself is dropped as ``delete_event``. Only posts in the same file are reached:
  a deletion in another file is the pipeline's ``forget`` job.
- edits: a post whose ``edit_history_ids`` shows a later version that is also in the file is dropped as
  ``superseded_by_edit`` (X keeps every version; the latest is the post). A post edited in place under one id
  (a Bluesky record ``update``) is emitted with a ``version`` (the Jetstream event's ``time_us``): of the
  copies of one id that have a version, only the highest is the post, the others are dropped as
  ``superseded_by_edit``, and it is kept over copies without a version, whatever their length.
- the same post id twice (a retweeted original also posted, v2 ``data`` repeated in ``includes``): one copy is
  kept, at the first position, preferring a text not marked ``truncated``, then the longest; the others are
  dropped as ``duplicate_id``.

A record number is 0-based, counted as the readers in ``data.formats`` count (lines of a JSONL file without
blank lines; values of a JSON file or array elements); the posts embedded in one record (a page of tweets, a
retweet and its original) share its number. A file is held in memory while it is read.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TypeVar

from tweetlm.data.formats.entities import entity_lists
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import POST_KINDS, Post, Provenance

_SCI_FLOAT = re.compile(r"^[+-]?\d+(\.\d*)?[eE][+-]?\d+$|^\d+\.\d*$")
SNOWFLAKE_EPOCH_MS = 1288834974657
"""X (Twitter) snowflake ids hold ``(ms since this epoch) << 22`` (X developer docs, "Twitter IDs")."""


_NOT_IDS = frozenset({"nan", "inf", "infinity", "true", "false"})  # as text: a spreadsheet or pandas wrote them


class FieldError(ValueError):
    """A field that is present but cannot be used (an id that is a float, a date outside the range Python's
    ``datetime`` holds). The record is quarantined as ``bad_<field>`` (see ``quarantines_bad_fields``)."""

    def __init__(self, field: str, value: object) -> None:
        super().__init__(f"bad {field}: {value!r}")
        self.field = field
        self.value = value


_Parse = TypeVar("_Parse", bound=Callable[..., object])


def quarantines_bad_fields(parse: _Parse) -> _Parse:
    """Wrap a ``parse(obj, em, record, ...)`` function that emits one post: a ``FieldError`` raised while it
    reads ``obj`` quarantines ``obj`` as ``bad_<field>`` and the function returns ``None``. Posts it emitted
    before (a retweet's original) stay; the rest of the file is read."""

    @functools.wraps(parse)
    def wrapper(obj: object, em: Emitter, record: int, *args: object, **kwargs: object) -> object:
        try:
            return parse(obj, em, record, *args, **kwargs)
        except FieldError as e:
            em.quarantine(record, f"bad_{e.field}", obj)
            return None

    return wrapper  # type: ignore[return-value]


MALFORMED = (TypeError, AttributeError, KeyError, IndexError, ValueError, RecursionError)
"""What a format module raises on a value whose fields have unexpected types or shapes."""


def parse_or_quarantine(parse: Callable[..., object], value: object, em: Emitter, record: int, *args) -> object:
    """``parse(value, em, record, *args)``; when it raises ``MALFORMED`` (a field of the wrong type or shape:
    a number for ``entities``, a list for ``user``), whatever it emitted for the record is withdrawn and the
    record is quarantined as ``malformed_record`` with the error. One bad record never stops its file."""
    mark = len(em.outcomes)
    try:
        return parse(value, em, record, *args)
    except MALFORMED as e:
        del em.outcomes[mark:]
        em.quarantine(record, "malformed_record", f"{type(e).__name__}: {e}; record: {excerpt_of(value, 150)}")
        return None


def id_or_none(value: object) -> str | None:
    """A usable post id as a string, or ``None``. Ints become strings; floats, booleans, ``NaN``/``inf`` and
    spreadsheet-mangled ids (``7.02608E+17``, ``1.5``) are refused: they are not ids, or their digits are
    already lost."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        s = value.strip()
        if not s or len(s) > MAX_ID_CHARS or _SCI_FLOAT.match(s) or s.lower().lstrip("+-") in _NOT_IDS:
            return None
        return s
    return None


MAX_ID_CHARS = 1000
"""Longest id accepted (X ids have at most 20 digits; Bluesky and Mastodon URIs a few hundred characters)."""


def json_int(digits: str) -> int | str:
    """``parse_int`` for the JSON readers: an integer of more than 4,300 digits (more than Python converts) stays
    its string of digits, so one absurd number costs its record (an id that long is ``bad_id``), not the file."""
    return int(digits) if len(digits) <= 4300 else digits


def is_missing(value: object) -> bool:
    """No value at all: ``None`` or a blank string (an id that is present but refused is not missing)."""
    return value is None or (isinstance(value, str) and not value.strip())


def iso_utc(value: object) -> str | None:
    """``YYYY-MM-DDTHH:MM:SSZ`` from ISO 8601 (naive means UTC; fractions dropped), the X API v1.1 form
    ``Wed Aug 27 13:08:45 +0000 2008``, a ``datetime`` (Parquet timestamps), or epoch seconds/milliseconds as a
    number; ``None`` if unparseable.

    Raises:
        FieldError: (``field="created_at"``) a date that parses but is outside what ``datetime`` holds once
            moved to UTC (``0001-01-01T00:00:00+14:00`` is in year 0).
    """
    if isinstance(value, datetime):
        try:
            dt = value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
        except OverflowError as e:
            raise FieldError("created_at", value) from e
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    s = value.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    for parse in (datetime.fromisoformat, lambda v: datetime.strptime(v, "%a %b %d %H:%M:%S %z %Y")):
        try:
            dt = parse(s)
        except ValueError:
            continue
        if dt.tzinfo is not None:
            try:
                dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
            except OverflowError as e:
                raise FieldError("created_at", value) from e
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return None


def snowflake_ms(post_id: str) -> int | None:
    """Milliseconds since the Unix epoch encoded in an X snowflake id, or ``None`` for a non-snowflake."""
    if not post_id.isdigit() or len(post_id) > 20 or int(post_id) < 1 << 32:
        return None
    return (int(post_id) >> 22) + SNOWFLAKE_EPOCH_MS


def excerpt_of(value: object, limit: int = 200) -> str:
    """A short JSON excerpt of a record for the quarantine log."""
    try:
        s = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        s = repr(value)
    return s[:limit].encode("utf-8", "replace").decode("utf-8")


# ----------------------------------------------------------------------------------------------------------
# outcomes


@dataclass
class Outcome:
    """What one record became: a post, or a drop / quarantine with a reason, or a deletion request."""

    record: int
    file: str
    post: Post | None = None
    drop: str | None = None
    quarantine: str | None = None
    excerpt: str = ""
    delete_id: str | None = None
    delete_scope: str = "post"
    version: int | None = None


@dataclass
class Emitter:
    """Collects the outcomes of one file (or of the files of one X archive: set ``file`` before each part).
    ``source`` and ``file`` go into every Post and ledger entry; ``reader`` is the reader name recorded in
    provenance unless a call names another. ``id_prefix`` makes the ids of records without one
    (``files.FileInfo.id_prefix``: the source and the file)."""

    source: str
    file: str
    reader: str
    split: str | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    id_prefix: str | None = None

    def fallback_id(self, record: int) -> str:
        """The made-up id of a record without one: ``"<id_prefix>:<record>"`` (``"<source>:all:<record>"`` for an
        emitter made without a file)."""
        return f"{self.id_prefix or self.source + ':all'}:{record}"

    def post(
        self,
        record: int,
        *,
        id: str,
        text: str,
        entities: list[dict] | None = None,
        reader: str | None = None,
        version: int | None = None,
        **fields: object,
    ) -> Post:
        """Emit a Post (``entities`` fills hashtags, mentions, cashtags and urls). Returns it.

        ``version`` orders the versions of a post the source edits in place under one id (higher is later; see
        the module docstring); ``None`` where the source keeps one version per id."""
        entities = entities or []
        kind = fields.pop("kind", "post")
        if kind not in POST_KINDS:
            raise ValueError(f"unknown post kind {kind!r}")
        fields.setdefault("split", self.split)
        p = Post(
            id=id,
            text=text,
            source=self.source,
            provenance=Provenance(file=self.file, record=record, reader=reader or self.reader),
            kind=kind,
            entities=entities,
            **entity_lists(entities),
            **fields,
        )
        self.outcomes.append(Outcome(record, self.file, post=p, version=version))
        return p

    def drop(self, record: int, reason: str) -> None:
        """A valid record that is not a post (a user object, a count bucket): dropped with ``reason``."""
        self.outcomes.append(Outcome(record, self.file, drop=reason))

    def quarantine(self, record: int, reason: str, excerpt: object = "") -> None:
        """A record that cannot be turned into a post: quarantined with ``reason`` and an excerpt."""
        self.outcomes.append(Outcome(record, self.file, quarantine=reason, excerpt=excerpt_of(excerpt)))

    def delete(self, record: int, target_id: str, *, scope: str = "post") -> None:
        """A deletion request: ``scope`` ``"post"`` removes the post ``target_id``, ``"author"`` every post by
        that author id, ``"any"`` both."""
        if scope not in ("post", "author", "any"):
            raise ValueError(f"unknown deletion scope {scope!r}")
        self.outcomes.append(Outcome(record, self.file, drop="delete_event", delete_id=target_id, delete_scope=scope))


def finish(em: Emitter, ledger: Ledger) -> Iterator[Post]:
    """Apply deletions, edits and duplicate ids (see module docstring) and account for every outcome."""
    deleted_ids = {o.delete_id for o in em.outcomes if o.delete_id is not None and o.delete_scope != "author"}
    deleted_authors = {o.delete_id for o in em.outcomes if o.delete_id is not None and o.delete_scope != "post"}
    with_post = [o for o in em.outcomes if o.post is not None]
    present = {o.post.id for o in with_post}
    latest: dict[str, int] = {}
    for o in with_post:
        if o.version is not None and (o.post.id not in latest or o.version > latest[o.post.id]):
            latest[o.post.id] = o.version

    def rank(o: Outcome) -> tuple[bool, bool, int]:  # the latest version, then a whole text, then the longest
        p = o.post
        return (o.version is not None and o.version == latest.get(p.id), not p.truncated, len(p.text))

    best: dict[str, Outcome] = {}
    for o in with_post:
        if o.post.id not in best or rank(o) > rank(best[o.post.id]):
            best[o.post.id] = o
    emitted: set[str] = set()
    for o in em.outcomes:
        ledger.seen(em.source)
        p = o.post
        if p is None:
            if o.quarantine is not None:
                ledger.quarantine(em.source, o.file, o.record, o.quarantine, o.excerpt)
            else:
                ledger.drop(em.source, o.drop or "not_a_post")
            continue
        if p.id in deleted_ids or (p.author_id is not None and p.author_id in deleted_authors):
            ledger.drop(em.source, "deleted")
        elif _superseded(p, present) or (o.version is not None and o.version < latest[p.id]):
            ledger.drop(em.source, "superseded_by_edit")
        elif p.id in emitted:
            ledger.drop(em.source, "duplicate_id")
        else:
            emitted.add(p.id)
            yield best[p.id].post


def _superseded(p: Post, present: set[str]) -> bool:
    """A later version of ``p`` by its X ``edit_history_ids`` is in the file."""
    history = p.edit_history_ids
    if p.id not in history:
        return False
    return any(later in present for later in history[history.index(p.id) + 1 :])


# ----------------------------------------------------------------------------------------------------------
# JSON value streams


@dataclass
class BadValue:
    """A piece of a JSON file that is not a JSON value: ``reason`` (``invalid_json``, ``invalid_utf8``,
    ``truncated``) and the raw ``text``."""

    reason: str
    text: str


_WS = re.compile(r"\s*")
_RESYNC = re.compile(r"\n(?=[\[{])")


_SURROGATE_ESCAPE = re.compile("[\udc80-\udcff]")
"""The lone surrogates that ``decode(..., errors="surrogateescape")`` makes of bytes that are not UTF-8."""


def has_surrogates(*fields: str) -> bool:
    """Whether any of ``fields`` holds a byte that was not UTF-8 (decoded with ``surrogateescape``). One regex
    search per field: a Python loop over the characters took 1.5 s of a 60 s cProfile run of the shared corpora's
    build (``benchmarks/results/data_cpu2_202612.md``)."""
    return any(_SURROGATE_ESCAPE.search(f) for f in fields)


def iter_json_values(text: str, start: int = 0) -> Iterator[object | BadValue]:
    """The JSON values of a document: the elements of a top-level array, or a sequence of values (one JSON
    document, JSON Lines, or pretty-printed objects written back to back, as stream dumps are).

    ``text`` is decoded with ``errors="surrogateescape"``: a value holding bytes that are not UTF-8 comes back
    as ``BadValue("invalid_utf8")``. Text that does not parse becomes ``BadValue("invalid_json")`` up to the
    next line that opens an object or array, and reading resumes there. Inside a top-level array the first
    element that does not parse ends the array: the rest is one ``BadValue``, ``"truncated"`` when the file
    lacks its closing ``]`` (a cut-off download), else ``"invalid_json"``. A value nested deeper than the
    parser's recursion limit is ``BadValue("too_deep")`` (in an array: with the rest). Never raises on content.
    """
    dec = json.JSONDecoder(parse_int=json_int)
    pos = _WS.match(text, start).end()
    if text.startswith("[", pos):
        # Elements one by one, so one bad element does not cost the others.
        pos = _WS.match(text, pos + 1).end()
        if text.startswith("]", pos):
            pos = _WS.match(text, pos + 1).end()
            if pos < len(text):
                yield BadValue("invalid_json", text[pos:])
            return
        while pos < len(text):
            try:
                value, end = dec.raw_decode(text, pos)
            except json.JSONDecodeError:
                # the rest is one record: cut off (no closing bracket) or broken inside
                yield BadValue("invalid_json" if text.rstrip().endswith("]") else "truncated", text[pos:])
                return
            except RecursionError:  # nested deeper than the parser goes: its end is unknown, the rest is one
                yield BadValue("too_deep", text[pos : pos + 200])
                return
            yield BadValue("invalid_utf8", text[pos:end]) if has_surrogates(text[pos:end]) else value
            pos = _WS.match(text, end).end()
            if text.startswith(",", pos):
                pos = _WS.match(text, pos + 1).end()
                continue
            if text.startswith("]", pos):
                pos = _WS.match(text, pos + 1).end()
                if pos < len(text):
                    yield BadValue("invalid_json", text[pos:])
                return
            yield BadValue("truncated" if pos >= len(text) else "invalid_json", text[pos:])
            return
        yield BadValue("truncated", "")
        return
    while pos < len(text):
        try:
            value, end = dec.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError) as e:
            m = _RESYNC.search(text, pos)
            end = m.end() if m else len(text)
            bad = text[pos:end].strip()
            yield BadValue("too_deep", bad[:200]) if isinstance(e, RecursionError) else BadValue("invalid_json", bad)
            pos = _WS.match(text, end).end()
            continue
        yield BadValue("invalid_utf8", text[pos:end]) if has_surrogates(text[pos:end]) else value
        pos = _WS.match(text, end).end()
