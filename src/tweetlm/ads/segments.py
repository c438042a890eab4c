"""Interest segments (layer L4, ads): clusters of posts an advertiser can target, and the authors in them.

Posts are embedded (an ``embed`` function: all-MiniLM-L6-v2 unit vectors from ``cli``), clustered with k-means
(scikit-learn; on unit vectors squared Euclidean distance is ``2 - 2 cos``), and each cluster is described by:
its size and share of posts, its languages, its top hashtags (by count) and its top terms by class-based TF-IDF
(Grootendorst 2022, BERTopic: a term's frequency in the cluster times ``log(1 + A / f)``, ``f`` its frequency
over all clusters and ``A`` the mean number of words per cluster), and a few example post ids. An author is
assigned to the segment most of their posts fall in (with that share); posts without an author are counted
but assign nobody. New texts are assigned to the nearest centroid.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tweetlm.data.briefs import hashtags, words
from tweetlm.data.post import Post


@dataclass
class Segment:
    """One interest segment: ``id``, ``label`` (its top 3 terms), ``size`` (posts), ``share`` of all posts,
    ``langs`` (post counts), ``top_hashtags`` and ``top_terms`` (``[term, weight]``), ``examples`` (post ids
    nearest the centroid), ``authors`` (authors assigned to it)."""

    id: int
    label: str
    size: int
    share: float
    langs: dict[str, int]
    top_hashtags: list[tuple[str, int]]
    top_terms: list[tuple[str, float]]
    examples: list[str] = field(default_factory=list)
    authors: int = 0


@dataclass
class Segmentation:
    """Segments, their ``(K, dim)`` unit-vector centroids, each post's segment, and author assignments
    (``author -> {"segment", "share", "posts"}``)."""

    segments: list[Segment]
    centroids: np.ndarray
    post_ids: list[str]
    post_segment: list[int]
    authors: dict[str, dict]

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """``(N,)`` segment id of each ``(N, dim)`` unit vector (the nearest centroid by cosine)."""
        return (np.asarray(vectors, np.float32) @ self.centroids.T).argmax(axis=1)

    def save(self, out: str | Path) -> Path:
        """``out/segments.json`` (segments, post and author assignments) and ``out/centroids.npy``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "centroids.npy", self.centroids)
        doc = {
            "segments": [asdict(s) for s in self.segments],
            "posts": dict(zip(self.post_ids, self.post_segment)),
            "authors": self.authors,
        }
        (out / "segments.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False))
        return out

    @classmethod
    def load(cls, path: str | Path) -> Segmentation:
        path = Path(path)
        if not (path / "segments.json").exists():
            raise FileNotFoundError(f"no segments at {path} (make them with 'tweetlm ads segments')")
        doc = json.loads((path / "segments.json").read_text())
        segs = [Segment(**s) for s in doc["segments"]]
        return cls(segs, np.load(path / "centroids.npy"), list(doc["posts"]), list(doc["posts"].values()),
                   doc["authors"])  # fmt: skip


def _c_tf_idf(docs: list[Counter], top: int, skip: set[str]) -> list[list[tuple[str, float]]]:
    total: Counter = Counter()
    for c in docs:
        total.update(c)
    avg = sum(sum(c.values()) for c in docs) / max(len(docs), 1)
    out = []
    for c in docs:
        n = max(sum(c.values()), 1)
        scored = [(w, (f / n) * math.log(1 + avg / total[w])) for w, f in c.items() if f >= 2 and w not in skip]
        scored.sort(key=lambda x: (-x[1], x[0]))
        out.append([(w, round(s, 5)) for w, s in scored[:top]])
    return out


def build_segments(
    posts: Sequence[Post],
    embed: Callable[[list[str]], np.ndarray],
    k: int = 20,
    seed: int = 0,
    top: int = 8,
    examples: int = 3,
    max_df: float = 0.05,
) -> Segmentation:
    """Cluster ``posts`` into ``k`` interest segments; see the module docstring. Words in more than ``max_df``
    of all posts (the corpus's stop words: "the", "you", and in the airline corpus "flight") are not terms.
    Raises ``ValueError`` when ``k < 2`` or there are fewer posts than ``k``."""
    from sklearn.cluster import KMeans

    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    if len(posts) < k:
        raise ValueError(f"{len(posts)} posts cannot make {k} segments")
    X = np.asarray(embed([p.text for p in posts]), np.float32)
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(X)
    labels = km.labels_
    cent = km.cluster_centers_ / np.maximum(np.linalg.norm(km.cluster_centers_, axis=1, keepdims=True), 1e-12)
    term_docs = [Counter() for _ in range(k)]
    tag_docs = [Counter() for _ in range(k)]
    langs = [Counter() for _ in range(k)]
    for p, c in zip(posts, labels):
        term_docs[c].update(words(p.text))
        tag_docs[c].update(h.casefold() for h in hashtags(p.text))
        langs[c][p.lang or "und"] += 1
    df: Counter = Counter()
    for p in posts:
        df.update(set(words(p.text)))
    common = {w for w, f in df.items() if f > max_df * len(posts)}  # the corpus's own stop words
    terms = _c_tf_idf(term_docs, top, common)
    by_author: dict[str, Counter] = {}
    for p, c in zip(posts, labels):
        if p.author_id:
            by_author.setdefault(p.author_id, Counter())[int(c)] += 1
    authors = {}
    for a, cnt in by_author.items():
        seg, m = cnt.most_common(1)[0]
        authors[a] = {"segment": seg, "share": m / sum(cnt.values()), "posts": sum(cnt.values())}
    per_seg_authors = Counter(v["segment"] for v in authors.values())
    sims = X @ cent.T
    segs = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        near = members[np.argsort(-sims[members, c])][:examples]
        segs.append(
            Segment(
                id=c,
                label=" / ".join(w for w, _ in terms[c][:3]),
                size=int(len(members)),
                share=float(len(members) / len(posts)),
                langs=dict(langs[c].most_common()),
                top_hashtags=tag_docs[c].most_common(top),
                top_terms=terms[c],
                examples=[posts[i].id for i in near],
                authors=int(per_seg_authors.get(c, 0)),
            )
        )
    order = sorted(range(k), key=lambda c: -segs[c].size)
    return Segmentation([segs[c] for c in order], cent, [p.id for p in posts], [int(c) for c in labels], authors)
