"""Readers: record accounting on synthetic files, format repairs, and facts about the shared corpora."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tweetlm.data.formats.dispatch import plan_corpus, read_corpus
from tweetlm.data.formats.fivethirtyeight import _damage_byte, _undo_macroman
from tweetlm.data.formats.ibrohim import repair_bytes_repr_text
from tweetlm.data.formats.semeval import repair_semeval_text
from tweetlm.data.ledger import Ledger

CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"


def _read(paths, ledger=None):
    ledger = ledger or Ledger()
    posts = list(read_corpus([str(p) for p in paths], ledger))
    return posts, ledger


def _assert_equation(ledger: Ledger, posts) -> None:
    kept = Counter(p.source for p in posts)
    for source, c in ledger.sources.items():
        assert c.records_in == kept[source] + sum(c.dropped.values()) + c.quarantined, source
    ledger.check(dict(kept))


# ---------------------------------------------------------------------------------------------------------
# synthetic inputs


def test_jsonl_accounts_for_broken_and_textless_lines(tmp_path):
    f = tmp_path / "mine.jsonl"
    lines = [
        json.dumps({"id": 1234567890123456789, "text": "first", "created_at": "2020-05-01T10:00:00+02:00"}),
        '{"id": 2, "text": "broken',
        json.dumps({"id": "3", "lang": "en"}),
        "",
        json.dumps(["not", "an", "object"]),
        json.dumps({"id_str": "99", "id": 99.0, "text": "second \u2764", "lang": "en"}),
    ]
    f.write_bytes(("\n".join(lines) + "\n").encode("utf-8") + b"\xff\xfe not utf-8\n")
    posts, ledger = _read([f])

    c = ledger.sources["mine"]
    assert c.records_in == 6  # the blank line is not a record
    assert [p.text for p in posts] == ["first", "second \u2764"]
    assert c.records_in == len(posts) + sum(c.dropped.values()) + c.quarantined
    assert [(q.file, q.record, q.reason) for q in ledger.quarantine_log] == [
        (str(f), 1, "invalid_json"),
        (str(f), 2, "missing_text"),
        (str(f), 3, "not_an_object"),
        (str(f), 5, "invalid_utf8"),
    ]
    assert posts[0].id == "1234567890123456789" and posts[0].created_at == "2020-05-01T08:00:00Z"
    assert posts[1].id == "99" and posts[1].lang == "en"
    assert posts[0].provenance.record == 0 and posts[1].provenance.record == 4
    ledger.check({"mine": 2})


def test_csv_bad_row_is_quarantined_and_ids_stay_exact(tmp_path):
    f = tmp_path / "posts.csv"
    f.write_text(
        "tweet_id,text,created_at\n"
        "1095366917216145409,hello there,Wed Aug 27 13:08:45 +0000 2008\n"
        "2,too,many,fields\n"
        '3,"a ""quoted"", multi\nline post",\n'
        "7.02608E+17,spreadsheet mangled id,\n",
        encoding="utf-8",
    )
    posts, ledger = _read([f])
    assert [p.id for p in posts] == ["1095366917216145409", "3"]  # a mangled id is refused, never made up
    assert posts[0].created_at == "2008-08-27T13:08:45Z"
    assert posts[1].text == 'a "quoted", multi\nline post'
    assert [(q.file, q.record, q.reason) for q in ledger.quarantine_log] == [
        (str(f), 1, "wrong_field_count"),
        (str(f), 3, "bad_id"),
    ]
    c = ledger.sources["posts"]
    assert (c.records_in, c.quarantined, c.kept) == (4, 2, 2)
    _assert_equation(ledger, posts)


def test_txt_one_post_per_line(tmp_path):
    folder = tmp_path / "myposts"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"one\r\n\r\nthree \xe2\x80\xa8 same post\nbad \xc3(\n")
    (folder / "README.md").write_text("# not posts\n")
    posts, ledger = _read([folder])
    assert [p.text for p in posts] == ["one", "", "three \u2028 same post"]
    assert {p.source for p in posts} == {"myposts/a"}
    assert [p.id for p in posts] == ["myposts/a:a.txt:0", "myposts/a:a.txt:1", "myposts/a:a.txt:2"]
    assert [(q.record, q.reason) for q in ledger.quarantine_log] == [(3, "invalid_utf8")]
    _assert_equation(ledger, posts)


def test_missing_path_and_binary_files_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match=r"does not exist; pass --corpus \.\./shared/corpora"):
        read_corpus([str(tmp_path / "nope")], Ledger())
    garbage = tmp_path / "garbage.txt"
    garbage.write_bytes(bytes(range(128, 256)) * 3)  # one "line", no NUL, nothing decodes
    with pytest.raises(ValueError, match=r"garbage\.txt is not a text file"):
        read_corpus([str(garbage)], Ledger())
    png = tmp_path / "image.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(ValueError, match=r"image\.csv is not a text file"):
        read_corpus([str(png)], Ledger())
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\x01\x02")
    with pytest.raises(ValueError, match=r"no readable posts .*blob\.bin"):
        read_corpus([str(blob)], Ledger())


def test_only_documentation_is_an_error_that_lists_it(tmp_path):
    (tmp_path / "README.md").write_text("hi")
    (tmp_path / "LICENSE").write_text("MIT")
    with pytest.raises(ValueError, match=r"no readable posts.*README\.md \(documentation, skipped\)"):
        read_corpus([tmp_path], Ledger())


def _tweeteval_like(root: Path) -> None:
    te = root / "tweeteval"
    (te / "emotion").mkdir(parents=True)
    (te / "SOURCE.txt").write_text("repo: test\n")
    (te / "emotion" / "mapping.txt").write_text("0\tanger\n1\tjoy")
    (te / "emotion" / "train_text.txt").write_text("so angry \n\nyay \n")
    (te / "emotion" / "train_labels.txt").write_text("0\n1\n")
    (te / "emotion" / "val_text.txt").write_text("meh\n")
    (te / "emotion" / "val_labels.txt").write_text("0\n")


def test_text_label_pairs_and_source_names_do_not_depend_on_the_folder_given(tmp_path):
    _tweeteval_like(tmp_path)
    a, la = _read([tmp_path])
    b, lb = _read([tmp_path / "tweeteval" / "emotion"])
    assert [(p.source, p.id, p.split, p.text, p.labels) for p in a] == [
        (p.source, p.id, p.split, p.text, p.labels) for p in b
    ]
    assert [(p.id, p.split, p.text, p.labels, p.lang) for p in a] == [
        ("tweeteval/emotion:train_text.txt:0", "train", "so angry ", {"emotion": "anger"}, "en"),
        ("tweeteval/emotion:train_text.txt:1", "train", "", {"emotion": "joy"}, "en"),  # empty: cleaning's call
        ("tweeteval/emotion:val_text.txt:0", "val", "meh", {"emotion": "anger"}, "en"),
    ]
    # the third text line has no label: quarantined, not silently dropped or mislabelled
    assert [(Path(q.file).name, q.record, q.reason) for q in la.quarantine_log] == [
        ("train_text.txt", 2, "missing_label")
    ]
    c = la.sources["tweeteval/emotion"]
    assert (c.records_in, c.quarantined, c.kept) == (4, 1, 3)
    _assert_equation(la, a)
    _assert_equation(lb, b)


def test_tweetqa_drops_repeated_tweets_within_the_file(tmp_path):
    qa = [
        {"Question": "q1", "Answer": ["a"], "Tweet": "Hello world\u2014 A (@a) May 1, 2016", "qid": "1"},
        {"Question": "q2", "Answer": ["b"], "Tweet": "Hello world\u2014 A (@a) May 1, 2016", "qid": "2"},
        {"Question": "q3", "Answer": ["c"], "Tweet": "Other", "qid": "3"},
        {"Question": "q4", "Answer": ["d"], "qid": "4"},
    ]
    (tmp_path / "tweetqa").mkdir()
    f = tmp_path / "tweetqa" / "train.json"
    f.write_text(json.dumps(qa))
    posts, ledger = _read([tmp_path / "tweetqa"])
    assert [(p.id, p.text) for p in posts] == [
        ("tweetqa:train.json:0", "Hello world\u2014 A (@a) May 1, 2016"),
        ("tweetqa:train.json:2", "Other"),
    ]
    # every question asked about a tweet travels with it, for the fine-tuning set (data.sft)
    assert [q["question"] for q in json.loads(posts[0].labels["tweetqa"])] == ["q1", "q2"]
    assert json.loads(posts[1].labels["tweetqa"]) == [{"qid": "3", "question": "q3", "answers": ["c"]}]
    c = ledger.sources["tweetqa"]
    assert (c.records_in, dict(c.dropped), c.quarantined) == (4, {"same_tweet_as_earlier_question": 1}, 1)
    assert [(q.record, q.reason) for q in ledger.quarantine_log] == [(3, "missing_text")]
    _assert_equation(ledger, posts)


def test_indolem_thread_follows_order_positions(tmp_path):
    d = tmp_path / "indolem_tweets" / "tweet_ordering"
    d.mkdir(parents=True)
    (d / "dev0.json").write_text(
        json.dumps([{"tweets": ["second", "third", "first"], "order": [1, 2, 0]}, {"tweets": ["x"], "order": [3]}])
    )
    posts, ledger = _read([d])
    assert [(p.text, p.kind, p.split, p.lang, p.source, p.id) for p in posts] == [
        ("first\nsecond\nthird", "thread", "val", "id", "tweet_ordering", "tweet_ordering:dev0.json:0")
    ]
    assert [(q.record, q.reason) for q in ledger.quarantine_log] == [(1, "invalid_thread")]


# ---------------------------------------------------------------------------------------------------------
# format repairs


def test_repair_semeval_text():
    assert repair_semeval_text(r'"Why is \""""Happy\"""" trending? It\u2019s on\u002c ok"') == (
        'Why is "Happy" trending? It\u2019s on, ok'
    )
    assert repair_semeval_text(r"surrogates \ud83d\ude02 lone \ud83d kept") == "surrogates \U0001f602 lone \\ud83d kept"
    assert repair_semeval_text('"one ""level"" of quoting, here"') == 'one "level" of quoting, here'
    # TweetEval's @user masking ate one outer quote: the rest still shows CSV escaping
    assert repair_semeval_text('@user said ""Generally"" ok :)" ') == '@user said "Generally" ok :) '
    assert repair_semeval_text('"lost its closing quote, here') == "lost its closing quote, here"
    assert repair_semeval_text('"a real quote" he said') == '"a real quote" he said'
    # a file that was never CSV-quoted keeps a tweet that quotes another
    assert repair_semeval_text('"@a: quoted, tweet"', csv_quoted=False) == '"@a: quoted, tweet"'


def test_repair_bytes_repr_text():
    assert repair_bytes_repr_text(r"USER lol \xf0\x9f\x98\x84\xf0\x9f\x98\x84'") == "USER lol \U0001f604\U0001f604"
    expected = "a\nb can't \\x41 end \\xf0\\x9f\\x98\\xa"  # a truncated escape stays literal
    assert repair_bytes_repr_text(r"a\nb can\'t \\x41 end \xf0\x9f\x98\xa") == expected
    assert repair_bytes_repr_text(r"no delimiter \\'") == "no delimiter \\"


def _damage(text: str, rounds: int) -> bytes:
    b = text.encode("utf-8")
    for _ in range(rounds):
        b = bytes(_damage_byte(x) for x in b)
    return b


@pytest.mark.parametrize("rounds", [1, 2])
def test_undo_macroman_inverts_the_damage(rounds):
    text = "He\u2019s \u201cback\u201d \u2013 Erdo\u011fan, Nguy\u1ec5n, caf\u00e9 \u2705 ok\r2nd line"
    assert _damage(text, rounds) != text.encode("utf-8")
    assert _undo_macroman(_damage(text, rounds), rounds) == text.replace("\r", "\n")
    # the ellipsis loses its last byte to "_": restored before a link, unknown (U+FFFD) mid-text
    assert _undo_macroman(_damage("cut\u2026 https://t.co/x", rounds), rounds) == "cut\u2026 https://t.co/x"
    assert _undo_macroman(_damage("a\u2026b", rounds), rounds) == "a\ufffdb"
    # a flag loses its lead byte F0 in round one (recoverable) and a tail byte in round two (not)
    flag = "#USA\U0001f1fa\U0001f1f8"
    assert _undo_macroman(_damage(flag, rounds), rounds) == (flag if rounds == 1 else "#USA\ufffd\U0001f1f8")


# ---------------------------------------------------------------------------------------------------------
# the shared corpora


@pytest.fixture(scope="module")
def shared():
    if not CORPORA.is_dir():
        pytest.skip(f"shared corpora not found at {CORPORA} (they sit beside the repo in this project's checkouts)")
    ledger = Ledger()
    posts = list(read_corpus([str(CORPORA)], ledger))
    return posts, ledger, {(p.source, p.id): p for p in posts}


def test_shared_equation_holds_for_every_source(shared):
    posts, ledger, _ = shared
    _assert_equation(ledger, posts)
    expected_sources = {
        "tweeteval/emoji", "tweeteval/emotion", "tweeteval/hate", "tweeteval/irony", "tweeteval/offensive",
        "tweeteval/sentiment", "tweeteval/stance/abortion", "tweeteval/stance/atheism", "tweeteval/stance/climate",
        "tweeteval/stance/feminist", "tweeteval/stance/hillary", "semeval2017_task4", "davidson_hate_offensive",
        "fivethirtyeight_tweets/mayweather-mcgregor_tweets",
        "fivethirtyeight_tweets/trump-twitter_realDonaldTrump_poll_tweets",
        "fivethirtyeight_tweets/twitter-ratio_BarackObama", "fivethirtyeight_tweets/twitter-ratio_realDonaldTrump",
        "us_airline_sentiment", "id_hatespeech_ibrohim2019", "indolem_tweets/sentiment",
        "indolem_tweets/tweet_ordering", "tweetqa",
    } | {f"xlmt_umsab_sentiment/{lang}" for lang in
         ["arabic", "english", "french", "german", "hindi", "italian", "portuguese", "spanish"]}  # fmt: skip
    assert set(ledger.sources) == expected_sources
    assert all(isinstance(p.id, str) for p in posts)
    records_in = {s: c.records_in for s, c in ledger.sources.items()}
    assert records_in["tweeteval/emoji"] == 50_000 and records_in["semeval2017_task4"] == 50_334
    assert records_in["xlmt_umsab_sentiment/arabic"] == 1839 + 324
    assert records_in["davidson_hate_offensive"] == 24_783 and records_in["us_airline_sentiment"] == 14_640
    assert sum(records_in[s] for s in records_in if s.startswith("tweeteval/")) == 85_602


def test_shared_tweetqa_and_indolem_counts(shared):
    posts, ledger, _ = shared
    qa = ledger.sources["tweetqa"]
    assert (qa.records_in, qa.kept, dict(qa.dropped)) == (10_692, 5_119, {"same_tweet_as_earlier_question": 5_573})
    threads = [p for p in posts if p.source == "indolem_tweets/tweet_ordering"]
    assert len(threads) == 6_088 and Counter(p.split for p in threads) == {"train": 5_328, "val": 760}
    assert all(p.kind == "thread" and p.lang == "id" for p in threads)
    assert sum(p.text.count("\n") + 1 for p in threads) == 20_264  # README: 20.3k posts
    # train0.json record 0, order [1, 2, 0]: the tweet at index 2 opens the thread
    assert threads[760].id == "indolem_tweets/tweet_ordering:train0.json:0"
    assert threads[760].text.startswith("High-paid skills yg sangat mudah dipelajari")


def test_shared_semeval_escapes_become_characters(shared):
    _, _, by_id = shared
    p = by_id[("semeval2017_task4", "264183816548130816")]
    assert p.text == "Gas by my house hit $3.39!!!! I\u2019m going to Chapel Hill on Sat. :)"
    assert (p.split, p.lang, p.labels) == ("train", "en", {"sentiment": "positive"})
    q = by_id[("semeval2017_task4", "212392538055778304")]
    assert q.text == 'Why is "Happy Valentines Day" trending? It\u2019s on the 14th of February not 12th of June smh..'
    t = by_id[("semeval2017_task4", "626437371999977472")]  # 2016test: its 4th column is 5 h off the id's time
    assert t.created_at is None and t.split is None
    assert not any("\\u2019" in p.text or "\\u002c" in p.text for p in shared[0])


def test_shared_indonesian_byte_escapes_become_emoji(shared):
    _, ledger, by_id = shared
    p = by_id[("id_hatespeech_ibrohim2019", "id_hatespeech_ibrohim2019:re_dataset.csv:5")]
    assert p.text == "USER Ya bani taplak dkk \U0001f604\U0001f604\U0001f604"
    assert (p.lang, p.labels["HS"], p.labels["Abusive"]) == ("id", "1", "1")
    assert ledger.sources["id_hatespeech_ibrohim2019"].records_in == 13_169


def test_shared_twitter_ratio_mojibake_is_undone(shared):
    _, _, by_id = shared
    trump = "fivethirtyeight_tweets/twitter-ratio_realDonaldTrump"
    obama = "fivethirtyeight_tweets/twitter-ratio_BarackObama"
    assert by_id[(trump, "921780758372642816")].text == (
        "\u201cTrump hails liberation of Raqqa as critical breakthrough in anti-ISIS campaign\u201d "
        "https://t.co/2eoYXJB7h0"
    )
    assert by_id[(trump, "920776302231244800")].text == (
        "This is what REAL PRIDE in our COUNTRY is all about! #USA\U0001f1fa\U0001f1f8 https://t.co/kyv866prdE"
    )
    assert "Recep Tayyip Erdo\u011fan, to the @WhiteHouse" in by_id[(trump, "864565791076872192")].text
    assert by_id[(obama, "905141484386750469")].text == (
        "To target hopeful young strivers who grew up here is wrong, because they\u2019ve done nothing wrong. "
        "My statement: https://t.co/TCxZdld7L4"
    )
    assert by_id[(obama, "912724426709504000")].text.endswith("Join us a\u2026 https://t.co/gkrp1RwXR4")
    assert by_id[(obama, "912724426709504000")].created_at == "2017-09-26T17:03:00Z"


def test_shared_timestamps_agree_with_tweet_ids(shared):
    """Each corpus's local time zone was converted: created_at matches the snowflake time in the id."""
    from datetime import datetime, timezone

    posts, _, by_id = shared
    assert by_id[("us_airline_sentiment", "570306133677760513")].created_at == "2015-02-24T19:35:00Z"
    checked = 0
    for p in posts:
        if p.created_at and p.id.isdigit():
            ms = (int(p.id) >> 22) + 1288834974657
            t = datetime.strptime(p.created_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
            assert abs(t.timestamp() - ms / 1000) < 61, (p.source, p.id, p.created_at)
            checked += 1
    assert checked == 14_640 + 12_118 + 445 + 3_207 + 3_232


def test_shared_labels_and_plan(shared):
    _, _, by_id = shared
    assert by_id[("tweeteval/emotion", "tweeteval/emotion:train_text.txt:0")].labels == {"emotion": "optimism"}
    assert by_id[("tweeteval/stance/hillary", "tweeteval/stance/hillary:val_text.txt:0")].labels["target"] == "hillary"
    assert by_id[("us_airline_sentiment", "570306133677760513")].labels == {
        "sentiment": "neutral",
        "brand": "Virgin America",
    }
    readers = {Path(p).name: r for p, _, r in plan_corpus([CORPORA])}
    assert "README.md" not in readers and "abusive.csv" not in readers and "train_labels.txt" not in readers
    assert readers["twitter-2016test-A.tsv"] == "semeval_tsv" and readers["train.json"] == "tweetqa_json"


# ---------------------------------------------------------------------------------------------------------
# made-up ids and folders (issue 15)


def test_two_files_of_one_layout_in_one_folder_get_distinct_ids(tmp_path):
    """A TweetQA train and dev file copied into one folder: before, both made ids ``tweetqa:all:<record>`` and
    546 of 5,699 posts shared an id with another post."""
    d = tmp_path / "tweetqa"
    d.mkdir()
    for name, tweets in (("train.json", ["a", "b"]), ("dev.json", ["c", "d"])):
        recs = [{"Question": "q", "Answer": ["x"], "Tweet": t, "qid": t} for t in tweets]
        (d / name).write_text(json.dumps(recs))
    posts, ledger = _read([d])
    assert [(p.id, p.text) for p in posts] == [
        ("tweetqa:dev.json:0", "c"),
        ("tweetqa:dev.json:1", "d"),
        ("tweetqa:train.json:0", "a"),
        ("tweetqa:train.json:1", "b"),
    ]
    _assert_equation(ledger, posts)


def test_two_inputs_read_under_one_name_are_refused(tmp_path):
    for side in ("a", "b"):
        (tmp_path / side / "posts").mkdir(parents=True)
        (tmp_path / side / "posts" / "x.txt").write_text(f"post from {side}\n")
    with pytest.raises(ValueError, match=r"both read as 'posts/x.txt'.*common parent"):
        plan_corpus([tmp_path / "a" / "posts", tmp_path / "b" / "posts"])
    # their common parent names them apart (sources are relative to the parent of the folder given)
    posts, _ = _read([tmp_path])
    assert sorted(p.id for p in posts) == [f"{tmp_path.name}/{s}/posts/x:x.txt:0" for s in ("a", "b")]


def test_symlinked_folders_are_read_and_loops_are_named(tmp_path, caplog):
    real = tmp_path / "elsewhere" / "march"
    real.mkdir(parents=True)
    (real / "posts.txt").write_text("one\ntwo\n")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "own.txt").write_text("three\n")
    (corpus / "march").symlink_to(real, target_is_directory=True)  # a folder given by a link: read
    (corpus / "loop").symlink_to(corpus, target_is_directory=True)  # a link back up: named, not read twice
    with caplog.at_level("WARNING"):
        posts, ledger = _read([corpus])
    assert sorted((p.source, p.text) for p in posts) == [
        ("corpus/march/posts", "one"), ("corpus/march/posts", "two"), ("corpus/own", "three")
    ]  # fmt: skip
    assert any("loop" in r.getMessage() and "already read" in r.getMessage() for r in caplog.records)
    _assert_equation(ledger, posts)
