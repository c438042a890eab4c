from __future__ import annotations

import pytest

from tweetlm.data.clean import CleanConfig, clean_posts, dedup_key, hash_split, normalize_text
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post, Provenance


def _post(i, text, source="s", split=None):
    return Post(id=str(i), text=text, source=source, split=split, provenance=Provenance("f", i, "test"))


def test_normalize():
    c = CleanConfig()
    assert normalize_text("Then &amp; Now  \t ok ", c) == "Then & Now ok"
    assert normalize_text("double &amp;amp; escaped", c) == "double & escaped"
    assert normalize_text("mojibake: donâ€™t", c) == "mojibake: don\u2019t"
    assert normalize_text("a \n\n  b", c) == "a\nb"
    p = CleanConfig(mention_placeholder=True, url_placeholder=True)
    assert normalize_text("@jack see https://t.co/abc and me@mail.com", p) == "@user see http and me@mail.com"


def test_hash_split_is_stable_and_proportional():
    splits = [hash_split("src", str(i), 0.1) for i in range(20000)]
    assert splits == [hash_split("src", str(i), 0.1) for i in range(20000)]
    assert 0.09 < splits.count("val") / len(splits) < 0.11


def test_dedup_prefers_validation_and_accounts_for_everything():
    ledger = Ledger()
    posts = [
        _post(0, "Hello   World", "a", "train"),
        _post(1, "hello world", "b", "val"),
        _post(2, "  ", "a", "train"),
        _post(3, "unique one", "a", "train"),
        _post(4, "Unique one", "a", "train"),
        _post(5, "only val", "b", "val"),
        _post(6, "only val", "b", "val"),
    ]
    for p in posts:
        ledger.seen(p.source)
    out = clean_posts(posts, ledger, CleanConfig())
    assert [p.id for p in out["val"]] == ["1", "5"]
    assert [p.id for p in out["train"]] == ["3"]
    assert dict(ledger.sources["a"].dropped) == {"duplicate_of_val": 1, "empty": 1, "duplicate": 1}
    assert dict(ledger.sources["b"].dropped) == {"duplicate": 1}
    ledger.check({"a": 1, "b": 2})
    with pytest.raises(AssertionError, match="accounting broken"):
        ledger.check({"a": 2, "b": 2})
    assert (
        ledger.equation_lines()[-1]
        == "TOTAL: 7 in = 3 kept + 4 dropped (duplicate 2, duplicate_of_val 1, empty 1) + 0 quarantined"
    )
    assert dedup_key(" A  b ") == "a b"


def test_post_ids_must_be_strings():
    with pytest.raises(TypeError, match="str"):
        Post(id=123, text="x", source="s", provenance=Provenance("f", 0, "r"))
