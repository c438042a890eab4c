"""X API v1.1 tweets and Gnip activity streams (layer L1, data).

Shapes handled (real samples: ``../shared/formats/twitter_v11_*``, from twitterdev/tweet-updates and
twitterdev/tweet_parser):

- v1.1 "original format" tweets in every text mode X shipped: classic/compat ``text`` (cut at 140 with a
  trailing link when ``truncated``) plus ``extended_tweet.full_text`` and its ``entities``; extended mode
  ``full_text``. The text kept is ``display_text_range`` of the full text: reply mentions X hides and trailing
  media links are left out, as X displays the post. A compat ``text`` with ``truncated: true`` and no
  ``extended_tweet`` is all there is: it is kept up to its ``...`` (U+2026) without the link X appends to the
  full post (``https://twitter.com/i/web/status/<id>``, not words of the post) and marked ``truncated``.
- retweets: the payload's own text is cut (``RT @user: ...``); the post becomes ``kind="retweet"`` with
  ``retweeted_id`` and the text ``RT @user: `` + the original's full text, and the original (from
  ``retweeted_status``) is emitted as a post of its own, so the retweet counts toward it. A retweet left with
  its own text (no usable original) is marked ``truncated`` when that text ends in ``...`` (``cut_retweet``).
- quotes: ``kind="quote"`` with ``quoted_id``; ``quoted_status`` is emitted as its own post.
- Gnip activity streams (``verb``/``actor``/``object``, ``long_object`` for long posts, ``twitter_entities``,
  ``twitter_quoted_status``); ``verb: share`` is a retweet of its ``object``; ``verb: delete`` is a deletion.
- search responses (``GET search/tweets``: ``{"statuses": [...], "search_metadata": {...}}``): each status
  is read as a tweet; an empty response is dropped as ``empty_search_response``.
- streaming notices: ``{"delete": {"status": ...}}`` is a deletion request; ``limit``, ``scrub_geo`` and
  other notices are dropped as ``stream_notice``.

Entities come from ``entities.x_text`` (twitter-text rules on the escaped text, ``t.co`` links expanded from
the payload's ``urls`` and ``media``). This module does not resolve links or fetch missing originals.
"""

from __future__ import annotations

import re

from tweetlm.data.formats.base import Emitter, id_or_none, iso_utc, quarantines_bad_fields
from tweetlm.data.formats.entities import x_text

READER = "x_v1"
_RT_PREFIX = re.compile(r"^RT @(\w{1,20}): ")
_ELLIPSIS = "\u2026"
# the link X appends to a compat text cut at 140 characters: a t.co wrapper of /i/web/status/<id>, or that URL
_FULL_POST_LINK = re.compile(r"\s*(https?://t\.co/\w+|https?://(?:mobile\.)?twitter\.com/i/web/status/\d+)\s*$")
_WEB_STATUS = re.compile(r"^https?://(?:mobile\.)?(?:twitter|x)\.com/i/web/status/\d+")
_STATUS_LINK = re.compile(r"/status(?:es)?/(\d+)")
_NOTICES = ("limit", "scrub_geo", "status_withheld", "user_withheld", "disconnect", "warning", "friends")


def is_tweet(obj: dict) -> bool:
    """A v1.1 tweet: ``id_str``, ``full_text`` or ``user`` beside some text field (v2 never has these)."""
    return ("id_str" in obj or "full_text" in obj or "user" in obj) and (
        "text" in obj or "full_text" in obj or "extended_tweet" in obj
    )


def is_search_response(obj: dict) -> bool:
    """A v1.1 search response: a ``statuses`` list, beside ``search_metadata`` or alone."""
    return isinstance(obj.get("statuses"), list) and set(obj) <= {"statuses", "search_metadata"}


def parse_search_response(obj: dict, em: Emitter, record: int) -> None:
    """Emit every status of a v1.1 search response (all share the response's record number)."""
    if not obj["statuses"]:
        em.drop(record, "empty_search_response")
    for status in obj["statuses"]:
        if isinstance(status, dict):
            parse_tweet(status, em, record)
        else:
            em.quarantine(record, "not_an_object", status)


_ID_LIST_KEYS = frozenset(
    {"ids", "next_cursor", "next_cursor_str", "previous_cursor", "previous_cursor_str", "total_count"}
)


def is_id_list(obj: dict) -> bool:
    """A cursored list of ids (``GET statuses/retweeters/ids``, ``followers/ids``): ``{"ids": [...],
    "next_cursor": ...}``. It names accounts, it holds no post: ``records`` drops it as ``not_a_post``."""
    return isinstance(obj.get("ids"), list) and set(obj) <= _ID_LIST_KEYS


def is_activity(obj: dict) -> bool:
    """A Gnip activity: a ``verb`` with an ``actor`` or ``objectType: activity``."""
    return isinstance(obj.get("verb"), str) and ("actor" in obj or obj.get("objectType") == "activity")


def is_notice(obj: dict) -> bool:
    """A streaming API notice (``delete``, ``limit``, ``scrub_geo``...) instead of a tweet."""
    return len(obj) <= 2 and ("delete" in obj or any(k in obj for k in _NOTICES))


def _range(value: object) -> tuple[int, int] | None:
    """``display_text_range`` as ints (the archive stores them as strings), or ``None``."""
    if isinstance(value, list) and len(value) == 2:
        try:
            return int(value[0]), int(value[1])
        except (TypeError, ValueError):
            return None
    return None


def url_map(*entity_blocks: object) -> dict[str, str]:
    """``t.co`` link -> expanded URL from v1.1/archive ``entities`` blocks (``urls`` and ``media``)."""
    out: dict[str, str] = {}
    for block in entity_blocks:
        if not isinstance(block, dict):
            continue
        for key in ("urls", "media"):
            for u in block.get(key) or []:
                if isinstance(u, dict) and isinstance(u.get("url"), str) and isinstance(u.get("expanded_url"), str):
                    out.setdefault(u["url"], u["expanded_url"])
    return out


def cut_retweet(text: str) -> bool:
    """An X retweet's own text that X cut off: ``RT @user: `` and a text ending in ``...`` (U+2026).

    X builds a retweet's ``text`` as ``RT @user: `` + the original, cut at 140 characters with an ellipsis; the
    full text is only in the original. In the v2 samples (``../shared/formats/twitter_v2_twarc_csv_testdata``)
    every retweet whose text is shorter than ``RT @user: `` + its original's text (beyond a trailing media link X
    leaves out) ends in U+2026, and every one that ends otherwise is whole.
    """
    return bool(_RT_PREFIX.match(text)) and text.rstrip().endswith(_ELLIPSIS)


def full_text(obj: dict) -> tuple[str, tuple[int, int] | None, dict[str, str], bool] | None:
    """(escaped full text, display range, t.co map, truncated) of a v1.1 tweet, or ``None`` when it has no text.

    ``truncated`` is true for a compat ``text`` that X cut (``truncated: true`` and no ``extended_tweet``); the
    link X appends to such a text (to ``/i/web/status/<id>``) is removed from it.
    """
    ext = obj.get("extended_tweet")
    if isinstance(ext, dict) and isinstance(ext.get("full_text"), str):
        urls = url_map(ext.get("entities"), ext.get("extended_entities"), obj.get("entities"))
        return ext["full_text"], _range(ext.get("display_text_range")), urls, False
    urls = url_map(obj.get("entities"), obj.get("extended_entities"))
    if isinstance(obj.get("full_text"), str):
        return obj["full_text"], _range(obj.get("display_text_range")), urls, False
    if isinstance(obj.get("text"), str):
        text = obj["text"]
        if obj.get("truncated") is not True:
            return text, _range(obj.get("display_text_range")), urls, False
        m = _FULL_POST_LINK.search(text)
        target = urls.get(m.group(1), m.group(1)) if m else ""
        if m and (_WEB_STATUS.match(target) or target.startswith(("https://t.co/", "http://t.co/"))):  # no entity
            text = text[: m.start()]
        return text, None, urls, True
    return None


def _display(text: str, rng: tuple[int, int] | None) -> str:
    if rng is None or not 0 <= rng[0] < rng[1]:
        return text
    return text[rng[0] : rng[1]]


@quarantines_bad_fields
def parse_tweet(obj: dict, em: Emitter, record: int, reader: str = READER) -> str | None:
    """Emit one v1.1 tweet (and the originals it embeds); returns its id, or ``None`` if quarantined."""
    post_id = id_or_none(obj.get("id_str")) or id_or_none(obj.get("id"))
    got = full_text(obj)
    if post_id is None:
        em.quarantine(record, "missing_id", obj)
        return None
    if got is None:
        em.quarantine(record, "missing_text", obj)
        return None
    text, rng, urls, truncated = got
    user = obj.get("user") if isinstance(obj.get("user"), dict) else {}
    fields: dict = {
        "created_at": iso_utc(obj.get("created_at")),
        "author_id": id_or_none(user.get("id_str")) or id_or_none(user.get("id")),
        "lang": obj.get("lang") if isinstance(obj.get("lang"), str) and obj.get("lang") != "und" else None,
        "reply_to_id": id_or_none(obj.get("in_reply_to_status_id_str")) or id_or_none(obj.get("in_reply_to_status_id")),
    }
    kind = "reply" if fields["reply_to_id"] else "post"
    quoted = obj.get("quoted_status")
    quoted_id = id_or_none(obj.get("quoted_status_id_str"))
    if isinstance(quoted, dict):
        quoted_id = parse_tweet(quoted, em, record, reader) or quoted_id
    if quoted_id and obj.get("is_quote_status", True):
        fields["quoted_id"], kind = quoted_id, "quote"
    original = obj.get("retweeted_status")
    if isinstance(original, dict):
        orig_id = parse_tweet(original, em, record, reader)
        orig_got = full_text(original)
        orig_user = original.get("user") if isinstance(original.get("user"), dict) else {}
        m = _RT_PREFIX.match(text)
        screen_name = orig_user.get("screen_name") or (m.group(1) if m else None)
        if orig_id and orig_got is not None and screen_name:
            o_text, o_rng, o_urls, truncated = orig_got
            text, rng, urls = f"RT @{screen_name}: " + _display(o_text, o_rng), None, o_urls
        else:
            truncated = truncated or cut_retweet(text)
        fields["retweeted_id"] = orig_id or id_or_none(original.get("id_str"))
        kind = "retweet"
    final, entities = x_text(text, rng, urls)
    em.post(record, id=post_id, text=final, entities=entities, kind=kind, reader=reader, truncated=truncated, **fields)
    return post_id


def parse_notice(obj: dict, em: Emitter, record: int) -> None:
    """A streaming notice: ``delete`` becomes a deletion request, anything else a ``stream_notice`` drop."""
    status = obj.get("delete", {}).get("status") if isinstance(obj.get("delete"), dict) else None
    target = id_or_none(status.get("id_str")) or id_or_none(status.get("id")) if isinstance(status, dict) else None
    if target:
        em.delete(record, target)
    else:
        em.drop(record, "stream_notice")


# --- Gnip activity streams --------------------------------------------------------------------------------


def _tail_id(value: object) -> str | None:
    """``tag:search.twitter.com,2005:123`` / ``id:twitter.com:123`` -> ``"123"``."""
    return id_or_none(value.rsplit(":", 1)[-1]) if isinstance(value, str) and value else None


def _activity_text(act: dict) -> tuple[str, tuple[int, int] | None, dict[str, str]] | None:
    long = act.get("long_object")
    if isinstance(long, dict) and isinstance(long.get("body"), str):
        urls = url_map(long.get("twitter_entities"), long.get("twitter_extended_entities"), act.get("twitter_entities"))
        return long["body"], _range(long.get("display_text_range")), urls
    if isinstance(act.get("body"), str):
        urls = url_map(act.get("twitter_entities"), act.get("twitter_extended_entities"))
        return act["body"], _range(act.get("display_text_range")), urls
    return None


@quarantines_bad_fields
def parse_activity(act: dict, em: Emitter, record: int, reader: str = "gnip_activity") -> str | None:
    """Emit one Gnip activity (and the originals it embeds); returns its id, or ``None`` if not a post."""
    verb = act.get("verb")
    obj = act.get("object") if isinstance(act.get("object"), dict) else {}
    if verb == "delete":
        target = _tail_id(obj.get("id")) or _tail_id(act.get("id"))
        if target:
            em.delete(record, target)
        else:
            em.quarantine(record, "missing_id", act)
        return None
    if verb not in ("post", "share"):
        em.drop(record, f"activity_{verb}" if isinstance(verb, str) and verb.isidentifier() else "not_a_post")
        return None
    post_id = _tail_id(act.get("id"))
    got = _activity_text(act)
    if post_id is None:
        em.quarantine(record, "missing_id", act)
        return None
    if got is None:
        em.quarantine(record, "missing_text", act)
        return None
    text, rng, urls = got
    actor = act.get("actor") if isinstance(act.get("actor"), dict) else {}
    reply = act.get("inReplyTo") if isinstance(act.get("inReplyTo"), dict) else {}
    m = _STATUS_LINK.search(reply.get("link") or "")
    lang = act.get("twitter_lang")
    fields: dict = {
        "created_at": iso_utc(act.get("postedTime")),
        "author_id": _tail_id(actor.get("id")),
        "lang": lang if isinstance(lang, str) and lang != "und" else None,
        "reply_to_id": m.group(1) if m else None,
    }
    kind = "reply" if fields["reply_to_id"] else "post"
    quoted = act.get("twitter_quoted_status")
    if isinstance(quoted, dict):
        quoted_id = parse_activity({**quoted, "verb": quoted.get("verb", "post")}, em, record, reader)
        if quoted_id:
            fields["quoted_id"], kind = quoted_id, "quote"
    if verb == "share" and obj:
        orig_id = parse_activity(obj, em, record, reader)
        orig_got = _activity_text(obj)
        orig_actor = obj.get("actor") if isinstance(obj.get("actor"), dict) else {}
        rt = _RT_PREFIX.match(text)
        screen_name = orig_actor.get("preferredUsername") or (rt.group(1) if rt else None)
        rebuilt = bool(orig_id and orig_got is not None and screen_name)
        if rebuilt:
            o_text, o_rng, o_urls = orig_got
            text, rng, urls = f"RT @{screen_name}: " + _display(o_text, o_rng), None, o_urls
        truncated = not rebuilt and cut_retweet(text)
        fields["retweeted_id"] = orig_id
        kind = "retweet"
    elif verb == "share":
        rng = None
        truncated = cut_retweet(text)
    else:
        truncated = False
    final, entities = x_text(text, rng, urls)
    em.post(record, id=post_id, text=final, entities=entities, kind=kind, reader=reader, truncated=truncated, **fields)
    return post_id
