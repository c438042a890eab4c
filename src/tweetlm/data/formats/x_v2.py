"""X API v2 responses (layer L1, data).

Shapes handled (real samples: ``../shared/formats/twitter_v2_twarc_csv_testdata``, twarc2 output):

- response pages ``{"data": [...], "includes": {"users", "tweets", ...}, "errors": [...], "meta": ...}``, one
  per JSONL line. Every tweet in ``data`` and ``includes.tweets`` is a record; a retweeted, quoted or replied-to
  tweet found in ``includes.tweets`` becomes a post of its own (so a retweet counts toward its original), and a
  tweet repeated across them is kept once (``duplicate_id``, see ``base``). A tweet repeated within
  ``includes.tweets`` is counted and dropped as ``duplicate_in_page``.
- ``note_tweet.text`` is the full text of a long post (``text`` holds its first 280 characters).
- retweets: ``text`` is cut (``RT @user: ...``); with the original in ``includes.tweets`` the post's text is
  ``RT @user: `` + the original's full text, ``kind="retweet"``, ``retweeted_id`` set. Without it (the
  original missing from the page, or a page fetched without ``referenced_tweets``: a text starting
  ``RT @user: `` is then still a retweet) the text stays as given, marked ``truncated`` when X cut it
  (``x_v1.cut_retweet``: it ends in U+2026).
- edits: ``edit_history_tweet_ids`` lists every version oldest first; an older version is dropped as
  ``superseded_by_edit`` when a later one is in the same file.
- ``errors`` entries (a referenced tweet that was deleted, a suspended user) are records too, quarantined as
  ``api_error`` with their ``detail``, so a page that lost tweets says so in the ledger.
- twarc's flattened tweets (one tweet per line, ``author`` and full ``referenced_tweets`` inlined).
- non-post payloads (``data`` holding users, lists or tweet-count buckets) are dropped as ``not_a_post``; the
  tweets such a page includes (pinned tweets) are still read.
- compliance events ``{"id", "action": "delete", ...}`` are deletion requests (for a post id, or every post by
  a user id, in the same file).

Entity offsets come from ``entities.x_text`` on the text (v2 text is HTML-escaped like v1.1); ``t.co`` links
are expanded from ``entities.urls``. This module does not call the API.
"""

from __future__ import annotations

from tweetlm.data.formats.base import Emitter, id_or_none, iso_utc, quarantines_bad_fields
from tweetlm.data.formats.entities import x_text
from tweetlm.data.formats.x_v1 import _RT_PREFIX, cut_retweet

READER = "x_v2"
_PAGE_KEYS = ("data", "includes", "errors")
_TWEET_HINTS = ("author_id", "edit_history_tweet_ids", "conversation_id", "public_metrics", "referenced_tweets")


def is_page(obj: dict) -> bool:
    """A v2 response page: ``data``/``includes``/``errors`` at the top, no tweet ``id``."""
    return "id" not in obj and any(k in obj for k in _PAGE_KEYS)


def is_tweet(obj: dict) -> bool:
    """A bare v2 tweet (twarc's flattened form or a single object): ``id`` and ``text`` plus a v2-only field."""
    return "id" in obj and "text" in obj and "id_str" not in obj and any(k in obj for k in (*_TWEET_HINTS, "__twarc"))


_POST_FIELDS = frozenset(
    {"text", "note_tweet", "edit_history_tweet_ids", "author_id", "conversation_id", "referenced_tweets", "lang"}
)


def is_user(obj: dict) -> bool:
    """A bare v2 user object (a ``retweeted_by``/``liking_users``/``followers`` response flattened one user per
    line by twarc, or saved alone): ``id``, ``name`` and ``username`` and no field of a post. ``records`` drops
    it as ``not_a_post``; a record that has any post field (an empty ``text``) stays a post missing its text."""
    return "id" in obj and "username" in obj and "name" in obj and not _POST_FIELDS & set(obj)


def is_compliance(obj: dict) -> bool:
    """A v2 batch-compliance event: ``{"id", "action", "created_at", "reason"}``."""
    return "action" in obj and "id" in obj and "text" not in obj


def _kind_of_object(obj: dict) -> str | None:
    """``None`` for a tweet, else what the non-tweet object is (``user``, ``list``, ``count``)."""
    if "text" in obj or "note_tweet" in obj or "edit_history_tweet_ids" in obj:
        return None
    if "username" in obj:
        return "user"
    if "tweet_count" in obj and ("start" in obj or "end" in obj):
        return "count"
    if "member_count" in obj or "owner_id" in obj or "follower_count" in obj:
        return "list"
    return None


def _urls(entities: object) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(entities, dict):
        for u in entities.get("urls") or []:
            if isinstance(u, dict) and isinstance(u.get("url"), str):
                target = u.get("unwound_url") if isinstance(u.get("unwound_url"), str) else u.get("expanded_url")
                if isinstance(target, str):
                    out.setdefault(u["url"], target)
    return out


def _text(tw: dict) -> tuple[str, dict[str, str]] | None:
    note = tw.get("note_tweet")
    if isinstance(note, dict) and isinstance(note.get("text"), str):
        return note["text"], {**_urls(tw.get("entities")), **_urls(note.get("entities"))}
    if isinstance(tw.get("text"), str):
        return tw["text"], _urls(tw.get("entities"))
    return None


class _Page:
    """Lookups for one page: included tweets and users by id."""

    def __init__(self, page: dict | None = None) -> None:
        inc = page.get("includes") if isinstance(page, dict) and isinstance(page.get("includes"), dict) else {}
        self.tweets = {
            t["id"]: t for t in inc.get("tweets") or [] if isinstance(t, dict) and isinstance(t.get("id"), str)
        }
        self.users = {
            u["id"]: u for u in inc.get("users") or [] if isinstance(u, dict) and isinstance(u.get("id"), str)
        }


@quarantines_bad_fields
def parse_tweet(tw: dict, em: Emitter, record: int, page: _Page | None = None) -> str | None:
    """Emit one v2 tweet (plus full originals inlined in ``referenced_tweets``); returns its id or ``None``."""
    page = page or _Page()
    post_id = id_or_none(tw.get("id"))
    got = _text(tw)
    if post_id is None:
        em.quarantine(record, "missing_id", tw)
        return None
    if got is None:
        em.quarantine(record, "missing_text", tw)
        return None
    text, urls = got
    lang = tw.get("lang")
    author = tw.get("author") if isinstance(tw.get("author"), dict) else {}
    history = tw.get("edit_history_tweet_ids")
    fields: dict = {
        "created_at": iso_utc(tw.get("created_at")),
        "author_id": id_or_none(tw.get("author_id")) or id_or_none(author.get("id")),
        "lang": lang if isinstance(lang, str) and lang != "und" else None,
        "conversation_id": id_or_none(tw.get("conversation_id")),
        "edit_history_ids": [str(i) for i in history] if isinstance(history, list) else [],
    }
    kind = "post"
    rebuilt = False
    for ref in tw.get("referenced_tweets") or []:
        if not isinstance(ref, dict) or id_or_none(ref.get("id")) is None:
            continue
        ref_id, ref_type = id_or_none(ref.get("id")), ref.get("type")
        if "text" in ref:  # twarc's flattened form inlines the whole referenced tweet
            parse_tweet({k: v for k, v in ref.items() if k != "type"}, em, record, page)
            page.tweets.setdefault(ref_id, ref)
        if ref_type == "replied_to":
            fields["reply_to_id"] = ref_id
            kind = "reply" if kind == "post" else kind
        elif ref_type == "quoted":
            fields["quoted_id"] = ref_id
            kind = "quote" if kind != "retweet" else kind
        elif ref_type == "retweeted":
            fields["retweeted_id"] = ref_id
            kind = "retweet"
            original = page.tweets.get(ref_id)
            orig = _text(original) if isinstance(original, dict) else None
            m = _RT_PREFIX.match(text)
            user = page.users.get(original.get("author_id")) if isinstance(original, dict) else None
            screen_name = (user or {}).get("username") or (m.group(1) if m else None)
            if orig is not None and screen_name:
                text, urls = f"RT @{screen_name}: " + orig[0], orig[1]
                rebuilt = True
    if kind == "post" and not tw.get("referenced_tweets") and _RT_PREFIX.match(text):
        kind = "retweet"  # X writes every retweet's text so; the page was fetched without referenced_tweets
    truncated = kind == "retweet" and not rebuilt and cut_retweet(text)
    final, entities = x_text(text, None, urls)
    em.post(record, id=post_id, text=final, entities=entities, kind=kind, reader=READER, truncated=truncated, **fields)
    return post_id


def parse_page(obj: dict, em: Emitter, record: int) -> None:
    """Emit every record of one response page: ``data`` items, ``includes.tweets``, ``errors`` entries."""
    page = _Page(obj)
    data = obj.get("data")
    items = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    for item in items:
        if not isinstance(item, dict):
            em.quarantine(record, "not_an_object", item)
        elif _kind_of_object(item) is not None:
            em.drop(record, "not_a_post")
        else:
            parse_tweet(item, em, record, page)
    # every entry of includes.tweets is a record, repeats and entries without a usable id included (page.tweets,
    # a lookup by id, holds each id once): a repeat is dropped as duplicate_in_page, the rest parsed
    inc = obj.get("includes") if isinstance(obj.get("includes"), dict) else {}
    included = inc.get("tweets") if isinstance(inc.get("tweets"), list) else []
    seen: set[str] = set()
    for tw in included:
        if not isinstance(tw, dict):
            em.quarantine(record, "not_an_object", tw)
        elif not isinstance(tw.get("id"), str):
            parse_tweet(tw, em, record, page)  # quarantined (missing_id, bad_id) or an int id kept
        elif tw["id"] in seen:
            em.drop(record, "duplicate_in_page")
        else:
            seen.add(tw["id"])
            parse_tweet(page.tweets[tw["id"]], em, record, page)  # the lookup's copy, as references see it
    errors = obj.get("errors") or []
    for err in errors if isinstance(errors, list) else [errors]:  # one error object (or string) unlisted: one
        detail = err.get("detail") or err.get("title") or err if isinstance(err, dict) else err
        em.quarantine(record, "api_error", detail)


def parse_compliance(obj: dict, em: Emitter, record: int) -> None:
    """A compliance event: ``delete`` actions become deletion requests (post id or author id), others drop."""
    target = id_or_none(obj.get("id"))
    if obj.get("action") == "delete" and target:
        # The event does not say whether the id is a post's or an account's (separate files): honour both.
        em.delete(record, target, scope="any")
    else:
        em.drop(record, "compliance_event")
