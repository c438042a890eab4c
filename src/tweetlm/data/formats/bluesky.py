"""Bluesky posts (layer L1, data): ``app.bsky.feed.post`` records, post views, feeds and Jetstream events.

Shapes (lexicons in ``../shared/formats/bluesky/lexicons``): a bare record ``{"$type": "app.bsky.feed.post",
"text", "createdAt", "facets", "reply", "embed", "langs"}``; a repository listing item ``{"uri", "cid",
"value": record}``; a post view ``{"uri", "author", "record", ...}`` and a feed item ``{"post": view,
"reason": ...}`` (a ``reasonRepost`` makes it a repost, ``kind="retweet"``); a feed page ``{"feed": [...]}``,
a ``listRecords`` page ``{"records": [...]}``
or thread ``{"thread": {"post", "replies"}}``; a Jetstream event ``{"did", "time_us", "kind": "commit",
"commit": {"operation", "collection", "rkey", "record"}}``. A Jetstream ``delete`` of a post is honoured: the
post it names (``at://<did>/app.bsky.feed.post/<rkey>``) is dropped from the file as ``deleted``. An
``update`` rewrites the record under the same URI: each ``create``/``update`` is a version ordered by the
event's ``time_us``, the latest is the post and earlier ones are dropped as ``superseded_by_edit`` (``base``),
however long their text.

The post id is its ``at://`` URI. A bare record has none (the URI is its place in a repository, not part of
it) and gets ``<source>:<file>:<record>`` like corpora without ids (``files.FileInfo.fallback_id``).

Facets mark mentions, links and tags with UTF-8 BYTE offsets (``app.bsky.richtext.facet``): they are turned
into code point offsets with ``entities.byte_to_code_point``; a facet that does not fall on character
boundaries, or overlaps an earlier one, is ignored. A link facet's text (often shortened by the client) is
replaced by its full ``uri``, as X ``t.co`` links are by their expansion. Other collections (likes, follows,
reposts as records) and identity/account events are dropped as ``not_a_post``.
"""

from __future__ import annotations

from tweetlm.data.formats.base import Emitter, iso_utc, quarantines_bad_fields
from tweetlm.data.formats.entities import Span, assemble, byte_to_code_point

READER = "bluesky"
POST_TYPE = "app.bsky.feed.post"
_FACET = "app.bsky.richtext.facet#"


def is_bluesky(obj: dict) -> bool:
    """Any of the Bluesky shapes in the module docstring."""
    if obj.get("$type") == POST_TYPE:
        return True
    if isinstance(obj.get("uri"), str) and obj["uri"].startswith("at://"):
        return True
    if "did" in obj and "time_us" in obj and "kind" in obj:
        return True
    if isinstance(obj.get("post"), dict) and isinstance(obj["post"].get("uri"), str):
        return True
    if isinstance(obj.get("records"), list) and all(isinstance(r, dict) and "uri" in r for r in obj["records"]):
        return True
    return isinstance(obj.get("feed"), list) or (isinstance(obj.get("thread"), dict) and "post" in obj["thread"])


def _spans(text: str, facets: object) -> list[Span]:
    if not isinstance(facets, list):
        return []
    offsets = byte_to_code_point(text)
    spans: list[Span] = []
    for f in sorted(
        (f for f in facets if isinstance(f, dict) and isinstance(f.get("index"), dict)),
        key=lambda f: f["index"].get("byteStart", -1) if isinstance(f["index"].get("byteStart"), int) else -1,
    ):
        b0, b1 = f["index"].get("byteStart"), f["index"].get("byteEnd")
        if not isinstance(b0, int) or not isinstance(b1, int) or b0 not in offsets or b1 not in offsets:
            continue
        start, end = offsets[b0], offsets[b1]
        if start >= end or (spans and start < spans[-1].end):
            continue
        for feat in f.get("features") or []:
            kind = feat.get("$type", "").removeprefix(_FACET) if isinstance(feat, dict) else ""
            if kind == "mention":
                spans.append(Span(start, end, "mention", text[start:end].lstrip("@")))
            elif kind == "link" and isinstance(feat.get("uri"), str):
                spans.append(Span(start, end, "url", feat["uri"], feat["uri"]))
            elif kind == "tag" and isinstance(feat.get("tag"), str):
                spans.append(Span(start, end, "hashtag", feat["tag"]))
            else:
                continue
            break
    return spans


def _ref_uri(ref: object) -> str | None:
    return ref.get("uri") if isinstance(ref, dict) and isinstance(ref.get("uri"), str) else None


@quarantines_bad_fields
def parse_record(
    rec: dict,
    em: Emitter,
    record: int,
    uri: str | None,
    author: str | None = None,
    kind: str | None = None,
    version: int | None = None,
) -> str | None:
    """Emit one ``app.bsky.feed.post`` record (``version``: see ``base.Emitter.post``); returns its id, or
    ``None`` when quarantined."""
    text = rec.get("text")
    if not isinstance(text, str):
        em.quarantine(record, "missing_text", rec)
        return None
    post_id = uri or em.fallback_id(record)
    final, entities = assemble(text, _spans(text, rec.get("facets")), escaped=False)
    reply = rec.get("reply") if isinstance(rec.get("reply"), dict) else {}
    embed = rec.get("embed") if isinstance(rec.get("embed"), dict) else {}
    quoted = _ref_uri(embed.get("record"))
    if quoted is None and isinstance(embed.get("record"), dict):  # recordWithMedia nests {record: {record}}
        quoted = _ref_uri(embed["record"].get("record"))
    langs = rec.get("langs")
    fields = {
        "created_at": iso_utc(rec.get("createdAt")),
        "author_id": author or (uri.split("/")[2] if uri and uri.count("/") >= 4 else None),
        "lang": langs[0] if isinstance(langs, list) and langs and isinstance(langs[0], str) else None,
        "reply_to_id": _ref_uri(reply.get("parent")),
        "conversation_id": _ref_uri(reply.get("root")),
        "quoted_id": quoted,
    }
    kind = kind or ("reply" if fields["reply_to_id"] else "quote" if quoted else "post")
    em.post(record, id=post_id, text=final, entities=entities, kind=kind, reader=READER, version=version, **fields)
    return post_id


def _parse_view(view: dict, em: Emitter, record: int) -> str | None:
    rec = view.get("record")
    if not isinstance(rec, dict):
        em.quarantine(record, "missing_text", view)
        return None
    author = view.get("author") if isinstance(view.get("author"), dict) else {}
    return parse_record(rec, em, record, _ref_uri(view), author.get("did"))


@quarantines_bad_fields
def parse(obj: dict, em: Emitter, record: int) -> None:
    """Emit every record of one Bluesky JSON value (see the module docstring for the shapes)."""
    if isinstance(obj.get("feed"), list) or isinstance(obj.get("records"), list):
        for item in obj["feed"] if isinstance(obj.get("feed"), list) else obj["records"]:
            if isinstance(item, dict):
                parse(item, em, record)
            else:
                em.quarantine(record, "not_an_object", item)
        return
    if isinstance(obj.get("thread"), dict) and "post" in obj["thread"]:
        stack = [obj["thread"]]
        while stack:
            node = stack.pop(0)
            if isinstance(node.get("post"), dict):
                _parse_view(node["post"], em, record)
            stack += [r for r in node.get("replies") or [] if isinstance(r, dict)]
        return
    if isinstance(obj.get("post"), dict):  # feed item
        orig = _parse_view(obj["post"], em, record)
        reason = obj.get("reason") if isinstance(obj.get("reason"), dict) else {}
        if reason.get("$type", "").endswith("#reasonRepost") and orig:
            by = reason.get("by") if isinstance(reason.get("by"), dict) else {}
            view = obj["post"]
            handle = (view.get("author") or {}).get("handle", "")
            text = em.outcomes[-1].post.text if em.outcomes and em.outcomes[-1].post is not None else ""
            em.post(
                record,
                id=f"{orig}#repost:{by.get('did', '')}",
                text=f"RT @{handle}: {text}" if handle else text,
                kind="retweet",
                retweeted_id=orig,
                author_id=by.get("did"),
                created_at=iso_utc(reason.get("indexedAt")),
                reader=READER,
            )
        return
    if "did" in obj and "time_us" in obj:
        _parse_jetstream(obj, em, record)
        return
    if obj.get("$type") == POST_TYPE:
        parse_record(obj, em, record, None)
        return
    if isinstance(obj.get("value"), dict):  # listRecords item
        if obj["value"].get("$type", POST_TYPE) == POST_TYPE:
            parse_record(obj["value"], em, record, _ref_uri(obj))
        else:
            em.drop(record, "not_a_post")
        return
    if isinstance(obj.get("record"), dict):
        _parse_view(obj, em, record)
        return
    em.drop(record, "not_a_post")  # e.g. a createRecord response {uri, cid}


def _parse_jetstream(ev: dict, em: Emitter, record: int) -> None:
    commit = ev.get("commit") if isinstance(ev.get("commit"), dict) else None
    if ev.get("kind") != "commit" or commit is None or commit.get("collection") != POST_TYPE:
        em.drop(record, "not_a_post")
        return
    did, rkey = ev.get("did"), commit.get("rkey")
    if not isinstance(did, str) or not isinstance(rkey, str):
        em.quarantine(record, "missing_id", ev)
        return
    uri = f"at://{did}/{POST_TYPE}/{rkey}"
    op = commit.get("operation")
    if op == "delete":
        em.delete(record, uri)
    elif op in ("create", "update") and isinstance(commit.get("record"), dict):
        t = ev.get("time_us")
        version = t if isinstance(t, int) and not isinstance(t, bool) else None
        parse_record(commit["record"], em, record, uri, did, version=version)
    else:
        em.quarantine(record, "missing_text", ev)
