"""The datatrove ingestion pipeline (data/pipeline): each step on small real-looking inputs with asserted counts
and reasons, the global stage (retweets, threads, exact and MinHash dedup), task sharding and reruns."""

from __future__ import annotations

import json
import re
import shutil
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from datatrove.data import Document

from tweetlm.data.pipeline.build import build_corpus, stage_seconds
from tweetlm.data.pipeline.config import TASKS_PER_WORKER, PipelineConfig
from tweetlm.data.pipeline.minhash import permutations, shingle_hashes, signatures
from tweetlm.data.pipeline.steps import PIIScrub, QualityFilter, spam_reason, template_key
from tweetlm.data.pipeline.text import dedup_key, normalize_text

ALICE = {"id_str": "11", "screen_name": "alice", "name": "Alice"}
BOB = {"id_str": "12", "screen_name": "bob", "name": "Bob"}
THANKS = "Huge thanks to the crew at gate 12 for getting everyone on board so fast today!"


def _tweet(i: int, text: str, user=ALICE, reply: str | None = None, retweet: dict | None = None) -> dict:
    """An X API v1.1 status as the streaming API delivers it."""
    o = {
        "id_str": str(i),
        "id": i,
        "text": text,
        "created_at": f"Wed Oct 10 20:{i % 60:02d}:24 +0000 2018",
        "user": user,
        "lang": "en",
        "in_reply_to_status_id_str": reply,
        "entities": {"hashtags": [], "user_mentions": [], "urls": []},
    }
    if retweet:
        o["retweeted_status"] = retweet
        o["text"] = f"RT @{retweet['user']['screen_name']}: {retweet['text']}"
    return o


def make_corpus(root):
    """A v1.1 JSONL file (a thread, a retweet, a near-duplicate, spam, PII, a malformed line) and a folder with
    its own train/val split holding a training copy of a validation post."""
    (root / "stream").mkdir(parents=True)
    thanks = _tweet(2000, THANKS)
    lines = [
        json.dumps(_tweet(1000, "The train was late again this morning, third time this week")),
        json.dumps(_tweet(1002, "@alice same here, the 8:15 never shows up", BOB, reply="1000")),
        json.dumps(_tweet(1003, "@bob ours was cancelled altogether", ALICE, reply="1002")),
        json.dumps(thanks),
        json.dumps(_tweet(2001, "", BOB, retweet=thanks)),
        json.dumps(_tweet(2002, THANKS + "!", BOB)),
        json.dumps(_tweet(3000, "#win #free #iphone #giveaway #follow now")),
        json.dumps(_tweet(3001, "mail me at jane.doe@example.com or call (555) 123-4567 before friday", BOB)),
        '{"id_str": "3002", "text": "cut off here',
    ]
    (root / "stream" / "posts.jsonl").write_text("\n".join(lines) + "\n")
    (root / "pair").mkdir()
    (root / "pair" / "val_text.txt").write_text("Coffee first, then emails. Always coffee first.\n")
    (root / "pair" / "train_text.txt").write_text(
        "coffee first,  then emails. always coffee first.\nTotally different post about the weather in Lisbon today\n"
    )
    return [str(root / "stream"), str(root / "pair")]


def _rows(out) -> dict[str, dict]:
    rows = {}
    for split in ("train", "val"):
        for r in pq.read_table(out / f"{split}.parquet").to_pylist():
            rows[r["id"]] = r
    return rows


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    paths = make_corpus(root / "in")
    report = build_corpus(paths, root / "out", PipelineConfig(workers=1))
    return root, paths, report


def test_minhash_signatures_equal_datasketch():
    from datasketch import MinHash

    keys = ["hello world, this is a post", "abc", "", "日本語のテキスト 😂🔥", THANKS.casefold()]
    sig = signatures(keys, 5, permutations(64), batch=2)
    for key, row in zip(keys, sig):
        m = MinHash(num_perm=64, hashfunc=int)
        m.update_batch(shingle_hashes(key, 5))
        assert np.array_equal(m.hashvalues, row), key
    assert sig.shape == (5, 64) and sig.dtype == np.uint32
    a, b = dedup_key(THANKS), dedup_key(THANKS + "!")
    assert a != b  # exact dedup misses it ...
    sa, sb = signatures([a, b], 5, permutations(64))
    assert (sa == sb).mean() > 0.8  # ... MinHash sees it
    assert zlib.crc32(b"x")  # (shingle hashes are not crc32: a polynomial over code points, vectorized)


def test_mojibake_gate_never_hides_what_ftfy_calls_bad(corpora):
    """``is_bad`` is skipped only on text without the characters every mojibake pattern needs: on real posts and on
    random strings drawn from ftfy's own mojibake characters, Latin letters, spaces and emoji, the gate finds every
    text ``is_bad`` finds; and it skips most non-ASCII posts."""
    import random

    from ftfy.badness import MOJIBAKE_CATEGORIES, is_bad

    from tweetlm.data.pipeline.steps import mojibake_gate

    gate = mojibake_gate()
    assert gate is not None
    texts = []
    for task in ("irony", "emoji", "hate"):
        texts += (corpora / "tweeteval" / task / "train_text.txt").read_text(encoding="utf-8").splitlines()
    texts = [t for t in texts if not t.isascii()]
    assert all(gate.search(t) for t in texts if is_bad(t))
    skipped = sum(1 for t in texts if not gate.search(t))
    assert skipped > len(texts) // 2  # why the gate is worth it
    pool = "".join(MOJIBAKE_CATEGORIES.values()).replace("-", "") + "\x80\x9f" + "ÂÃÎÐØÙàŒœ×²³√≈‚вЂВГРСβ€āΒΓΞΟ°µ»"
    pool += "abcXYZ ,.!?\t" + "é😂日本"
    rng = random.Random(0)
    fuzz = ["".join(rng.choice(pool) for _ in range(rng.randint(1, 8))) for _ in range(50_000)]
    bad = [t for t in fuzz if is_bad(t)]
    assert len(bad) > 5_000 and all(gate.search(t) for t in bad)
    for mojibake in ("cafÃ©", "donâ€™t", "Ã\xa0 la", "Ã¢â‚¬â„¢", "вЂ™"):  # UTF-8 read as Windows-1252 / 1251
        assert is_bad(mojibake) and gate.search(mojibake), mojibake


def test_normalize_fast_path_matches_ftfy(corpora):
    """Normalize skips ftfy for printable ASCII without '&'; on real posts that gives the same text."""
    cfg = PipelineConfig()
    texts = (corpora / "tweeteval" / "irony" / "train_text.txt").read_text(encoding="utf-8").splitlines()
    plain = [t for t in texts if t.isascii() and t.isprintable() and "&" not in t]
    assert len(plain) > 1000
    no_ftfy = PipelineConfig(fix_unicode=False)
    assert [normalize_text(t, no_ftfy) for t in plain] == [normalize_text(t, cfg) for t in plain]


def test_filters_and_pii_on_documents(tmp_path):
    cfg = PipelineConfig(min_chars=5, max_chars=60, scrub_handles=True)
    docs = [
        Document(text=t, id=str(i), metadata={"source": "s", "kind": "post"})
        for i, t in enumerate(
            [
                "ok",  # too_short
                "x" * 61,  # too_long
                "#a #b #c #d and",  # 4/5 hashtags
                "@a @b @c @d @e hi",  # 5/6 mentions
                "see http://a.co http://b.co http://c.co",  # 3/4 urls
                "a normal post #with one tag",
            ]
        )
    ]
    kept = list(QualityFilter(cfg, tmp_path)(iter(docs)))
    assert [d.id for d in kept] == ["5"]
    counts = json.loads((tmp_path / "ledger" / "filter-00000.json").read_text())["dropped"]
    assert counts == [
        ["s", "spam_hashtags", 1],
        ["s", "spam_mentions", 1],
        ["s", "spam_urls", 1],
        ["s", "too_long", 1],
        ["s", "too_short", 1],
    ]
    assert spam_reason("#a #b #c", cfg) is None  # under spam_min_tokens
    lang_docs = [Document(text="bonjour a tous", id=c, metadata={"source": "s", "lang": c}) for c in ("fr", "en")]
    kept = list(QualityFilter(PipelineConfig(keep_languages="en, es"), tmp_path)(iter(lang_docs)))
    assert [d.id for d in kept] == ["en"]
    assert template_key("Day 12 of asking @jack for http://t.co/x") == template_key(
        "day 3 of asking @bob for https://a.b"
    )
    pii = [Document(text="write jane.doe@example.com, +44 20 7946 0958 or (555) 123-4567, @jack", id="p",
                    metadata={"source": "s"})]  # fmt: skip
    (doc,) = list(PIIScrub(cfg, tmp_path)(iter(pii)))
    assert doc.text == "write <email>, <phone> or <phone>, @user"
    keep = [Document(text="on 2015-02-24 at 10:30, 1,000,000 views, tweet 570306133677760513", id="q",
                     metadata={"source": "s"})]  # fmt: skip
    (doc,) = list(PIIScrub(cfg, tmp_path)(iter(keep)))
    assert doc.text == keep[0].text  # dates, times, counts and ids are not phone numbers


def test_pipeline_on_small_corpus(built):
    root, _, report = built
    out = root / "out"
    rows = _rows(out)
    # equation: every record is kept, dropped with a reason, or quarantined
    assert report["records_in"] == report["kept"] + sum(report["dropped"].values()) + report["quarantined"]
    assert report["quarantined"] == 1
    q = [json.loads(x) for x in (out / "quarantine.jsonl").read_text().splitlines()]
    assert q[0]["record"] == 8 and q[0]["file"].endswith("posts.jsonl")
    # thread rebuilt: root 1000 <- 1002 <- 1003, one document, posts in order
    t = rows["1000"]
    assert t["kind"] == "thread" and t["thread_ids"] == ["1000", "1002", "1003"]
    assert t["text"] == (
        "The train was late again this morning, third time this week\n"
        "@alice same here, the 8:15 never shows up\n@bob ours was cancelled altogether"
    )
    assert "1002" not in rows and "1003" not in rows
    # the retweet counts toward its original, never duplicates it
    assert "2001" not in rows and rows["2000"]["retweets"] == 1 and rows["2000"]["retweet_ids"] == ["2001"]
    # MinHash catches the near-duplicate (one more '!') exact dedup misses
    assert "2002" not in rows
    d = report["dropped"]
    assert d.get("near_duplicate", 0) + d.get("near_duplicate_of_val", 0) == 1
    assert d["retweet_collapsed"] == 1 and d["joined_into_thread"] == 2 and d["spam_hashtags"] == 1
    assert "3000" not in rows
    assert rows["3001"]["text"] == "mail me at <email> or call <phone> before friday"
    # the validation copy wins; its training copy is dropped
    assert d["duplicate_of_val"] == 1
    assert [r["text"] for r in rows.values() if r["source"] == "pair" and r["split"] == "val"] == [
        "Coffee first, then emails. Always coffee first."
    ]
    assert {r["lang_detected"] for r in rows.values() if r["source"] == "stream/posts"} == {"en"}
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["filter"]["dropped"] == {"spam_hashtags": 1}
    assert steps["decide"]["in"] - steps["decide"]["out"] == sum(steps["decide"]["dropped"].values())
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["shards"]["train.parquet"]["ids"] + manifest["shards"]["val.parquet"]["ids"]) == sorted(rows)
    assert not (out / "_work" / "prepared").exists()  # intermediate texts and signatures are gone
    assert (out / "length_hist.png").stat().st_size > 1000 and "| normalize |" in (out / "report.md").read_text()


def test_two_tasks_give_the_same_corpus_and_reruns_skip(built, tmp_path):
    root, paths, report = built
    out2 = tmp_path / "out2"
    r2 = build_corpus(paths, out2, PipelineConfig(tasks=2, workers=2, keep_prepared=True))
    assert r2["corpus_hash"] == report["corpus_hash"] and r2["equation"] == report["equation"]
    assert list(r2["stage_seconds"]) == ["prepare", "buckets", "decide"]  # finalize writes the report: not yet timed
    seconds = r2["stage_seconds"]  # rounded to 0.01 s: the buckets of 13 posts can take less
    assert seconds["prepare"] > 0 and min(seconds.values()) >= 0
    assert "Wall time of the stages" in (out2 / "report.md").read_text()
    for split in ("train", "val"):
        assert pq.read_table(out2 / f"{split}.parquet").equals(pq.read_table(root / "out" / f"{split}.parquet"))
    assert sorted(p.name for p in (out2 / "_work" / "prepared").iterdir()) == ["00000.parquet", "00001.parquet"]
    # the default with workers set: TASKS_PER_WORKER tasks per worker, more tasks than input files (some read none)
    cfg = PipelineConfig(workers=2)
    assert cfg.task_count() == 2 * TASKS_PER_WORKER > len(paths)
    assert PipelineConfig(workers=1).task_count() == PipelineConfig(workers=2, executor="ray").task_count() == 1
    assert PipelineConfig(tasks=3, workers=2).task_count() == 3
    r8 = build_corpus(paths, tmp_path / "out8", cfg)
    assert r8["corpus_hash"] == report["corpus_hash"] and r8["tasks"] == 2 * TASKS_PER_WORKER
    # a rerun finds every task's completion marker and redoes nothing (on a copy of the input: it is changed below)
    shutil.copytree(root / "in", tmp_path / "in")
    paths = [str(tmp_path / "in" / Path(p).name) for p in paths]
    out3 = tmp_path / "out3"
    first = build_corpus(paths, out3, PipelineConfig(tasks=2, workers=2, keep_prepared=True))
    marker = out3 / "_work" / "prepared" / "00001.parquet"
    before = marker.stat().st_mtime_ns
    (out3 / "report.json").unlink()
    (out3 / "_work" / "logs" / "finalize" / "completions" / "00000").unlink()
    timed = stage_seconds(out3 / "_work")
    assert sorted(timed) == ["buckets", "decide", "finalize", "prepare"] and all(v > 0 for v in timed.values())
    again = build_corpus(paths, out3, PipelineConfig(tasks=2, workers=2, keep_prepared=True))
    assert marker.stat().st_mtime_ns == before and again["corpus_hash"] == first["corpus_hash"] == report["corpus_hash"]
    assert list(stage_seconds(out3 / "_work")) == ["finalize"]  # the only stage this rerun ran
    assert again["stage_seconds"] == {}  # nothing before finalize ran again
    # an input file changed: everything is redone
    with open(paths[0] + "/posts.jsonl", "a") as f:
        f.write(json.dumps(_tweet(4000, "a new post about the weather in Porto today")) + "\n")
    grown = build_corpus(paths, out3, PipelineConfig(tasks=2, workers=2, keep_prepared=True))
    assert marker.stat().st_mtime_ns != before and grown["records_in"] == report["records_in"] + 1
    before = marker.stat().st_mtime_ns
    # other settings: the work folder is cleared and everything is redone
    changed = build_corpus(paths, out3, PipelineConfig(tasks=2, workers=1, near_dedup=False, keep_prepared=True))
    assert marker.stat().st_mtime_ns != before and changed["kept"] == grown["kept"] + 1


def test_rejects_are_written_with_their_reason(built, tmp_path):
    import gzip

    _, paths, _ = built
    build_corpus(paths, tmp_path / "out", PipelineConfig(workers=1, write_rejects=True))
    rejects = tmp_path / "out" / "_work" / "rejects"

    def read(step: str) -> dict[str, str]:
        with gzip.open(rejects / step / "00000.jsonl.gz", "rt") as f:
            return {d["id"]: d["metadata"]["drop_reason"] for d in map(json.loads, f)}

    assert read("filter") == {"3000": "spam_hashtags"}
    got = read("decide")
    assert got["2001"] == "retweet_collapsed" and got["1002"] == got["1003"] == "joined_into_thread"
    assert got["2002"].startswith("near_duplicate") and got["pair:train_text.txt:0"] == "duplicate_of_val"


def test_executor_switch_builds_slurm_and_ray_stages(tmp_path):
    """The recipe switch: the same four stages under datatrove's Slurm or Ray executor, chained with depends
    (built, not submitted: there is no cluster here)."""
    from datatrove.executor import SlurmPipelineExecutor
    from datatrove.executor.ray import RayPipelineExecutor

    from tweetlm.data.pipeline.build import make_executors

    for kind, cls, kw in (
        ("slurm", SlurmPipelineExecutor, {"partition": "cpu", "time": "01:00:00"}),
        ("ray", RayPipelineExecutor, {"cpus_per_task": 1}),
    ):
        ex = make_executors(["posts"], tmp_path / "out", PipelineConfig(tasks=8, executor=kind), tmp_path / kind, **kw)
        assert [type(e) for e in ex] == [cls] * 4 and [e.world_size for e in ex] == [8, 8, 1, 1]
        assert ex[1].depends is ex[0] and ex[2].depends is ex[1] and ex[3].depends is ex[2]
        assert [type(s).__name__ for s in ex[0].pipeline][0] == "PostReader"


def test_data_build_cli(built, tmp_path, capsys):
    from tweetlm.cli.main import main

    _, paths, _ = built
    args = ["data", "build", "--corpus", *paths, "--out", str(tmp_path / "o"), "--no-progress"]
    assert main(args + ["--set", "keep_languages=en", "--set", "near_dedup=false"]) == 0
    out = capsys.readouterr().out
    assert (
        "TOTAL: 13 in = 6 kept + 6 dropped" in out
        and "detected language: en 6" in out
        and (tmp_path / "o" / "report.md").exists()
    )
    assert re.search(r"stages: prepare \d+\.\ds, buckets \d+\.\ds, decide \d+\.\ds, finalize \d+\.\ds\n", out)
    assert main(args + ["--set", "keep_languages=en", "--set", "near_dedup=false"]) == 0  # the same run again
    assert (
        "stages: prepare done before (skipped), buckets done before (skipped), decide done before (skipped)"
        in capsys.readouterr().out
    )
    (tmp_path / "a_file").write_text("x")
    assert main(args[:-3] + ["--out", str(tmp_path / "a_file")]) == 2
    assert "output folder" in (err := capsys.readouterr().err) and "is a file, not a folder" in err
    assert main(args + ["--tasks", "5", "--set", "tasks=3"]) == 2  # was: the --set value won silently
    assert "--set tasks=3 and --tasks 5 both set data.tasks: give it once (--tasks)" in capsys.readouterr().err
    assert main(args + ["--set", "languages=en,xx"]) == 2
    assert "'xx' is not an ISO 639-1 code" in capsys.readouterr().err
    assert main(args + ["--set", "minhash_treshold=0.5"]) == 2
    assert "unknown key" in capsys.readouterr().err


def test_unreadable_input_is_a_clear_error(tmp_path):
    (tmp_path / "image.png").write_bytes(bytes(range(256)) * 40)
    with pytest.raises(ValueError, match="not a text file"):
        build_corpus([str(tmp_path / "image.png")], tmp_path / "out", PipelineConfig(workers=1))
    with pytest.raises(ValueError, match="does not exist"):
        build_corpus([str(tmp_path / "nope")], tmp_path / "out", PipelineConfig(workers=1))
    with pytest.raises(ValueError, match="lang_detect"):
        build_corpus([str(tmp_path)], tmp_path / "out", PipelineConfig(lang_detect="sometimes"))
    (tmp_path / "posts").mkdir()
    (tmp_path / "posts" / "a.txt").write_text("a post about the weather in Lisbon today\n")
    for out, work in (
        (tmp_path / "posts" / "out", None),
        (tmp_path / "posts", None),
        (tmp_path / "o", tmp_path / "posts" / "w"),
    ):
        with pytest.raises(ValueError, match="inside the input path"):
            build_corpus([str(tmp_path / "posts")], out, PipelineConfig(workers=1), work_dir=work)
    assert sorted(p.name for p in (tmp_path / "posts").iterdir()) == ["a.txt"]


def test_data_build_cli_column_map(tmp_path, capsys):
    """--map names the columns of a CSV whose headers the readers don't know; a bad spec is a clear error."""
    import pyarrow.parquet as pq

    from tweetlm.cli.main import main

    rows = [
        ("1790000000000000001", "Flight delayed again, third time this month", "positive"),
        ("1790000000000000002", "The crew on my flight to Denver were wonderful today", "positive"),
        ("1790000000000000003", "Lost my bag at the airport and nobody answers the phone", "negative"),
    ]
    csv = tmp_path / "export.csv"
    csv.write_text("post_id,body,mood\n" + "".join(f'{i},"{t}",{m}\n' for i, t, m in rows), encoding="utf-8")
    out = tmp_path / "o"
    args = ["data", "build", "--corpus", str(csv), "--out", str(out), "--no-progress", "--set", "near_dedup=false"]
    assert main(args + ["--map", "text=body,id=post_id,labels.mood=mood"]) == 0
    capsys.readouterr()
    got = {}
    for split in ("train", "val"):
        t = pq.read_table(out / f"{split}.parquet", columns=["id", "text", "labels"]).to_pylist()
        got.update({r["id"]: r for r in t})
    assert set(got) == {r[0] for r in rows}
    assert got["1790000000000000003"]["text"] == rows[2][1]
    assert "negative" in got["1790000000000000003"]["labels"]
    assert main(args + ["--map", "txet=body"]) == 2
    assert "data.columns" in capsys.readouterr().err


def test_same_post_id_in_two_sources_is_kept_once(tmp_path):
    from tweetlm.data.pipeline.text import hash_split

    first = _tweet(5000, "Anyone else think the new library opening hours are a big improvement")
    reply = _tweet(5001, "@alice yes, finally open past eight on weekdays", BOB, reply="5000")
    plants = _tweet(5002, "Planting tomatoes on the balcony this year, wish me luck")
    other = _tweet(6000, "Completely unrelated remark on the football scores tonight")
    rt = _tweet(7000, "", BOB, retweet=plants)  # the same retweet in both files: collapsed once
    for name, tweets in (("a", [first, reply, plants, rt]), ("b", [reply, plants, other, rt])):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.jsonl").write_text("\n".join(json.dumps(t) for t in tweets) + "\n")
    cfg = PipelineConfig(workers=1, val_fraction=0.5)
    report = build_corpus([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "out", cfg)
    docs = _rows(tmp_path / "out")
    member_ids = [m for r in docs.values() for m in (r["thread_ids"] or [r["id"]])]
    assert sorted(member_ids) == ["5000", "5001", "5002", "6000"]  # each post once, the reply inside the thread
    dup_drops = {k: v for k, v in report["steps"][-1]["dropped"].items() if k.startswith("duplicate_id")}
    assert sum(dup_drops.values()) == 3
    assert report["kept"] + sum(report["steps"][-1]["dropped"].values()) == 8
    assert docs["5002"]["retweet_ids"] == ["7000"]
    splits = {s: hash_split(f"{s}/{s}", "5002", 0.5) for s in ("a", "b")}
    if "val" in splits.values():  # the validation copy is the one kept
        assert docs["5002"]["split"] == "val"


def test_column_map_names_a_missing_or_doubled_column(tmp_path):
    import warnings

    from tweetlm.data.formats.dispatch import read_corpus
    from tweetlm.data.formats.tabular import ColumnMap
    from tweetlm.data.ledger import Ledger

    f = tmp_path / "a.jsonl"
    f.write_text(json.dumps({"body": "hello there, a post", "post_id": "5", "mood": "happy"}) + "\n")

    def read(spec):
        ledger = Ledger()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            posts = list(read_corpus([str(f)], ledger, ColumnMap.parse(spec)))
        return posts, [q.reason for q in ledger.quarantine_log], " ".join(str(x.message) for x in w)

    posts, reasons, _ = read("text=nosuchcol")
    assert not posts and reasons == ["missing_mapped_text_column:nosuchcol"]
    posts, _, warned = read("text=body,id=nosuch")
    assert len(posts) == 1 and "--map id=nosuch: no column 'nosuch'" in warned
    posts, _, warned = read("text=body,created_at=mood")
    assert posts[0].created_at is None and "--map created_at=mood" in warned and "'happy'" in warned
    posts, _, warned = read("text=body,id=post_id")
    assert posts[0].id == "5" and not warned
    for spec in ("text=body,text=mood", "labels.x=a,labels.x=b"):
        with pytest.raises(ValueError, match="twice"):
            ColumnMap.parse(spec)


def test_bad_keep_languages_ray_missing_and_nothing_kept_fail_cleanly(tmp_path, capsys):
    import importlib.util
    import zipfile

    from tweetlm.cli.main import main

    with pytest.raises(ValueError, match="keep_languages: 'english'"):
        PipelineConfig(keep_languages="en,english").validate()
    PipelineConfig(keep_languages="en, und").validate()
    with pytest.raises(ValueError, match="data.max_url_ratio must be in \\[0, 1\\]"):
        PipelineConfig(max_url_ratio=-0.1).validate()
    with pytest.raises(ValueError, match="data.workers \\(--workers\\) must be >= 0"):
        PipelineConfig(workers=-3).validate()
    posts = tmp_path / "posts.txt"
    posts.write_text("a post about the weather in Lisbon today\n")
    if importlib.util.find_spec("ray") is None:
        args = ["data", "build", "--corpus", str(posts), "--out", str(tmp_path / "r"), "--executor", "ray"]
        assert main(args + ["--no-progress"]) == 2
        assert "pip install ray" in capsys.readouterr().err and not (tmp_path / "r").exists()
    with zipfile.ZipFile(tmp_path / "empty.zip", "w"):
        pass
    args = ["data", "build", "--corpus", str(tmp_path / "empty.zip"), "--out", str(tmp_path / "z"), "--no-progress"]
    assert main(args) == 2
    assert "no posts left" in capsys.readouterr().err


def test_map_names_a_missing_mapped_csv_column(tmp_path, capsys):
    from tweetlm.cli.main import main

    csv = tmp_path / "export.csv"
    csv.write_text("post_id,body\n1,hello there friends\n", encoding="utf-8")
    args = ["data", "build", "--corpus", str(csv), "--out", str(tmp_path / "o"), "--no-progress"]
    assert main(args + ["--map", "text=nosuchcol"]) == 2
    assert "mapped text column 'nosuchcol'" in capsys.readouterr().err


def test_near_duplicates_decide_as_datasketch_minhash_lsh():
    """The band tables of ``decide.near_duplicates`` drop and keep exactly the rows that inserting into and querying
    datasketch's ``MinHashLSH`` one row at a time does (the code they replaced), on real tweets with edited copies."""
    import random

    from conftest import SHARED
    from datasketch import LeanMinHash, MinHashLSH

    from tweetlm.data.pipeline.decide import near_duplicates

    lines = (SHARED / "corpora/tweeteval/sentiment/val_text.txt").read_text(encoding="utf-8").splitlines()
    rng = random.Random(0)
    edited = []
    for t in rng.sample(lines, 300):  # one word dropped or doubled: near, not exact, copies of longer tweets
        w = t.split()
        k = rng.randrange(len(w))
        edited.append(" ".join(w[:k] + w[k + 1 :] if rng.random() < 0.5 else w[: k + 1] + w[k:]))
    texts = [dedup_key(t) for t in lines + edited]
    sig = signatures(texts, 5, permutations(64))
    order = list(range(len(texts)))
    rng.shuffle(order)

    lsh, want = MinHashLSH(threshold=0.8, num_perm=64), {}
    for i in order:
        m = LeanMinHash(seed=1, hashvalues=sig[i], scheme="affine32")
        matches = sorted(j for j in lsh.query(m) if (sig[j] == sig[i]).mean() >= 0.8)
        if matches:
            want[i] = matches
        else:
            lsh.insert(i, m, check_duplication=False)
    got = near_duplicates(sig, order, 0.8, 64)
    assert got == want
    assert 100 < len(got) < 600  # the edited copies (or their originals, whichever came first) and repeats
    assert near_duplicates(sig[:0], [], 0.8, 64) == {}


def test_lsh_buckets_across_tasks_and_a_thread_near_duplicate_of_a_post(tmp_path):
    """The buckets stage finds, in any number of tasks, exactly the posts that share a band with another post; a
    thread decide rebuilds is compared by its new text, also with a post that shares no band with any post."""
    from tweetlm.data.pipeline.buckets import candidate_orders
    from tweetlm.data.pipeline.minhash import band_hashes, lsh_banding, sharing_rows

    root = "The train was late again this morning, third time this week"
    reply = "@alice same here, the 8:15 never shows up"
    lines = [
        _tweet(1000, root),
        _tweet(1002, reply, BOB, reply="1000"),
        _tweet(1500, "Completely unrelated: the bakery on 5th street sells the best rye bread", BOB),
        _tweet(2000, THANKS),
        _tweet(2002, THANKS + "!", BOB),  # a near-duplicate by its own text
        _tweet(3000, f"{root}\n{reply} !!", BOB),  # the thread's text, edited: shares no band with one post
    ]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "posts.jsonl").write_text("".join(json.dumps(t) + "\n" for t in lines))
    paths = [str(tmp_path / "in")]
    reports, candidates = [], []
    for tasks in (1, 3):
        out = tmp_path / f"out{tasks}"
        reports.append(build_corpus(paths, out, PipelineConfig(tasks=tasks, workers=2, keep_prepared=True)))
        candidates.append(candidate_orders(out / "_work"))
        assert len(list((out / "_work" / "lsh").glob("candidates-*.npy"))) == tasks  # bucket_tasks: tasks <= 64
    assert reports[0]["corpus_hash"] == reports[1]["corpus_hash"]
    # the candidates are the posts that share a band hash, as found over all signatures at once
    prepared = pq.read_table(tmp_path / "out3" / "_work" / "prepared").sort_by("order")
    sig = np.array(prepared.column("minhash").to_pylist(), dtype=np.uint32)
    shared = np.zeros(len(sig), dtype=bool)
    for h in band_hashes(sig, *lsh_banding(0.8, 64)).T:
        shared |= sharing_rows(h)
    want = prepared.column("order").to_numpy()[shared]
    assert candidates[0].tolist() == candidates[1].tolist() == sorted(want.tolist()) and len(want) == 2  # 2000, 2002
    rows = _rows(tmp_path / "out1")
    assert rows["1000"]["kind"] == "thread" and "2002" not in rows and "1500" in rows
    assert "3000" not in rows  # dropped as a near-duplicate of the thread, found through the thread's new bands
    drops = json.loads((tmp_path / "out1" / "accounting.json").read_text())
    assert drops["sources"][next(iter(drops["sources"]))]["dropped"]["near_duplicate"] == 2
    off = build_corpus(paths, tmp_path / "off", PipelineConfig(near_dedup=False))
    assert off["kept"] == reports[0]["kept"] + 2


def test_lsh_band_hashes_missing_or_from_an_older_layout_are_never_resumed(tmp_path):
    """A work folder without band hashes (prepared by an older tweetlm, whose fingerprint has no ``format``) is
    cleared and rebuilt; band hashes missing under a current fingerprint stop the buckets stage with an error
    instead of silently keeping every near-duplicate. 1,200 tasks keep 65 files open per prepare task, not 1,200."""
    from tweetlm.data.pipeline.buckets import MAX_BUCKET_TASKS, BandHashWriter, LshBuckets, bucket_tasks

    paths = make_corpus(tmp_path / "in")
    out = tmp_path / "out"
    cfg = PipelineConfig(tasks=2, workers=1, keep_prepared=True)
    first = build_corpus(paths, out, cfg)
    work = out / "_work"
    fp = json.loads((work / "fingerprint.json").read_text())
    del fp["format"]
    (work / "fingerprint.json").write_text(json.dumps(fp))
    shutil.rmtree(work / "lsh")
    (out / "report.json").unlink()
    for stage in ("decide", "finalize"):
        (work / "logs" / stage / "completions" / "00000").unlink()
    again = build_corpus(paths, out, cfg)  # the older layout: everything redone, band hashes included
    assert again["corpus_hash"] == first["corpus_hash"] and (work / "lsh" / "0-0" / "00001.u64").exists()
    (work / "lsh" / "0-0" / "00001.u64").unlink()
    with pytest.raises(RuntimeError, match=r"band hashes of prepare task\(s\) \['00001'\] are missing.*delete"):
        LshBuckets(cfg, work).run(rank=0, world_size=1)
    assert bucket_tasks(PipelineConfig(tasks=1200)) == MAX_BUCKET_TASKS == 64
    assert bucket_tasks(PipelineConfig(tasks=1200, near_dedup=False)) == 1
    with BandHashWriter(tmp_path / "w", 0, (5, 11), bucket_tasks(PipelineConfig(tasks=1200))) as w:
        assert len(w.files) == 5 * 13
    with pytest.raises(ValueError), BandHashWriter(tmp_path / "w", 1, (5, 11), 2):
        raise ValueError("the task failed")
    assert not list((tmp_path / "w").glob("*/00001.u64"))  # a failed task leaves no file the stage would read


def test_prepared_rows_come_back_in_input_order_and_labels_keep_their_types():
    """``decide.in_input_order`` joins each input file's run of rows (or sorts, past ``MAX_RUNS``) and gives the
    table sorted by ``order``, whatever the tasks' files, empty tasks included; ``labels_json`` caches only
    string-valued label sets (1, True and 1.0 are equal as cache keys, not as JSON)."""
    import random

    import pyarrow as pa

    from tweetlm.data.formats.dispatch import ORDER_BITS
    from tweetlm.data.pipeline import decide
    from tweetlm.data.pipeline.steps import labels_json

    rng = random.Random(0)
    for n_files in (7, decide.MAX_RUNS + 40):
        rows = {f: sorted(rng.sample(range(50), rng.randint(0, 6))) for f in range(n_files)}  # kept rows per file
        tasks = [[] for _ in range(3)]
        for f in rng.sample(list(rows), n_files):  # files go to tasks in any order, read one after another
            tasks[rng.randrange(3)].append(f)
        tables = [
            pa.table({"order": pa.array([(f << ORDER_BITS) + k for f in fs for k in rows[f]], type=pa.int64())})
            for fs in tasks + [[]]
        ]
        got = decide.in_input_order(tables).column("order").to_pylist()
        assert got == sorted((f << ORDER_BITS) + k for f, ks in rows.items() for k in ks) and len(got) > 0
    assert [labels_json(x) for x in ({"x": 1}, {"x": True}, {"x": 1.0}, {"x": ["a"]}, {"s": "neg"}, {})] == [
        '{"x": 1}',
        '{"x": true}',
        '{"x": 1.0}',
        '{"x": ["a"]}',
        '{"s": "neg"}',
        "{}",
    ]


def test_a_planning_warning_is_given_once_not_once_per_task(tmp_path, caplog):
    """Every task plans the whole input again; what planning warns of was said by the build before the tasks."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "posts.jsonl").write_text(
        "".join(json.dumps({"id": str(i), "text": f"post number {i} about the weather"}) + "\n" for i in range(6))
    )
    (tmp_path / "in" / "orphan_labels.txt").write_text("1\n2\n")
    with caplog.at_level("WARNING"):
        build_corpus([str(tmp_path / "in")], tmp_path / "out", PipelineConfig(tasks=3, workers=1))
    assert sum("orphan_labels.txt has no matching" in r.getMessage() for r in caplog.records) == 1
    # reading without a build (clean_posts: the steps alone, nothing planned before) still warns
    from tweetlm.data.pipeline.inprocess import clean_posts

    caplog.clear()
    with caplog.at_level("WARNING"):
        posts, _ = clean_posts([tmp_path / "in"], PipelineConfig(lang_detect="off"))
    assert len(posts) == 6
    assert sum("orphan_labels.txt has no matching" in r.getMessage() for r in caplog.records) == 1
