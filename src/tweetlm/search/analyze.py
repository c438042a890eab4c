"""The tokenizer BM25 sees (layer L4, search): words, hashtags, mentions, cashtags, emoji and non-Latin scripts.

Why not the engines' own analyzers: tantivy's ``default`` tokenizer splits ``#monday`` into ``monday`` and drops
emoji; bm25s's splits on ``\\w`` and breaks Devanagari words at their vowel signs (combining marks are not
``\\w`` in Python). One tokenizer written here feeds both engines, so the BM25 comparison in
``benchmarks/bench_search_quality.py`` measures the engines and not their analyzers.

Rules (applied to NFKC-normalized, case-folded text):

- URL: one token for the host (``t.co`` links carry no meaning, so the path is dropped): ``url:nytimes.com``.
- ``#Tag``: both ``#tag`` and ``tag``, so a query ``tag`` finds the hashtag and ``#tag`` ranks it higher.
- ``@user``: both ``@user`` and ``user``.
- ``$AAPL`` cashtag: ``$aapl``.
- Letters, marks and digits (any script, ``\\p{L}\\p{M}\\p{N}``, inner apostrophes kept): one token per word.
- Scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar): character unigrams and
  bigrams, the usual dictionary-free fallback for CJK retrieval.
- Emoji (``\\p{Extended_Pictographic}``, flag pairs): one token each.
- ``RT`` at the start of a retweet is dropped (it is on every retweet and says nothing of content).

No stemming and no stop words: the corpora mix ten languages and BM25's IDF already discounts function words.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

_PATTERN = r"""(?x)
 (?P<url>https?://[^\s/]+\S*|www\.[^\s/]+\S*)
|(?P<tag>[#][\p{L}\p{M}\p{N}_]+)
|(?P<men>@\w{1,15})
|(?P<cash>\$[a-z]{1,6}\b)
|(?P<cjk>[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\u30fc]+)
|(?P<word>[\p{L}\p{M}\p{N}]+(?:['\u2019][\p{L}\p{M}\p{N}]+)*)
|(?P<emo>\p{Regional_Indicator}{2}|\p{Extended_Pictographic})
"""


@lru_cache(maxsize=1)
def _regex():
    import regex

    return regex.compile(_PATTERN)


def tokenize(text: str) -> list[str]:
    """Tokens of one post or query, in order (see the module docstring for the rules).

    Example: ``tokenize("RT @Bob: Rain again #Monday 😂 https://t.co/x")`` is
    ``['@bob', 'bob', 'rain', 'again', '#monday', 'monday', '😂', 'url:t.co']``.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    out: list[str] = []
    for i, m in enumerate(_regex().finditer(text)):
        kind, tok = m.lastgroup, m.group()
        if kind == "word":
            if i == 0 and tok == "rt":
                continue
            out.append(tok.replace("\u2019", "'"))
        elif kind == "tag" or kind == "men":
            out += [tok, tok[1:]]
        elif kind == "url":
            host = tok.split("://", 1)[-1].split("/", 1)[0].rstrip(".,;:!?)")
            out.append("url:" + host.removeprefix("www."))
        elif kind == "cjk":
            out += list(tok)
            out += [tok[j : j + 2] for j in range(len(tok) - 1)]
        else:  # cash, emo
            out.append(tok)
    return out
