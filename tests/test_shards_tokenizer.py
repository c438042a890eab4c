from __future__ import annotations

import numpy as np
import pytest

from tweetlm.common.token_shards import ShardWriter, dtype_for_vocab, open_shard
from tweetlm.tokenizer.bpe import PostTokenizer, TokenizerConfig, train_tokenizer
from tweetlm.tokenizer.encode import encode_split

HARD = [
    "Then &amp; Now. VILO @ Walt Disney Magic Kingdom",
    "emoji 👩🏽‍🚀🇮🇩 and ❤️ with VS16, zero width\u200bspace",
    "  leading and trailing spaces  ",
    "line one\nline two\r\nthree",
    "Arabic \u0645\u0631\u062d\u0628\u0627 Hindi \u0928\u092e\u0938\u094d\u0924\u0947 #hashtag @user $TSLA",
    "",
]


def test_shard_roundtrip(tmp_path):
    w = ShardWriter(tmp_path / "s", vocab_size=70000)
    w.add([1, 69999, 3], "a", 5)
    w.add([], "b", 0)
    w.add([7], "a", 1)
    w.close()
    s = open_shard(tmp_path / "s")
    assert s.tokens.dtype == np.uint32 and dtype_for_vocab(4096) == np.uint16
    assert (
        s.num_docs == 3 and s.doc(0).tolist() == [1, 69999, 3] and s.doc(1).tolist() == [] and s.doc(2).tolist() == [7]
    )
    assert s.sources == ["a", "b"] and s.doc_source.tolist() == [0, 1, 0] and s.doc_bytes.tolist() == [5, 0, 1]
    with pytest.raises(ValueError, match="out of range"):
        ShardWriter(tmp_path / "t", vocab_size=10).add([10], "a", 1)
    with pytest.raises(FileNotFoundError, match="encode step"):
        open_shard(tmp_path / "missing")


def test_tokenizer_train_roundtrip_and_save(tmp_path):
    texts = HARD * 20 + [f"post number {i} about #topic{i % 7}" for i in range(300)]
    tok = train_tokenizer(texts, TokenizerConfig(vocab_size=400))
    assert tok.vocab_size <= 400
    for t in HARD:
        assert tok.decode(tok.encode(t)) == t
    ids = tok.encode("hi", bos=True, eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and tok.decode(ids) == "hi"
    tok.save(tmp_path / "tokenizer.json")
    again = PostTokenizer.load(tmp_path / "tokenizer.json")
    assert again.encode(HARD[1]) == tok.encode(HARD[1])
    with pytest.raises(ValueError, match="256 bytes"):
        train_tokenizer(texts, TokenizerConfig(vocab_size=100))


def test_encode_split_writes_bos_eos_and_bytes(tmp_path):
    tok = train_tokenizer(HARD * 5, TokenizerConfig(vocab_size=300))
    stats = encode_split(HARD[:3], ["x", "y", "x"], tok, tmp_path / "val")
    s = open_shard(tmp_path / "val")
    assert stats["docs"] == 3 and s.num_docs == 3
    for i, t in enumerate(HARD[:3]):
        d = s.doc(i).tolist()
        assert d[0] == tok.bos_id and d[-1] == tok.eos_id and tok.decode(d) == t
        assert s.doc_bytes[i] == len(t.encode("utf-8"))


def test_roundtrip_on_every_shared_corpus(corpora):
    """Every post of every shared corpus, cleaned as the run cleans it, survives encode -> decode."""
    from tweetlm.data.pipeline.config import PipelineConfig
    from tweetlm.data.pipeline.inprocess import clean_posts

    # the texts a build writes (language id changes no text: off, for time)
    posts, _ = clean_posts([corpora], PipelineConfig(lang_detect="off"))
    sources = {p.source.split("/")[0] for p in posts}
    assert len(sources) >= 9, sources
    tok = train_tokenizer((p.text for p in posts[::20]), TokenizerConfig(vocab_size=2048))
    texts = [p.text for p in posts]
    decoded = tok.tok.decode_batch([e.ids for e in tok.tok.encode_batch(texts, add_special_tokens=False)])
    bad = [(p.source, p.id) for p, d in zip(posts, decoded) if p.text != d]
    assert not bad, f"{len(bad)} posts fail the round trip, e.g. {bad[:3]}"
