"""Briefs: the control fields a post is written for (layer L1, data), shared by fine-tuning and ad copy.

A brief says what a post should be: its language, tone, brand, terms that must appear and hashtags that must
appear. The fine-tuning set (``data.sft``, ``brief`` examples) builds one brief per real post from what the post
and its corpus say (the post's rarest words as terms, its hashtags, ``lang``, a ``sentiment`` label as tone, a
``brand`` label as brand) and teaches the chat model to answer ``brief.instruction()`` with the post. Ad copy
(``ads.copy``) renders an advertiser's brief as the same instruction and samples the reply.
Field text is cleaned of newlines and the separators ``<>|;``.
This module knows nothing of models, tokenizers or torch.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from tweetlm.data.post import Post

TONES = ("positive", "neutral", "negative")
"""Tones a brief may ask for; they are the sentiment labels of the shared corpora (TweetEval, SemEval, XLM-T,
US airlines)."""

LANGUAGE_NAMES = {
    "ar": "Arabic", "de": "German", "en": "English", "es": "Spanish", "fr": "French", "hi": "Hindi",
    "id": "Indonesian", "it": "Italian", "pt": "Portuguese",
}  # fmt: skip
"""Names of the shared corpora's languages (ISO 639-1), for instructions; other codes are written as they are."""

ENDING_PROB = 0.4
"""Share of fine-tuning briefs that ask for the post's closing words (``Brief.ending``)."""

_SEP = re.compile(r"[<>|;\n]+")
_WORD = re.compile(r"(?<![#@\w])[^\W\d_][\w'-]{2,}", re.UNICODE)
_URL = re.compile(r"https?://\S+|\bwww\.\S+", re.IGNORECASE)
_HASHTAG = re.compile(r"(?<![\w&])#(\w*[^\W\d_]\w*)", re.UNICODE)
_MENTION = re.compile(r"(?<![\w@\uff20])[@\uff20](\w{1,15})(?!\w)", re.UNICODE)
_ENDING = re.compile(r"(?<![#@\w/.])((?:[^\W\d_][\w'-]*\s+){0,3}[^\W\d_][\w'-]*)[.!?]*\s*$", re.UNICODE)


def _clean_field(text: str) -> str:
    return " ".join(_SEP.sub(" ", text).split())


@dataclass
class Brief:
    """Control fields of one post.

    Attributes:
        lang: ISO 639-1 code of the post's language, ``""`` when unknown.
        tone: one of ``TONES`` or ``""`` (any).
        brand: the brand the post is about (the airline corpus's ``airline`` column), ``""`` for none.
        terms: words or phrases that must appear in the post (case-insensitive).
        hashtags: hashtags (with ``#``) that must appear in the post.
        ending: a closing phrase the post must end with (an ad's call to action), ``""`` for none.
    """

    lang: str = ""
    tone: str = ""
    brand: str = ""
    terms: list[str] = field(default_factory=list)
    hashtags: list[str] = field(default_factory=list)
    ending: str = ""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field for a tone outside ``TONES`` or a hashtag without ``#``."""
        if self.tone and self.tone not in TONES:
            raise ValueError(f"tone must be one of {', '.join(TONES)} (or empty), got {self.tone!r}")
        for h in self.hashtags:
            if not is_hashtag(h):
                raise ValueError(f"hashtags: {h!r} is not a hashtag (write it as #word)")

    def instruction(self) -> str:
        """The brief as a chat instruction (the user turn of a fine-tuning example, ``data.sft``):
        ``Write a negative post in English about United. Use the words: bags, delayed. Include #fail. End with
        "never again".``"""
        lang = LANGUAGE_NAMES.get(self.lang, self.lang)
        text = "Write a" + (f" {self.tone}" if self.tone else "") + " post"
        text += (f" in {lang}" if lang else "") + (f" about {_clean_field(self.brand)}" if self.brand else "") + "."
        terms = [t for t in (_clean_field(x) for x in self.terms) if t]
        if terms:
            text += " Use the words: " + ", ".join(terms) + "."
        if self.hashtags:
            text += " Include " + " ".join(self.hashtags) + "."
        ending = _clean_field(self.ending)
        if ending:
            text += f' End with "{ending}".'
        return text


def contains_phrase(text: str, phrase: str) -> bool:
    """``phrase`` occurs in ``text`` as whole words, case-insensitive (``bag`` is not in ``baggage``; runs of
    whitespace match any whitespace). An empty phrase is always present. What a brief's terms, an ad's required
    terms and the engine's constrained decoding count as present."""
    words = phrase.split()
    if not words:
        return True
    pat = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)"
    return re.search(pat, text, re.IGNORECASE) is not None


BRAND_HANDLE_SUFFIXES = ("", "air", "airline", "airlines", "assist", "help", "support", "care", "official", "hq")
"""A handle is a brand's own account when it is the brand's letters and digits followed by one of these
(``@VirginAmerica``, ``@SouthwestAir``, ``@DeltaAssist``); ``@UnitedWay`` is not United's."""


def _brand_key(brand: str) -> str:
    """The brand's letters and digits, case- and accent-folded (``Nestlé`` -> ``nestle``)."""
    folded = unicodedata.normalize("NFKD", brand.casefold())
    return "".join(ch for ch in folded if ch.isalnum() and not unicodedata.combining(ch))


def is_brand_handle(handle: str, brand: str) -> bool:
    """``handle`` (without ``@``) is ``brand``'s own account: its folded form is the brand's letters and digits
    plus one of ``BRAND_HANDLE_SUFFIXES``. An empty ``brand`` has no handle."""
    key = _brand_key(brand)
    h = _brand_key(handle)
    return bool(key) and h.startswith(key) and h[len(key) :] in BRAND_HANDLE_SUFFIXES


def name_brand_handles(text: str, brand: str) -> str:
    """``text`` with each @-mention of ``brand``'s own account (``is_brand_handle``) written as the brand's name:
    ``@VirginAmerica`` -> ``Virgin America``, ``@SouthwestAir`` -> ``Southwest``. Mentions inside URLs
    (``medium.com/@united``) and e-mail addresses are left alone, as is every ``text`` when ``brand`` is empty.

    Posts address brands by handle: with leading mentions stripped, under 10% of the shared corpus's airline posts
    name their airline, with this over 80% (``tests/test_ads.py``), so without it almost no fine-tuning brief could
    say "about <brand>" with a post that names it, while an ad must name its product (``data.sft.answer_text``).
    """
    if not _brand_key(brand):
        return text

    def rename(m: re.Match) -> str:
        return brand.strip() if is_brand_handle(m.group(1), brand) else m.group(0)

    out, last = [], 0
    for u in _URL.finditer(text):
        out += [_MENTION.sub(rename, text[last : u.start()]), u.group(0)]
        last = u.end()
    out.append(_MENTION.sub(rename, text[last:]))
    return "".join(out)


def is_hashtag(text: str) -> bool:
    """``#`` followed by letters, digits or ``_`` with at least one letter (``#fail``, not ``#123``)."""
    return _HASHTAG.fullmatch(text) is not None


def words(text: str) -> list[str]:
    """Candidate terms of a post: runs of 3+ letters/digits starting with a letter, not part of a hashtag,
    mention or URL, case-folded."""
    return [w.casefold() for w in _WORD.findall(_URL.sub(" ", text))]


def hashtags(text: str) -> list[str]:
    """``#tags`` of ``text`` in order, as written (the twitter-text rule is in ``data.twitter_text``; this
    lighter pattern is what briefs need: a ``#`` not inside a word, followed by a word with a letter)."""
    return ["#" + m for m in _HASHTAG.findall(_URL.sub(" ", text))]


class DocFreq:
    """Document frequency of ``words`` over a corpus, for choosing a post's rarest (most specific) words."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        self.df: Counter[str] = Counter()
        self.num_docs = 0
        for t in texts:
            self.add(t)

    def add(self, text: str) -> None:
        self.df.update(set(words(text)))
        self.num_docs += 1

    def idf(self, word: str) -> float:
        """``log((1 + N) / (1 + df))`` (the smoothed IDF of scikit-learn's ``TfidfVectorizer``)."""
        return math.log((1 + self.num_docs) / (1 + self.df.get(word, 0)))


def _seed(post_id: str, seed: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{post_id}".encode(), digest_size=8).digest(), "big")


def closing_phrase(text: str, n_words: int) -> str:
    """The last ``n_words`` (1..4) words of ``text`` when it ends in plain words (trailing ``.!?`` allowed),
    else ``""`` (a post ending in a URL, hashtag, mention, number or emoji has no closing phrase to ask for)."""
    m = _ENDING.search(text)
    if m is None:
        return ""
    return " ".join(m.group(1).split()[-n_words:])


def brief_from_post(post: Post, df: DocFreq, seed: int = 0, min_df: int = 3, max_terms: int = 3) -> Brief:
    """The brief a real post answers, for fine-tuning and for held-out evaluation briefs.

    Terms: 1..``max_terms`` (drawn per post) of the post's words with the highest IDF among words seen in at
    least ``min_df`` documents (rarer words are mostly typos and handles). Hashtags: up to 2 of the post's own.
    ``lang`` from the post; tone from a ``sentiment`` label in ``TONES``; brand from a ``brand`` label, only when
    the post names the brand (``contains_phrase``: ``@united`` names ``United``), and then also as the first term,
    as ``AdBrief.control`` lists an ad's product first: an ad's "about Delta" asks for Delta in the text, and
    briefs "about" an airline its post never named taught the model the opposite (product named in 20% of ad
    candidates against 53%, ``benchmarks/results/ads_sft_cpu2_202612.md``). Each field is left out with
    probability 0.15 (the terms with 0.1), so the model also learns partial briefs.
    Ending: with probability ``ENDING_PROB`` the post's last 1..3 words (``closing_phrase``), so the model learns
    to close on a given phrase as an ad's call to action asks.
    The draw is seeded by ``(seed, post.id)``: the same post always gets the same brief.
    """
    rng = random.Random(_seed(post.id, seed))
    cand = sorted({w for w in words(post.text) if df.df.get(w, 0) >= min_df}, key=lambda w: (-df.idf(w), w))
    n_terms = rng.randint(1, max_terms)
    terms = cand[:n_terms] if rng.random() > 0.1 else []
    rng.shuffle(terms)
    tags = list(dict.fromkeys(hashtags(post.text)))[:2]
    tone = post.labels.get("sentiment", "")
    brand = post.labels.get("brand", "")
    brief = Brief(
        lang=(post.lang or "") if rng.random() > 0.15 else "",
        tone=tone if tone in TONES and rng.random() > 0.15 else "",
        brand=brand if rng.random() > 0.15 and contains_phrase(post.text, brand) else "",
        terms=terms,
        hashtags=tags if rng.random() > 0.15 else [],
    )
    if brief.brand:  # named by the post: listed first, as an ad brief lists its product
        brand_words = {w.casefold() for w in brief.brand.split()}
        brief.terms = [brief.brand] + [t for t in terms if t not in brand_words]
    if rng.random() < ENDING_PROB:
        brief.ending = closing_phrase(post.text, rng.randint(1, 3))
    return brief
