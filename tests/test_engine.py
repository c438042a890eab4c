"""Inference engine: continuous batching over a slot KV cache equals one-by-one recompute and one-at-a-time
generation; prefix reuse, chunked prefill, cancellation, per-row failures, threads; sampling controls; tweet mode;
weight precisions."""

from __future__ import annotations

import pytest
import torch

from tweetlm.inference.engine import Engine, SamplingParams
from tweetlm.model.config import ModelConfig
from tweetlm.model.gpt import GPT
from tweetlm.tokenizer.bpe import TokenizerConfig, train_tokenizer

TEXTS = [f"post {i}: coffee and rain in the city #monday @user https://t.co/x{i} \U0001f602" for i in range(200)]


@pytest.fixture(scope="module")
def engine():
    tok = train_tokenizer(TEXTS, TokenizerConfig(vocab_size=320))
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_embd=64, n_head=4, n_kv_head=2, max_seq_len=512)
    model = GPT.build(cfg, seed=0)
    # a random model rarely ends a post: make <|eos|> unlikely so rows run long (exercises limits)
    with torch.no_grad():
        model.tok_emb.weight[tok.eos_id] *= 0.0
    return Engine(model, tok, max_batch=8)


def recompute_greedy(model, ids: list[int], n: int, eos: int) -> list[int]:
    """The reference: greedy decoding that runs the whole sequence through the model at every step (no cache)."""
    out, x = [], list(ids)
    with torch.no_grad():
        for _ in range(n):
            t = int(model(torch.tensor([x]))[0, -1].argmax())
            if t == eos:
                break
            out.append(t)
            x.append(t)
    return out


def test_batched_kv_cache_equals_recompute(engine):
    prompts = ["coffee", "post 12: rain in the", "", "#monday @user"]
    greedy = SamplingParams(max_tokens=25, temperature=0.0)
    batched = engine.generate(prompts, greedy)
    for p, out in zip(prompts, batched):
        ids = engine.encode_prompt(p)
        ref = recompute_greedy(engine.model, ids, 25, engine.tok.eos_id)
        assert out.token_ids == ref[: len(out.token_ids)]
        assert out.prompt_tokens == len(ids)


def _fresh(engine, **kw) -> Engine:
    return Engine(engine.model, engine.tok, **{"max_batch": 3, **kw})


def test_continuous_batching_equals_one_at_a_time_for_requests_arriving_at_different_steps(engine):
    """Greedy and seeded sampling: requests that join a running batch at different steps, wait for a slot (5
    requests, 3 slots), and leave at different times give token for token what each gives alone."""
    prompts = ["coffee", "post 12: rain in the", "", "#monday @user", "rain in the city of coffee " * 3, "\u3042" * 120]
    params = [
        SamplingParams(max_tokens=25, temperature=0.0),
        SamplingParams(max_tokens=7, temperature=0.0),
        SamplingParams(max_tokens=30, temperature=1.0, top_p=0.9, seed=11),
        SamplingParams(max_tokens=12, temperature=0.8, top_k=20, seed=4, repetition_penalty=1.3),
        SamplingParams(max_tokens=18, temperature=0.0),  # its stop string is set below
        SamplingParams(max_tokens=60, temperature=1.0, seed=2, tweet_mode=True),  # 240 of 280 weighted chars used
    ]
    free = _fresh(engine).generate([prompts[4]], params[4])[0].text
    params[4].stop = [free[6:8]]  # a stop string the greedy text meets
    alone = [_fresh(engine).generate([p], [sp])[0] for p, sp in zip(prompts, params)]
    eng = _fresh(engine, prefill_chunk=4)  # the long prompt is prefilled in chunks between decode steps
    arrive = {0: [0], 2: [1, 2], 3: [3], 5: [4, 5]}  # step -> requests added before it
    reqs: dict[int, object] = {}
    step = 0
    while len(reqs) < len(prompts) or not all(r.done for r in reqs.values()):
        for i in arrive.get(step, []):
            reqs[i] = eng.add(eng.make_request(prompts[i], params[i]))
        eng.step()
        step += 1
        assert eng.num_running <= 3
    for i, a in enumerate(alone):
        c = reqs[i].completion()
        assert (c.token_ids, c.text, c.finish_reason) == (a.token_ids, a.text, a.finish_reason), i
    assert reqs[1].completion().finish_reason == "length" and len(reqs[1].ids) == 7
    assert reqs[4].completion().finish_reason == "stop" and reqs[4].text == free[: free.find(free[6:8])]
    from tweetlm.data.twitter_text import weighted_length

    tweet = reqs[5].completion()  # tweet mode ended it at the 280 weighted-character limit
    assert tweet.finish_reason == "length" and len(tweet.token_ids) < 60
    assert weighted_length(prompts[5] + tweet.text) <= 280
    ref = recompute_greedy(engine.model, engine.encode_prompt(prompts[0]), 25, engine.tok.eos_id)
    assert reqs[0].ids == ref[: len(reqs[0].ids)]


def test_prefix_reuse_of_a_shared_prompt_and_a_chats_earlier_turns(engine):
    eng = _fresh(engine, max_batch=4)
    greedy = SamplingParams(max_tokens=10, temperature=0.0)
    prompt = "post 12: rain in the city and coffee at noon #monday"
    outs = eng.generate([prompt] * 4, greedy)
    n = len(eng.encode_prompt(prompt))
    assert eng.prompt_tokens_reused == 3 * (n - 1)  # candidates 2..4 computed only the last prompt token
    assert len({tuple(o.token_ids) for o in outs}) == 1
    assert outs[0].token_ids == recompute_greedy(engine.model, eng.encode_prompt(prompt), 10, eng.tok.eos_id)[:10]
    # a chat's next turn starts with the previous turn's tokens: they are not computed again
    conv = [{"role": "user", "content": "coffee?"}]
    first = eng.chat([conv], greedy)[0]
    before = eng.prompt_tokens_reused
    conv2 = conv + [{"role": "assistant", "content": first.text}, {"role": "user", "content": "and rain?"}]
    second = eng.chat([conv2], greedy)[0]
    assert eng.prompt_tokens_reused - before >= len(eng.chat_format.encode_prompt(conv))
    cold = _fresh(engine, prefix_caching=False).chat([conv2], greedy)[0]
    assert second.token_ids == cold.token_ids


def test_cancel_frees_the_slot_and_a_failing_row_fails_alone(engine):
    eng = _fresh(engine, max_batch=2)
    long = SamplingParams(max_tokens=200, temperature=0.0, ignore_eos=True)
    a = eng.add(eng.make_request("coffee", long))
    b = eng.add(eng.make_request("rain", long))
    waiting = eng.add(eng.make_request("city", SamplingParams(max_tokens=5, temperature=0.0)))
    for _ in range(3):
        eng.step()
    assert eng.num_running == 2 and waiting.state == "waiting"
    a.cancel()
    eng.step()
    assert a.done and a.finish_reason == "cancelled" and waiting.state != "waiting"  # it took a's slot at once

    def boom(delta):
        raise OSError("client went away")

    bad = eng.add(eng.make_request("post", SamplingParams(max_tokens=50, temperature=0.0), on_text=boom))
    b.cancel()
    while not (bad.done and waiting.done):
        eng.step()
    assert isinstance(bad.error, OSError) and bad.finish_reason == "error"
    assert waiting.finish_reason == "length" and len(waiting.ids) == 5
    assert eng.num_running == 0 and not eng.has_work()


def test_generate_is_thread_safe(engine):
    import threading

    eng = _fresh(engine, max_batch=4)
    prompts = [f"post {i}: rain" for i in range(6)]
    p = SamplingParams(max_tokens=15, temperature=0.0)
    want = [eng.generate([x], p)[0].token_ids for x in prompts]
    got: dict[int, list[int]] = {}

    def worker(i):
        got[i] = eng.generate([prompts[i]], p)[0].token_ids

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [got[i] for i in range(6)] == want


@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_lower_precisions_run_and_stay_close_to_float32(engine, precision):
    import copy

    from tweetlm.cli.engine_args import PRECISIONS as CLI_PRECISIONS
    from tweetlm.inference.engine import PRECISIONS

    assert CLI_PRECISIONS == PRECISIONS
    low = Engine(copy.deepcopy(engine.model), engine.tok, max_batch=2, precision=precision)
    out = low.generate(["coffee", "rain"], SamplingParams(max_tokens=8, temperature=0.0))
    assert all(len(o.token_ids) == 8 for o in out)
    x = torch.tensor([engine.encode_prompt("post 12: rain in the city")])
    with torch.no_grad():
        ref = torch.log_softmax(engine.model(x).float(), -1)
        got = torch.log_softmax(low.model(x).float(), -1)
    assert (got.exp() * (got - ref)).sum(-1).mean() < 0.05  # KL(low || float32) per token, nats
    with pytest.raises(ValueError, match="precision"):
        Engine(engine.model, engine.tok, precision="fp8")


def test_seed_stop_and_max_tokens(engine):
    p = SamplingParams(max_tokens=30, temperature=1.0, top_p=0.9, seed=5)
    a = engine.generate(["rain"], p)[0]
    b = engine.generate(["rain", "coffee"], [p, SamplingParams(max_tokens=3, seed=1)])
    assert a.text == b[0].text  # a per-request seed gives the same text whatever else is in the batch
    assert len(b[1].token_ids) == 3 and b[1].finish_reason == "length"
    full = engine.generate(["post"], SamplingParams(max_tokens=40, temperature=0.0))[0].text
    stop = full[5:8]
    cut = engine.generate(["post"], SamplingParams(max_tokens=40, temperature=0.0, stop=[stop]))[0]
    assert cut.finish_reason == "stop" and cut.text == full[: full.find(stop)] and stop not in cut.text


def test_repetition_penalty_changes_greedy_output(engine):
    plain = engine.generate(["coffee"], SamplingParams(max_tokens=40, temperature=0.0))[0]
    pen = engine.generate(["coffee"], SamplingParams(max_tokens=40, temperature=0.0, repetition_penalty=3.0))[0]
    assert len(set(pen.token_ids)) > len(set(plain.token_ids))


def test_streaming_deltas_concatenate_to_text(engine):
    deltas: dict[int, list[str]] = {0: [], 1: []}
    outs = engine.generate(
        ["rain", "city"],
        [SamplingParams(max_tokens=30, seed=2), SamplingParams(max_tokens=30, seed=3, stop=["e"])],
        on_text=lambda i, d: deltas[i].append(d),
    )
    for i, o in enumerate(outs):
        assert "".join(deltas[i]) == o.text
    assert len(deltas[0]) > 1


def test_bad_params_and_long_prompt(engine):
    with pytest.raises(ValueError, match="top_p"):
        engine.generate(["x"], SamplingParams(top_p=0.0))
    with pytest.raises(ValueError, match="min_p"):
        engine.generate(["x"], SamplingParams(min_p=1.0))
    # min-p near 1 keeps only the best token: the same text as greedy decoding
    greedy = engine.generate(["coffee"], SamplingParams(max_tokens=8, temperature=0.0))[0].text
    assert (
        engine.generate(["coffee"], SamplingParams(max_tokens=8, temperature=1.5, min_p=0.999, seed=1))[0].text
        == greedy
    )
    with pytest.raises(ValueError, match="context"):
        engine.generate(["coffee " * 800], SamplingParams())


def test_tweet_mode_never_exceeds_280_weighted_chars(engine):
    from tweetlm.data.twitter_text import weighted_length

    # prompts that already use 180-230 of the 280 weighted characters, so every row meets the limit quickly
    prompts = ["coffee " * 30, "\u3042" * 90, "\U0001f602" * 100, "https://t.co/abc " * 8 + "rain " * 9]
    assert all(180 <= weighted_length(p) <= 240 for p in prompts), [weighted_length(p) for p in prompts]
    params = [SamplingParams(max_tokens=120, temperature=1.2, seed=s, tweet_mode=True) for s in range(50)]
    outs = []
    for i in range(4):  # 200 samples, 50 per prompt
        outs += [(prompts[i], o) for o in engine.generate([prompts[i]] * 50, params)]
    lengths = [weighted_length(p + o.text) for p, o in outs]
    assert len(outs) == 200 and max(lengths) <= 280
    # the limit really binds: most rows were cut by it, and without tweet mode the same rows run past 280
    assert sum(o.finish_reason == "length" and len(o.token_ids) < 120 for _, o in outs) > 100
    free = engine.generate(
        [prompts[0]] * 10, [SamplingParams(max_tokens=120, temperature=1.2, seed=s) for s in range(10)]
    )
    assert max(weighted_length(prompts[0] + o.text) for o in free) > 280
    with pytest.raises(ValueError, match="280"):
        engine.generate(["x" * 281], SamplingParams(tweet_mode=True))


def test_over_tweet_limit_bound_agrees_with_exact_count():
    from tweetlm.data.twitter_text import weighted_length
    from tweetlm.inference.engine import over_tweet_limit

    cases = [
        "a" * 280,
        "a" * 281,
        "\u3042" * 140,
        "\u3042" * 141,
        "x.co " * 20,
        "\U0001f602" * 140,
        "\U0001f602" * 141,
        "see a.co b.co c.co " + "z" * 200,
    ]
    for text in cases:
        assert over_tweet_limit(text) == (weighted_length(text) > 280), text


def test_lexically_constrained_decoding_forces_required_phrases_in(engine):
    from tweetlm.data.briefs import contains_phrase
    from tweetlm.data.twitter_text import weighted_length

    assert contains_phrase("Rain  in the CITY", "rain in") and not contains_phrase("baggage", "bag")
    req = ["umbrella", "#wetday", "Book now"]  # words the tiny model never saw
    need = sum(len(engine.tok.encode(" " + m)) for m in req)
    for p in (
        SamplingParams(max_tokens=need + 20, temperature=0.0),
        SamplingParams(max_tokens=need + 5, temperature=0.0),  # a budget only just big enough: forced at once
        SamplingParams(max_tokens=120, temperature=0.9, seed=3, tweet_mode=True),
    ):
        free = engine.generate(["coffee"], p)[0]
        assert not any(contains_phrase(free.text, m) for m in req)
        p.required = req
        c = engine.generate(["coffee"], p)[0]
        assert all(contains_phrase(c.text, m) for m in req), c.text
        assert len(c.token_ids) <= p.max_tokens and weighted_length("coffee" + c.text) <= 280
    # a conversation too: the reply holds them
    chat = engine.chat([[{"role": "user", "content": "rain?"}]], SamplingParams(max_tokens=need + 9, temperature=0.0,
                                                                               required=req))[0]  # fmt: skip
    assert all(contains_phrase(chat.text, m) for m in req)


def test_sampling_candidates_equal_a_full_sort():
    """Top-k/min-p/top-p candidates found by partial selection equal those of sorting the whole vocabulary, for peaked
    and flat distributions (a nucleus of a handful of tokens and one of thousands)."""
    from tweetlm.inference.generate import candidates

    def reference(logits, t, k, p, m=0.0):
        x = logits[0].float() / t
        if k > 0:
            x = x.masked_fill(x < torch.topk(x, k).values[-1], float("-inf"))
        probs = x.softmax(-1)
        probs = torch.where(probs >= m * probs.max(), probs, 0.0)  # min-p, before the nucleus
        probs = probs / probs.sum()
        sp, order = torch.sort(probs, descending=True)
        keep = ((sp.cumsum(-1) - sp) <= p if p < 1 else sp >= 0) & (sp > 0)
        return order[keep], sp[keep] / sp[keep].sum()

    gen = torch.Generator().manual_seed(0)
    cases = [(1.0, 0, 0.9, 0.0), (0.7, 0, 0.99, 0.0), (1.3, 50, 0.8, 0.0), (1.0, 200, 1.0, 0.0), (1.0, 0, 0.5, 0.0)]
    cases += [(1.0, 0, 1.0, 0.1), (0.9, 0, 0.95, 0.05), (1.3, 50, 0.8, 0.2), (1.0, 200, 1.0, 0.5)]
    for scale in (0.3, 3.0, 12.0):
        logits = torch.randn(1, 5000, generator=gen) * scale
        for t, k, p, m in cases:
            ids, probs = candidates(logits, t, k, p, m)
            want_ids, want_p = reference(logits, t, k, p, m)
            got = dict(zip(ids.tolist(), probs.tolist()))  # min-p alone keeps vocabulary order, not sorted
            assert sorted(got) == sorted(want_ids.tolist()), (scale, t, k, p, m)
            assert torch.allclose(torch.tensor([got[i] for i in want_ids.tolist()]), want_p, atol=1e-6)
            if m:  # min-p cuts relative to the best token: nothing below m x the best, the best always kept
                assert probs.min() >= m * probs.max() - 1e-7 and int(logits[0].argmax()) in got
    assert len(reference(torch.randn(1, 5000, generator=gen) * 0.3, 1.0, 0, 0.9)[0]) > 1000  # a wide nucleus


def test_a_step_that_fails_as_a_whole_fails_its_requests_not_the_engine(engine):
    eng = _fresh(engine, max_batch=2, max_context=64)
    eng.max_seq_len = 10**9  # a cache that cannot be allocated: the step fails as a whole
    reqs = [eng.add(eng.make_request("coffee", SamplingParams(max_tokens=3))) for _ in range(3)]
    with pytest.raises(RuntimeError):
        eng.step()
    failed = eng.fail_all(MemoryError("no room for the KV cache"))
    assert failed == reqs and all(r.finish_reason == "error" and isinstance(r.error, MemoryError) for r in reqs)
    eng.max_seq_len = 64
    assert not eng.has_work() and len(eng.generate(["rain"], SamplingParams(max_tokens=3))[0].token_ids) == 3


def test_the_server_batcher_and_a_direct_generate_share_one_engine(engine):
    """The server's batcher thread and a route calling ``generate`` itself (ad copy) step one engine: whichever
    thread finishes a request, its owner gets it."""
    import asyncio

    from tweetlm.inference.batcher import Batcher

    eng = _fresh(engine, max_batch=2)
    greedy = SamplingParams(max_tokens=20, temperature=0.0)
    want_rain = eng.generate(["rain"], greedy)[0].token_ids
    want_coffee = eng.generate(["coffee"], greedy)[0].token_ids

    async def run():
        b = Batcher(eng, 2, 8)
        b.start()
        direct = asyncio.to_thread(eng.generate, ["rain"] * 3, greedy)
        served = [b.complete("coffee", greedy) for _ in range(3)]
        out = await asyncio.wait_for(asyncio.gather(direct, *served), 60)
        await b.stop()
        return out

    direct, *served = asyncio.run(run())
    assert [c.token_ids for c in direct] == [want_rain] * 3
    assert [c.token_ids for c in served] == [want_coffee] * 3


def test_a_reply_cut_by_max_tokens_never_ends_in_half_a_character(engine):
    """A new user saw 'Thanks for a 🙌\ufffd': the last tokens were the first bytes of an emoji when max_tokens cut
    the reply. The held-back bytes are dropped at a length cut (and were never streamed)."""
    from tweetlm.inference.engine import SamplingParams

    sent = []
    r = engine.make_request("rain", SamplingParams(max_tokens=5), on_text=sent.append)
    r.text, r.emitted = "Thanks for a \U0001f64c\ufffd", 0
    engine._finish(r, "length", [])
    assert r.text == "Thanks for a \U0001f64c" and "".join(sent) == r.text
    r = engine.make_request("rain", SamplingParams(max_tokens=5))
    r.text = "ends in a real \ufffd"
    engine._finish(r, "stop", [])  # the model ended it there itself: kept as written
    assert r.text.endswith("\ufffd")
