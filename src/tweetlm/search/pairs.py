"""Training pairs for search, mined from a clean corpus (layer L4, search): the posts hold the relevance signal.

A pair is ``(query, positive)``: a text a user might search with, and the post it should find. Five kinds, each
from structure the corpus already has, so no outside data or labelling is needed:

- ``qa``: a TweetQA question (the reader's ``tweetqa`` label) and the tweet it was asked about; the closest to a
  user's search, and the kind the quality benchmark measures.
- ``reply``: a post and the reply to it (``reply_to_id`` resolved inside the corpus).
- ``quote``: a quote post and the post it quotes (``quoted_id`` resolved inside the corpus).
- ``thread``: neighbouring posts of a thread document (the pipeline's ``thread_texts``, or a reader's
  ``kind="thread"`` text such as IndoLEM's), earlier post as the query.
- ``hashtag``: a post's hashtags as the query (``#BlackFriday`` -> ``black friday``) and the post with its
  hashtags removed as the positive, when at least ``min_words`` words remain.

Every pair keeps the ids of the posts it came from (``source_ids``) so a deletion request can find the models
trained on them. Pairs come from one split of the corpus: mine the ``train`` split for training and the ``val``
split for validation, so no post (for ``qa``: no tweet, whatever its questions) is on both sides.
``hard_negatives`` adds, per pair, the best BM25 match among the training posts that is not the positive (an
in-memory tantivy index over ``analyze.tokenize``, the tokenizer search uses).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field

from tweetlm.data.post import Post

KINDS = ("qa", "reply", "quote", "thread", "hashtag")

_HASHTAG = re.compile(r"(?<![\w&])[#\uff03][\w\u200c]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=[0-9])")


@dataclass
class Pair:
    """One training pair. ``positive_id``: the post ``positive`` is (``""`` for a line of a thread document
    without ids); ``negative``: a hard negative text (``""`` until ``hard_negatives`` fills it)."""

    query: str
    positive: str
    kind: str
    source_ids: list[str]
    positive_id: str = ""
    negative: str = ""
    negative_id: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


@dataclass
class PairConfig:
    """Caps per kind (a seeded sample; -1: all) and the hashtag rule.

    Attributes:
        max_per_kind: ``{kind: cap}``; kinds not named are uncapped.
        min_words: words a post must keep once its hashtags are removed to give a ``hashtag`` pair.
        seed: the sample.
    """

    max_per_kind: dict[str, int] = field(default_factory=lambda: {"hashtag": 5000, "thread": 5000})
    min_words: int = 4
    seed: int = 0


def hashtag_query(tag: str) -> str:
    """``"#BlackFriday2019"`` -> ``"black friday 2019"``: the words a user would type for a hashtag."""
    return _CAMEL.sub(" ", tag.lstrip("#\uff03")).replace("_", " ").lower().strip()


def _without_hashtags(text: str) -> str:
    return " ".join(_HASHTAG.sub(" ", text).split())


def mine_pairs(
    posts: list[Post],
    thread_texts: dict[str, list[str]] | None = None,
    thread_ids: dict[str, list[str]] | None = None,
    cfg: PairConfig | None = None,
) -> tuple[list[Pair], Counter]:
    """Pairs of every kind from the posts of one split.

    Args:
        posts: posts of a clean corpus split (``data.corpus.read_corpus_posts``).
        thread_texts, thread_ids: per thread document id, its members' texts and ids (corpus columns).
        cfg: caps and seed.

    Returns:
        ``(pairs, counts)``: pairs in a seeded order; ``counts`` holds ``"<kind>"`` (pairs kept) and
        ``"<kind>:candidates"`` (before the caps).
    """
    from tweetlm.data.sft import thread_turns

    cfg = cfg or PairConfig()
    thread_texts, thread_ids = thread_texts or {}, thread_ids or {}
    by_id = {p.id: p for p in posts}
    found: dict[str, list[Pair]] = {k: [] for k in KINDS}
    for p in posts:
        if p.labels.get("tweetqa"):
            try:
                qas = json.loads(p.labels["tweetqa"])
            except json.JSONDecodeError:
                qas = []
            for q in qas:
                question = (q.get("question") or "").strip() if isinstance(q, dict) else ""
                if question:
                    found["qa"].append(Pair(question, p.text, "qa", [p.id], p.id))
        turns = thread_turns(p, thread_texts.get(p.id))
        if len(turns) >= 2:
            ids = thread_ids.get(p.id) or []
            for i in range(len(turns) - 1):
                a, b = turns[i], turns[i + 1]
                if len(ids) == len(turns):
                    src, pos_id = [ids[i], ids[i + 1]], ids[i + 1]
                else:  # a reader's thread text: the lines have no ids of their own
                    src, pos_id = [p.id], ""
                found["thread"].append(Pair(a, b, "thread", src, pos_id))
            continue
        parent = by_id.get(p.reply_to_id or "")
        if parent is not None and parent.kind != "thread":
            found["reply"].append(Pair(parent.text, p.text, "reply", [parent.id, p.id], p.id))
        quoted = by_id.get(p.quoted_id or "")
        if quoted is not None and quoted.kind != "thread":
            found["quote"].append(Pair(p.text, quoted.text, "quote", [p.id, quoted.id], quoted.id))
        tags = p.hashtags or _HASHTAG.findall(p.text)  # research corpora carry no entity fields
        if tags and not p.labels.get("tweetqa"):
            rest = _without_hashtags(p.text)
            query = " ".join(dict.fromkeys(q for q in (hashtag_query(t) for t in tags) if q))
            if query and len(rest.split()) >= cfg.min_words:
                found["hashtag"].append(Pair(query, rest, "hashtag", [p.id], p.id))
    rng = random.Random(cfg.seed)
    counts: Counter = Counter()
    pairs: list[Pair] = []
    for kind in KINDS:
        got = found[kind]
        counts[f"{kind}:candidates"] = len(got)
        cap = cfg.max_per_kind.get(kind, -1)
        if cap != -1 and len(got) > cap:
            got = rng.sample(got, cap)
        counts[kind] = len(got)
        pairs += got
    rng.shuffle(pairs)
    return pairs, counts


def hard_negatives(pairs: list[Pair], pool: list[Post], depth: int = 10, progress=None) -> int:
    """Fill each pair's ``negative`` with the best BM25 match for its query among ``pool`` (training posts) that
    is neither the positive post nor a post with the positive's text. Returns the number of pairs given one.

    BM25 over an in-memory tantivy index of ``analyze.tokenize`` tokens (the search index's tokenizer and
    scoring); ``depth``: hits looked at per query. ``progress(n)`` is called as queries finish.
    """
    import tantivy

    from tweetlm.search.analyze import tokenize

    sb = tantivy.SchemaBuilder()
    sb.add_text_field("text", stored=False, tokenizer_name="whitespace", index_option="freq")
    sb.add_integer_field("row", stored=True, indexed=False)
    schema = sb.build()
    idx = tantivy.Index(schema)
    w = idx.writer(heap_size=128_000_000, num_threads=1)
    for i, p in enumerate(pool):
        w.add_document(tantivy.Document(text=" ".join(tokenize(p.text)), row=i))
    w.commit()
    w.wait_merging_threads()
    idx.reload()
    searcher = idx.searcher()
    filled = 0
    for n, pair in enumerate(pairs):
        toks = list(dict.fromkeys(tokenize(pair.query)))
        if toks:
            q = tantivy.Query.boolean_query(
                [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "text", t)) for t in toks]
            )
            pos_text = " ".join(pair.positive.split())
            for _, addr in searcher.search(q, depth).hits:
                cand = pool[searcher.doc(addr)["row"][0]]
                if cand.id == pair.positive_id or pos_text in " ".join(cand.text.split()):
                    continue  # the positive, a copy of it, or the thread document it is a line of
                pair.negative, pair.negative_id = cand.text, cand.id
                filled += 1
                break
        if progress and (n + 1) % 1000 == 0:
            progress(1000)
    return filled
