"""A post's final text and its entities with offsets into that text (layer L1, data).

X payloads give text HTML-escaped (``&amp;``, ``&lt;``, ``&gt;``) with entity indices in code points of the
escaped text, and links as ``t.co`` wrappers whose targets sit in the payload's ``urls``/``media`` entities.
``x_text`` finds entities in the still-escaped text with ``data.twitter_text`` (the twitter-text rules, so
the offsets agree with X's), cuts the text to its ``display_text_range``, swaps each ``t.co`` link for its
expanded URL where the payload has it, and only then unescapes; the offsets are recomputed for the final text.
Bluesky gives UTF-8 byte offsets (``byte_to_code_point``); Mastodon builds its spans while it walks the HTML.

An entity is ``{"kind": "hashtag"|"mention"|"cashtag"|"url", "value": str, "start": int, "end": int}``:
``value`` is the tag, screen name or cashtag without its sigil, or the URL (expanded where known); ``start``
and ``end`` are ``[start, end)`` code point offsets into ``Post.text`` as the reader produced it (cleaning
later may shift them). Nothing here resolves links over the network.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass

from tweetlm.data import twitter_text

ENTITY_KINDS = ("hashtag", "mention", "cashtag", "url")


@dataclass(frozen=True)
class Span:
    """A piece of the source text to mark as an entity: ``[start, end)`` code points of the source text, the
    entity ``kind`` and ``value``, and ``replacement`` text to put in its place (``None`` keeps the surface)."""

    start: int
    end: int
    kind: str
    value: str
    replacement: str | None = None


def assemble(text: str, spans: list[Span], *, escaped: bool) -> tuple[str, list[dict]]:
    """Build ``(final text, entities)`` from ``text`` and non-overlapping ``spans`` sorted by start.

    Text between spans is HTML-unescaped when ``escaped``; a span's surface too, unless it is replaced. Entity
    offsets are code points of the returned text. Overlapping or out-of-range spans raise ``ValueError``.
    """
    out: list[str] = []
    entities: list[dict] = []
    pos = 0
    length = 0
    for sp in spans:
        if sp.start < pos or sp.end > len(text) or sp.start > sp.end:
            raise ValueError(f"entity span [{sp.start}, {sp.end}) overlaps another or lies outside the text")
        gap = text[pos : sp.start]
        if escaped:
            gap = html.unescape(gap)
        out.append(gap)
        length += len(gap)
        surface = sp.replacement if sp.replacement is not None else text[sp.start : sp.end]
        if escaped and sp.replacement is None:
            surface = html.unescape(surface)
        out.append(surface)
        entities.append({"kind": sp.kind, "value": sp.value, "start": length, "end": length + len(surface)})
        length += len(surface)
        pos = sp.end
    tail = text[pos:]
    out.append(html.unescape(tail) if escaped else tail)
    return "".join(out), entities


def twitter_spans(text: str, lo: int = 0, hi: int | None = None, urls: Mapping[str, str] | None = None) -> list[Span]:
    """Entities of ``text`` by the twitter-text rules, kept when they lie inside ``[lo, hi)``; a URL whose
    surface is a key of ``urls`` (``t.co`` link -> expanded URL) is replaced by its expansion."""
    hi = len(text) if hi is None else hi
    urls = urls or {}
    spans = []
    for e in twitter_text.extract_entities_with_indices(text):
        s, t = e["indices"]
        if s < lo or t > hi:
            continue
        if "url" in e:
            surface = e["url"]
            expanded = urls.get(surface)
            if expanded is None and not surface.lower().startswith(("http://", "https://")):
                expanded = urls.get("https://" + surface) or urls.get("http://" + surface)
            spans.append(Span(s, t, "url", expanded or html.unescape(surface), expanded))
        elif "screen_name" in e:
            spans.append(Span(s, t, "mention", e["screen_name"]))
        elif "hashtag" in e:
            spans.append(Span(s, t, "hashtag", e["hashtag"]))
        else:
            spans.append(Span(s, t, "cashtag", e["cashtag"]))
    return spans


def x_text(
    text: str, display_range: tuple[int, int] | None = None, urls: Mapping[str, str] | None = None
) -> tuple[str, list[dict]]:
    """Final text and entities of an X post: ``text`` as the API gives it (HTML-escaped), cut to
    ``display_range`` (code points of the escaped text, as X reports it; ``None`` keeps everything), ``t.co``
    links in ``urls`` expanded, then unescaped. See the module docstring for the entity format."""
    lo, hi = 0, len(text)
    if display_range is not None:
        lo, hi = max(0, display_range[0]), min(len(text), display_range[1])
        if lo >= hi:  # a broken range: keep the whole text rather than lose the post
            lo, hi = 0, len(text)
    spans = [Span(s.start - lo, s.end - lo, s.kind, s.value, s.replacement) for s in twitter_spans(text, lo, hi, urls)]
    return assemble(text[lo:hi], spans, escaped=True)


def plain_text(text: str, urls: Mapping[str, str] | None = None) -> tuple[str, list[dict]]:
    """Final text and entities of unescaped text (an archive note, a generic record): twitter-text rules,
    ``t.co`` links in ``urls`` expanded, nothing unescaped."""
    return assemble(text, twitter_spans(text, urls=urls), escaped=False)


def byte_to_code_point(text: str) -> dict[int, int]:
    """Map every UTF-8 byte offset that falls on a character boundary of ``text`` to its code point offset
    (the end offset ``len(text.encode())`` included). Offsets inside a character are absent."""
    out = {}
    b = 0
    for i, ch in enumerate(text):
        out[b] = i
        b += len(ch.encode("utf-8", "surrogatepass"))
    out[b] = len(text)
    return out


def entity_lists(entities: list[dict]) -> dict[str, list[str]]:
    """``{"hashtags": [...], "mentions": [...], "cashtags": [...], "urls": [...]}`` values in text order."""
    out: dict[str, list[str]] = {"hashtags": [], "mentions": [], "cashtags": [], "urls": []}
    for e in entities:
        out[e["kind"] + "s"].append(e["value"])
    return out
