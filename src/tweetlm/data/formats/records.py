"""One JSON value -> record outcomes, whatever the platform (layer L1, data).

``parse_value`` recognises a value by its shape (the checks of each format module, most specific first) and
hands it to that module, so one file may mix shapes (a stream dump with notices between tweets, a folder of
API pages). Valid API payloads that hold no post are dropped as ``not_a_post`` (``is_not_a_post``: oEmbed
responses, cursored id lists, bare v2 users, Mastodon translations). A value no format claims is a generic
record (``tabular.parse_generic``: a ``text`` field, or the mapped column; without it ``missing_text``).
Values that are not objects are quarantined as ``not_an_object``. A value its format module cannot read (a
field of the wrong type or shape where the module expected another: a number for ``entities``, a list for
``user``) is quarantined as ``malformed_record`` with the error, and whatever the module had emitted for it is
withdrawn: one bad record never stops its file, and is never half read.
"""

from __future__ import annotations

from tweetlm.data.formats import bluesky, mastodon, tabular, x_v1, x_v2
from tweetlm.data.formats.base import BadValue, Emitter, parse_or_quarantine


def parse_value(value: object, em: Emitter, record: int, columns: tabular.ColumnMap, generic_reader: str) -> None:
    """Emit the outcomes of one JSON value (record number ``record``) into ``em``; see the module docstring."""
    parse_or_quarantine(_dispatch, value, em, record, columns, generic_reader)


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
    elif is_not_a_post(value, columns):
        em.drop(record, "not_a_post")
    else:
        tabular.parse_generic(value, em, record, columns, reader=generic_reader)


_OEMBED_TYPES = ("rich", "video", "photo", "link")


def is_oembed(obj: dict) -> bool:
    """An oEmbed response (oembed.com; X's ``publish.twitter.com/oembed``, Mastodon's ``/api/oembed``, Bluesky's
    ``embed.bsky.app/oembed``): a ``type`` of the spec, its ``version`` or ``provider_name``, markup or a URL and
    no ``text``. The post inside its ``html`` is the embed's copy, read from the post itself where it is wanted."""
    return (
        obj.get("type") in _OEMBED_TYPES
        and ("version" in obj or "provider_name" in obj)
        and ("html" in obj or "url" in obj)
        and "text" not in obj
    )


def is_not_a_post(obj: dict, columns: tabular.ColumnMap) -> bool:
    """A valid payload of a platform's API that holds no post: an oEmbed response, a cursored id list
    (``x_v1.is_id_list``), a bare v2 user (``x_v2.is_user``), a Mastodon translation
    (``mastodon.is_translation``). A record holding the mapped text column is a generic record whatever else it
    holds."""
    mapped = columns.fields.get("text")
    if mapped is not None and mapped in obj:
        return False
    return is_oembed(obj) or x_v1.is_id_list(obj) or x_v2.is_user(obj) or mastodon.is_translation(obj)


def is_schema_document(head: bytes) -> bool:
    """A Lexicon or JSON Schema file (Bluesky ``lexicons/*.json``): documentation of a format, not posts."""
    h = head[:2048]
    return (b'"lexicon"' in h and b'"defs"' in head) or b'"$schema"' in h
