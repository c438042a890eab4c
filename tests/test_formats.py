"""Readers for real post formats (data/formats): every file of ../shared/formats ingests with the record equation
holding, specific posts come out right by id, compressed/zipped copies read the same, bad input is accounted."""

from __future__ import annotations

import bz2
import gzip
import json
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from tweetlm.data.formats.base import iter_json_values
from tweetlm.data.formats.dispatch import plan_corpus, read_corpus
from tweetlm.data.formats.entities import byte_to_code_point
from tweetlm.data.formats.mastodon import html_to_text
from tweetlm.data.formats.tabular import ColumnMap
from tweetlm.data.ledger import Ledger

FORMATS = Path(__file__).resolve().parents[1].parent / "shared" / "formats"
needs_formats = pytest.mark.skipif(not FORMATS.is_dir(), reason=f"shared format samples not found at {FORMATS}")


def _read(paths, columns=None):
    ledger = Ledger()
    posts = list(read_corpus([str(p) for p in paths], ledger, columns))
    ledger.check(dict(Counter(p.source for p in posts)))  # in = kept + dropped + quarantined, per source
    return posts, ledger


def _by_id(posts):
    out = {}
    for p in posts:
        assert p.id not in out or p.source != out[p.id].source, f"{p.id} kept twice in {p.source}"
        out[p.id] = p
    return out


def _key(posts):
    return [(p.id, p.text, p.kind, p.retweeted_id, p.quoted_id, p.reply_to_id, p.entities) for p in posts]


def _entity(p, kind, value):
    return next(e for e in p.entities if e["kind"] == kind and e["value"] == value)


@pytest.fixture(scope="module")
def shared():
    if not FORMATS.is_dir():
        pytest.skip(f"shared format samples not found at {FORMATS}")
    posts, ledger = _read([FORMATS])
    return posts, ledger, _by_id(posts)


# ---------------------------------------------------------------------------------------------------------
# every real sample


@needs_formats
def test_every_sample_file_is_planned_and_ingests(shared):
    posts, ledger, _ = shared
    planned = {Path(p).name for p, _, _ in plan_corpus([FORMATS])}
    data_files = {
        f.name
        for f in FORMATS.rglob("*")
        if f.is_file() and f.suffix in (".json", ".jsonl", ".js") and "lexicons" not in f.parts
    }
    # every payload file is read except the archive's note file (joined to tweets.js) and the empty file's siblings
    assert data_files - planned == {"note-tweet.js"}
    t = ledger.totals()
    assert t.records_in == len(posts) + sum(t.dropped.values()) + t.quarantined
    # 2854: the v2 sample pages repeat 2 tweets in includes.tweets, now each counted (dropped as duplicate_in_page)
    assert t.records_in == 2854 and len(posts) == 2404 and t.quarantined == 27
    assert Counter(q.reason for q in ledger.quarantine_log) == {"api_error": 26, "invalid_json": 1}
    assert t.dropped["not_a_post"] == 272  # count buckets, users, lists, a createRecord response
    assert all(isinstance(p.id, str) and p.id for p in posts)


@needs_formats
def test_stream_dump_with_text_between_objects_quarantines_only_the_text(shared):
    _, ledger, _ = shared
    name = "twitter_v11_tweet_updates_samples/initial_compatibility_classic_13995.json"
    (bad,) = [q for q in ledger.quarantine_log if q.file.endswith(name.split("/")[1])]
    assert (bad.record, bad.reason, bad.excerpt) == (1, "invalid_json", "Classic Tweet, extended mode")
    c = ledger.sources[name.removesuffix(".json")]
    assert (c.records_in, c.kept, dict(c.dropped)) == (3, 1, {"duplicate_id": 1})  # same tweet in two modes


@needs_formats
def test_v11_truncated_retweet_gets_the_originals_full_text(shared):
    _, _, by_id = shared
    rt = by_id["763459917910945792"]  # payload text: "RT @ygritteygritte: @ygritteygritte @joyding ... @\u2026"
    original = "this is a reply to 25 people with 140 characters of text for me to say what I want to say. & I still have room to attach a photo of a puppy!"  # noqa: E501
    assert rt.kind == "retweet" and rt.retweeted_id == "758839565989720065"
    assert rt.text == "RT @ygritteygritte: " + original  # &amp; unescaped, hidden reply mentions and photo link cut
    orig = by_id["758839565989720065"]  # emitted as a post of its own
    assert orig.text == original and orig.kind == "reply" and orig.reply_to_id == "758838116891242496"
    assert rt.entities == [{"kind": "mention", "value": "ygritteygritte", "start": 3, "end": 18}]


@needs_formats
def test_v2_retweet_gets_full_text_from_includes_and_offsets_match_the_payload(shared):
    _, _, by_id = shared
    rt = by_id["1440717136192626696"]
    orig = by_id["1440684519917424661"]
    assert rt.kind == "retweet" and rt.retweeted_id == orig.id
    assert rt.text == "RT @itsLIVEofficial: " + orig.text and len(rt.text) == 343
    # emoji before the entity: offsets count code points (the UTF-16 offset would be one more)
    e = _entity(orig, "hashtag", "WONHO")
    assert orig.text[e["start"] : e["end"]] == "#WONHO"
    assert "\U0001f499" in orig.text[: e["start"]]
    page = json.loads((FORMATS / "twitter_v2_twarc_csv_testdata/2sets.jsonl").read_text().splitlines()[0])
    payload = next(t for t in page["includes"]["tweets"] if t["id"] == orig.id)
    tag = next(h for h in payload["entities"]["hashtags"] if h["tag"] == "WONHO")
    assert (tag["start"], tag["end"]) == (e["start"], e["end"])  # X's own indices agree with ours
    assert "https://t.co/" not in orig.text and orig.urls and all(not u.startswith("https://t.co/") for u in orig.urls)


@needs_formats
def test_v2_edited_post_keeps_only_its_latest_version(shared):
    _, ledger, by_id = shared
    assert "1576994746135764992" not in by_id  # the first version
    latest = by_id["1576994789110992896"]
    assert latest.text.startswith("hey :) ") and latest.edit_history_ids == ["1576994746135764992", latest.id]
    c = ledger.sources["twitter_v2_twarc_csv_testdata/edited_before"]
    assert (c.records_in, c.kept, dict(c.dropped)) == (3, 1, {"superseded_by_edit": 2})


@needs_formats
def test_v2_errors_and_compliance_are_accounted(shared):
    _, ledger, _ = shared
    errs = [q for q in ledger.quarantine_log if q.source == "twitter_v2_twarc_csv_testdata/entities_test"]
    assert len(errs) == 11 and {q.reason for q in errs} == {"api_error"}
    assert "Could not find tweet with referenced_tweets.id: [1574182774923296771]" in errs[0].excerpt
    assert ledger.sources["twitter_v2_twarc_csv_testdata/tweets_compliance"].dropped == {"delete_event": 2}
    assert ledger.sources["twitter_v2_twarc_csv_testdata/counts"].dropped == {"not_a_post": 169}


@needs_formats
def test_archive_note_tweet_full_text_joined_to_its_tweet(shared):
    _, ledger, by_id = shared
    p = by_id["1775197948491542564"]  # note 1775197948340547584: ids differ, text only in note-tweet.js
    assert p.provenance.reader == "x_archive" and p.source == "x_account_archive_alrocar"
    assert p.text.startswith("2. Ejecutaban todos los tests con cada commit.\n\nEn un proyecto de datos")
    assert p.text.endswith(
        "Ejemplo para el CI de un proyecto de Tinybird =>  https://github.com/tinybirdco/ci/pull/77/files"
    )
    assert p.urls == ["https://github.com/tinybirdco/ci/pull/77/files"]
    reply = by_id["1760611342728208575"]  # a reply: the tweet text opens with mentions the note leaves out
    assert reply.text.startswith("A tope con lo declarativo") and not reply.text.endswith("\u2026")
    c = ledger.sources["x_account_archive_alrocar"]
    assert c.dropped == {"note_joined_to_tweet": 41, "superseded_by_edit": 2} and c.kept == 142
    rt = by_id["1855222380982907193"]
    assert rt.kind == "retweet" and rt.text.startswith("RT @notasintel: #DANA")


@needs_formats
def test_mastodon_status_html_keeps_the_link(shared):
    _, _, by_id = shared
    p = by_id["103270115826048975"]
    link = "https://www.theguardian.com/money/2019/dec/07/i-lost-my-193000-inheritance-with-one-wrong-digit-on-my-sort-code"
    assert p.text == '"I lost my inheritance with one wrong digit on my sort code"\n\n' + link
    assert p.urls == [link] and p.created_at == "2019-12-08T03:48:33Z" and p.author_id == "1"


def test_mastodon_mention_hashtag_and_link():
    # the markup Mastodon renders for a mention, a hashtag and a shortened link (docs: entities/Status)
    html = (
        '<p><span class="h-card"><a href="https://mastodon.social/@Gargron" class="u-url mention">@<span>Gargron'
        '</span></a></span> try <a href="https://example.org/a/very/long/path?q=1" rel="nofollow noopener" '
        'target="_blank"><span class="invisible">https://</span><span class="ellipsis">example.org/a/very/lo'
        '</span><span class="invisible">ng/path?q=1</span></a> &amp; <a href="https://mastodon.social/tags/'
        'caf%C3%A9" class="mention hashtag" rel="tag">#<span>caf\u00e9</span></a></p><p>line<br />two \U0001f600</p>'
    )
    text, ents = html_to_text(html, {"https://mastodon.social/@Gargron": "Gargron"})
    assert text == "@Gargron try https://example.org/a/very/long/path?q=1 & #caf\u00e9\n\nline\ntwo \U0001f600"
    assert [(e["kind"], e["value"], text[e["start"] : e["end"]]) for e in ents] == [
        ("mention", "Gargron", "@Gargron"),
        ("url", "https://example.org/a/very/long/path?q=1", "https://example.org/a/very/long/path?q=1"),
        ("hashtag", "caf\u00e9", "#caf\u00e9"),
    ]


# ---------------------------------------------------------------------------------------------------------
# Bluesky (the shared examples hold no facets; these records follow the app.bsky lexicons)


def _facet(text: str, sub: str, feature: dict) -> dict:
    b = text.encode()
    start = b.index(sub.encode())
    return {"index": {"byteStart": start, "byteEnd": start + len(sub.encode())}, "features": [feature]}


def test_bluesky_facets_are_utf8_byte_offsets(tmp_path):
    text = "\U0001f469\u200d\U0001f4bb caf\u00e9 with @alice.bsky.social see example.com/x\u2026 #t\u00e9st"
    rec = {
        "$type": "app.bsky.feed.post",
        "text": text,
        "createdAt": "2024-11-20T10:00:00.123Z",
        "langs": ["en"],
        "facets": [
            _facet(text, "@alice.bsky.social", {"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:alice"}),
            _facet(
                text,
                "example.com/x\u2026",
                {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/x/full"},
            ),
            _facet(text, "#t\u00e9st", {"$type": "app.bsky.richtext.facet#tag", "tag": "t\u00e9st"}),
        ],
    }
    uri = "at://did:plc:bob/app.bsky.feed.post/3kabc"
    f = tmp_path / "feed.json"
    f.write_text(json.dumps([{"uri": uri, "cid": "bafy", "value": rec}]), encoding="utf-8")
    (p,), _ = _read([f])
    assert p.id == uri and p.author_id == "did:plc:bob" and p.lang == "en" and p.created_at == "2024-11-20T10:00:00Z"
    assert (
        p.text
        == "\U0001f469\u200d\U0001f4bb caf\u00e9 with @alice.bsky.social see https://example.com/x/full #t\u00e9st"
    )
    got = [(e["kind"], e["value"], p.text[e["start"] : e["end"]]) for e in p.entities]
    assert got == [
        ("mention", "alice.bsky.social", "@alice.bsky.social"),
        ("url", "https://example.com/x/full", "https://example.com/x/full"),
        ("hashtag", "t\u00e9st", "#t\u00e9st"),
    ]
    assert p.entities[0]["start"] == 14  # the emoji sequence is 3 code points but 11 bytes: byteStart was 23
    assert rec["facets"][0]["index"]["byteStart"] == 23
    assert byte_to_code_point("a\u00e9b") == {0: 0, 1: 1, 3: 2, 4: 3}


def test_jetstream_delete_removes_the_post(tmp_path):
    def commit(op, rkey, text=None, t=1):
        c = {"rev": "x", "operation": op, "collection": "app.bsky.feed.post", "rkey": rkey}
        if text is not None:
            c["record"] = {"$type": "app.bsky.feed.post", "text": text, "createdAt": "2024-11-20T10:00:00Z"}
        return {"did": "did:plc:bob", "time_us": 1732096800000000 + t, "kind": "commit", "commit": c}

    events = [
        commit("create", "aaa", "keep me"),
        commit("create", "bbb", "delete me", 2),
        {"did": "did:plc:bob", "time_us": 1732096800000003, "kind": "identity", "identity": {}},
        commit("delete", "bbb", t=4),
    ]
    f = tmp_path / "jetstream.jsonl"
    f.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    posts, ledger = _read([f])
    assert [p.id for p in posts] == ["at://did:plc:bob/app.bsky.feed.post/aaa"]
    assert ledger.sources["jetstream"].dropped == {"deleted": 1, "not_a_post": 1, "delete_event": 1}


# ---------------------------------------------------------------------------------------------------------
# v2 long posts and synthetic v1.1 bad records


def test_v2_note_tweet_text_is_the_full_text(tmp_path):
    long = "word " * 70 + "end #tag https://t.co/abcDEF1234"
    page = {
        "data": [
            {
                "id": "1700000000000000001",
                "text": long[:275] + "\u2026",
                "edit_history_tweet_ids": ["1700000000000000001"],
                "note_tweet": {
                    "text": long,
                    "entities": {
                        "urls": [
                            {
                                "start": 359,
                                "end": 382,
                                "url": "https://t.co/abcDEF1234",
                                "expanded_url": "https://example.com/long",
                            }
                        ]
                    },  # noqa: E501
                },
                "author_id": "42",
                "created_at": "2023-09-01T10:00:00.000Z",
                "lang": "en",
            }
        ]
    }
    f = tmp_path / "page.jsonl"
    f.write_text(json.dumps(page) + "\n")
    (p,), _ = _read([f])
    assert p.text == long.replace("https://t.co/abcDEF1234", "https://example.com/long")
    assert p.hashtags == ["tag"] and p.urls == ["https://example.com/long"] and p.created_at == "2023-09-01T10:00:00Z"


def _tweet(i, text="hello &amp; bye", **kw):
    return {
        "id_str": str(i),
        "id": i,
        "text": text,
        "user": {"id_str": "7"},
        "created_at": "Thu Jul 28 22:50:33 +0000 2016",
        **kw,
    }  # noqa: E501


def test_bad_json_lines_are_quarantined_with_record_numbers(tmp_path):
    f = tmp_path / "dump.jsonl"
    no_id = _tweet(3)
    del no_id["id_str"], no_id["id"]
    lines = [
        json.dumps(_tweet(1)).encode(),
        b'{"id_str": "2", "text": "cut off',
        b"",
        json.dumps(no_id).encode(),
        json.dumps(_tweet(4, "caf\u00e9")).encode().replace(b"caf\\u00e9", b"caf\xe9"),  # latin-1 byte
        json.dumps({"delete": {"status": {"id_str": "1", "user_id_str": "7"}}}).encode(),
        json.dumps({"limit": {"track": 5}}).encode(),
        json.dumps(_tweet(5, "kept")).encode(),
    ]
    f.write_bytes(b"\n".join(lines) + b"\n")
    posts, ledger = _read([f])
    assert [(p.id, p.text) for p in posts] == [("5", "kept")]
    assert [(q.file, q.record, q.reason) for q in ledger.quarantine_log] == [
        (str(f), 1, "invalid_json"),
        (str(f), 2, "missing_id"),
        (str(f), 3, "invalid_utf8"),
    ]
    c = ledger.sources["dump"]
    assert c.records_in == 7 and c.dropped == {"deleted": 1, "delete_event": 1, "stream_notice": 1}


def test_truncated_json_array_and_gzip_keep_what_is_whole(tmp_path):
    whole = json.dumps([_tweet(1), _tweet(2), _tweet(3)])
    f = tmp_path / "cut.json"
    f.write_text(whole[: whole.index('"id_str": "3"') + 5])
    posts, ledger = _read([f])
    assert [p.id for p in posts] == ["1", "2"] and [(q.record, q.reason) for q in ledger.quarantine_log] == [
        (2, "truncated")
    ]
    assert posts[0].text == "hello & bye"

    g = tmp_path / "cut.jsonl.gz"
    full = gzip.compress(("\n".join(json.dumps(_tweet(i)) for i in range(1, 200)) + "\n").encode())
    g.write_bytes(full[: len(full) // 2])
    posts, ledger = _read([g])
    reasons = Counter(q.reason for q in ledger.quarantine_log)
    assert 0 < len(posts) < 199 and reasons["truncated_file"] == 1 and sum(reasons.values()) <= 2

    bad = tmp_path / "broken.jsonl.gz"
    bad.write_bytes(b"this is not gzip at all")
    with pytest.raises(ValueError, match=r"broken\.jsonl\.gz is not a valid \.gz file"):
        list(read_corpus([str(bad)], Ledger()))


def test_zip_without_posts_is_quarantined_and_the_run_goes_on(tmp_path):
    z = tmp_path / "twitter-archive.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("data/like.js", 'window.YTD.like.part0 = [ {"like": {"tweetId": "1", "fullText": "x"}} ]')
        zf.writestr("Your archive.html", "<html></html>")
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps({"text": "fine"}) + "\n")
    posts, ledger = _read([tmp_path])
    assert [p.text for p in posts] == ["fine"]
    (q,) = ledger.quarantine_log
    assert (q.file, q.record, q.reason) == (str(z), 0, "no_posts_in_zip") and "data/like.js" in q.excerpt


def test_iter_json_values_resyncs_after_garbage():
    vals = list(iter_json_values('{"a": 1}\nnot json\n{"b": 2} {"c": 3}'))
    assert vals[0] == {"a": 1} and vals[1].reason == "invalid_json" and vals[2:] == [{"b": 2}, {"c": 3}]
    vals = list(iter_json_values('[{"a": 1}, {broken}, {"c": 3}]'))
    assert vals[0] == {"a": 1} and len(vals) == 2 and vals[1].reason == "invalid_json"


# ---------------------------------------------------------------------------------------------------------
# compression, zip, column mapping


@needs_formats
def test_compressed_and_zipped_copies_read_identically(tmp_path):
    import zstandard

    v2 = FORMATS / "twitter_v2_twarc_csv_testdata/2sets.jsonl"
    v1 = FORMATS / "twitter_v11_tweet_updates_samples/initial_compatibility_classic_13995.json"
    masto = FORMATS / "mastodon/examples/statuses__07.json"
    for src in (v2, v1, masto):
        plain, _ = _read([src])
        raw = src.read_bytes()
        variants = {
            ".gz": gzip.compress(raw),
            ".zst": zstandard.ZstdCompressor().compress(raw),
            ".bz2": bz2.compress(raw),
        }
        for suffix, data in variants.items():
            f = tmp_path / (src.name + suffix)
            f.write_bytes(data)
            got, _ = _read([f])
            assert _key(got) == _key(plain), (src.name, suffix)
        z = tmp_path / (src.stem + ".zip")
        with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(src.name, raw)
        got, _ = _read([z])
        assert _key(got) == _key(plain) and got[0].provenance.file == f"{z}/{src.name}"

    # the X archive as downloaded: a zip with data/tweets.js and data/note-tweet.js
    arch = FORMATS / "x_account_archive_alrocar"
    folder, _ = _read([arch])
    z = tmp_path / "twitter-2024-11-10-abc.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("tweets.js", "note-tweet.js"):
            zf.write(arch / name, f"data/{name}")
        zf.writestr("data/account.js", 'window.YTD.account.part0 = [ {"account": {"accountId": "99"}} ]')
        zf.writestr("data/like.js", "window.YTD.like.part0 = [ ]")
    zipped, ledger = _read([z])
    assert _key(zipped) == _key(folder) and {p.author_id for p in zipped} == {"99"}
    assert ledger.sources["twitter-2024-11-10-abc"].dropped["note_joined_to_tweet"] == 41


@needs_formats
def test_archive_split_into_parts_reads_like_one_file(tmp_path):
    arch = FORMATS / "x_account_archive_alrocar"
    whole, _ = _read([arch])
    entries = json.loads((arch / "tweets.js").read_text(encoding="utf-8").split("=", 1)[1])
    d = tmp_path / "data"
    d.mkdir()
    half = len(entries) // 2
    (d / "tweets.js").write_text("window.YTD.tweets.part0 = " + json.dumps(entries[:half]), encoding="utf-8")
    (d / "tweets-part1.js").write_text("window.YTD.tweets.part1 = " + json.dumps(entries[half:]), encoding="utf-8")
    shutil.copy(arch / "note-tweet.js", d / "note-tweet.js")
    parts, _ = _read([d])
    assert [(p.id, p.text) for p in parts] == [(p.id, p.text) for p in whole]


def test_column_mapping_for_csv_jsonl_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    m = ColumnMap.parse("text=body, id=post_id, created_at=ts, labels.sentiment=label")
    (tmp_path / "a.csv").write_text("post_id,body,ts,label\n1234567890123456789,hi $AAPL #x,2020-01-02T03:04:05Z,pos\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"post_id": 7, "body": "yo @bob", "label": "neg"}) + "\n")
    pq.write_table(
        pa.table({"post_id": pa.array([9, 10], pa.int64()), "body": ["p one", None], "label": ["neu", "neu"]}),
        tmp_path / "c.parquet",
    )
    posts, ledger = _read([tmp_path], m)
    got = {p.id: (p.text, p.labels, p.cashtags, p.hashtags, p.mentions, p.created_at) for p in posts}
    assert got == {
        "1234567890123456789": ("hi $AAPL #x", {"sentiment": "pos"}, ["AAPL"], ["x"], [], "2020-01-02T03:04:05Z"),
        "7": ("yo @bob", {"sentiment": "neg"}, [], [], ["bob"], None),
        "9": ("p one", {"sentiment": "neu"}, [], [], [], None),
    }
    assert [(Path(q.file).name, q.record, q.reason) for q in ledger.quarantine_log] == [
        ("c.parquet", 1, "missing_text")
    ]
    with pytest.raises(ValueError, match="unknown field 'body'"):
        ColumnMap.parse("body=text")
    with pytest.raises(ValueError, match="is not field=column"):
        ColumnMap.parse("text")
