"""Ads: briefs from real posts, each hard constraint of ad copy, the memorization guard on real training posts,
placement's exclusions, segments, and the /v1/ads/* endpoints' validation on a real loopback
server. A tiny random-weight model stands in for the fine-tuned one (the constraints must hold whatever it
writes); the safety classifier is a TF-IDF one trained on a seeded sample of the real labelled corpora."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn", reason="ads need the ads extra (scikit-learn)")
pytest.importorskip("datasketch", reason="the memorization guard needs datasketch (data extra)")

from tweetlm.ads.copy import (  # noqa: E402
    AdBrief,
    constraint_checks,
    distinct_n,
    fix_up,
    generate_copy,
    mmr,
    violations,
)
from tweetlm.ads.guard import MemorizationGuard, shingles  # noqa: E402
from tweetlm.ads.placement import place  # noqa: E402
from tweetlm.ads.safety import SafetyClassifier  # noqa: E402
from tweetlm.data.briefs import (  # noqa: E402
    Brief,
    DocFreq,
    brief_from_post,
    closing_phrase,
    contains_phrase,
    name_brand_handles,
    words,
)
from tweetlm.data.formats.dispatch import read_corpus  # noqa: E402
from tweetlm.data.ledger import Ledger  # noqa: E402
from tweetlm.data.sft import answer_text, strip_leading_mentions  # noqa: E402
from tweetlm.data.twitter_text import weighted_length  # noqa: E402


@pytest.fixture(scope="module")
def corpora():
    from conftest import CORPORA

    if not CORPORA.is_dir():
        pytest.skip(f"shared corpora not found at {CORPORA}")
    return CORPORA


@pytest.fixture(scope="module")
def airline(corpora):
    from tweetlm.data.pipeline.config import PipelineConfig
    from tweetlm.data.pipeline.inprocess import clean_posts

    return clean_posts([corpora / "us_airline_sentiment"], PipelineConfig(lang_detect="off"))[0]


@pytest.fixture(scope="module")
def safety(safety_examples):
    ex = safety_examples
    rng = random.Random(0)
    small = []
    for source in ("tweeteval/offensive", "davidson_hate_offensive", "tweeteval/hate", "id_hatespeech_ibrohim2019"):
        small += rng.sample([e for e in ex if e.source == source and e.split == "train"], 500)
    # A TF-IDF classifier on 2,000 posts is noisy on ad copy, which none of its corpora hold: at precision 0.8 the
    # benign "Stretch out with Delta..." below scored 0.95x to 2.0x its threshold over sampling seeds (1.12x on all
    # 61k examples; measured 2026-12-03). These tests are about the ads machinery, so the fixture asks for
    # precision 0.9 (0.93x here); tests/test_safety.py measures the classifier itself.
    clf = SafetyClassifier("tfidf", target_precision=0.9)
    clf.fit(small)
    return clf


@pytest.fixture(scope="module")
def guard(airline):
    g = MemorizationGuard()
    g.add(p.text for p in airline[:3000])  # the "training posts"
    return g


@pytest.fixture(scope="module")
def engine(airline):
    from tweetlm.inference.engine import Engine
    from tweetlm.model.config import ModelConfig
    from tweetlm.model.gpt import GPT
    from tweetlm.tokenizer.bpe import TokenizerConfig, train_tokenizer

    tok = train_tokenizer([p.text for p in airline[:2000]], TokenizerConfig(vocab_size=512))
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_embd=32, n_head=2, max_seq_len=160)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a width-32 model is 10x slower with 2 threads on a busy 2-core machine
    model = GPT.build(cfg, seed=0)
    # 150 steps on the airline posts (a few seconds): a random model writes broken bytes in nearly every
    # candidate, so whether any passed the well-formedness check was luck of the sampler's draws
    ids = [i for p in airline[:2000] for i in [tok.bos_id, *tok.encode(p.text), tok.eos_id]]
    data = torch.tensor(ids)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        start = torch.randint(0, len(data) - 65, (16,), generator=gen)
        x = torch.stack([data[s : s + 65] for s in start.tolist()])
        loss = torch.nn.functional.cross_entropy(model(x[:, :-1]).reshape(-1, cfg.vocab_size), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    yield Engine(model.eval(), tok, model_name="tiny")
    torch.set_num_threads(threads)


def _brief(**kw) -> AdBrief:
    d = {"product": "Delta", "required_terms": ["legroom"], "hashtag": "#travel", "cta": "Book your seat today",
         "banned_terms": ["cheap"], "message": "more legroom on every flight"}  # fmt: skip
    d.update(kw)
    return AdBrief.from_dict(d)


# --- briefs --------------------------------------------------------------------------------------------------


def test_brief_from_a_real_post(airline):
    df = DocFreq(p.text for p in airline)
    post = next(
        p for p in airline if "#" in p.text and p.labels["sentiment"] == "negative" and closing_phrase(p.text, 1)
    )
    briefs = [brief_from_post(post, df, seed=s) for s in range(20)]
    assert brief_from_post(post, df, seed=3) == briefs[3]  # seeded by (seed, post id)
    for b in briefs:
        rare_terms = [t for t in b.terms if t != b.brand]
        assert all(t in words(post.text) for t in rare_terms) and len(rare_terms) <= 3
        assert (b.brand in b.terms) == (b.brand != "" and contains_phrase(post.text, b.brand))
        assert all(h in post.text for h in b.hashtags)
        assert b.brand in ("", post.labels["brand"]) and b.tone in ("", "negative") and b.lang in ("", "en")
    assert Brief("en", "positive", "Delta", ["leg|room", "seat"], ["#fly"]).instruction() == (
        "Write a positive post in English about Delta. Use the words: leg room, seat. Include #fly."
    )
    assert Brief().instruction() == "Write a post."
    ending = Brief(tone="positive", ending="see you\nsoon")
    assert ending.instruction() == 'Write a positive post. End with "see you soon".'
    # a fine-tuning brief's ending is the post's own closing words, so the model learns what a CTA asks
    endings = [b.ending for b in briefs if b.ending]
    assert endings and all(post.text.rstrip(".!? ").endswith(e) for e in endings)
    assert closing_phrase("Great flight, thanks Delta!", 3) == "thanks Delta"
    assert closing_phrase("Book today.", 2) == "Book today"
    assert [closing_phrase(t, 2) for t in ("see http://t.co/x", "love it #fly", "call me @bob", "ok 😀")] == [""] * 4
    ad = AdBrief.from_dict({"product": "Delta", "cta": "Book  now", "hashtag": "#fly", "required_terms": ["seat"]})
    assert ad.instruction().endswith('Include #fly. End with "Book now".')
    assert ad.constraints() == ["Delta", "seat", "#fly", "Book  now"]
    # an ad's "about X" asks for X: a post labelled with a brand it never names gets no brand in its brief
    unnamed = replace(post, id="unnamed", labels={**post.labels, "brand": "Zeppelin Air"})
    assert all(not brief_from_post(unnamed, df, seed=s).brand for s in range(20))
    # a post that names its brand (here by a mention) lists it as the first term whenever the brief names it
    text = "@united " + strip_leading_mentions(post.text) + " thanks @united"
    named = replace(post, id="named", text=text, labels={**post.labels, "brand": "United"})
    with_brand = [b for b in (brief_from_post(named, df, seed=s) for s in range(20)) if b.brand]
    assert with_brand and all(b.terms[0] == "United" and "united" not in b.terms[1:] for b in with_brand)
    assert all("United" not in b.terms for b in (brief_from_post(named, df, seed=s) for s in range(20)) if not b.brand)
    # the brand's own account becomes its name: a post addressing @SouthwestAir names Southwest
    assert name_brand_handles("@VirginAmerica thanks @bob, \uff20virginamerica!", "Virgin America") == (
        "Virgin America thanks @bob, Virgin America!"
    )
    assert name_brand_handles("@SouthwestAir where is my bag", "Southwest") == "Southwest where is my bag"
    assert name_brand_handles("@Nestle yum", "Nestlé") == "Nestlé yum"  # accents folded
    # not another account that starts with the name, a mention inside a URL or an e-mail address, or no brand
    unchanged = ["hi @JetBlue @UnitedWay, x@united.com", "see https://medium.com/@united/post", "@attention"]
    assert [name_brand_handles(t, b) for t, b in zip(unchanged, ["United", "United", "AT&T"])] == unchanged
    assert name_brand_handles("@united hi", "") == "@united hi"
    # the answer a post teaches: leading mentions go, the brand's account among them opens the answer as its name
    named = replace(airline[0], text="@bob @SouthwestAir where is @bob's bag", labels={"brand": "Southwest"})
    assert answer_text(named) == "Southwest where is @bob's bag"
    assert answer_text(replace(named, labels={})) == "where is @bob's bag"
    # on the real corpus: airline posts open with the airline's handle, so stripping leading mentions left almost
    # none naming their brand; now every one does, except the corpus's "Delta" rows, which are tweets to @JetBlue
    named_before = [contains_phrase(strip_leading_mentions(p.text), p.labels["brand"]) for p in airline]
    named_after = [contains_phrase(answer_text(p), p.labels["brand"]) for p in airline]
    assert np.mean(named_before) < 0.1 and np.mean(named_after) > 0.8
    assert all(ok for ok, p in zip(named_after, airline) if p.labels["brand"] != "Delta")
    # the terms are the post's rarest words seen in >= 3 posts
    rare = sorted({w for w in words(post.text) if df.df[w] >= 3}, key=lambda w: (-df.idf(w), w))
    assert any(set(b.terms) == set(rare[: len(b.terms)]) for b in briefs if b.terms)


# --- hard constraints ----------------------------------------------------------------------------------------


def test_each_constraint_is_checked():
    b = _brief()
    good = "Stretch out with Delta: more legroom on every seat. #travel Book your seat today"
    assert violations(good, b) == []
    assert violations(good.replace("legroom", "leg room"), b) == ["required_term:legroom"]
    assert violations(good.replace("Delta:", "it:"), b) == ["required_term:Delta"]
    assert violations(good.replace("#travel", "#travels"), b) == ["hashtag"]  # whole hashtag only
    assert violations(good.replace("Book your seat today", "book now"), b) == ["cta"]
    assert violations(good + " cheap!", b) == ["banned_term:cheap"]
    assert violations(good.replace("every seat", "every cheaper seat"), b) == []  # "cheaper" is not "cheap"
    long = good + " " + "x" * 300
    assert weighted_length(long) > 280 and violations(long, b) == ["length"]
    cjk = good + " " + "\u3042" * 100  # CJK counts 2 each in twitter-text v3
    assert len(cjk) < 280 < weighted_length(cjk) and "length" in violations(cjk, b)


def test_constraint_checks_fail_exactly_where_the_brief_is_broken():
    from types import SimpleNamespace

    b = _brief()
    good = "Stretch out with Delta: more legroom on every seat. #travel Book your seat today"
    safe, unsafe = SimpleNamespace(unsafe=False, score=0.2), SimpleNamespace(unsafe=True, score=1.7)
    fresh, copy = SimpleNamespace(copy=False, jaccard=0.1), SimpleNamespace(copy=True, jaccard=0.9)
    for text in (good, good.replace("Delta:", "it:"), good + " cheap!", good.replace("#travel", ""), "x" * 300):
        checks = constraint_checks(text, b, safe, fresh)
        failed = sorted(c["name"] for c in checks if not c["passed"])
        assert failed == sorted(violations(text, b)), text
    checks = constraint_checks(good, b, unsafe, copy)
    assert sorted(c["name"] for c in checks if not c["passed"]) == ["not_a_copy", "safety"]
    assert next(c for c in checks if c["name"] == "length")["detail"].endswith("of 280 weighted characters")


def test_malformed_text_is_a_hard_constraint(safety, guard):
    b = _brief()
    good = "Stretch out with Delta: more legroom on every seat. #travel Book your seat today"
    assert violations(good + "\nSee you on board", b) == []  # newline is fine
    for bad in ("\ufffd", "\x01", "\x12", "\x7f", "\x85", "\t"):
        assert violations(good + " " + bad, b) == ["malformed_text"], repr(bad)

    class Stub:  # an engine that writes one malformed and one clean candidate
        max_seq_len = 64
        chat_format = type("F", (), {"encode_prompt": staticmethod(lambda conv: [0] * 8)})()

        def chat(self, convs, params):
            texts = [">\ufffd\ufffd\x01\x02\ufffd\x12 " + good, good]
            return [type("C", (), {"text": texts[p.seed % 2]})() for p in params]

    res = generate_copy(Stub(), b, n=2, num_candidates=2, safety=safety, guard=guard, seed=0)
    assert [v.text for v in res.variants] == [good]
    assert res.raw_pass == 1 and res.raw_pass_rate == 0.5
    assert res.failures == {"malformed_text": 1} and res.raw_failures == {"malformed_text": 1}


def test_fix_up_appends_missing_terms_and_fits_280():
    b = _brief()
    out = fix_up("so much room to stretch out on my flight today " * 8, b)
    assert violations(out, b) == [] and weighted_length(out) <= 280
    assert out.endswith("Delta legroom #travel Book your seat today")
    assert fix_up("Delta legroom #travel Book your seat today", b) == "Delta legroom #travel Book your seat today"


def test_brief_validation_names_the_field():
    for bad, field in (
        ({"product": ""}, "product"),
        ({"hashtag": "travel"}, "hashtag"),
        ({"tone": "angry"}, "tone"),
        ({"required_terms": ["cheap"]}, "banned_terms"),
        ({"required_terms": "legroom"}, "required_terms"),
        ({"cta": "x" * 300}, "cta"),
        ({"colour": "red"}, "unknown brief field"),
        ({"cta": "Cheap fares at delta.com"}, "cta"),
        ({"lang": "klingon"}, "lang"),
        ({"hashtag": "#cheap"}, "hashtag"),
        ({"product": "Cheap Air"}, "product"),
        ({"product": "Cheap Air", "product_required": False}, "product"),
    ):
        with pytest.raises(ValueError, match=field):
            _brief(**bad)
    with pytest.raises(ValueError, match="cta: 'Cheap fares at delta.com' contains the banned term 'cheap'"):
        _brief(cta="Cheap fares at delta.com")
    with pytest.raises(ValueError, match="banned_terms: 'cheap' is banned but the required term 'Cheap seats'"):
        _brief(required_terms=["Cheap seats"])
    _brief(cta="Cheaper fares at delta.com", hashtag="#cheapflights")  # whole words only
    assert _brief(lang="pt-BR").lang == "pt-BR" and _brief(lang="").lang == ""
    with pytest.raises(ValueError, match="^brief: product is required$"):
        AdBrief.from_dict({"message": "more legroom"})


def test_cli_rejects_a_banned_term_in_the_cta(tmp_path, capsys):
    from tweetlm.cli.main import main

    path = tmp_path / "brief.json"
    path.write_text(json.dumps({"product": "Delta", "cta": "Cheap fares at delta.com", "banned_terms": ["cheap"]}))
    assert main(["ads", "copy", "--brief", str(path), "--checkpoint", "x", "--safety", "y"]) == 2
    assert "cta: 'Cheap fares at delta.com' contains the banned term 'cheap'" in capsys.readouterr().err


def test_cli_flags_and_messages(tmp_path, capsys):
    from tweetlm.cli.ads import failures_text
    from tweetlm.cli.main import main

    for argv, msg in (
        (["sft", "--base", "x", "--out", "y", "--steps", "0"], "argument --steps: must be > 0"),
        (["sft", "--base", "x", "--out", "y", "--max-val", "-5"], "argument --max-val: must be >= 0"),
        (["ads", "place", "--index", "i", "--safety", "s", "--ad", "a", "--half-life-hours", "-1"],
         "argument --half-life-hours: must be > 0"),
        (["ads", "segments", "--corpus", "c", "--out", "o", "--max-posts", "-1"], "argument --max-posts"),
        (["ads", "copy", "--brief", "b", "--checkpoint", "c", "--safety", "s", "--min-p", "1"],
         "argument --min-p: must be < 1, got 1"),
        (["ads", "copy", "--brief", "b", "--checkpoint", "c", "--safety", "s", "--top-p", "1.5"],
         "argument --top-p: must be <= 1, got 1.5"),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and msg in capsys.readouterr().err
    path = tmp_path / "brief.json"
    path.write_text(json.dumps({"product": "Delta"}))
    assert main(["ads", "copy", "--brief", str(path), "--checkpoint", str(tmp_path / "none"), "--safety", "y"]) == 2
    assert f"checkpoint {tmp_path / 'none'} does not exist" in capsys.readouterr().err
    assert failures_text({"cta": 3, "unsafe": 2}) == "cta 3, unsafe 2" and failures_text({}) == "none"


# --- memorization guard --------------------------------------------------------------------------------------


def test_guard_flags_real_training_posts_and_near_copies(guard, airline):
    train = airline[:3000]
    post = next(p.text for p in train if len(p.text) > 80)
    hit = guard.check(post)
    assert hit.copy and hit.jaccard == 1.0 and hit.text == post
    w = post.split()
    w[len(w) // 2] = "banana"  # one word changed
    near = guard.check(" ".join(w))
    assert near.copy and 0.5 <= near.jaccard < 1.0 and near.text == post
    assert guard.check(post.upper() + " https://t.co/abc").copy  # case and links do not hide a copy
    held_out = [p.text for p in airline[3000:3200] if len(p.text) > 40]
    flagged = [t for t in held_out if guard.check(t).copy]
    # unseen posts pass, except the airline corpus's own near-duplicates (retweets of a training post)
    assert len(flagged) <= 0.05 * len(held_out), flagged
    assert shingles("Hi") == {"hi"} and shingles("") == set()


def test_guard_round_trips_through_a_file(guard, tmp_path):
    back = MemorizationGuard.load(guard.save(tmp_path / "g.pkl"))
    assert len(back) == len(guard) and back.check(guard.texts[7]).copy
    with pytest.raises(FileNotFoundError):
        MemorizationGuard.load(tmp_path / "none.pkl")


# --- ad copy -------------------------------------------------------------------------------------------------


def test_copy_returns_only_variants_that_hold_every_constraint(engine, safety, guard):
    b = _brief()
    res = generate_copy(engine, b, n=6, num_candidates=24, safety=safety, guard=guard, seed=1)
    assert res.candidates == 24 and 0 <= res.raw_pass <= 24 and res.raw_pass_rate == res.raw_pass / 24
    assert 1 <= len(res.variants) <= 6
    for v in res.variants:
        assert violations(v.text, b) == [], v
        assert weighted_length(v.text) <= 280 and v.weighted_length == weighted_length(v.text)
        assert not safety.classify([v.text], ["en"])[0].unsafe
        assert not guard.check(v.text).copy
    assert len({v.text for v in res.variants}) == len(res.variants)
    # every check of a returned variant passed (the console marks each); a rejected candidate fails one at least
    assert all(c["passed"] for v in res.variants for c in v.checks) and {c["name"] for c in res.variants[0].checks} >= {
        "length", "required_term:Delta", "hashtag", "cta", "banned_term:cheap", "safety", "not_a_copy"}  # fmt: skip
    assert res.rejected or res.raw_pass == 24
    for r in res.rejected:
        failed = {c["name"] for c in r["checks"] if not c["passed"]}
        assert failed and set(violations(r["text"], b)) <= failed, r
    # without fix-up a barely trained model almost never writes every term: the raw pass rate is what passes
    raw = generate_copy(engine, b, n=6, num_candidates=24, safety=safety, guard=guard, seed=1, fixup=False)
    assert len(raw.variants) == raw.raw_pass and raw.raw_pass == res.raw_pass
    if len(raw.variants) < 6:
        assert raw.note.startswith(f"only {len(raw.variants)} of 24")
    # constrained decoding: the decoder wrote every term, the hashtag and the CTA into each candidate itself
    con = generate_copy(engine, b, n=6, num_candidates=24, safety=safety, guard=guard, seed=1, fixup=False,
                        constrained=True)  # fmt: skip
    assert not {"required_term", "hashtag", "cta"} & set(con.raw_failures), con.raw_failures
    assert raw.raw_failures["cta"] == 24 and all(not v.fixed_up for v in con.variants)


def test_copy_drops_near_copies_and_unsafe_variants(engine, safety, guard):
    b = _brief()
    first = generate_copy(engine, b, n=4, num_candidates=16, safety=safety, guard=guard, seed=5)
    g = MemorizationGuard()
    g.add(guard.texts + [v.text for v in first.variants])  # now they are "training posts"
    again = generate_copy(engine, b, n=4, num_candidates=16, safety=safety, guard=g, seed=5)
    assert not {v.text for v in again.variants} & {v.text for v in first.variants}
    assert again.failures.get("near_copy_of_training_post", 0) >= len(first.variants)
    rude = _brief(required_terms=["stupid bitch"], banned_terms=[])
    res = generate_copy(engine, rude, n=4, num_candidates=8, safety=safety, guard=guard, seed=5)
    assert res.variants == [] and res.failures["unsafe"] == 8


def test_copy_rejects_bad_settings(engine, safety, guard):
    b = _brief()
    with pytest.raises(ValueError, match="n must be"):
        generate_copy(engine, b, n=0, safety=safety, guard=guard)
    with pytest.raises(ValueError, match="num_candidates"):
        generate_copy(engine, b, n=8, num_candidates=4, safety=safety, guard=guard)
    with pytest.raises(ValueError, match="safety classifier and a memorization guard"):
        generate_copy(engine, b, n=2, num_candidates=4)


def test_mmr_and_distinct_n():
    rel = np.array([1.0, 0.99, 0.5])
    sim = np.array([[1, 0.95, 0.1], [0.95, 1, 0.1], [0.1, 0.1, 1]])
    assert mmr(rel, sim, 2, lam=0.5) == [0, 2]  # the near-duplicate of the best item waits
    assert mmr(rel, sim, 2, lam=1.0) == [0, 1]
    assert distinct_n(["a b c", "a b d"], 2) == 3 / 4


# --- placement -----------------------------------------------------------------------------------------------


def test_placement_excludes_unsafe_and_banned_contexts(airline, safety):
    pool = [p for p in airline if p.labels["brand"] == "Delta"][:400]

    def retriever(query: str, k: int) -> list[dict]:  # word overlap, best first
        q = set(words(query))
        scored = sorted(pool, key=lambda p: -len(q & set(words(p.text))))
        return [{"id": p.id, "text": p.text, "lang": "en", "created_at": p.created_at} for p in scored[:k]]

    unsafe = "@JetBlue you stupid bitch airline, fuck you"
    pool.insert(0, type(pool[0])(**{**pool[0].__dict__, "id": "u1", "text": unsafe + " delta seat legroom"}))
    res = place("Delta legroom seat", retriever, safety, k=10, num_candidates=60, banned_terms=["delayed"])
    assert "u1" in res.excluded_unsafe and res.candidates == 60
    assert len(res.placements) == 10 and [h["rank"] for h in res.placements] == list(range(1, 11))
    for h in res.placements:
        assert not safety.classify([h["text"]], ["en"])[0].unsafe and "delayed" not in h["text"].lower()
    assert all("delayed" in next(p.text.lower() for p in pool if p.id == i) for i in res.excluded_banned)
    with pytest.raises(ValueError, match="ad_text"):
        place("  ", retriever, safety)
    with pytest.raises(ValueError, match="k"):
        place("x", retriever, safety, k=0)


# --- segments ------------------------------------------------------------------------------------------------


def test_segments_on_real_posts_with_their_authors(corpora):
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    from tweetlm.ads.segments import build_segments

    path = corpora / "fivethirtyeight_tweets" / "mayweather-mcgregor_tweets.csv"
    with open(path, encoding="utf-8") as f:  # the reader keeps no author; the file names each post's screen_name
        names = {r["id"]: r["screen_name"] for r in csv.DictReader(f)}
    posts = list(read_corpus([path], Ledger()))[:1500]
    for p in posts:
        p.author_id = names.get(p.id)
    assert sum(p.author_id is not None for p in posts) == 1500
    vec = TfidfVectorizer(min_df=2).fit([p.text for p in posts])
    svd = TruncatedSVD(32, random_state=0).fit(vec.transform([p.text for p in posts]))

    def embed(texts):  # LSA vectors: a real embedding that needs no model download
        x = svd.transform(vec.transform(texts))
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    seg = build_segments(posts, embed, k=6, seed=0)
    assert sum(s.size for s in seg.segments) == 1500 and [s.size for s in seg.segments] == sorted(
        (s.size for s in seg.segments), reverse=True
    )
    assert all(s.top_terms and s.label and sum(s.langs.values()) == s.size for s in seg.segments)
    assert any(s.top_hashtags for s in seg.segments)
    authors = {p.author_id for p in posts if p.author_id}
    assert set(seg.authors) == authors and sum(s.authors for s in seg.segments) == len(authors)
    many = max(seg.authors, key=lambda a: seg.authors[a]["posts"])
    mine = [seg.post_segment[i] for i, p in enumerate(posts) if p.author_id == many]
    assert seg.authors[many]["share"] == max(mine.count(c) for c in set(mine)) / len(mine)
    back_ids = seg.assign(embed([p.text for p in posts[:50]]))
    assert (back_ids == np.array(seg.post_segment[:50])).mean() > 0.9  # nearest centroid = its cluster
    with pytest.raises(ValueError, match="k must be"):
        build_segments(posts, embed, k=1)


# --- HTTP ----------------------------------------------------------------------------------------------------


def test_ads_endpoints_validate_input(engine, safety, guard, airline):
    pytest.importorskip("uvicorn", reason="the HTTP test needs the serve extra")
    import httpx
    from loopback import LoopbackServer

    from tweetlm.serve.ads_routes import AdsServices
    from tweetlm.serve.app import ServeConfig, create_app

    pool = [p for p in airline if p.labels["brand"] == "United"][:200]

    def retriever_factory(half_life_hours, as_of, langs):
        def retrieve(query, k):
            q = set(words(query))
            ranked = sorted(pool, key=lambda p: -len(q & set(words(p.text))))
            return [{"id": p.id, "text": p.text, "lang": "en"} for p in ranked[:k]]

        return retrieve

    ads = AdsServices(safety, guard, retriever_factory)
    app = create_app(engine, ServeConfig(), ads=ads)
    brief = {"product": "Delta", "required_terms": ["legroom"], "hashtag": "#travel", "n": 3, "num_candidates": 24}
    with LoopbackServer(app) as url, httpx.Client(base_url=url, timeout=120) as c:
        texts = ["Thank you for the great flight to Boston", "you stupid bitch"]
        r = c.post("/v1/ads/safety", json={"texts": texts, "langs": ["en", "en"]})
        assert r.status_code == 200, r.text
        assert [d["unsafe"] for d in r.json()["data"]] == [v.unsafe for v in safety.classify(texts, ["en", "en"])]
        assert r.json()["data"][1]["unsafe"] and r.json()["data"][1]["flagged_by"]
        r = c.post("/v1/ads/copy", json=brief)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["candidates"] == 24 and 1 <= len(body["variants"]) <= 3
        b = AdBrief.from_dict({k: v for k, v in brief.items() if k not in ("n", "num_candidates")})
        assert all(violations(v["text"], b) == [] for v in body["variants"])
        r = c.post("/v1/ads/place", json={"ad_text": "United lost my bag", "k": 5})
        assert r.status_code == 200, r.text
        assert len(r.json()["placements"]) == 5
        r = c.post("/v1/ads/place", json={"ad_text": "United lost my bag", "k": 2, "lang": "en"})
        assert r.status_code == 200, r.text
        for path, body, field in (
            ("/v1/ads/safety", {"texts": []}, "texts"),
            ("/v1/ads/safety", {"texts": ["  "]}, "texts"),
            ("/v1/ads/safety", {"texts": ["a", "b"], "langs": ["en"]}, "langs"),
            ("/v1/ads/safety", {}, "texts"),
            ("/v1/ads/copy", {**brief, "product": ""}, "product"),
            ("/v1/ads/copy", {**brief, "product": "   "}, "product"),
            ("/v1/ads/copy", {**brief, "hashtag": "travel"}, "hashtag"),
            ("/v1/ads/copy", {**brief, "tone": "angry"}, "tone"),
            ("/v1/ads/copy", {**brief, "n": 0}, "n"),
            ("/v1/ads/copy", {**brief, "n": 5, "num_candidates": 4}, "num_candidates"),
            ("/v1/ads/copy", {**brief, "banned_terms": ["legroom"]}, "banned_terms"),
            ("/v1/ads/copy", {**brief, "cta": "Cheap fares at delta.com", "banned_terms": ["cheap"]}, "cta"),
            ("/v1/ads/copy", {**brief, "colour": "red"}, "colour"),
            ("/v1/ads/copy", {**brief, "lang": "klingon"}, "lang"),
            ("/v1/ads/copy", {k: v for k, v in brief.items() if k != "product"}, "product"),
            ("/v1/ads/copy", {**brief, "required_terms": "legroom"}, "required_terms"),
            ("/v1/ads/place", {"ad_text": ""}, "ad_text"),
            ("/v1/ads/place", {"ad_text": "x", "k": 0}, "k"),
            ("/v1/ads/place", {"ad_text": "x", "k": 10, "num_candidates": 5}, "num_candidates"),
        ):
            r = c.post(path, json=body)
            assert r.status_code == 400, (path, body, r.status_code, r.text)
            err = r.json()["error"]
            assert field in err["message"] and err["param"] == field, (path, body, err)
    no_guard = create_app(engine, ServeConfig(), ads=AdsServices(safety))
    with LoopbackServer(no_guard) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert c.post("/v1/ads/copy", json=brief).status_code == 404
        assert c.post("/v1/ads/place", json={"ad_text": "x"}).status_code == 404


def test_ad_copy_temperature_has_one_default(capsys):
    """The CLI, the server and ``generate_copy`` sample ad candidates at ``DEFAULT_TEMPERATURE`` unless told."""
    import inspect

    pytest.importorskip("fastapi", reason="the server needs the serve extra")
    from tweetlm.ads.copy import DEFAULT_TEMPERATURE
    from tweetlm.cli.main import build_parser
    from tweetlm.serve.ads_routes import CopyRequest

    assert inspect.signature(generate_copy).parameters["temperature"].default == DEFAULT_TEMPERATURE
    assert CopyRequest(product="Delta").temperature == DEFAULT_TEMPERATURE
    args = build_parser().parse_args(["ads", "copy", "--brief", "b.json", "--checkpoint", "c", "--safety", "s"])
    assert args.temperature is None  # the CLI passes DEFAULT_TEMPERATURE for None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ads", "copy", "--help"])
    assert f"DEFAULT_TEMPERATURE, {DEFAULT_TEMPERATURE}" in " ".join(capsys.readouterr().out.split())
