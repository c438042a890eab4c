"""What the pipeline does to one post's text (layer L1, data): normalization, the exact-dedup key and the split.

``normalize_text`` is the ``Normalize`` step's work (``steps.py``), ``dedup_key`` the key of exact and near
de-duplication (``steps.PrepareWriter``, ``decide.py``), ``hash_split`` the train/validation split of posts
whose corpus ships none (``steps.PostReader``). Plain functions, so the steps, the search index and the
benchmarks share one definition; nothing here reads files or counts drops.
"""

from __future__ import annotations

import hashlib
import html
import re
from typing import Protocol

_WS = re.compile(r"[^\S\n]+")
_NL = re.compile(r"\s*\n\s*")
MENTION = re.compile(r"(?<![\w@])@\w{1,15}\b")
"""An @mention (up to 15 word characters, not inside a word or an e-mail address)."""
URL = re.compile(r"https?://\S+|\bwww\.\S+", re.IGNORECASE)
"""A URL: ``http(s)://`` or ``www.`` up to the next whitespace."""
HASHTAG = re.compile(r"(?<![\w#&])[#\uff03]\w+")
"""A hashtag (``#`` or the full-width ``＃``, not inside a word or an HTML entity)."""


def sub_url(repl: str, text: str) -> str:
    """``URL.sub(repl, text)``, skipping the regex where a substring test shows no URL can match (``://``, or
    ``w.``/``W.`` for ``www.``): most posts have none, and ``in`` costs far less than a regex scan."""
    return URL.sub(repl, text) if "://" in text or "w." in text or "W." in text else text


def sub_mention(repl: str, text: str) -> str:
    """``MENTION.sub(repl, text)``, skipping the regex for text without ``@``."""
    return MENTION.sub(repl, text) if "@" in text else text


def sub_hashtag(repl: str, text: str) -> str:
    """``HASHTAG.sub(repl, text)``, skipping the regex for text without ``#`` or ``＃``."""
    return HASHTAG.sub(repl, text) if "#" in text or "\uff03" in text else text


class TextSettings(Protocol):
    """The settings ``normalize_text`` reads (``PipelineConfig`` has them)."""

    fix_unicode: bool
    url_placeholder: bool
    mention_placeholder: bool


def normalize_text(text: str, cfg: TextSettings) -> str:
    """The cleaned text of one post: HTML entities undone (``&amp;`` -> ``&``, twice for double-escaped text),
    Unicode damage repaired with ``ftfy`` when ``cfg.fix_unicode`` (mojibake, orphan variation selectors; the
    author's curly quotes, full-width forms and ligatures kept), optional ``http`` / ``@user`` placeholders,
    whitespace runs collapsed (newlines kept, for thread documents), ends stripped. May return ``""``."""
    for _ in range(2):
        if "&" not in text:
            break
        text = html.unescape(text)
    if cfg.fix_unicode:
        import ftfy

        text = ftfy.fix_text(
            text,
            unescape_html=False,
            uncurl_quotes=False,
            fix_character_width=False,
            fix_latin_ligatures=False,
            normalization="NFC",
        )
    if cfg.url_placeholder:
        text = sub_url("http", text)
    if cfg.mention_placeholder:
        text = sub_mention("@user", text)
    # every whitespace character but the space is unprintable: printable text without a double space has no
    # run to collapse, and the test costs a seventh of the substitution
    if not text.isprintable() or "  " in text:
        text = _WS.sub(" ", text)
        if "\n" in text:
            text = _NL.sub("\n", text)
    return text.strip()


def dedup_key(text: str) -> str:
    """Key for exact de-duplication: case-folded, whitespace collapsed."""
    return " ".join(text.casefold().split())


def hash_split(source: str, post_id: str, val_fraction: float) -> str:
    """``"val"`` when the first 8 bytes of ``sha1(source:id)`` fall below ``val_fraction`` of 2**64, else
    ``"train"``; stable across runs and machines."""
    h = int.from_bytes(hashlib.sha1(f"{source}:{post_id}".encode()).digest()[:8], "big")
    return "val" if h < val_fraction * 2**64 else "train"
