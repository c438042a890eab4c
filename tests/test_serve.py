"""The OpenAI-compatible server, started for real on 127.0.0.1 and called with the official ``openai`` client."""

from __future__ import annotations

import asyncio

import pytest

openai = pytest.importorskip("openai", reason="the server test needs the openai client (dev extra)")
pytest.importorskip("uvicorn", reason="the server test needs uvicorn (serve extra)")
import httpx  # noqa: E402
from loopback import LoopbackServer  # noqa: E402

from tweetlm.inference.engine import Engine  # noqa: E402
from tweetlm.model.config import ModelConfig  # noqa: E402
from tweetlm.model.gpt import GPT  # noqa: E402
from tweetlm.serve.app import ServeConfig, create_app  # noqa: E402
from tweetlm.tokenizer.bpe import TokenizerConfig, train_tokenizer  # noqa: E402

KEY = "test-key-123"


@pytest.fixture(scope="module")
def engine():
    texts = [f"rain and coffee in the city number {i} #monday" for i in range(100)]
    tok = train_tokenizer(texts, TokenizerConfig(vocab_size=300))
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_embd=32, n_head=2, max_seq_len=64)
    return Engine(GPT.build(cfg, seed=0), tok, model_name="tiny")


@pytest.fixture(scope="module")
def base_url(engine):
    app = create_app(engine, ServeConfig(api_keys=[KEY], max_tokens_limit=32, max_prompt_tokens=40))
    with LoopbackServer(app) as url:
        yield url


def test_openai_client_completions_chat_and_streaming(base_url):
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY)
    assert [m.id for m in client.models.list().data] == ["tiny"]
    c = client.completions.create(model="tiny", prompt="rain", max_tokens=10, temperature=0, seed=1)
    assert c.choices[0].finish_reason in ("stop", "length")
    assert 1 <= c.usage.completion_tokens <= 10 and c.usage.prompt_tokens >= 2
    again = client.completions.create(model="tiny", prompt="rain", max_tokens=10, temperature=0)
    assert again.choices[0].text == c.choices[0].text  # greedy is deterministic

    chat = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "coffee"}], max_tokens=8, temperature=0.7, seed=3
    )
    assert chat.choices[0].message.role == "assistant" and isinstance(chat.choices[0].message.content, str)

    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "coffee"}],
        max_tokens=8,
        temperature=0.7,
        seed=3,
        stream=True,
    )
    pieces = [ch.choices[0].delta.content or "" for ch in stream]
    assert "".join(pieces) == chat.choices[0].message.content
    text_stream = client.completions.create(model="tiny", prompt="rain", max_tokens=10, temperature=0, stream=True)
    assert "".join(ch.choices[0].text for ch in text_stream) == c.choices[0].text


def test_bad_key_and_limits(base_url):
    bad = openai.OpenAI(base_url=f"{base_url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError, match="at most 40"):
        client.completions.create(model="tiny", prompt="rain " * 200, max_tokens=5)
    with pytest.raises(openai.BadRequestError, match="max_tokens=100 exceeds"):
        client.completions.create(model="tiny", prompt="rain", max_tokens=100)
    r = httpx.post(
        f"{base_url}/v1/completions",
        json={"prompt": "x", "temperature": -1},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert r.status_code == 400 and "temperature" in r.json()["error"]["message"]
    assert httpx.get(f"{base_url}/health").json()["status"] == "ok"  # health needs no key


def test_full_queue_answers_503_not_hang(engine):
    app = create_app(engine, ServeConfig(max_batch=1, queue_size=1, max_tokens_limit=64))

    async def burst():
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            body = {"prompt": "rain", "max_tokens": 60, "temperature": 1.0}
            return await asyncio.gather(*[c.post("/v1/completions", json=body) for _ in range(12)])

    with LoopbackServer(app) as url:
        codes = [r.status_code for r in asyncio.run(burst())]
    assert codes.count(200) >= 1 and codes.count(503) >= 1, codes
    assert set(codes) <= {200, 503}


def test_bad_json_and_routes_not_enabled(base_url):
    """Invalid JSON names the body; /v1/search and /v1/ads/* on a server started without them say which flag."""
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    r = httpx.post(f"{base_url}/v1/completions", content=b'{"prompt": "x",', headers=auth)
    err = r.json()["error"]
    assert r.status_code == 400 and err["param"] == "body" and "not valid JSON" in err["message"]
    for path, flag in (("/v1/search", "--search-index"), ("/v1/ads/copy", "--ads-safety")):
        r = httpx.post(f"{base_url}{path}", json={}, headers=auth)
        err = r.json()["error"]
        assert r.status_code == 404 and err["code"] == "not_enabled" and flag in err["message"]


class _SlowEngine(Engine):
    """The tiny engine with every step slowed to 20 ms, so that timing tells a running request from a freed one,
    and every request run to its max_tokens (a sampled end-of-text would free a slot early: seen once on a
    loaded machine, a burst then had 7 admitted instead of 6). ``gate`` cleared holds every step, so that a test
    can fill the slots and the queue whatever the machine's speed."""

    def __init__(self, *args, **kwargs):
        import threading

        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.gate.set()

    def step(self):
        import time

        self.gate.wait(timeout=30)
        time.sleep(0.02)
        return super().step()

    def make_request(self, prompt, params, *args, **kwargs):
        import dataclasses

        return super().make_request(prompt, dataclasses.replace(params, ignore_eos=True), *args, **kwargs)


@pytest.fixture(scope="module")
def slow_engine(engine):
    import copy

    model = copy.deepcopy(engine.model)
    with __import__("torch").no_grad():
        model.tok_emb.weight[engine.tok.eos_id] *= 0.0  # rows rarely end early: they run to max_tokens
    return _SlowEngine(model, engine.tok, model_name="tiny")


@pytest.fixture(scope="module")
def slow_url(slow_engine):
    with LoopbackServer(create_app(slow_engine, ServeConfig(max_batch=2, queue_size=4, max_tokens_limit=60))) as url:
        yield url


def test_continuous_batching_a_short_request_finishes_while_a_long_one_runs(slow_url):
    import time

    async def run():
        async with httpx.AsyncClient(base_url=slow_url, timeout=60) as c:
            t0 = time.perf_counter()
            long = asyncio.ensure_future(
                c.post("/v1/completions", json={"prompt": "rain", "max_tokens": 60, "temperature": 0})
            )
            await asyncio.sleep(0.2)  # the long request is decoding
            short = await c.post("/v1/completions", json={"prompt": "coffee", "max_tokens": 3, "temperature": 0})
            t_short = time.perf_counter() - t0
            r = await long
            return short, t_short, r, time.perf_counter() - t0

    short, t_short, long, t_long = asyncio.run(run())
    assert short.status_code == 200 and long.status_code == 200
    assert long.json()["usage"]["completion_tokens"] == 60
    # the short one joined the running batch and left it: it did not wait for the long one's 60 steps (a gap of
    # 0.4 s is 20 of them; a loaded machine slows both requests, so the gap holds where a fixed bound did not)
    assert t_long > 1.2 and t_long - t_short > 0.4, (t_short, t_long)


def test_a_closed_stream_frees_its_slot(slow_url):
    import time

    body = {"prompt": "rain", "max_tokens": 60, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{slow_url}/v1/completions", json=body, timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                break  # one token arrived: the request runs; the client goes away
    assert httpx.get(f"{slow_url}/health").json()["running"] in (0, 1)
    t0 = time.perf_counter()
    while httpx.get(f"{slow_url}/health").json()["running"] and time.perf_counter() - t0 < 5:
        time.sleep(0.02)
    assert httpx.get(f"{slow_url}/health").json()["running"] == 0
    assert time.perf_counter() - t0 < 0.9  # freed at once, not after the 59 steps (1.2 s or more) left


def test_bad_requests_among_good_ones_fail_alone_with_400(base_url):
    """Issue 17: a seed past 2**63, an empty stop string or a tiny repetition penalty answered 500 and took the
    good requests batched with them down too."""
    auth = {"Authorization": f"Bearer {KEY}"}
    good = {"prompt": "rain", "max_tokens": 8, "temperature": 0.9, "seed": 1}
    bad = [{**good, "seed": 2**70}, {**good, "stop": ""}, {**good, "stop": ["x", ""]},
           {**good, "repetition_penalty": 1e-300}, {**good, "temperature": 1e-300}, {**good, "min_p": 1.0}]  # fmt: skip

    async def mixed():
        async with httpx.AsyncClient(base_url=base_url, timeout=60, headers=auth) as c:
            return await asyncio.gather(*[c.post("/v1/completions", json=b) for b in [good, *bad, good, good]])

    rs = asyncio.run(mixed())
    codes = [r.status_code for r in rs]
    assert codes == [200, 400, 400, 400, 400, 200, 400, 200, 200], [r.text for r in rs]
    assert rs[1].json()["error"]["param"] == "seed" and rs[2].json()["error"]["param"] == "stop"
    assert rs[6].json()["error"]["param"] == "min_p"
    texts = {r.json()["choices"][0]["text"] for i, r in enumerate(rs) if i in (0, 7, 8)}
    assert len(texts) == 1  # one seed, one text, whatever the bad neighbours did
    assert rs[5].json()["choices"][0]["text"] != ""  # a temperature under 1e-5 samples the argmax


def test_a_client_that_gives_up_on_a_plain_request_frees_its_slot(slow_url):
    import time

    body = {"prompt": "rain", "max_tokens": 60, "temperature": 0}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{slow_url}/v1/completions", json=body, timeout=0.3)  # the client closes the connection
    t0 = time.perf_counter()
    while httpx.get(f"{slow_url}/health").json()["running"] and time.perf_counter() - t0 < 5:
        time.sleep(0.02)
    assert httpx.get(f"{slow_url}/health").json()["running"] == 0
    assert time.perf_counter() - t0 < 0.9  # freed within a poll, not after the ~55 steps (1.1 s or more) left


def test_invalid_unicode_and_bodies_answer_400_in_the_openai_shape(base_url):
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    lone = '{"prompt": "caf\\ud800", "max_tokens": 3}'  # JSON can carry a lone surrogate; Python text then holds it
    r = httpx.post(f"{base_url}/v1/completions", content=lone.encode(), headers=auth)
    assert r.status_code == 400 and "not valid Unicode" in r.json()["error"]["message"], r.text
    chat = '{"messages": [{"role": "user", "content": "\\udfff"}], "max_tokens": 3}'
    r = httpx.post(f"{base_url}/v1/chat/completions", content=chat.encode(), headers=auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages", r.text
    r = httpx.post(f"{base_url}/v1/completions", content=b'{"prompt": "\xff\xfe"}', headers=auth)
    assert r.status_code == 400 and "error" in r.json() and "detail" not in r.json(), r.text


def test_a_burst_into_an_idle_server_is_admitted_up_to_slots_plus_queue(slow_url, slow_engine):
    """2 slots + 4 waiting: 6 of a burst of 12 are admitted, the other 6 answered 503 at once. The engine's steps
    are held until the 6 refusals are in (timing alone failed on loaded CI machines: the first requests finished
    while the burst still arrived, and 10 were admitted)."""

    async def burst():
        async with httpx.AsyncClient(base_url=slow_url, timeout=60) as c:
            body = {"prompt": "rain", "max_tokens": 30, "temperature": 1.0}
            tasks = [asyncio.ensure_future(c.post("/v1/completions", json=body)) for _ in range(12)]
            for _ in range(1500):  # at most 30 s
                if sum(t.done() for t in tasks) >= 6:
                    break
                await asyncio.sleep(0.02)
            refused_while_held = sum(t.done() for t in tasks)
            slow_engine.gate.set()
            return refused_while_held, await asyncio.gather(*tasks)

    slow_engine.gate.clear()
    try:
        refused_while_held, rs = asyncio.run(burst())
    finally:
        slow_engine.gate.set()
    codes = [r.status_code for r in rs]
    assert codes.count(200) == 6 and codes.count(503) == 6, codes
    assert refused_while_held == 6  # the refusals came at once, before any admitted request could finish
    assert all(r.headers["Retry-After"] == "1" for r in rs if r.status_code == 503)
    assert all(r.json()["usage"]["completion_tokens"] == 30 for r in rs if r.status_code == 200)


def test_body_limit_unknown_model_unsupported_fields_and_no_cdn_docs(base_url):
    """Issue 17: no request body limit (a 10 MB prompt stalled the server), unknown model names and ``tools``
    silently accepted, and /docs loading its page from a CDN without a key."""
    import time

    auth = {"Authorization": f"Bearer {KEY}"}
    t0 = time.perf_counter()
    r = httpx.post(f"{base_url}/v1/completions", json={"prompt": "x" * 10_000_000}, headers=auth, timeout=30)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    assert time.perf_counter() - t0 < 5
    r = httpx.post(f"{base_url}/v1/completions", json={"prompt": "rain", "model": "gpt-4o"}, headers=auth)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found" and "tiny" in r.text
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    r = httpx.post(f"{base_url}/v1/chat/completions", headers=auth,
                   json={"messages": [{"role": "user", "content": "hi"}], "tools": tools})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools"
    r = httpx.post(f"{base_url}/v1/completions", json={"prompt": "rain", "logprobs": 2}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "logprobs"
    assert httpx.get(f"{base_url}/docs", headers=auth).status_code == 404
    assert httpx.get(f"{base_url}/openapi.json").status_code == 401  # behind the key, as everything but /health
    assert httpx.get(f"{base_url}/openapi.json", headers=auth).status_code == 200
    ok = httpx.post(f"{base_url}/v1/completions", json={"prompt": "rain", "model": "tiny", "max_tokens": 3},
                    headers=auth)  # fmt: skip
    assert ok.status_code == 200


def test_api_keys_from_a_file_and_the_environment_stay_out_of_the_process_list(tmp_path):
    """A new user noticed `--api-key s3cret` is visible in `ps`; a key file or TWEETLM_API_KEY is not."""
    from tweetlm.cli.main import api_keys

    f = tmp_path / "keys.txt"
    f.write_text("# console keys\nalpha\n\n beta \n", encoding="utf-8")
    assert api_keys(["cli"], str(f), env={"TWEETLM_API_KEY": "gamma"}) == ["cli", "alpha", "beta", "gamma"]
    assert api_keys(None, None, env={}) == []
    (tmp_path / "empty.txt").write_text("# none\n", encoding="utf-8")
    for bad in ("empty.txt", "missing.txt"):
        with pytest.raises(ValueError, match=f"--api-key-file .*{bad}"):
            api_keys(None, str(tmp_path / bad), env={})


def test_a_request_being_encoded_still_counts_against_the_queue(engine):
    """The batcher encodes taken requests outside its lock; while it does, they must still count as waiting, or
    a burst arriving meanwhile is admitted beyond slots + queue (CI once admitted 7 of a burst to 2 + 4)."""
    import threading

    from tweetlm.inference.batcher import Batcher, QueueFull
    from tweetlm.inference.engine import SamplingParams

    class _HeldEncode(Engine):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.encoding, self.release = threading.Event(), threading.Event()

        def make_request(self, *args, **kwargs):
            self.encoding.set()
            self.release.wait(timeout=30)
            return super().make_request(*args, **kwargs)

    held = _HeldEncode(engine.model, engine.tok, model_name="tiny")

    async def run():
        b = Batcher(held, max_batch=1, queue_size=1)
        b.start()
        params = SamplingParams(max_tokens=2)
        try:
            first = b.submit("rain", params)
            assert await asyncio.to_thread(held.encoding.wait, 30)  # taken from the queue, being encoded
            second = b.submit("rain", params)  # 1 slot: the first; 1 waiting: this one
            with pytest.raises(QueueFull):
                b.submit("rain", params)
            held.release.set()
            return [len((await b.result(j)).token_ids) for j in (first, second)]
        finally:
            held.release.set()
            await b.stop()

    assert asyncio.run(run()) == [2, 2]
