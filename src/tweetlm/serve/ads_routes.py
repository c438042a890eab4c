"""``POST /v1/ads/safety``, ``/v1/ads/copy`` and ``/v1/ads/place`` (layer L5, serve): schemas and routes over
``tweetlm.ads``.

Registered by ``create_app(..., ads=AdsServices(...))``; a route whose component is missing (no guard, no search
index) answers 404 saying what the server was started without. Classification, generation, filtering and
ranking live in ``tweetlm.ads``; this module validates input and runs the blocking work in a worker thread (ad
copy holds a lock: one copy job at a time beside the completion batcher).

Bad input answers 400 naming the field: empty or too many texts, a ``langs`` list of the wrong length, a brief
without a product, an unknown brief field, a ``lang`` that is not a language code, a hashtag that is not
``#word``, a tone outside positive/neutral/negative, a banned term inside a required term, the product, the
hashtag or the CTA, ``n`` or ``num_candidates`` out of range, an empty ad, ``k`` out of range. Placement's
``lang`` is a code or a list of codes.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tweetlm.ads.copy import DEFAULT_TEMPERATURE, MAX_CANDIDATES, MAX_N, AdBrief, generate_copy
from tweetlm.ads.placement import MAX_K, place


@dataclass
class AdsServices:
    """What the ads routes run on: ``safety`` (``ads.safety.SafetyClassifier``, required), ``guard``
    (``ads.guard.MemorizationGuard``, for copy), ``retriever`` factory ``(half_life_hours, as_of, langs) ->
    Retriever`` (for placement), ``embed`` (texts -> unit vectors, for ranking copy)."""

    safety: object
    guard: object | None = None
    retriever: object | None = None
    embed: object | None = None


def _non_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be blank")
    return v


class SafetyRequest(BaseModel):
    texts: list[str] = Field(min_length=1, max_length=256)
    langs: list[str | None] | None = None

    @field_validator("texts")
    @classmethod
    def _texts(cls, v: list[str]) -> list[str]:
        if any(not t.strip() or len(t) > 10_000 for t in v):
            raise ValueError("every text must be non-blank and at most 10,000 characters")
        return v


class CopyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown brief field is an error, as in the CLI

    product: str = Field(min_length=1, max_length=200)
    message: str = Field(default="", max_length=1000)
    segment: str = Field(default="", max_length=200)
    required_terms: list[str] = Field(default_factory=list, max_length=10)
    hashtag: str = Field(default="", max_length=100)
    cta: str = Field(default="", max_length=200)
    banned_terms: list[str] = Field(default_factory=list, max_length=100)
    lang: str = Field(default="en", max_length=8)
    tone: str = Field(default="positive", pattern="^(positive|neutral|negative|)$")
    product_required: bool = True
    n: int = Field(default=8, ge=1, le=MAX_N)
    num_candidates: int = Field(default=64, ge=1, le=MAX_CANDIDATES)
    seed: int = 0
    temperature: float = Field(default=DEFAULT_TEMPERATURE, ge=0.0, le=2.0)
    constrained: bool = False  # lexically constrained decoding (ads.copy)

    @field_validator("product")
    @classmethod
    def _product(cls, v: str) -> str:
        return _non_blank(v)

    def brief(self) -> AdBrief:
        fields = set(AdBrief.__dataclass_fields__)
        return AdBrief(**{k: v for k, v in self.model_dump().items() if k in fields})


class PlaceRequest(BaseModel):
    ad_text: str = Field(min_length=1, max_length=2000)
    k: int = Field(default=10, ge=1, le=MAX_K)
    num_candidates: int = Field(default=50, ge=1, le=10 * MAX_K)
    banned_terms: list[str] = Field(default_factory=list, max_length=100)
    half_life_hours: float | None = Field(default=None, gt=0)
    as_of: str | None = None
    lang: list[str] = Field(default_factory=list)

    @field_validator("lang", mode="before")
    @classmethod
    def _lang(cls, v):
        return [v] if isinstance(v, str) else v

    @field_validator("ad_text")
    @classmethod
    def _ad_text(cls, v: str) -> str:
        return _non_blank(v)


def register_ads_routes(app: FastAPI, ads: AdsServices, engine, api_error) -> None:
    """Add the three routes to ``app``. ``api_error(status, message, type_, code, param=...)`` builds the
    exception the app answers with its error body."""
    lock = threading.Lock()

    def bad(e: Exception, param: str | None = None):
        msg = str(e)
        field = param or (msg.split(":")[0] if ":" in msg and " " not in msg.split(":")[0] else None)
        return api_error(400, f"invalid request: {msg}", "invalid_request_error", None, param=field)

    @app.post("/v1/ads/safety")
    async def safety(req: SafetyRequest):
        if req.langs is not None and len(req.langs) != len(req.texts):
            raise bad(ValueError(f"langs: {len(req.langs)} languages for {len(req.texts)} texts"))
        res = await asyncio.to_thread(ads.safety.classify, req.texts, req.langs)
        return {"object": "ads.safety", "data": [{"text": t, **r.to_dict()} for t, r in zip(req.texts, res)]}

    @app.post("/v1/ads/copy")
    async def copy(req: CopyRequest):
        if ads.guard is None:
            raise api_error(404, "this server has no memorization guard, so it does not write ad copy")
        if req.num_candidates < req.n:
            raise bad(ValueError(f"num_candidates: must be >= n ({req.n}), got {req.num_candidates}"))
        try:
            brief = req.brief()
            brief.validate()
        except ValueError as e:
            raise bad(e) from None

        def run():
            with lock:
                return generate_copy(engine, brief, req.n, req.num_candidates, ads.safety, ads.guard, ads.embed,
                                     seed=req.seed, temperature=req.temperature,
                                     constrained=req.constrained)  # fmt: skip

        try:
            res = await asyncio.to_thread(run)
        except ValueError as e:
            raise bad(e) from None
        return {"object": "ads.copy", **res.to_dict()}

    @app.post("/v1/ads/place")
    async def place_ad(req: PlaceRequest):
        if ads.retriever is None:
            raise api_error(404, "this server has no search index, so it does not place ads")
        if req.num_candidates < req.k:
            raise bad(ValueError(f"num_candidates: must be >= k ({req.k}), got {req.num_candidates}"))
        retriever = ads.retriever(req.half_life_hours, req.as_of, req.lang)
        try:
            res = await asyncio.to_thread(place, req.ad_text, retriever, ads.safety, req.k, req.num_candidates,
                                          req.banned_terms)  # fmt: skip
        except ValueError as e:
            raise bad(e) from None
        return {"object": "ads.placement", **res.to_dict()}
