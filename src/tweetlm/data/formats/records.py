"""One JSON value -> record outcomes, whatever the platform (layer L1, data).

``parse_value`` recognises a value by its shape (the checks of each format module, most specific first) and
hands it to that module, so one file may mix shapes (a stream dump with notices between tweets, a folder of
API pages). A value no format claims is a generic record (``tabular.parse_generic``: a ``text`` field, or the
mapped column). Values that are not objects are quarantined as ``not_an_object``. A value its format module
cannot read (a field of the wrong type or shape where the module expected another: a number for ``entities``,
a list for ``user``) is quarantined as ``malformed_record`` with the error, and whatever the module had emitted
for it is withdrawn: one bad record never stops its file, and is never half read.
"""

from __future__ import annotations

from tweetlm.data.formats import bluesky, mastodon, tabular, x_v1, x_v2
from tweetlm.data.formats.base import BadValue, Emitter, excerpt_of


_MALFORMED = (TypeError, AttributeError, KeyError, IndexError, ValueError, RecursionError)
"""What a format module raises on a value whose fields have unexpected types or shapes."""


def parse_value(value: object, em: Emitter, record: int, columns: tabular.ColumnMap, generic_reader: str) -> None:
    """Emit the outcomes of one JSON value (record number ``record``) into ``em``; see the module docstring."""
    mark = len(em.outcomes)
    try:
        _dispatch(value, em, record, columns, generic_reader)
    except _MALFORMED as e:
        del em.outcomes[mark:]
        em.quarantine(record, "malformed_record", f"{type(e).__name__}: {e}; record: {excerpt_of(value, 150)}")


def _dispatch(value: object, em: Emitter, record: int, columns: tabular.ColumnMap, generic_reader: str) -> None:
    if isinstance(value, BadValue):
        em.quarantine(record, value.reason, value.text)
    elif not isinstance(value, dict):
        em.quarantine(record, "not_an_object", value)
    elif len(value) == 1 and isinstance(value.get("tweet"), dict):  # an archive entry outside tweets.js
        x_v1.parse_tweet(value["tweet"], em, record, "x_archive")
    elif x_v2.is_page(value):
        x_v2.parse_page(value, em, record)
    elif x_v1.is_search_response(value):
        x_v1.parse_search_response(value, em, record)
    elif x_v1.is_notice(value):
        x_v1.parse_notice(value, em, record)
    elif x_v1.is_activity(value):
        x_v1.parse_activity(value, em, record)
    elif x_v1.is_tweet(value):
        x_v1.parse_tweet(value, em, record)
    elif x_v2.is_tweet(value):
        x_v2.parse_tweet(value, em, record)
    elif mastodon.is_status(value):
        mastodon.parse_status(value, em, record)
    elif mastodon.is_outbox(value):
        mastodon.parse_outbox(value, em, record)
    elif bluesky.is_bluesky(value):
        bluesky.parse(value, em, record)
    elif x_v2.is_compliance(value):
        x_v2.parse_compliance(value, em, record)
    else:
        tabular.parse_generic(value, em, record, columns, reader=generic_reader)


def is_schema_document(head: bytes) -> bool:
    """A Lexicon or JSON Schema file (Bluesky ``lexicons/*.json``): documentation of a format, not posts."""
    h = head[:2048]
    return (b'"lexicon"' in h and b'"defs"' in head) or b'"$schema"' in h
