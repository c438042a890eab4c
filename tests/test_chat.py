"""Chat: templates (as transformers renders them), the SFT loss mask, the fine-tuning set and job, chat in the
engine (end of turn, tweet mode, oldest turns cut), TweetQA metrics."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tweetlm.common.token_shards import ShardWriter, open_shard
from tweetlm.data.corpus import read_corpus_posts, write_corpus
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post, Provenance
from tweetlm.data.sft import SFTDataConfig, build_examples, grounded_prompt
from tweetlm.inference.engine import Engine, SamplingParams
from tweetlm.model.config import ModelConfig
from tweetlm.model.gpt import GPT
from tweetlm.tokenizer.bpe import TokenizerConfig, train_tokenizer
from tweetlm.tokenizer.chat import TWEETLM_CHAT_TEMPLATE, ChatFormat
from tweetlm.training.dataloader import IGNORE_INDEX, PackedLoader

TEXTS = [f"post {i}: coffee and rain in the city #monday @user what a day" for i in range(200)]
CONV = [
    {"role": "user", "content": "coffee or tea?"},
    {"role": "assistant", "content": "coffee, always"},
    {"role": "user", "content": "why?"},
    {"role": "assistant", "content": "rain in the city"},
]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, TokenizerConfig(vocab_size=320))


def _assistant_text(tok, ids, mask) -> str:
    return tok.tok.decode([i for i, m in zip(ids, mask) if m], skip_special_tokens=False)


def test_loss_mask_covers_assistant_turns_and_their_end_of_turn_only(tok):
    chat = ChatFormat(tok)
    assert chat.template == TWEETLM_CHAT_TEMPLATE and chat.eot_id == tok.eos_id
    ids, mask = chat.encode_chat(CONV)
    assert len(ids) == len(mask) and ids == tok.encode(chat.render(CONV))
    assert _assistant_text(tok, ids, mask) == "coffee, always<|eos|>rain in the city<|eos|>"
    # the prompt the engine sends for the next reply is the rendered history plus the assistant's header
    assert chat.render(CONV[:3], add_generation_prompt=True) == chat.render(CONV[:3]) + "<|bos|>assistant\n"
    with pytest.raises(ValueError, match="no assistant turn"):
        chat.encode_chat(CONV[:1])
    with pytest.raises(ValueError, match=r"messages\[0\].role"):
        chat.render([{"role": "robot", "content": "x"}])


def test_packed_loader_targets_are_assistant_tokens_and_rows_are_padded_not_cropped(tok, tmp_path):
    chat = ChatFormat(tok)
    w = ShardWriter(tmp_path / "train", tok.vocab_size, with_loss_mask=True)
    convs = [[{"role": "user", "content": f"q{i} " * (1 + i % 5)}, {"role": "assistant", "content": f"a{i}"}]
             for i in range(40)]  # fmt: skip
    enc = [chat.encode_chat(c) for c in convs]
    for ids, mask in enc:
        w.add(ids, "t", 1, mask)
    w.close()
    shard = open_shard(tmp_path / "train")
    assert shard.loss_mask is not None and int(shard.loss_mask.sum()) == sum(sum(m) for _, m in enc)
    loader = PackedLoader(shard, batch_size=1, seq_len=48, seed=0)
    counted = []
    for _ in range(loader.num_rows):  # one epoch
        x, y = loader.next_batch()
        keep = y != IGNORE_INDEX
        counted += y[keep].tolist()
        assert (x[:, 1:][keep[:, :-1]] == y[:, :-1][keep[:, :-1]]).all()  # targets are the next inputs
    # every target is an assistant token (or its end of turn); whole conversations, none cropped
    assert loader._plan["cropped"] == 0 and loader.padded_frac > 0
    assert sorted(counted) == sorted(i for ids, m in enc for i, k in zip(ids[1:], m[1:]) if k)


def _shared_tokenizer_or_skip():
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from tweetlm.model.hf_format import bundled_base_path

    try:
        path = bundled_base_path("smollm2-135m")
    except ValueError as e:
        pytest.skip(str(e))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def test_template_round_trip_equals_transformers_on_smollm2(tmp_path):
    hf = _shared_tokenizer_or_skip()
    from tweetlm.model.hf_format import _document_specials
    from tweetlm.tokenizer.bpe import PostTokenizer

    specials = _document_specials(hf.backend_tokenizer, dict(hf.special_tokens_map), True)
    PostTokenizer(hf.backend_tokenizer, specials, hf.chat_template).save(tmp_path / "tokenizer.json")
    tok = PostTokenizer.load(tmp_path / "tokenizer.json")  # the template travels in tokenizer_config.json
    chat = ChatFormat(tok)
    convs = [
        CONV,
        [{"role": "system", "content": "Answer briefly."}, *CONV[:3]],
        [{"role": "user", "content": "Apa kabar? \U0001f602 #senin"}],
    ]
    for msgs in convs:
        for gen in (False, True):
            assert chat.render(msgs, gen) == hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
        want = hf.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)
        assert chat.encode_prompt(msgs) == list(want["input_ids"] if hasattr(want, "keys") else want)
    assert tok.tok.id_to_token(chat.eot_id) == "<|im_end|>"
    ids, mask = chat.encode_chat(CONV)
    text = _assistant_text(tok, ids, mask)
    assert text.startswith("coffee, always<|im_end|>") and "coffee or tea" not in text and "why?" not in text


@pytest.fixture(scope="module")
def engine(tok):
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_embd=64, n_head=4, n_kv_head=2, max_seq_len=96)
    model = GPT.build(cfg, seed=0)
    with torch.no_grad():
        model.tok_emb.weight[tok.eos_id] *= 0.0  # a random model rarely ends a turn: replies run long
    return Engine(model, tok)


def test_chat_prompt_is_the_template_and_the_oldest_turns_are_cut_to_fit(engine):
    greedy = SamplingParams(max_tokens=8, temperature=0.0)
    c = engine.chat([CONV[:3]], greedy)[0]
    assert c.dropped_turns == 0 and c.prompt_tokens == len(engine.chat_format.encode_prompt(CONV[:3]))
    # the same reply as the engine continuing the rendered prompt token by token
    ref = engine.generate([engine.chat_format.render(CONV[:3], True)], greedy)[0]
    assert c.token_ids == ref.token_ids[: len(c.token_ids)]
    long = [{"role": "system", "content": "be kind"}]
    for i in range(12):
        long += [{"role": "user", "content": f"post {i}: coffee and rain"}, {"role": "assistant", "content": "ok"}]
    long.append({"role": "user", "content": "last one"})
    c = engine.chat([long], SamplingParams(max_tokens=20, temperature=0.0))[0]
    assert c.dropped_turns > 0 and c.prompt_tokens <= engine.max_seq_len - 20
    kept, dropped = engine.chat_format.fit_messages(long, engine.max_seq_len - 20)
    assert dropped == c.dropped_turns and kept[0]["content"] == "be kind" and kept[-1]["content"] == "last one"
    with pytest.raises(ValueError, match="last message alone"):
        engine.chat([[{"role": "user", "content": "rain " * 200}]], greedy)


def test_chat_reply_stops_at_end_of_turn_and_tweet_mode_counts_the_reply_alone(engine, tok):
    eot = engine.chat_format.eot_id

    def favour_eot(_module, _inputs, logits):  # the end of turn becomes the greedy choice after the header
        logits = logits.clone()
        logits[..., eot] += 1e4
        return logits

    hook = engine.model.register_forward_hook(favour_eot)
    try:
        c = engine.chat([CONV[:1]], SamplingParams(max_tokens=20, temperature=0.0))[0]
    finally:
        hook.remove()
    assert (c.finish_reason, c.token_ids, c.text) == ("stop", [], "")
    long_history = [{"role": "user", "content": "coffee " * 60}]  # the prompt alone is over 280 characters
    c = engine.chat([long_history], SamplingParams(max_tokens=10, temperature=0.0, tweet_mode=True))[0]
    assert len(c.token_ids) == 10  # tweet mode did not refuse or end it: only the reply counts


def _posts() -> dict[str, list[Post]]:
    def post(i, split, text, **kw):
        return Post(id=f"p{i}", text=text, source="test", split=split, provenance=Provenance("f", i, "r"), **kw)

    qa = lambda q, a: {"tweetqa": json.dumps([{"qid": "x", "question": q, "answers": [a]}])}  # noqa: E731
    train = [post(i, "train", t) for i, t in enumerate(TEXTS[:40])]
    train.append(
        post(100, "train", "coffee is back at the city market", lang="en", labels=qa("what is back?", "coffee"))
    )
    train.append(post(101, "train", "rain all day\nso much rain\nbring an umbrella", kind="thread"))
    train.append(post(102, "train", "@user @user the rain stopped at last"))
    val = [post(200 + i, "val", t) for i, t in enumerate(TEXTS[100:110])]
    val.append(post(300, "val", "the market opens at nine", lang="en", labels=qa("when does it open?", "nine")))
    return {"train": train, "val": val}


def test_fine_tuning_set_keeps_sources_and_never_crosses_splits():
    ex, counts = build_examples(_posts(), SFTDataConfig(max_briefs=30, max_posts=10, distractor_prob=1.0))
    ids = {s: {i for e in ex[s] for i in e.source_ids} for s in ex}
    assert ids["train"] and ids["val"] and not ids["train"] & ids["val"]
    tasks = {e.task for e in ex["train"]}
    assert tasks == {"thread", "qa", "brief", "post"}
    thread = next(e for e in ex["train"] if e.task == "thread")
    assert [m["role"] for m in thread.messages] == ["user", "assistant"]  # 3 posts: the unanswered last is left out
    assert thread.messages[1]["content"] == "so much rain" and thread.source_ids == ["p101"]
    qa = next(e for e in ex["val"] if e.task == "qa")
    assert qa.answers == ["nine"] and qa.messages[1]["content"] == "nine [p300]"
    assert qa.messages[0]["content"].startswith(grounded_prompt("x", [])[:40]) and "[p300]" in qa.messages[0]["content"]
    briefs = [e for e in ex["train"] if e.task == "brief"]
    assert len(briefs) == 30 and all(e.messages[0]["content"].startswith("Write a") for e in briefs)
    answers = {e.messages[1]["content"] for e in ex["train"] if "p102" in e.source_ids}
    assert answers == {"the rain stopped at last"}  # a reply's leading @-mentions are not what a post is about
    posts_ids = {e.source_ids[0] for e in ex["train"] if e.task == "post"}
    assert not posts_ids & {e.source_ids[0] for e in briefs}  # a post is a brief or a plain post, not both
    # brand_briefs_first: when the cap bites, every brief that names a brand is taken before any other; a post
    # with a brand label that never names the brand gets no brand in its brief
    data = _posts()
    branded = {p.id for p in data["train"][:40:4]}
    for i, p in enumerate(data["train"][:40]):
        p.labels["brand"] = "Delta"
        if p.id in branded:
            data["train"][i] = replace(p, text=p.text + " thanks Delta")
    ex, _ = build_examples(data, SFTDataConfig(max_briefs=-1, max_posts=0))
    named = {e.source_ids[0] for e in ex["train"] if "about Delta" in e.messages[0]["content"]}
    assert 5 <= len(named) and named <= branded  # a brief leaves the brand out 15% of the time
    for first in (False, True):
        ex, _ = build_examples(data, SFTDataConfig(max_briefs=12, max_posts=0, brand_briefs_first=first))
        chosen = {e.source_ids[0] for e in ex["train"] if e.task == "brief"}
        assert len(chosen) == 12 and (named <= chosen) == first, (first, chosen)
    # a post addressed to the brand's own account names the brand: the handle becomes the name in the answer
    p = data["train"][42]  # "@user @user the rain stopped at last"
    data["train"][42] = replace(p, text="@bob @DeltaAssist the rain stopped, @deltaassist", labels={"brand": "Delta"})
    ex, _ = build_examples(data, SFTDataConfig(max_briefs=-1, max_posts=0))
    (answer,) = [e.messages[1]["content"] for e in ex["train"] if e.source_ids == [p.id]]
    assert answer == "Delta the rain stopped, Delta"


def test_qa_scores_match_hand_computed_values():
    from tweetlm.eval.qa import qa_scores, strip_citations

    assert strip_citations("nine [p300] o'clock [a, b]") == "nine o'clock"
    exact = qa_scores(["independence high school"], [["independence high school"]])
    assert exact["bleu1"] == pytest.approx(100.0) and exact["rouge_l"] == pytest.approx(100.0)
    # "independence high" against the 3-word answer: unigram precision 1, brevity penalty exp(1 - 3/2)
    part = qa_scores(["Independence High"], [["independence high school", "a school"]])
    assert part["bleu1"] == pytest.approx(100 * np.exp(-0.5), abs=1e-6)
    assert part["rouge_l"] == pytest.approx(100 * 2 * (1 * 2 / 3) / (1 + 2 / 3))
    assert qa_scores(["x"], [["nine"]])["rouge_l"] == 0.0
    with pytest.raises(ValueError):
        qa_scores(["a"], [])


def _checkpoint(tok, path: Path) -> Path:
    from tweetlm.model.load import save_weights

    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_embd=64, n_head=4, n_kv_head=2, max_seq_len=384)
    path.mkdir(parents=True)
    save_weights(GPT.build(cfg, seed=0), path / "model.safetensors")
    from dataclasses import asdict

    (path / "config.json").write_text(json.dumps({"model": asdict(cfg)}))
    tok.save(path / "tokenizer.json")
    return path


def test_sft_job_trains_on_assistant_tokens_and_reports(tok, tmp_path):
    from tweetlm.jobs.sft import SFTConfig, run_sft

    posts = _posts()
    write_corpus(posts, Ledger(), tmp_path / "corpus")
    back, _, _ = read_corpus_posts(tmp_path / "corpus", "train")
    assert back[-2].labels == posts["train"][-2].labels  # TweetQA questions survive the corpus files
    base = _checkpoint(tok, tmp_path / "base")
    cfg = SFTConfig(data=SFTDataConfig(max_briefs=20, max_posts=20), max_steps=6, batch_size=2, seq_len=320, lr=3e-3,
                    log_every=2, qa_eval=5, qa_max_tokens=6)  # fmt: skip
    res = run_sft(base, tmp_path / "sft", cfg, corpus=tmp_path / "corpus", progress=False)
    out = tmp_path / "sft"
    assert (out / "sft_train.jsonl").exists() and (out / "report.md").exists()
    h = res["held_out_loss"]
    assert h["sft"] < h["base"]  # 6 steps at a high rate on tiny data: the assistant tokens get cheaper
    assert res["tweetqa"]["questions"] == 1 and 0 <= res["tweetqa"]["sft"]["rouge_l"] <= 100
    # the fine-tuned checkpoint carries tweetlm's chat template and chats
    eng = Engine.from_checkpoint(out)
    assert eng.tok.chat_template == TWEETLM_CHAT_TEMPLATE
    assert eng.chat([CONV[:1]], SamplingParams(max_tokens=4, temperature=0.0))[0].prompt_tokens > 0
    with pytest.raises(FileExistsError):
        run_sft(base, out, cfg, corpus=tmp_path / "corpus", progress=False)
    # a failed run removes the --out folder it created; bad inputs are named
    with pytest.raises(ValueError, match="exceeds the model's context"):
        run_sft(base, tmp_path / "bad", SFTConfig(seq_len=1000), corpus=tmp_path / "corpus", progress=False)
    with pytest.raises(FileNotFoundError, match="clean corpus split"):
        run_sft(base, tmp_path / "bad", cfg, corpus=tmp_path / "nocorpus", progress=False)
    assert not (tmp_path / "bad").exists() and out.is_dir()
    with pytest.raises(ValueError, match="overlaps the base checkpoint"):
        run_sft(base, base, cfg, corpus=tmp_path / "corpus", progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already holds other files"):
        run_sft(base, tmp_path / "other", cfg, corpus=tmp_path / "corpus", progress=False)
    with pytest.raises(ValueError, match="--resume with --seq-len 256, but the run was started with 320"):
        run_sft(base, out, replace(cfg, seq_len=256), corpus=tmp_path / "corpus", resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="pass --corpus"):
        run_sft(base, tmp_path / "nocorp", cfg, progress=False)
    from tweetlm.cli.main import main

    assert main(["chat", "--checkpoint", str(out), "--temperature", "-1"]) == 2


class _CitingEngine(Engine):
    """The tiny model with a scripted reply: cites one retrieved post, one post it was not given, and [sic]."""

    cite = ""

    def make_request(self, prompt, params, on_text=None, index=0):
        from tweetlm.inference.engine import Completion

        req = super().make_request(prompt, params, on_text, index)
        generated = req.completion
        text = f"coffee is back [{self.cite}] and [999999] [sic]"
        req.completion = lambda: Completion(text, generated().token_ids, "stop", len(req.prompt_ids))
        return req


def test_multi_turn_and_grounded_chat_through_the_openai_client(tok, tmp_path):
    openai = pytest.importorskip("openai")
    pytest.importorskip("tantivy")
    from loopback import LoopbackServer

    from tweetlm.search.index import SearchIndex
    from tweetlm.serve.app import ServeConfig, create_app

    ckpt = _checkpoint(tok, tmp_path / "m")
    eng = Engine.from_checkpoint(ckpt, model_name="tiny")
    with LoopbackServer(create_app(eng, ServeConfig(max_tokens_limit=16))) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        first = [{"role": "user", "content": "coffee or tea?"}]
        a1 = client.chat.completions.create(model="tiny", messages=first, max_tokens=6, temperature=0)
        second = [*first, {"role": "assistant", "content": a1.choices[0].message.content}, CONV[2]]
        a2 = client.chat.completions.create(model="tiny", messages=second, max_tokens=6, temperature=0)
        alone = client.chat.completions.create(model="tiny", messages=[CONV[2]], max_tokens=6, temperature=0)
        greedy = SamplingParams(max_tokens=6, temperature=0.0)
        # the server's answers are the engine's replies to the whole conversation, first turn included
        assert a2.choices[0].message.content == eng.chat([second], greedy)[0].text
        assert alone.choices[0].message.content == eng.chat([[CONV[2]]], greedy)[0].text
        assert a2.usage.prompt_tokens == len(eng.chat_format.encode_prompt(second)) > alone.usage.prompt_tokens
        parts = [
            {"role": "user", "content": [{"type": "text", "text": "coffee or "}, {"type": "text", "text": "tea?"}]}
        ]
        as_parts = client.chat.completions.create(model="tiny", messages=parts, max_tokens=6, temperature=0)
        assert as_parts.choices[0].message.content == a1.choices[0].message.content  # content parts are joined
        with pytest.raises(openai.BadRequestError, match="empty"):
            client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": " "}], max_tokens=4)
        with pytest.raises(openai.BadRequestError, match="--search-index"):
            client.chat.completions.create(model="tiny", messages=first, max_tokens=4, extra_body={"grounded": True})

    from tweetlm.search.embed import Embedder

    idx = SearchIndex.create(tmp_path / "idx", embedder=Embedder(cache_dir=tmp_path / "emb"))
    texts = ["coffee is back at the market", "rain all day", "tea time in the city"]
    idx.add([Post(id=f"{i}", text=t, source="s", provenance=Provenance("f", i, "r"), created_at="2020-01-01T00:00:00Z")
             for i, t in enumerate(texts)])  # fmt: skip
    citing = _CitingEngine(eng.model, eng.tok, "tiny")
    citing.cite = "0"
    with LoopbackServer(create_app(citing, ServeConfig(max_tokens_limit=16), search_index=idx)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "is coffee back?"}],
                                           max_tokens=4, extra_body={"grounded": True, "search_k": 2})  # fmt: skip
        body = r.model_dump()
        assert "0" in body["retrieved_ids"] and len(body["retrieved_ids"]) == 2
        assert [c["id"] for c in body["citations"]] == ["0"] and body["citations"][0]["text"].startswith("coffee")
        assert r.choices[0].message.content == "coffee is back [0] and"  # 999999 and [sic] were not given
        assert sorted(body["removed_citations"]) == ["999999", "sic"]


def test_tweetlm_chat_in_a_pseudo_terminal(tok, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    import sys

    ckpt = _checkpoint(tok, tmp_path / "m")
    child = pexpect.spawn(sys.executable, ["-m", "tweetlm.cli.main", "chat", "--checkpoint", str(ckpt),
                                           "--max-tokens", "5", "--temperature", "0"],
                          encoding="utf-8", timeout=60)  # fmt: skip
    try:
        child.expect("tweetlm chat with m .*tweetlm's chat template.*Ctrl-D to quit")
        child.expect("you> ")
        child.sendline("")
        child.expect(r"\(empty message")
        child.sendline("coffee or tea?")
        child.expect("bot> (.*)\r\n")
        child.expect("you> ")
        child.sendline("/tweet")
        child.expect("tweet mode on")
        child.sendline("/search on")
        child.expect("no search index")
        child.sendline("apa kabar? " + "hujan " * 200)  # Indonesian, and longer than the context
        child.expect(r"not sent: the last message alone takes \d+ prompt tokens")
        child.sendline("/reset")
        child.expect("conversation cleared")
        child.sendline("/tweet")
        child.expect("tweet mode off")
        dropped = False
        for i in range(12):  # a conversation longer than the context: cut from the oldest turns, and said
            child.sendline(f"turn {i}: " + "rain in the city " * 12)
            if child.expect([r"oldest message\(s\) were left out", "you> "]) == 0:
                dropped = True
                break
        assert dropped
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_ask_prompts_a_chat_model_as_a_user_turn(engine, tok):
    from tweetlm.search.ask import engine_prompt, engine_prompt_tokens

    prompt = grounded_prompt("is it raining?", [("1", "", "rain all day")]) + "\nAnswer:"
    assert engine_prompt(engine, prompt) == prompt  # a model of posts continues the text
    chat_tok = type(tok)(tok.tok, tok.specials, TWEETLM_CHAT_TEMPLATE)
    chat_engine = Engine(engine.model, chat_tok)
    conv = engine_prompt(chat_engine, prompt)
    assert conv == [{"role": "user", "content": prompt.removesuffix("\nAnswer:")}]
    assert engine_prompt_tokens(chat_engine, prompt) == len(chat_engine.chat_format.encode_prompt(conv))
