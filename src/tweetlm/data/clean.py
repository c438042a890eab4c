"""Cleaning, exact de-duplication and train/val split of Post records (layer L1, data).

The skeleton's cleaning stage; issue 3 moves these steps onto datatrove ``PipelineStep``s. What it does, in
order, for every post:

1. normalize: HTML entities (``&amp;`` -> ``&``, twice for double-escaped text), Unicode repair with ``ftfy``
   (mojibake, orphan variation selectors), whitespace runs collapsed (newlines kept for thread documents), and
   optional ``@user`` / ``http`` placeholders for mentions and URLs;
2. drop ``empty`` posts;
3. split: a corpus's own val/dev split is kept as validation; other posts go to validation when a stable
   hash of ``source:id`` falls below ``val_fraction`` (so a post never changes split between runs);
4. exact de-duplication on a key of the normalized text (case-folded, whitespace collapsed). Validation posts
   are seen first, so a training copy of a validation post is dropped (``duplicate_of_val``), never the
   validation copy; later copies within a split are dropped as ``duplicate``.

Every drop is counted in the ``Ledger`` under the post's source and reason.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterable
from dataclasses import dataclass

from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post

_WS = re.compile(r"[^\S\n]+")
_NL = re.compile(r"\s*\n\s*")
_MENTION = re.compile(r"(?<![\w@])@\w{1,15}\b")
_URL = re.compile(r"https?://\S+|\bwww\.\S+", re.IGNORECASE)


@dataclass
class CleanConfig:
    """Attributes:
    val_fraction: share of posts from corpora without their own val split that go to validation.
    mention_placeholder: replace ``@handle`` with ``@user`` (TweetEval's convention).
    url_placeholder: replace URLs with ``http``.
    fix_unicode: run ``ftfy.fix_text`` (mojibake and other Unicode damage).
    min_chars: posts shorter than this after normalizing are dropped as ``too_short``.
    """

    val_fraction: float = 0.05
    mention_placeholder: bool = False
    url_placeholder: bool = False
    fix_unicode: bool = True
    min_chars: int = 1


def normalize_text(text: str, cfg: CleanConfig) -> str:
    """The cleaned text of one post (see module docstring, step 1)."""
    for _ in range(2):
        if "&" not in text:
            break
        text = html.unescape(text)
    if cfg.fix_unicode:
        import ftfy

        # Repair only damage (mojibake, surrogates, control characters); keep the author's curly quotes,
        # full-width forms and ligatures, which are part of how posts are written.
        text = ftfy.fix_text(
            text,
            unescape_html=False,
            uncurl_quotes=False,
            fix_character_width=False,
            fix_latin_ligatures=False,
            normalization="NFC",
        )
    if cfg.url_placeholder:
        text = _URL.sub("http", text)
    if cfg.mention_placeholder:
        text = _MENTION.sub("@user", text)
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


def clean_posts(posts: Iterable[Post], ledger: Ledger, cfg: CleanConfig) -> dict[str, list[Post]]:
    """Normalize, split and de-duplicate ``posts``; returns ``{"train": [...], "val": [...]}`` in input order.

    Every post dropped is recorded in ``ledger`` (reasons ``empty``, ``too_short``, ``duplicate_of_val``,
    ``duplicate``), so ``ledger.check`` holds on the result.
    """
    staged: list[Post] = []
    for p in posts:
        p.text = normalize_text(p.text, cfg)
        if not p.text:
            ledger.drop(p.source, "empty")
            continue
        if len(p.text) < cfg.min_chars:
            ledger.drop(p.source, "too_short")
            continue
        if p.split is None:
            p.split = hash_split(p.source, p.id, cfg.val_fraction)
        staged.append(p)

    seen: dict[str, str] = {}
    out: dict[str, list[Post]] = {"train": [], "val": []}
    # Validation first (a stable sort keeps input order within each split).
    for p in sorted(staged, key=lambda q: q.split != "val"):
        key = dedup_key(p.text)
        first = seen.get(key)
        if first is not None:
            ledger.drop(p.source, "duplicate_of_val" if first == "val" and p.split == "train" else "duplicate")
            continue
        seen[key] = p.split
        out[p.split].append(p)
    order = {id(p): i for i, p in enumerate(staged)}
    for split in out:
        out[split].sort(key=lambda q: order[id(q)])
    return out
