"""``POST /v1/search``, ``POST /v1/ask`` and ``GET /v1/posts/{id}`` (layer L5, serve): request schemas and
routes over ``search``. ``/v1/ask`` with ``"stream": true`` sends server-sent events: ``search.answer.delta``
events with the text as it is generated, then the whole ``search.answer`` (citations checked on the whole
text: a citation of a post not given is removed there), then ``[DONE]``.

Registered by ``create_app(..., search_index=...)``. Retrieval, fusion and citation checking live in
``tweetlm.search``; this module validates input, runs the blocking search in a worker thread, and for ask sends
the prompt through the app's batcher (the same queue and limits as ``/v1/completions``).

Bad input answers 400 with the field named: an empty query, ``k`` outside 1..``MAX_K``, a date that is not ISO
8601, ``since`` after ``until``, an unknown ``kind``.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, field_validator

from tweetlm.inference.batcher import QueueFull
from tweetlm.inference.engine import SamplingParams
from tweetlm.search.ask import engine_prompt, engine_prompt_tokens, finish, prepare
from tweetlm.search.index import MAX_K, SearchIndex, SearchParams


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=1000)
    k: int = Field(default=10, ge=1, le=MAX_K)
    since: str | None = None
    until: str | None = None
    as_of: str | None = None
    lang: list[str] = Field(default_factory=list)
    author: list[str] = Field(default_factory=list)
    kind: list[str] = Field(default_factory=list)
    half_life_hours: float | None = Field(default=None, gt=0)
    mode: str = Field(default="hybrid", pattern="^(hybrid|bm25|dense)$")
    fusion: str = Field(default="linear", pattern="^(linear|rrf)$")
    bm25_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    global_idf: bool = False

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v

    def params(self, k: int | None = None) -> SearchParams:
        return SearchParams(
            k=k or self.k,
            since=self.since,
            until=self.until,
            as_of=self.as_of,
            langs=self.lang,
            authors=self.author,
            kinds=self.kind,
            half_life_s=None if self.half_life_hours is None else self.half_life_hours * 3600,
            mode=self.mode,
            fusion=self.fusion,
            bm25_weight=self.bm25_weight,
            global_idf=self.global_idf,
        )


class AskRequest(SearchRequest):
    query: str = Field(min_length=1, max_length=1000, alias="question")
    k: int = Field(default=5, ge=1, le=20)
    max_tokens: int = Field(default=128, ge=1)
    stream: bool = False


def register_search_routes(app: FastAPI, index: SearchIndex, batcher, api_error, max_tokens_limit: int) -> None:
    """Add the two routes to ``app``. ``api_error(status, message, type_, code, headers=...)`` builds the
    exception the app answers with its error body."""

    def unavailable(e: OSError):
        return api_error(503, f"the search index is unavailable: {e}", "server_error", "index_unavailable",
                         headers={"Retry-After": "5"})  # fmt: skip

    def run_search(req: SearchRequest):
        try:
            return index.search(req.query, req.params())
        except ValueError as e:
            raise api_error(400, str(e)) from None
        except OSError as e:  # the index folder was removed or cannot be read
            raise unavailable(e) from None

    @app.post("/v1/search")
    async def search(req: SearchRequest):
        try:
            req.params().resolve()  # fail fast on bad dates before touching the index
        except ValueError as e:
            raise api_error(400, str(e)) from None
        hits = await asyncio.to_thread(run_search, req)
        return {"object": "search.results", "query": req.query, "data": [h.to_dict() for h in hits]}

    @app.get("/v1/posts/{post_id:path}")  # ids may hold "/" (tweeteval/emoji:train_text.txt:35179)
    async def post(post_id: str):
        try:
            got = await asyncio.to_thread(index.get, post_id)
        except OSError as e:
            raise unavailable(e) from None
        if got is None:
            raise api_error(404, f"no post {post_id!r} in the search index", param="post_id", code="post_not_found")
        return {"object": "post", **got}

    @app.post("/v1/ask")
    async def ask(req: AskRequest):
        if req.max_tokens > max_tokens_limit:
            raise api_error(400, f"max_tokens={req.max_tokens} exceeds this server's limit of {max_tokens_limit}")
        engine = batcher.engine
        room = min(req.max_tokens, 32)

        def fits(prompt: str) -> bool:
            return engine_prompt_tokens(engine, prompt) + room <= engine.max_seq_len

        try:
            prompt, hits = await asyncio.to_thread(prepare, index, req.query, req.params(), fits)
        except ValueError as e:
            raise api_error(400, str(e)) from None
        except OSError as e:
            raise unavailable(e) from None
        params = SamplingParams(max_tokens=req.max_tokens, temperature=0.0)
        try:
            job = batcher.submit(engine_prompt(engine, prompt), params)
        except QueueFull as e:
            raise api_error(
                503, f"server busy: {e}; retry shortly", "server_error", "queue_full", headers={"Retry-After": "1"}
            ) from None

        def answer_of(text: str) -> dict:
            answer = finish(req.query, prompt, hits, text)
            return {"object": "search.answer", **answer.to_dict(), "posts": [h.to_dict() for h in answer.posts]}

        if req.stream:

            async def events():
                raw = []
                try:
                    async for item in batcher.stream(job):
                        if isinstance(item, str):
                            raw.append(item)
                            yield f"data: {json.dumps({'object': 'search.answer.delta', 'delta': item})}\n\n"
                    yield f"data: {json.dumps(answer_of(''.join(raw)), ensure_ascii=False)}\n\n"
                except Exception as e:  # noqa: BLE001 (the stream ends with an error event, never a cut)
                    err = {"message": f"generation failed: {type(e).__name__}: {e}", "type": "server_error"}
                    yield f"data: {json.dumps({'error': err})}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        try:
            completion = await batcher.result(job)
        except ValueError as e:
            raise api_error(400, f"invalid request: {e}") from None
        return answer_of(completion.text)
