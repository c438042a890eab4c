"""Ingestion of hostile input (issue "Hard to break"): each bad record is quarantined with a reason and counted,
the rest of the corpus is read, nothing is read from outside the corpus."""

from __future__ import annotations

import json
import zipfile
from collections import Counter

import pytest

from tweetlm.data.ledger import Ledger
from tweetlm.data.readers import read_corpus


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
    assert [p.id for p in posts] == ["702608000000000000", "99", "mine:all:7", "12", "sheet:all:2"]
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
