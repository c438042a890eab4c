"""Ingestion of hostile input (issue "Hard to break"): each bad record is quarantined with a reason and counted,
the rest of the corpus is read, nothing is read from outside the corpus."""

from __future__ import annotations

import json
import zipfile
from collections import Counter

import pyarrow.parquet as pq
import pytest

from tweetlm.data.formats.dispatch import read_corpus
from tweetlm.data.formats.tabular import ColumnMap
from tweetlm.data.ledger import Ledger


def _read(paths):
    ledger = Ledger()
    posts = list(read_corpus([str(p) for p in paths], ledger))
    ledger.check(dict(Counter(p.source for p in posts)))  # in = kept + dropped + quarantined, per source
    return posts, ledger


def _reasons(ledger):
    return [(q.record, q.reason) for q in ledger.quarantine_log]


def test_created_at_out_of_datetime_range_is_quarantined_not_fatal(tmp_path):
    # 0001-01-01T00:00:00+14:00 is 0000-12-31 in UTC: datetime.astimezone raised OverflowError, ending the build
    bad = "0001-01-01T00:00:00+14:00"
    f = tmp_path / "mine.jsonl"
    lines = [
        {"id": "1", "text": "before", "created_at": "2020-05-01T10:00:00Z"},
        {"id": "2", "text": "from year one", "created_at": bad},
        {"id_str": "3", "text": "a v1.1 tweet", "user": {"id_str": "9"}, "created_at": bad},
        {"id": "4", "text": "after"},
    ]
    f.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    csv_file = tmp_path / "sheet.csv"
    csv_file.write_text(f"id,text,created_at\n5,ok,2020-01-01\n6,bad date,{bad}\n", encoding="utf-8")
    posts, ledger = _read([f, csv_file])
    assert [p.id for p in posts] == ["1", "4", "5"]
    assert posts[0].created_at == "2020-05-01T10:00:00Z"
    assert [(q.file, q.record, q.reason) for q in ledger.quarantine_log] == [
        (str(f), 1, "bad_created_at"),
        (str(f), 2, "bad_created_at"),
        (str(csv_file), 1, "bad_created_at"),
    ]
    assert bad in ledger.quarantine_log[0].excerpt


def test_float_bool_nan_exponent_ids_are_quarantined_as_bad_id(tmp_path):
    # the digits of 7.02608E+17 are lost; 1.5, true and NaN are not ids: none may become a made-up id
    f = tmp_path / "mine.jsonl"
    f.write_text(
        '{"id": "7.02608E+17", "text": "spreadsheet"}\n'
        '{"id": 1.5, "text": "float"}\n'
        '{"id": true, "text": "bool"}\n'
        '{"id": NaN, "text": "nan"}\n'
        '{"id": "NaN", "text": "nan as text"}\n'
        '{"id": 702608000000000000, "text": "int id"}\n'
        '{"id_str": "99", "id": 99.0, "text": "id_str wins"}\n'
        '{"text": "no id at all"}\n',
        encoding="utf-8",
    )
    csv_file = tmp_path / "sheet.csv"
    csv_file.write_text("tweet_id,text\n7.02608E+17,mangled\n12,fine\n,empty id\n", encoding="utf-8")
    posts, ledger = _read([f, csv_file])
    assert [p.id for p in posts] == ["702608000000000000", "99", "mine:mine.jsonl:7", "12", "sheet:sheet.csv:2"]
    assert _reasons(ledger) == [(i, "bad_id") for i in range(5)] + [(0, "bad_id")]
    assert "7.02608E+17" in ledger.quarantine_log[0].excerpt


def test_v11_search_response_statuses_are_read_as_posts(tmp_path):
    def status(i, text):
        return {"id": i, "id_str": str(i), "text": text, "user": {"id_str": "7", "screen_name": "me"}}

    page = {
        "statuses": [status(101, "first #one"), status(102, "second"), {"id_str": "103"}],
        "search_metadata": {"count": 3, "max_id_str": "103", "query": "me"},
    }
    f = tmp_path / "search.json"
    f.write_text(json.dumps(page), encoding="utf-8")
    g = tmp_path / "pages.jsonl"
    g.write_text(json.dumps(page) + "\n" + json.dumps({"statuses": [], "search_metadata": {}}) + "\n")
    posts, ledger = _read([f])
    assert [(p.id, p.text, p.author_id) for p in posts] == [("101", "first #one", "7"), ("102", "second", "7")]
    assert posts[0].hashtags == ["one"] and posts[0].provenance.reader == "x_v1"
    assert _reasons(ledger) == [(0, "missing_text")]
    posts, ledger = _read([g])
    assert [p.id for p in posts] == ["101", "102"]
    c = ledger.sources["pages"]
    assert (c.records_in, c.quarantined, dict(c.dropped)) == (4, 1, {"empty_search_response": 1})


def test_zip_member_outside_the_archive_is_quarantined_as_unsafe_path(tmp_path):
    z = tmp_path / "upload.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("posts.jsonl", '{"id": "1", "text": "inside"}\n')
        zf.writestr("../../x.jsonl", '{"id": "2", "text": "outside"}\n')
        zf.writestr("/etc/y.jsonl", '{"id": "3", "text": "absolute"}\n')
    posts, ledger = _read([z])
    assert [p.text for p in posts] == ["inside"]
    assert sorted((q.reason, q.file) for q in ledger.quarantine_log) == [
        ("unsafe_path", f"{z}/../../x.jsonl"),
        ("unsafe_path", f"{z}//etc/y.jsonl"),
    ]
    assert not (tmp_path.parent / "x.jsonl").exists() and not list(tmp_path.glob("*.jsonl"))
    assert sum(c.records_in for c in ledger.sources.values()) == 3


def test_csv_unterminated_quote_is_quarantined_not_merged(tmp_path):
    f = tmp_path / "posts.csv"
    f.write_text(
        'id,text\n1,fine\n2,"never closed\n3,third\n4,"a ""quoted"" word"\n5,"multi\nline"\n6,last\n',
        encoding="utf-8",
    )
    posts, ledger = _read([f])
    assert [(p.id, p.text) for p in posts] == [
        ("1", "fine"),
        ("3", "third"),
        ("4", 'a "quoted" word'),
        ("5", "multi\nline"),
        ("6", "last"),
    ]
    assert _reasons(ledger) == [(1, "unterminated_quote")]
    assert ledger.quarantine_log[0].excerpt.startswith('2,"never closed')


def test_one_very_long_record_is_quarantined_as_too_long_not_built(tmp_path):
    # a 50 MB line made MinHash allocate 12.5 GiB and a 200 MB one stalled lingua: quarantine it while reading
    big = "word " * 600_000  # 3 MB of text
    f = tmp_path / "mine.jsonl"
    f.write_text(
        json.dumps({"id": "1", "text": "short"}) + "\n" + json.dumps({"id": "2", "text": big}) + "\n"
        '{"id": "3", "text": "' + "x" * 5000 + '"}\n',
        encoding="utf-8",
    )
    csv_file = tmp_path / "sheet.csv"
    csv_file.write_text(f"id,text\n4,{big}\n5,fine\n", encoding="utf-8")
    posts, ledger = _read([f, csv_file])  # the default cap (100,000 characters)
    assert [p.id for p in posts] == ["1", "3", "5"]
    assert [(q.file, q.record, q.reason) for q in ledger.quarantine_log] == [
        (str(f), 1, "too_long"),
        (str(csv_file), 0, "too_long"),
    ]
    assert ledger.quarantine_log[0].excerpt.startswith("3000000 characters: word word")
    # a low cap: a line over 200 bytes per allowed character is quarantined before it is parsed
    ledger = Ledger()
    posts = list(read_corpus([str(f)], ledger, max_chars=1000))
    assert [p.id for p in posts] == ["1"]
    assert [(q.record, q.reason) for q in ledger.quarantine_log] == [(1, "too_long"), (2, "too_long")]
    assert ledger.quarantine_log[0].excerpt.startswith(f"a line of {len(json.dumps({'id': '2', 'text': big}))} bytes")
    c = ledger.sources["mine"]
    assert (c.records_in, c.kept, c.quarantined) == (3, 1, 2)
    assert [p.id for p in read_corpus([str(f)], Ledger(), max_chars=0)] == ["1", "2", "3"]  # 0: no limit


def test_utf16_nul_byte_and_corrupt_zst_files_in_a_folder_are_quarantined_not_fatal(tmp_path):
    # each stopped the whole build with "not a text file"; inside a folder only that file is lost, and says why
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.jsonl").write_text('{"id": "1", "text": "kept"}\n', encoding="utf-8")
    (d / "wide.jsonl").write_bytes('{"id": "2", "text": "utf-16"}\n'.encode("utf-16"))
    (d / "nul.csv").write_bytes(b"id,text\n3,a\x00b\n")
    (d / "posts.jsonl.zst").write_bytes(bytes(range(256)) * 8)
    (d / "also.jsonl.gz").write_bytes(b'{"id": "4", "text": "not gzip at all"}\n')
    posts, ledger = _read([d])
    assert [p.text for p in posts] == ["kept"]
    assert sorted((q.file, q.record, q.reason) for q in ledger.quarantine_log) == [
        (str(d / "also.jsonl.gz"), 0, "unreadable_file"),
        (str(d / "nul.csv"), 0, "nul_byte"),
        (str(d / "posts.jsonl.zst"), 0, "corrupt_compressed"),
        (str(d / "wide.jsonl"), 0, "utf16_text"),
    ]
    totals = ledger.totals()
    assert (totals.records_in, totals.kept, totals.quarantined) == (5, 1, 4)
    # everything given unreadable, or the one file named: still a clear error
    with pytest.raises(ValueError, match=r"wide\.jsonl is not a text file \(UTF-16 text; save it as UTF-8"):
        read_corpus([str(d / "wide.jsonl")], Ledger())
    with pytest.raises(ValueError, match=r"is not a text file"):
        read_corpus([str(d / "nul.csv"), str(d / "posts.jsonl.zst")], Ledger())


def test_tweets_repeated_in_one_v2_page_includes_are_each_counted(tmp_path):
    # includes.tweets was read into a dict by id before counting: a repeat vanished and "in" came up short
    def tweet(i, text):
        return {"id": str(i), "text": text, "author_id": "7", "edit_history_tweet_ids": [str(i)]}

    page = {
        "data": [tweet(1, "in data")],
        "includes": {"tweets": [tweet(2, "quoted"), tweet(2, "quoted"), tweet(1, "in data"), {"text": "no id"}]},
    }
    f = tmp_path / "pages.jsonl"
    f.write_text(json.dumps(page) + "\n", encoding="utf-8")
    posts, ledger = _read([f])
    assert [p.id for p in posts] == ["1", "2"]
    c = ledger.sources["pages"]
    assert (c.records_in, c.kept, dict(c.dropped), c.quarantined) == (
        5,
        2,
        {"duplicate_in_page": 1, "duplicate_id": 1},
        1,
    )
    assert _reasons(ledger) == [(0, "missing_id")]


# ---------------------------------------------------------------------------------------------------------
# texts the source cut off: marked truncated, counted, droppable


def test_v2_retweet_without_its_original_is_a_retweet_marked_truncated(tmp_path):
    # a page fetched without referenced_tweets: "RT @user: ..." came out as kind=post, its cut text unmarked
    cut = "RT @nasa: Today we launched the most powerful telescope ever built, and its first images will reach us\u2026"
    page = {
        "data": [
            {"id": "1", "text": cut, "author_id": "7", "edit_history_tweet_ids": ["1"]},
            {"id": "2", "text": "RT @nasa: Liftoff!", "author_id": "7", "edit_history_tweet_ids": ["2"]},
            {  # the original is referenced but not in includes (deleted): the text stays cut
                "id": "3",
                "text": cut,
                "author_id": "7",
                "referenced_tweets": [{"type": "retweeted", "id": "99"}],
                "edit_history_tweet_ids": ["3"],
            },
            {"id": "4", "text": "my own words\u2026", "author_id": "7", "edit_history_tweet_ids": ["4"]},
        ]
    }
    f = tmp_path / "page.jsonl"
    f.write_text(json.dumps(page) + "\n", encoding="utf-8")
    posts, _ = _read([f])
    assert [(p.id, p.kind, p.retweeted_id, p.truncated) for p in posts] == [
        ("1", "retweet", None, True),
        ("2", "retweet", None, False),  # X cuts with an ellipsis: this one is whole
        ("3", "retweet", "99", True),
        ("4", "post", None, False),
    ]
    assert posts[0].text == cut


def test_v11_compat_truncated_text_drops_its_link_to_the_full_post_and_is_marked(tmp_path):
    # the compat text kept "... https://twitter.com/i/web/status/<id>" (the t.co link expanded) as if it were words
    def compat(i, text, **extra):
        tco = f"https://t.co/AbCdEf{i:04d}"
        return {
            "id_str": str(i),
            "text": f"{text}\u2026 {tco}",
            "truncated": True,
            "user": {"id_str": "7", "screen_name": "me"},
            "entities": {
                "urls": [{"url": tco, "expanded_url": f"https://twitter.com/i/web/status/{i}", "indices": [0, 0]}]
            },
            **extra,
        }

    cut = compat(10, "A long thought about trains that X cut at one hundred and forty characters, so the rest")
    full = compat(11, "The same, but this payload also carries the extended tweet with the full text of the")
    full["extended_tweet"] = {"full_text": "The whole text, as its author wrote it.", "entities": {}}
    rt = {
        "id_str": "12",
        "text": "RT @me: A long thought\u2026",
        "user": {"id_str": "8", "screen_name": "you"},
        "retweeted_status": compat(13, "A long thought about buses that X cut too"),
    }
    no_entity = {**compat(14, "Cut, and the t.co link has no entity"), "entities": {}}
    f = tmp_path / "stream.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in (cut, full, rt, no_entity)), encoding="utf-8")
    posts, _ = _read([f])
    by_id = {p.id: p for p in posts}
    assert by_id["10"].text == (
        "A long thought about trains that X cut at one hundred and forty characters, so the rest\u2026"
    )
    assert by_id["10"].truncated and by_id["10"].urls == [] and by_id["10"].entities == []
    assert (by_id["11"].text, by_id["11"].truncated) == ("The whole text, as its author wrote it.", False)
    assert by_id["13"].truncated and by_id["13"].text.endswith("buses that X cut too\u2026")
    assert by_id["12"].text == "RT @me: " + by_id["13"].text and by_id["12"].truncated  # built from a cut original
    assert by_id["14"].text == "Cut, and the t.co link has no entity\u2026" and by_id["14"].truncated


def _lengths_text(n: int, i: int) -> str:
    """A distinct text of exactly ``n`` characters."""
    return (f"post {i} " + "word " * 100)[:n]


def test_tabular_column_cut_at_a_fixed_length_is_marked_with_a_warning(tmp_path):
    # an export that capped snscrape's rawContent at 278 characters was read as if every text were whole
    import csv

    lengths = [40 + (i * 37) % 360 for i in range(300)]  # 40..399 characters, spread evenly
    f = tmp_path / "scraped.csv"
    with open(f, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "date", "rawContent"])
        for i, n in enumerate(lengths):
            w.writerow([1000 + i, "2023-01-01", _lengths_text(min(n, 278), i)])
    ledger = Ledger()
    with pytest.warns(UserWarning, match=r"--map text=rawContent looks cut at 278 characters \(100 posts"):
        posts = list(read_corpus([str(f)], ledger, ColumnMap.parse("text=rawContent")))
    assert len(posts) == 300 and ledger.totals().kept == 300  # marked, not dropped: the accounting is unchanged
    assert {p.id for p in posts if p.truncated} == {str(1000 + i) for i, n in enumerate(lengths) if n >= 278}
    # the same texts uncut, and texts piled up at X's limit of 280 (posts that fill it): nothing is marked
    for name, cap in (("whole.csv", 10_000), ("at_limit.csv", 280)):
        g = tmp_path / name
        rows = [f"{1000 + i},{_lengths_text(min(n, cap), i)}" for i, n in enumerate(lengths)]
        g.write_text("id,text\n" + "\n".join(rows) + "\n", encoding="utf-8")
        posts, _ = _read([g])
        assert not any(p.truncated for p in posts), name


def test_drop_truncated_keeps_cut_texts_out_of_the_corpus_and_counts_them(tmp_path):
    from tweetlm.data.pipeline.build import build_corpus
    from tweetlm.data.pipeline.config import PipelineConfig

    cut = "RT @nasa: Today we launched the most powerful telescope ever built, and its first images will reach us\u2026"
    page = {
        "data": [
            {"id": "1", "text": cut, "author_id": "7", "edit_history_tweet_ids": ["1"]},
            {"id": "2", "text": "The tram lines on the east side reopen on Monday morning", "author_id": "7"},
            {
                "id": "3",
                "text": "Any good bakery near the old harbour? Asking for a friend",
                "author_id": "8",
            },
        ]
    }
    src = tmp_path / "in"
    src.mkdir()
    (src / "page.jsonl").write_text(json.dumps(page) + "\n", encoding="utf-8")
    kept = build_corpus([str(src)], tmp_path / "kept", PipelineConfig(workers=1, val_fraction=0.0))
    dropped = build_corpus(
        [str(src)], tmp_path / "dropped", PipelineConfig(workers=1, val_fraction=0.0, drop_truncated=True)
    )
    rows = pq.read_table(tmp_path / "kept" / "train.parquet").to_pylist()
    assert {r["id"]: r["truncated"] for r in rows} == {"1": True, "2": False, "3": False}
    assert kept["truncated"] == {"kept": 1, "dropped": 0} and kept["kept"] == 3
    assert "`truncated`): 1 kept and marked, 0 dropped" in (tmp_path / "kept" / "report.md").read_text()
    # dropped: out of train.parquet (what the tokenizer and training read), booked as truncated_text
    assert pq.read_table(tmp_path / "dropped" / "train.parquet").column("id").to_pylist() == ["2", "3"]
    assert dropped["truncated"] == {"kept": 0, "dropped": 1}
    assert dropped["dropped"] == {"truncated_text": 1} and dropped["steps"][-1]["dropped"] == {"truncated_text": 1}
    assert dropped["records_in"] == 3 == dropped["kept"] + 1


def test_payloads_that_are_not_posts_are_dropped_not_quarantined(tmp_path):
    # oEmbed responses, retweeter id lists, bare v2 users and Mastodon translations were quarantined as missing_text
    oembed = {
        "url": "https://twitter.com/jack/status/20",
        "author_name": "jack",
        "author_url": "https://twitter.com/jack",
        "html": '<blockquote class="twitter-tweet"><p lang="en" dir="ltr">just setting up my twttr</p>'
        '&mdash; jack (@jack) <a href="https://twitter.com/jack/status/20">March 21, 2006</a></blockquote>',
        "width": 550,
        "height": None,
        "type": "rich",
        "cache_age": "3153600000",
        "provider_name": "Twitter",
        "provider_url": "https://twitter.com",
        "version": "1.0",
    }
    ids = {"ids": [12, 13], "next_cursor": 0, "next_cursor_str": "0", "previous_cursor": 0, "previous_cursor_str": "0"}
    users_page = {"data": [{"id": "12", "name": "Jack", "username": "jack"}], "meta": {"result_count": 1}}
    user = {"id": "13", "name": "Ev", "username": "ev", "public_metrics": {"followers_count": 5}}
    translation = {
        "content": "<p>Hello world</p>",
        "spoiler_text": "",
        "media_attachments": [],
        "poll": None,
        "detected_source_language": "de",
        "provider": "DeepL.com",
    }
    # real posts without their text stay missing_text
    v2_no_text = {"id": "5", "author_id": "7", "edit_history_tweet_ids": ["5"], "created_at": "2020-01-01T00:00:00Z"}
    generic_no_text = {"id": "6", "name": "Jack", "username": "jack", "text": None}
    kept = {"id": "7", "text": "a post"}
    f = tmp_path / "mixed.jsonl"
    values = [oembed, ids, users_page, user, translation, v2_no_text, generic_no_text, kept]
    f.write_text("".join(json.dumps(v) + "\n" for v in values), encoding="utf-8")
    g = tmp_path / "oembed.json"
    g.write_text(json.dumps(oembed), encoding="utf-8")
    posts, ledger = _read([f, g])
    assert [p.id for p in posts] == ["7"]
    assert _reasons(ledger) == [(5, "missing_text"), (6, "missing_text")]
    assert dict(ledger.sources["mixed"].dropped) == {"not_a_post": 5}
    assert dict(ledger.sources["oembed"].dropped) == {"not_a_post": 1}
    # under a column map, a record holding the mapped text column is a post whatever else it holds
    h = tmp_path / "mapped.jsonl"
    h.write_text(json.dumps({**user, "body": "my words"}) + "\n", encoding="utf-8")
    ledger = Ledger()
    assert [p.text for p in read_corpus([str(h)], ledger, ColumnMap.parse("text=body"))] == ["my words"]


def test_jetstream_update_wins_over_an_older_longer_version(tmp_path):
    # duplicates kept the longest text: a post shortened by an update came back in its old, longer form
    def commit(op, rkey, text, t):
        rec = {"$type": "app.bsky.feed.post", "text": text, "createdAt": "2024-11-20T10:00:00Z"}
        c = {"rev": f"3l{t}", "operation": op, "collection": "app.bsky.feed.post", "rkey": rkey, "record": rec}
        return {"did": "did:plc:bob", "time_us": 1732096800000000 + t, "kind": "commit", "commit": c}

    events = [
        commit("create", "aaa", "first draft with a typo and far too many words in it", 1),
        commit("update", "aaa", "final, short", 5),
        commit("create", "bbb", "never edited", 2),
        commit("update", "ccc", "edited later, but arrived first", 9),  # the stream's order is not the edit order
        commit("create", "ccc", "the original text of ccc, which is the longer one", 3),
    ]
    f = tmp_path / "jetstream.jsonl"
    f.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    posts, ledger = _read([f])
    uri = "at://did:plc:bob/app.bsky.feed.post/"
    assert [(p.id, p.text) for p in posts] == [
        (uri + "aaa", "final, short"),
        (uri + "bbb", "never edited"),
        (uri + "ccc", "edited later, but arrived first"),
    ]
    assert dict(ledger.sources["jetstream"].dropped) == {"superseded_by_edit": 2}


def test_huge_ids_deep_nesting_and_huge_csv_fields_cost_one_record_each(tmp_path):
    """Issue 17: a 5,000-digit id (a string, or a JSON number Python refuses to convert) ended the read of its
    file (ValueError) or the build; a line nested 100,000 deep raised RecursionError; a CSV field over 131,072
    characters hit the csv module's field limit. Each now costs its own record, the rest is read."""
    digits = "9" * 5000
    jl = tmp_path / "ids.jsonl"
    jl.write_text(
        f'{{"id": "{digits}", "text": "a string id"}}\n{{"id": {digits}, "text": "a number id"}}\n'
        '{"id": "2", "text": "fine"}\n' + "[" * 100_000 + "]" * 100_000 + '\n{"id": "3", "text": "after"}\n',
        encoding="utf-8",
    )
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(f'id,text\n1,"{"y" * 140_000}"\n{digits},big id\n4,fine too\n', encoding="utf-8")
    posts, ledger = _read([jl, sheet])
    assert sorted(p.id for p in posts) == ["2", "3", "4"] and ledger.totals().quarantined == 5
    posts, ledger = _read([jl])
    assert [p.id for p in posts] == ["2", "3"]
    assert [r for _, r in _reasons(ledger)] == ["bad_id", "bad_id", "too_deep"]
    posts, ledger = _read([sheet])
    assert [p.id for p in posts] == ["4"] and sorted(r for _, r in _reasons(ledger)) == ["bad_id", "too_long"]


def test_x_archive_tweets_with_wrong_types_cost_one_record_each(tmp_path):
    """Was: a tweets.js entry with a number for full_text, or for entities.urls, ended the whole build with a
    TypeError (the archive path had no per-record guard)."""
    arch = tmp_path / "arch"
    arch.mkdir()
    entries = [
        {"tweet": {"id_str": "990002", "full_text": 7}},
        {"tweet": {"id_str": "990003", "full_text": ["a"]}},
        {"tweet": {"id_str": "990004", "full_text": "ok post", "entities": {"urls": 5}}},
        {"tweet": {"id_str": "990005", "full_text": "fine post"}},
    ]
    (arch / "tweets.js").write_text("window.YTD.tweets.part0 = " + json.dumps(entries), encoding="utf-8")
    posts, ledger = _read([arch])
    assert [p.id for p in posts] == ["990005"]
    assert [r for _, r in _reasons(ledger)] == ["missing_text", "missing_text", "malformed_record"]


def test_a_symlink_loop_or_a_dangling_link_in_a_folder_is_named_and_the_rest_read(tmp_path, caplog):
    """Was: `ln -s b loop/a; ln -s a loop/b` inside the corpus folder ended the build ("Symlink loop")."""
    (tmp_path / "loop").mkdir()
    (tmp_path / "loop" / "a").symlink_to("b")
    (tmp_path / "loop" / "b").symlink_to("a")
    (tmp_path / "loop" / "dangling.jsonl").symlink_to("nowhere.jsonl")
    (tmp_path / "posts.jsonl").write_text('{"id": "1", "text": "a post"}\n', encoding="utf-8")
    posts, _ = _read([tmp_path])
    assert [p.id for p in posts] == ["1"]
    assert sum("broken or looping symbolic link" in r.message for r in caplog.records) == 3


def test_a_small_file_of_two_lengths_is_not_taken_for_a_cut_column(tmp_path):
    """An attacker's finding: 20 posts 'compressed post {i} about weather' (31 and 32 characters) were flagged
    as a column cut at 32, and drop_truncated dropped half of them."""
    f = tmp_path / "small.csv"
    f.write_text("id,text\n" + "".join(f"{i},compressed post {i} about weather\n" for i in range(20)), encoding="utf-8")
    posts, _ = _read([f])
    assert len(posts) == 20 and not any(p.truncated for p in posts)


def test_a_v2_page_whose_errors_is_one_string_is_one_api_error(tmp_path):
    f = tmp_path / "page.jsonl"
    f.write_text(json.dumps({"data": [{"id": "5", "text": "hello"}], "errors": "boom"}) + "\n", encoding="utf-8")
    posts, ledger = _read([f])
    assert [p.id for p in posts] == ["5"] and [r for _, r in _reasons(ledger)] == ["api_error"]
