"""OpenAI-compatible HTTP API (layer L5, serve): FastAPI routes over ``inference.Batcher``.

Endpoints: ``POST /v1/completions``, ``POST /v1/chat/completions`` (both stream with server-sent events when
``stream`` is true, ending with ``data: [DONE]``), ``GET /v1/models``, ``GET /health``. Request and response
shapes follow the OpenAI API reference, so the official ``openai`` client works unchanged; tweetlm adds the
optional fields ``top_k``, ``repetition_penalty`` and ``tweet_mode``.

Limits, all answered with an OpenAI-style error body: a missing or wrong API key (when keys are configured) ->
401; an invalid field, a prompt over ``max_prompt_tokens`` or ``max_tokens`` over its limit -> 400 saying which
and the limit; a full request queue -> 503 with ``Retry-After`` (never a hang).

A chat request is rendered with the checkpoint's chat template (``tokenizer.chat``; tweetlm's own for a model
without one) and the reply ends at the template's end-of-turn token; ``tweet_mode`` keeps the reply within 280
weighted characters. A conversation longer than the context loses its oldest turns first and the response says
how many (``dropped_turns``). With a search index, ``"grounded": true`` retrieves posts for the last user message,
answers over them, keeps only citations of the posts given and lists them (``citations``); ``search_k`` sets how
many posts (default 5). Grounded answers are not streamed (citations are checked on the whole answer).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field, StrictBool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tweetlm.inference.batcher import Batcher, QueueFull
from tweetlm.inference.engine import Completion, Engine, SamplingParams


@dataclass
class ServeConfig:
    """Attributes:
    api_keys: accepted ``Authorization: Bearer`` keys; empty means no auth.
    max_prompt_tokens: longest prompt accepted, in tokens (0: the model's context minus one).
    max_tokens_limit: largest ``max_tokens`` a request may ask for.
    max_batch: requests generated together (the engine's slots; continuous batching).
    queue_size: requests that may wait for a slot; one more gets 503.
    continuous: continuous batching (False: static batches, kept only to measure against).
    max_body_bytes: largest request body; a larger one answers 413.
    """

    api_keys: list[str] = field(default_factory=list)
    max_prompt_tokens: int = 0
    max_tokens_limit: int = 256
    max_batch: int = 8
    queue_size: int = 32
    continuous: bool = True
    max_body_bytes: int = 1 << 20


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}


class _BodyLimit:
    """Pure ASGI middleware: a request body over ``limit`` bytes answers 413 before it is read whole (by its
    ``Content-Length``, or as it streams in)."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        msg = f"request body over {self.limit:,} bytes (this server's --max-body-bytes)"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _error(413, msg, "invalid_request_error", "body_too_large")(scope, receive, send)
            return
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(msg)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge as e:
            await _error(413, str(e), "invalid_request_error", "body_too_large")(scope, receive, send)


class _TooLarge(Exception):
    pass


_BASIC_CHALLENGE = 'Basic realm="tweetlm console", charset="UTF-8"'


class _KeyAuth:
    """Pure ASGI middleware: every path but ``/health`` needs one of ``keys``, as ``Authorization: Bearer <key>``
    (API clients) or HTTP Basic with the key as the password (a browser on the console asks for it once per
    session and sends it with every page and API call). Refused: 401, in the OpenAI error shape under ``/v1/``
    (``WWW-Authenticate: Bearer``, then ``Basic`` of the console's realm), else a page that asks again
    (``WWW-Authenticate: Basic``). The ``/v1/`` answer offers Basic too because a browser sends the key it was
    given for a page unasked only below that page's folder (``/console/``): the pages' API calls are answered
    401 once, and the browser repeats them with the key it holds for the realm. (Not Starlette's
    ``BaseHTTPMiddleware``, under which a handler never sees its client disconnect.)"""

    def __init__(self, app, keys: set[str]) -> None:
        self.app, self.keys = app, keys

    def _key(self, header: str) -> str:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
        if scheme.lower() == "basic":
            try:
                return base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                return ""
        return ""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] != "/health":
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            if self._key(header) not in self.keys:
                if scope["path"].startswith("/v1/"):
                    msg = "invalid or missing API key (send 'Authorization: Bearer <key>')"
                    resp = _error(401, msg, "invalid_request_error", "invalid_api_key",
                                  headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
                    resp.headers.append("WWW-Authenticate", _BASIC_CHALLENGE)  # one challenge per header line
                else:
                    resp = PlainTextResponse(
                        "401: this tweetlm server needs its API key: enter it as the password (any user name)",
                        status_code=401,
                        headers={"WWW-Authenticate": _BASIC_CHALLENGE},
                    )
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _error(status: int, message: str, type_: str, code=None, param=None, headers=None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class _Common(BaseModel):
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)
    min_p: float = Field(default=0.0, ge=0.0, lt=1.0)  # vLLM's extra sampling parameter
    repetition_penalty: float = Field(default=1.0, ge=0.01, le=100.0)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stream: bool = False
    n: int = Field(default=1, ge=1, le=1)
    tweet_mode: bool = False
    # OpenAI fields this server does not implement: refused by name rather than silently ignored
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    response_format: Any = None
    logprobs: Any = None
    top_logprobs: Any = None

    def unsupported(self) -> str | None:
        """The first field set that this server does not implement, or None."""
        for name in ("tools", "tool_choice", "functions", "function_call", "response_format", "top_logprobs"):
            if getattr(self, name) is not None:
                return name
        return "logprobs" if self.logprobs not in (None, False, 0) else None


class CompletionRequest(_Common):
    prompt: str | list[str] = ""


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """A message; ``content`` is a string or a list of text parts (the OpenAI content-part form; other part
    types, such as images, are refused by validation)."""

    role: str
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    grounded: StrictBool = False
    search_k: int = Field(default=5, ge=1, le=20)


def create_app(
    engine: Engine, config: ServeConfig | None = None, search_index=None, ads=None, runs_dir=None
) -> FastAPI:
    """The FastAPI application serving ``engine`` under ``config``; with a ``search.SearchIndex`` it also
    serves ``/v1/search``, ``/v1/ask`` and ``/v1/posts/{id}`` (``serve.search_routes``), with ``ads``
    (``serve.ads_routes.AdsServices``) ``/v1/ads/safety``, ``/v1/ads/copy`` and ``/v1/ads/place``, with
    ``runs_dir`` the run folders under it (``/v1/runs``); always the browser console at ``/``
    (``serve.console``)."""
    cfg = config or ServeConfig()
    batcher = Batcher(engine, cfg.max_batch, cfg.queue_size, cfg.continuous)
    max_prompt = cfg.max_prompt_tokens or engine.max_seq_len - 1

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    # no /docs or /redoc: their pages load scripts from a CDN (nothing offline); /openapi.json stays, behind the key
    app = FastAPI(title="tweetlm", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batcher = batcher

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        return _error(e.status, e.message, e.type, e.code, e.param, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        kind = "invalid_request_error" if e.status_code < 500 else "server_error"
        return _error(e.status_code, f"{e.detail}", kind, headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError):
        first = e.errors()[0]
        if first.get("type") == "json_invalid":  # loc is ("body", <character position>)
            return _error(
                400,
                f"invalid request: the body is not valid JSON ({first['msg']})",
                "invalid_request_error",
                param="body",
            )
        loc = ".".join(str(x) for x in first["loc"] if x != "body")
        return _error(400, f"invalid request: {loc}: {first['msg']}", "invalid_request_error", param=loc or None)

    if cfg.api_keys:
        app.add_middleware(_KeyAuth, keys=set(cfg.api_keys))
    app.add_middleware(_BodyLimit, limit=cfg.max_body_bytes)

    def params_of(req: _Common) -> SamplingParams:
        if req.model is not None and req.model != engine.model_name:
            msg = f"the model {req.model!r} does not exist here; this server serves {engine.model_name!r}"
            raise APIError(404, msg + " (GET /v1/models)", param="model", code="model_not_found")
        field = req.unsupported()
        if field is not None:
            raise APIError(400, f"{field} is not supported by this server", param=field, code="unsupported_parameter")
        max_tokens = req.max_tokens or min(64, cfg.max_tokens_limit)
        if max_tokens > cfg.max_tokens_limit:
            raise APIError(
                400,
                f"max_tokens={max_tokens} exceeds this server's limit of {cfg.max_tokens_limit}",
                param="max_tokens",
            )
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        if len(stop) > 4:
            raise APIError(400, "at most 4 stop sequences are allowed", param="stop")
        if any(not s for s in stop):
            raise APIError(400, "a stop sequence must not be empty", param="stop")
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=req.temperature,
            top_k=req.top_k,
            top_p=req.top_p,
            min_p=req.min_p,
            repetition_penalty=req.repetition_penalty,
            stop=stop,
            seed=req.seed,
            tweet_mode=req.tweet_mode,
        )

    def check_prompt(prompt: str) -> None:
        try:
            n = len(engine.encode_prompt(prompt))
        except ValueError as e:
            raise APIError(400, str(e), param="prompt") from None
        if n > max_prompt:
            raise APIError(
                400,
                f"prompt has {n} tokens; this server accepts at most {max_prompt}",
                param="prompt",
                code="context_length_exceeded",
            )

    def submit(prompt: str | list[dict], params: SamplingParams):
        try:
            return batcher.submit(prompt, params)
        except QueueFull as e:
            raise APIError(
                503, f"server busy: {e}; retry shortly", "server_error", "queue_full", headers={"Retry-After": "1"}
            ) from None

    def usage(c: Completion) -> dict:
        return {
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": len(c.token_ids),
            "total_tokens": c.prompt_tokens + len(c.token_ids),
        }

    def sse(obj) -> str:
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "model": engine.model_name,
            "queued": batcher.waiting,
            "running": engine.num_running,
            "max_batch": cfg.max_batch,
        }

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [{"id": engine.model_name, "object": "model", "created": 0, "owned_by": "tweetlm"}],
        }

    def as_api_error(e: Exception) -> APIError:
        """A generation error as the client sees it: a request the engine refused is a 400, anything else fails
        this request alone with a 500 in the OpenAI error shape."""
        if isinstance(e, APIError):
            return e
        if isinstance(e, ValueError):
            return APIError(400, f"invalid request: {e}")
        return APIError(500, f"generation failed: {type(e).__name__}: {e}", "server_error", "generation_failed")

    async def stream_items(job):
        """``batcher.stream(job)``; a failure ends the stream with an OpenAI error event instead of a cut
        connection."""
        try:
            async for item in batcher.stream(job):
                yield item
        except Exception as e:
            err = as_api_error(e)
            yield {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}

    async def result_or_cancel(job, request: Request) -> Completion:
        """The job's completion; a client that disconnects while waiting cancels it (its slot is freed)."""
        task = asyncio.ensure_future(batcher.result(job))
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                try:
                    return task.result()
                except Exception as e:
                    raise as_api_error(e) from None
            if await request.is_disconnected():
                task.cancel()
                job.cancel()
                raise APIError(499, "client closed the request", "invalid_request_error", "client_closed")

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request):
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if len(prompts) != 1:
            raise APIError(400, "send one prompt per request (batching happens on the server)", param="prompt")
        prompt = prompts[0]
        await asyncio.to_thread(check_prompt, prompt)  # tokenizing a long prompt must not stall the event loop
        params = params_of(req)
        job = submit(prompt, params)
        rid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        base = {"id": rid, "object": "text_completion", "created": created, "model": engine.model_name}

        if req.stream:

            async def events():
                async for item in stream_items(job):
                    if isinstance(item, dict):
                        yield sse(item)
                        break
                    if isinstance(item, Completion):
                        yield sse(
                            {
                                **base,
                                "choices": [
                                    {"index": 0, "text": "", "finish_reason": item.finish_reason, "logprobs": None}
                                ],
                            }
                        )
                    else:
                        yield sse(
                            {**base, "choices": [{"index": 0, "text": item, "finish_reason": None, "logprobs": None}]}
                        )
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        c = await result_or_cancel(job, request)
        return {
            **base,
            "choices": [{"index": 0, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}],
            "usage": usage(c),
        }

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest, request: Request):
        from tweetlm.tokenizer.chat import validate_messages

        try:
            messages = validate_messages([{"role": m.role, "content": m.text()} for m in req.messages])
        except ValueError as e:
            raise APIError(400, str(e), param="messages") from None
        if not messages[-1]["content"].strip() and messages[-1]["role"] == "user":
            raise APIError(400, "the last message is empty: send some text", param="messages")
        params = params_of(req)
        hits = None
        if req.grounded:
            if search_index is None:
                raise APIError(400, "grounded answers need a search index: start tweetlm serve with --search-index DIR",
                               param="grounded")  # fmt: skip
            if req.stream:
                raise APIError(400, "grounded answers are not streamed: send stream=false", param="stream")
            messages, hits = await _ground(messages, req.search_k, params)
        try:
            fitted, _ = await asyncio.to_thread(
                engine.chat_format.fit_messages, messages, min(max_prompt, engine.chat_prompt_limit(params.max_tokens))
            )
        except ValueError as e:
            raise APIError(400, str(e), param="messages", code="context_length_exceeded") from None
        job = submit(fitted, params)
        dropped = len(messages) - len(fitted)
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        base = {"id": rid, "created": created, "model": engine.model_name}
        if dropped:
            base["dropped_turns"] = dropped

        if req.stream:

            async def events():
                chunk = {**base, "object": "chat.completion.chunk"}
                yield sse(
                    {
                        **chunk,
                        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                    }
                )
                async for item in stream_items(job):
                    if isinstance(item, dict):
                        yield sse(item)
                        break
                    if isinstance(item, Completion):
                        yield sse(
                            {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": item.finish_reason}]}
                        )
                    else:
                        yield sse(
                            {**chunk, "choices": [{"index": 0, "delta": {"content": item}, "finish_reason": None}]}
                        )
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        c = await result_or_cancel(job, request)
        text, extra = c.text, {}
        if hits is not None:
            from tweetlm.search.ask import validate_citations

            text, cited, removed = validate_citations(c.text, {h.id for h in hits})
            by_id = {h.id: h for h in hits}
            extra["citations"] = [
                {"id": i, "text": by_id[i].text, "created_at": by_id[i].created_at, "author_id": by_id[i].author_id}
                for i in cited
            ]
            extra["retrieved_ids"] = [h.id for h in hits]
            extra["removed_citations"] = removed
        return {
            **base,
            **extra,
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": c.finish_reason}
            ],
            "usage": usage(c),
        }

    async def _ground(messages: list[dict], k: int, params: SamplingParams):

        from tweetlm.search.ask import ground_messages
        from tweetlm.search.index import SearchParams

        limit = min(max_prompt, engine.chat_prompt_limit(params.max_tokens))

        def fits(msgs: list[dict]) -> bool:
            return len(engine.chat_format.encode_prompt(msgs)) <= limit

        try:
            return await asyncio.to_thread(ground_messages, search_index, messages, SearchParams(k=k), fits)
        except ValueError as e:
            raise APIError(400, str(e), param="messages") from None
        except OSError as e:  # the index folder was removed or cannot be read
            raise APIError(503, f"the search index is unavailable: {e}", "server_error", "index_unavailable",
                           headers={"Retry-After": "5"}) from None  # fmt: skip

    if search_index is not None:
        from tweetlm.serve.search_routes import register_search_routes

        register_search_routes(app, search_index, batcher, APIError, cfg.max_tokens_limit)
    else:
        for path in ("/v1/search", "/v1/ask"):
            app.add_api_route(path, _not_enabled("search", "--search-index DIR"), methods=["POST"])
        app.add_api_route("/v1/posts/{post_id:path}", _not_enabled("search", "--search-index DIR"), methods=["GET"])
    if ads is not None:
        from tweetlm.serve.ads_routes import register_ads_routes

        register_ads_routes(app, ads, engine, APIError)
    else:
        for path in ("/v1/ads/safety", "/v1/ads/copy", "/v1/ads/place"):
            app.add_api_route(path, _not_enabled("advertising", "--ads-safety DIR"), methods=["POST"])
    from tweetlm.serve.console import register_console

    features = {
        "model": engine.model_name,
        "auth": bool(cfg.api_keys),
        "search": search_index is not None,
        "ads": {
            "safety": ads is not None,
            "copy": ads is not None and ads.guard is not None,
            "place": ads is not None and ads.retriever is not None,
        },
        "max_tokens_limit": cfg.max_tokens_limit,
        "max_weighted_length": 280,
    }
    register_console(app, APIError, features, runs_dir)
    return app


def _not_enabled(what: str, flag: str):
    """A route answering 404 with a JSON error naming the ``tweetlm serve`` flag that enables it."""

    async def route():
        raise APIError(404, f"{what} is not enabled on this server; start it with tweetlm serve {flag}",
                       code="not_enabled")  # fmt: skip

    return route


def serve(
    engine: Engine,
    config: ServeConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    search_index=None,
    ads=None,
    runs_dir=None,
) -> None:
    """Run the API (and the console at ``/``) with uvicorn until interrupted."""
    import uvicorn

    app = create_app(engine, config, search_index=search_index, ads=ads, runs_dir=runs_dir)
    uvicorn.run(app, host=host, port=port, log_level="info")
