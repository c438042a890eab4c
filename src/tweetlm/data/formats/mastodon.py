"""Mastodon statuses (layer L1, data): the REST ``Status`` entity and ActivityPub outbox exports.

A status's ``content`` is HTML (``<p>``, ``<br>``, links with ``invisible``/``ellipsis`` spans that shorten
what is shown, ``h-card`` mention links, ``hashtag`` links). ``html_to_text`` walks it with the standard
library's ``html.parser`` (no dependency is needed for this small, regular subset): paragraphs become blank
lines, ``<br>`` a newline, a mention or hashtag link its visible ``@user`` / ``#tag``, and any other link its
full ``href`` (the visible text is a shortened copy of it); character references are decoded.

Shapes: a ``Status`` (``id``, ``created_at``, ``content``, ``account``, ``in_reply_to_id``, ``reblog``,
``quote``, ``mentions``, ``tags``, ``language``), a JSON array of them (a timeline), and the account export's
``outbox.json`` (``orderedItems`` of ``Create`` activities holding a ``Note``; ``Announce`` is a boost).
A boost (``reblog``) is ``kind="retweet"`` with ``retweeted_id``, and the boosted status is a post of its own.
Mastodon ids are strings; ids of statuses from other servers are only unique per server, as in the source.
"""

from __future__ import annotations

from html.parser import HTMLParser

from tweetlm.data.formats.base import Emitter, FieldError, id_or_none, iso_utc, quarantines_bad_fields
from tweetlm.data.formats.entities import Span, assemble

READER = "mastodon"


def is_status(obj: dict) -> bool:
    """A Mastodon ``Status``: ``content`` and ``account`` beside ``uri``/``url``/``id``."""
    return "content" in obj and isinstance(obj.get("account"), dict) and ("uri" in obj or "url" in obj)


def is_translation(obj: dict) -> bool:
    """A ``Translation`` (``POST /api/v1/statuses/:id/translate``): ``content`` translated by a ``provider``,
    with ``detected_source_language``; no ``id`` or ``account``. A machine translation of a post, not a post:
    ``records`` drops it as ``not_a_post``."""
    return "content" in obj and "detected_source_language" in obj and "provider" in obj and "account" not in obj


def is_outbox(obj: dict) -> bool:
    """An ActivityPub outbox (``orderedItems``), as in a Mastodon account export."""
    return isinstance(obj.get("orderedItems"), list)


class _ToText(HTMLParser):
    def __init__(self, mention_urls: dict[str, str]) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.spans: list[Span] = []
        self.mention_urls = mention_urls
        self._link: dict | None = None
        self._paragraphs = 0

    @property
    def _pos(self) -> int:
        return sum(len(p) for p in self.parts)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")
        elif tag == "p":
            if self._paragraphs:
                self.parts.append("\n\n")
            self._paragraphs += 1
        elif tag == "a" and self._link is None:
            a = dict(attrs)
            self._link = {"href": a.get("href") or "", "classes": (a.get("class") or "").split(), "text": []}

    def handle_endtag(self, tag: str) -> None:
        if tag != "a" or self._link is None:
            return
        link, self._link = self._link, None
        visible = "".join(link["text"])
        start = self._pos
        if "hashtag" in link["classes"] or visible.startswith("#"):
            self.parts.append(visible)
            self.spans.append(Span(start, start + len(visible), "hashtag", visible.lstrip("#")))
        elif "mention" in link["classes"] or visible.startswith("@"):
            value = self.mention_urls.get(link["href"]) or visible.lstrip("@")
            self.parts.append(visible)
            self.spans.append(Span(start, start + len(visible), "mention", value))
        elif link["href"]:
            self.parts.append(link["href"])
            self.spans.append(Span(start, start + len(link["href"]), "url", link["href"]))
        else:
            self.parts.append(visible)

    def handle_data(self, data: str) -> None:
        (self._link["text"] if self._link is not None else self.parts).append(data)


def html_to_text(content: str, mention_urls: dict[str, str] | None = None) -> tuple[str, list[dict]]:
    """``(text, entities)`` of a status's HTML ``content`` (see module docstring); ``mention_urls`` maps a
    mention's profile URL to its ``acct`` (``user@server``) for the entity value."""
    p = _ToText(mention_urls or {})
    p.feed(content)
    p.close()
    if p._link is not None:  # an unclosed <a>: keep its text
        p.parts += p._link["text"]
    text = "".join(p.parts)
    # the spans already index ``text``; assemble checks them and formats the entities
    return assemble(text, p.spans, escaped=False)


@quarantines_bad_fields
def parse_status(st: dict, em: Emitter, record: int) -> str | None:
    """Emit one status (and the status it boosts); returns its id, or ``None`` when quarantined."""
    post_id = id_or_none(st.get("id")) or id_or_none(st.get("uri"))
    if post_id is None:
        em.quarantine(record, "missing_id", st)
        return None
    account = st.get("account") if isinstance(st.get("account"), dict) else {}
    fields: dict = {
        "created_at": iso_utc(st.get("created_at")),
        "author_id": id_or_none(account.get("id")),
        "lang": st.get("language") if isinstance(st.get("language"), str) else None,
        "reply_to_id": id_or_none(st.get("in_reply_to_id")),
    }
    reblog = st.get("reblog")
    if isinstance(reblog, dict):
        orig_id = parse_status(reblog, em, record)
        orig = em.outcomes[-1].post if em.outcomes and orig_id else None
        acct = (reblog.get("account") or {}).get("acct", "")
        text = f"RT @{acct}: {orig.text}" if orig is not None and acct else (orig.text if orig else "")
        em.post(record, id=post_id, text=text, kind="retweet", retweeted_id=orig_id, reader=READER, **fields)
        return post_id
    if not isinstance(st.get("content"), str):
        em.quarantine(record, "missing_text", st)
        return None
    mentions = {
        m["url"]: m.get("acct") or m.get("username")
        for m in st.get("mentions") or []
        if isinstance(m, dict) and m.get("url")
    }
    text, entities = html_to_text(st["content"], mentions)
    kind = "reply" if fields["reply_to_id"] else "post"
    quote = st.get("quote") if isinstance(st.get("quote"), dict) else None
    quoted = quote.get("quoted_status") if quote else None
    if isinstance(quoted, dict):
        fields["quoted_id"] = parse_status(quoted, em, record)
        kind = "quote" if fields["quoted_id"] else kind
    em.post(record, id=post_id, text=text, entities=entities, kind=kind, reader=READER, **fields)
    return post_id


def parse_outbox(obj: dict, em: Emitter, record: int) -> None:
    """Emit the posts of an ActivityPub outbox: ``Create`` of a ``Note`` is a post, ``Announce`` a boost of a
    post not in the file (dropped as ``boost_without_original``), anything else ``not_a_post``."""
    for item in obj["orderedItems"]:
        note = item.get("object") if isinstance(item, dict) else None
        if not isinstance(item, dict):
            em.quarantine(record, "not_an_object", item)
        elif item.get("type") == "Announce":
            em.drop(record, "boost_without_original")
        elif item.get("type") != "Create" or not isinstance(note, dict) or note.get("type") not in ("Note", "Question"):
            em.drop(record, "not_a_post")
        elif not isinstance(note.get("content"), str):
            em.quarantine(record, "missing_text", item)
        elif id_or_none(note.get("id")) is None:
            em.quarantine(record, "missing_id", item)
        else:
            try:
                created_at = iso_utc(note.get("published"))
            except FieldError as e:
                em.quarantine(record, f"bad_{e.field}", item)
                continue
            mentions = {
                t["href"]: t.get("name", "").lstrip("@")
                for t in note.get("tag") or []
                if isinstance(t, dict) and t.get("type") == "Mention" and t.get("href")
            }
            text, entities = html_to_text(note["content"], mentions)
            reply = id_or_none(note.get("inReplyTo"))
            lang = next(iter(note.get("contentMap") or {}), None)
            em.post(
                record,
                id=note["id"],
                text=text,
                entities=entities,
                kind="reply" if reply else "post",
                reply_to_id=reply,
                created_at=created_at,
                author_id=id_or_none(note.get("attributedTo")),
                lang=lang,
                reader=READER,
            )
