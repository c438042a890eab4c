"""What the pipeline does to one text (``data.pipeline.text``) and its per-task steps run in process
(``data.pipeline.inprocess``)."""

from __future__ import annotations

import pytest

from tweetlm.data.pipeline.config import PipelineConfig
from tweetlm.data.pipeline.inprocess import clean_posts
from tweetlm.data.pipeline.text import dedup_key, hash_split, normalize_text
from tweetlm.data.post import Post, Provenance


def test_normalize():
    c = PipelineConfig()
    assert normalize_text("Then &amp; Now  \t ok ", c) == "Then & Now ok"
    assert normalize_text("double &amp;amp; escaped", c) == "double & escaped"
    assert normalize_text("mojibake: donâ€™t", c) == "mojibake: don\u2019t"
    assert normalize_text("a \n\n  b", c) == "a\nb"
    p = PipelineConfig(mention_placeholder=True, url_placeholder=True)
    assert normalize_text("@jack see https://t.co/abc and me@mail.com", p) == "@user see http and me@mail.com"
    assert dedup_key(" A  b ") == "a b"


def test_hash_split_is_stable_and_proportional():
    splits = [hash_split("src", str(i), 0.1) for i in range(20000)]
    assert splits == [hash_split("src", str(i), 0.1) for i in range(20000)]
    assert 0.09 < splits.count("val") / len(splits) < 0.11


def test_clean_posts_runs_the_prepare_steps_and_accounts_for_everything(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "posts.txt").write_text(
        "Then &amp; Now  ok\n"  # normalized
        "\n"  # empty: dropped by Normalize
        "#a #b #c #d #e spam\n"  # 5 of 6 tokens hashtags: spam_hashtags
        "mail me at someone@example.com\n"  # PII scrubbed
        "Then &amp; Now  ok\n",  # an exact duplicate: left to the corpus-wide steps (build_corpus)
        encoding="utf-8",
    )
    posts, ledger = clean_posts([d], PipelineConfig(lang_detect="off", val_fraction=0.0))
    assert [p.text for p in posts] == ["Then & Now ok", "mail me at <email>", "Then & Now ok"]
    assert [p.id for p in posts] == ["mine/posts:posts.txt:0", "mine/posts:posts.txt:3", "mine/posts:posts.txt:4"]
    assert {p.split for p in posts} == {"train"} and {p.source for p in posts} == {"mine/posts"}
    c = ledger.sources["mine/posts"]
    assert (c.records_in, c.kept, dict(c.dropped)) == (5, 3, {"empty": 1, "spam_hashtags": 1})
    with pytest.raises(ValueError, match="does not exist"):
        clean_posts([tmp_path / "nope"])


def test_post_ids_must_be_strings():
    with pytest.raises(TypeError, match="str"):
        Post(id=123, text="x", source="s", provenance=Provenance("f", 0, "r"))
