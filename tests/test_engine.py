"""Inference engine: batched KV-cache decoding equals one-by-one recompute; sampling controls; tweet mode."""

from __future__ import annotations

import pytest
import torch

from tweetlm.inference.engine import Engine, SamplingParams
from tweetlm.inference.generate import SampleConfig, generate
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
    return Engine(model, tok)


def test_batched_left_padded_kv_cache_equals_recompute(engine):
    prompts = ["coffee", "post 12: rain in the", "", "#monday @user"]
    greedy = SamplingParams(max_tokens=25, temperature=0.0)
    batched = engine.generate(prompts, greedy)
    for p, out in zip(prompts, batched):
        ids = engine.encode_prompt(p)
        ref = generate(
            engine.model, [ids], SampleConfig(max_new_tokens=25, temperature=0.0), engine.tok.eos_id, use_cache=False
        )[0]
        assert out.token_ids == ref[: len(out.token_ids)]
        assert out.prompt_tokens == len(ids)


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
    from tweetlm.data.twitter_text import weighted_length
    from tweetlm.inference.engine import contains_phrase

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
