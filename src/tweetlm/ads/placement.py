"""Contextual placement (layer L4, ads): which recent conversations should an ad appear beside?

``place`` asks a retriever for the posts that match the ad, drops every context the brand-safety classifier
flags or that contains one of the advertiser's banned terms, and returns the best ``k`` in the retriever's
order. Relevance and recency are the retriever's: the one ``cli`` and ``serve`` wire in is
``search.SearchIndex`` (BM25 + dense, RRF, recency decay with a half-life, nothing after ``as_of``), passed as a
function because ``ads`` may not import ``search`` (same layer). Any function with the ``Retriever`` shape
works.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from tweetlm.data.briefs import contains_phrase

Retriever = Callable[[str, int], list[dict]]
"""``(query, k) -> hits``, best first; each hit a dict with at least ``id`` and ``text`` (and, when known,
``score``, ``created_at``, ``lang``, ``author_id``, ``source``), as ``search.Hit.to_dict`` gives."""

MAX_K = 100


@dataclass
class PlacementResult:
    """``placements``: the chosen contexts (hit dicts plus ``rank`` and ``safety_score``), best first;
    ``candidates``: hits the retriever returned; ``excluded_unsafe`` / ``excluded_banned``: ids dropped for
    brand safety / a banned term; ``excluded``: those hits themselves with ``reason`` (``unsafe`` with the
    ``safety_score`` and the safety heads that ``flagged_by`` it, or ``banned_term:<t>``), in retrieval order."""

    query: str
    placements: list[dict]
    candidates: int
    excluded_unsafe: list[str] = field(default_factory=list)
    excluded_banned: list[str] = field(default_factory=list)
    excluded: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def place(
    ad_text: str,
    retriever: Retriever,
    safety,
    k: int = 10,
    num_candidates: int = 50,
    banned_terms: Sequence[str] = (),
) -> PlacementResult:
    """The top ``k`` brand-safe contexts for ``ad_text`` among the retriever's ``num_candidates`` best.

    ``safety``: an ``ads.safety.SafetyClassifier`` (each context is classified in its own language when the
    hit has one). Raises ``ValueError`` for an empty ad, ``k`` outside 1..``MAX_K`` or ``num_candidates < k``.
    """
    if not ad_text or not ad_text.strip():
        raise ValueError("ad_text: must not be empty")
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k: must be in 1..{MAX_K}, got {k}")
    if num_candidates < k or num_candidates > 10 * MAX_K:
        raise ValueError(f"num_candidates: must be in k..{10 * MAX_K} (k={k}), got {num_candidates}")
    if safety is None:
        raise ValueError("placement needs a safety classifier (unsafe contexts must be excluded)")
    hits = retriever(ad_text, num_candidates)
    verdicts = safety.classify([h["text"] for h in hits], [h.get("lang") for h in hits]) if hits else []
    out, unsafe, banned, excluded = [], [], [], []
    for h, v in zip(hits, verdicts):
        term = next((b for b in banned_terms if contains_phrase(h["text"], b)), None)
        if v.unsafe:
            unsafe.append(h["id"])
            excluded.append({**h, "reason": "unsafe", "safety_score": v.score, "flagged_by": list(v.flagged_by)})
        elif term is not None:
            banned.append(h["id"])
            excluded.append({**h, "reason": f"banned_term:{term}", "safety_score": v.score})
        elif len(out) < k:
            out.append({**h, "rank": len(out) + 1, "safety_score": v.score})
    return PlacementResult(ad_text, out, len(hits), unsafe, banned, excluded)
