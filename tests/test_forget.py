"""Deletion requests: ``tweetlm data forget`` removes posts (and retweets of them) from a built corpus, writes a
new corpus hash and lists the runs trained on a corpus that contained them."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from test_pipeline import make_corpus

from tweetlm.cli.main import main
from tweetlm.data.pipeline.build import build_corpus
from tweetlm.data.pipeline.config import PipelineConfig
from tweetlm.data.pipeline.forget import forget


def _ids(out) -> dict[str, dict]:
    return {r["id"]: r for s in ("train", "val") for r in pq.read_table(out / f"{s}.parquet").to_pylist()}


def _fake_run(runs, name: str, corpus_hash: str, steps=(10, 20)) -> None:
    run = runs / name
    for s in steps:
        (run / "checkpoints" / f"step_{s:07d}").mkdir(parents=True)
    (run / "stages.json").write_text(json.dumps({"data": {"corpus_hash": corpus_hash}}))


@pytest.fixture
def corpus(tmp_path):
    paths = make_corpus(tmp_path / "in")
    report = build_corpus(paths, tmp_path / "corpus", PipelineConfig(workers=1))
    return tmp_path / "corpus", report


def test_forget_posts_retweets_and_thread_members(corpus, tmp_path):
    out, report = corpus
    old_hash = report["corpus_hash"]
    runs = tmp_path / "runs"
    _fake_run(runs, "trained_on_it", old_hash)
    _fake_run(runs, "other_corpus", "0" * 64, steps=(5,))
    before = _ids(out)
    assert before["2000"]["retweet_ids"] == ["2001"] and before["1000"]["thread_ids"] == ["1000", "1002", "1003"]

    res = forget({"2000", "1002", "no-such-id"}, out, runs)
    after = _ids(out)
    assert "2000" not in after  # the original; its retweet 2001 was collapsed into it
    t = after["1000"]  # the thread is rebuilt without the forgotten reply
    assert t["thread_ids"] == ["1000", "1003"]
    assert (
        t["text"] == "The train was late again this morning, third time this week\n@bob ours was cancelled altogether"
    )
    assert res["removed"] == {"stream/posts": 1} and res["found_ids"] == ["1002", "2000"]
    assert res["not_found_ids"] == ["no-such-id"]
    assert res["old_hash"] == old_hash and res["new_hash"] != old_hash
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["corpus_hash"] == res["new_hash"] and manifest["history"][0]["corpus_hash"] == old_hash
    assert "2000" not in manifest["shards"]["train.parquet"]["ids"] + manifest["shards"]["val.parquet"]["ids"]
    # the ledger equation still holds, with the deletion as a drop reason
    acc = json.loads((out / "accounting.json").read_text())["sources"]["stream/posts"]
    assert acc["dropped"]["deleted_on_request"] == 1
    assert acc["in"] == acc["kept"] + sum(acc["dropped"].values()) + acc["quarantined"]
    assert [r["run"].split("/")[-1] for r in res["runs"]] == ["trained_on_it"]
    assert [c.split("/")[-1] for c in res["runs"][0]["checkpoints"]] == ["step_0000010", "step_0000020"]
    assert not (out / "_work").exists()  # intermediate files held the texts too

    # a later run on the new corpus is not affected; asking again still finds the old run through the history
    _fake_run(runs, "trained_after", res["new_hash"], steps=(1,))
    again = forget({"2000"}, out, runs)
    assert again["found_ids"] == [] and again["new_hash"] == res["new_hash"]
    assert [r["run"].split("/")[-1] for r in again["runs"]] == ["trained_on_it"]


def test_forget_rows_retweet_stand_in_and_counts():
    """A retweet kept in place of a missing original goes with the original; a kept original loses the listed
    retweets from its count; a thread left with one post becomes a post."""
    from tweetlm.data.pipeline.forget import _forget_rows

    cols = {
        "id": ["9001", "9100", "9200"],
        "source": ["s", "s", "s"],
        "text": ["RT @carol: original not in the corpus", "an original", "root\nreply"],
        "kind": ["retweet", "post", "thread"],
        "retweeted_id": ["9000", None, None],
        "retweets": [0, 2, 0],
        "retweet_ids": [[], ["9101", "9102"], []],
        "thread_ids": [[], [], ["9200", "9201"]],
        "thread_texts": [[], [], ["root", "reply"]],
    }
    kept, removed, found, changed, touched = _forget_rows(cols, {"9000", "9101", "9201"})
    assert kept["id"] == ["9100", "9200"] and removed == {"s": 1} and found == {"9000", "9101", "9201"}
    assert kept["retweets"] == [1, 0] and kept["retweet_ids"][0] == ["9102"]
    assert kept["text"][1] == "root" and kept["kind"][1] == "post" and kept["thread_ids"][1] == []
    assert changed == {"RT @carol: original not in the corpus": None, "root\nreply": "root"}
    assert touched == {"9001", "9200"}  # the removed stand-in and the rebuilt thread, as an index may hold them


def test_forget_erases_the_texts_from_memorization_guards(corpus, tmp_path, capsys):
    """Issue 17: a guard kept a deleted post's text verbatim. Every guard under --runs-dir (in an affected run or
    not) loses the removed documents' texts; a rebuilt thread's new text replaces its old one; an unreadable
    guard is reported, not skipped."""
    from tweetlm.ads.guard import MemorizationGuard, build_guard

    out, report = corpus
    runs = tmp_path / "runs"
    _fake_run(runs, "base", report["corpus_hash"])
    before = _ids(out)
    post, thread = before["2000"]["text"], before["1000"]["text"]
    in_train = set(pq.read_table(out / "train.parquet", columns=["text"]).column("text").to_pylist())
    guards = [runs / "base" / "memorization_guard.pkl", runs / "ads" / "memorization_guard.pkl"]
    for g in guards:
        build_guard(str(out), g, progress=False)
    (runs / "broken").mkdir()
    (runs / "broken" / "memorization_guard.pkl").write_bytes(b"not a pickle")
    held = [t for t in (post, thread) if t in in_train]
    assert held and all(t.encode() in guards[0].read_bytes() for t in held)
    ids = tmp_path / "ids.txt"
    ids.write_text("2000\n1002\n")
    assert main(["data", "forget", "--ids", str(ids), "--corpus", str(out), "--runs-dir", str(runs)]) == 0
    text = capsys.readouterr().out
    assert f"memorization guard {guards[0]}: {len(held)} text(s) erased" in text
    assert f"memorization guard {guards[1]}: {len(held)} text(s) erased" in text
    assert "broken/memorization_guard.pkl could not be read (" in text and "rebuild or delete it" in text
    for g in guards:
        assert not any(t.encode() in g.read_bytes() for t in held)
        guard = MemorizationGuard.load(g)
        assert not any(guard.check(t).jaccard == 1.0 for t in held)
        if thread in held:
            assert guard.check(_ids(out)["1000"]["text"]).jaccard == 1.0  # the rebuilt thread took its place


def test_forget_cli(corpus, tmp_path, capsys):
    out, _ = corpus
    ids = tmp_path / "ids.txt"
    ids.write_text("# deletion requests\n3001\n\n")
    assert main(["data", "forget", "--ids", str(ids), "--corpus", str(out), "--runs-dir", str(tmp_path / "r")]) == 0
    text = capsys.readouterr().out
    assert "1 id(s) asked, 1 found; 1 document(s) removed" in text and "3001" not in _ids(out)
    assert main(["data", "forget", "--ids", str(ids), "--corpus", str(tmp_path)]) == 2
    assert "not a corpus folder" in capsys.readouterr().err
    assert main(["data", "forget", "--ids", str(tmp_path / "none.txt"), "--corpus", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_forget_cli_deletes_from_a_search_index(tmp_path, capsys):
    """--search-index: the listed post and an indexed retweet of it leave the search index too."""
    from tweetlm.data.post import Post, Provenance
    from tweetlm.search.index import SearchIndex

    def post(pid, text, **kw):
        return Post(id=pid, text=text, source="t", provenance=Provenance("f", 0, "t"), **kw)

    idx = SearchIndex.create(tmp_path / "idx")
    idx.add([
        post("10", "lost my luggage at the airport again"),
        post("11", "RT @bob: lost my luggage at the airport again", kind="retweet", retweeted_id="10"),
        post("12", "the crew on my flight were wonderful"),
    ])  # fmt: skip
    corpus = tmp_path / "corpus"
    build_corpus(make_corpus(tmp_path / "in"), corpus, PipelineConfig(workers=1))
    ids = tmp_path / "ids.txt"
    ids.write_text("10\n")
    args = ["data", "forget", "--ids", str(ids), "--corpus", str(corpus), "--runs-dir", str(tmp_path / "r")]
    # without --search-index, an index beside the corpus that still holds them is named (issue 17: it was silent)
    assert main(args) == 0
    assert f"warning: search index {tmp_path / 'idx'} still holds 2 of them" in capsys.readouterr().out
    assert main(args + ["--search-index", str(tmp_path / "idx")]) == 0
    text = capsys.readouterr().out
    assert "2 post(s) deleted" in text and "warning: search index" not in text
    again = SearchIndex.open(tmp_path / "idx")
    assert len(again) == 1 and "12" in again and "10" not in again and "11" not in again


def test_resume_refuses_a_corpus_changed_by_forget(tmp_path):
    from tweetlm.common.runfolder import RunFolder
    from tweetlm.jobs.run import check_resume_matches

    rf = RunFolder.create(tmp_path / "r")
    rf.data.mkdir()
    stages = {"corpus": ["posts.jsonl"], "data": {"corpus_hash": "a" * 64}}
    (rf.data / "manifest.json").write_text(json.dumps({"corpus_hash": "a" * 64}))
    check_resume_matches(rf, None, ["posts.jsonl"], stages)  # unchanged: fine (no config.json: no config check)
    (rf.data / "manifest.json").write_text(json.dumps({"corpus_hash": "b" * 64}))
    with pytest.raises(ValueError, match="corpus changed.*data forget.*another --name"):
        check_resume_matches(rf, None, ["posts.jsonl"], stages)


def test_forget_lists_fine_tunes_and_memorization_guards(corpus, tmp_path, capsys):
    out, report = corpus
    runs = tmp_path / "runs"
    _fake_run(runs, "base", report["corpus_hash"])
    _fake_run(runs, "unrelated", "0" * 64)

    def tune(name: str, base) -> None:
        (runs / name / "checkpoints" / "step_0000003").mkdir(parents=True)
        (runs / name / "config.json").write_text(json.dumps({"sft_base": {"checkpoint": str(base)}}))
        (runs / name / "memorization_guard.pkl").write_bytes(b"x")

    tune("tuned", runs / "base" / "checkpoints" / "step_0000020")
    tune("tuned_again", runs / "tuned" / "checkpoints" / "step_0000003")  # a fine-tune of the fine-tune
    tune("tuned_other", runs / "unrelated" / "checkpoints" / "step_0000020")
    (runs / "base" / "memorization_guard.pkl").write_bytes(b"x")
    ids = tmp_path / "ids.txt"
    ids.write_text("3001\n")
    assert main(["data", "forget", "--ids", str(ids), "--corpus", str(out), "--runs-dir", str(runs)]) == 0
    text = capsys.readouterr().out
    assert "runs/tuned (fine-tuned from" in text and "runs/tuned_again (fine-tuned from" in text
    assert "tuned_other (fine-tuned" not in text  # not affected; its unreadable guard is still reported
    assert "rebuild or delete" in text
    for name in ("base", "tuned", "tuned_again"):
        assert f"runs/{name}/memorization_guard.pkl" in text
    assert (runs / "tuned" / "memorization_guard.pkl").exists()  # listed, not deleted


def test_forget_lists_sft_folders_by_base_and_by_fine_tuning_set(corpus, tmp_path, capsys):
    out, report = corpus
    runs = tmp_path / "runs"
    _fake_run(runs, "base", report["corpus_hash"])
    _fake_run(runs, "unrelated", "0" * 64)

    def sft(name: str, base, source_ids: list[str]) -> None:
        (runs / name / "checkpoints" / "step_0000003").mkdir(parents=True)
        (runs / name / "config.json").write_text(json.dumps({"sft_base": {"checkpoint": str(base)}}))
        ex = {"id": "x", "task": "post", "messages": [], "source_ids": source_ids, "source": "s", "split": "train"}
        (runs / name / "sft_train.jsonl").write_text(json.dumps(ex) + "\n")

    sft("chat", runs / "base" / "checkpoints" / "step_0000020", ["9"])  # fine-tuned from an affected run
    sft("chat_set", runs / "unrelated" / "checkpoints" / "step_0000020", ["3001"])  # its set holds the post
    sft("chat_other", runs / "unrelated" / "checkpoints" / "step_0000020", ["9"])
    ids = tmp_path / "ids.txt"
    ids.write_text("3001\n")
    assert main(["data", "forget", "--ids", str(ids), "--corpus", str(out), "--runs-dir", str(runs)]) == 0
    text = capsys.readouterr().out
    assert "runs/chat (fine-tuned from" in text and "runs/chat_set (its fine-tuning set or" in text
    assert "chat_other" not in text
    assert "search training pairs built from them" in text and "runs/chat_set/sft_train.jsonl" in text


def test_forget_lists_search_models_trained_on_the_posts(corpus, tmp_path):
    """``tweetlm search train`` keeps its pairs with their source posts: a removed post names the folder and its
    two models."""
    from tweetlm.search.pairs import Pair

    out, _ = corpus
    runs = tmp_path / "runs"
    for name, src in (("search_model", ["3001", "9"]), ("other_model", ["9"])):
        (runs / name / "retriever").mkdir(parents=True)
        (runs / name / "reranker").mkdir()
        (runs / name / "pairs_train.jsonl").write_text(Pair("q", "p", "reply", src, src[-1]).to_json() + "\n")
    report = forget({"3001"}, out, runs)
    hit = [r for r in report["runs"] if "model" in r["run"]]
    assert [r["run"] for r in hit] == [str(runs / "search_model")]
    assert hit[0]["checkpoints"] == [str(runs / "search_model" / m) for m in ("retriever", "reranker")]
    assert report["sft_sets"] == [str(runs / "search_model" / "pairs_train.jsonl")]


def test_forget_cli_messages(corpus, tmp_path, capsys):
    out, _ = corpus
    bad = tmp_path / "ids.bin"
    bad.write_bytes(b"\xff\xfe\x00 not text")
    assert main(["data", "forget", "--ids", str(bad), "--corpus", str(out)]) == 2
    assert f"--ids {bad} is not UTF-8" in capsys.readouterr().err
    ids = tmp_path / "ids.txt"
    ids.write_text("no-such-id\n")
    assert main(["data", "forget", "--ids", str(ids), "--corpus", str(out), "--runs-dir", str(tmp_path / "nope")]) == 0
    text = capsys.readouterr().out
    assert "corpus unchanged" in text and " -> " not in text
    assert f"--runs-dir {tmp_path / 'nope'} does not exist" in text


def test_forget_lists_the_checkpoints_of_a_from_scratch_comparison(tmp_path):
    from tweetlm.data.pipeline.forget import _affected_runs

    run = tmp_path / "runs" / "demo"
    for sub in ("checkpoints/step_0000064", "scratch/checkpoints/step_0000450", "base"):
        (run / sub).mkdir(parents=True)
    (run / "stages.json").write_text(json.dumps({"data": {"corpus_hash": "abc"}}))
    (found,) = _affected_runs(tmp_path / "runs", {"abc"}, set())
    names = [c.split("runs/demo/")[1] for c in found["checkpoints"]]
    assert names == ["checkpoints/step_0000064", "scratch/checkpoints/step_0000450"]  # base/ holds no posts
    assert _affected_runs(tmp_path / "runs", {"other"}, set()) == []


def test_forget_from_another_folder_finds_fine_tunes_with_a_relative_base(corpus, tmp_path, capsys, monkeypatch):
    """Issue 17: a fine-tune made in the project folder stored its base as ``runs/base/...``; ``data forget``
    run from elsewhere resolved that against its own folder and missed the fine-tune and its guard."""
    out, report = corpus
    runs = tmp_path / "runs"
    _fake_run(runs, "base", report["corpus_hash"])
    (runs / "tuned" / "checkpoints" / "step_0000003").mkdir(parents=True)
    rel = {"sft_base": {"checkpoint": "runs/base/checkpoints/step_0000020"}}  # relative to tmp_path
    (runs / "tuned" / "config.json").write_text(json.dumps(rel))
    (runs / "tuned" / "memorization_guard.pkl").write_bytes(b"x")
    ids = tmp_path / "ids.txt"
    ids.write_text("3001\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["data", "forget", "--ids", str(ids), "--corpus", str(out), "--runs-dir", str(runs)]) == 0
    text = capsys.readouterr().out
    assert "runs/tuned (fine-tuned from" in text and "runs/tuned/memorization_guard.pkl" in text


def test_forget_reaches_threads_and_raw_retweet_copies_in_an_index_and_guards_on_a_rerun(corpus, tmp_path, capsys):
    """An attacker's findings (issue 17): with --search-index, a thread document holding the forgotten reply
    stayed searchable, and so did an "RT @user: <same text>" copy indexed from raw pages without a retweeted id;
    a forget rerun (or one first given the wrong --runs-dir) never erased the text from a guard."""
    from tweetlm.ads.guard import build_guard
    from tweetlm.data.post import Post, Provenance
    from tweetlm.search.index import SearchIndex
    from tweetlm.search.posts import load_posts

    out, _ = corpus
    before = _ids(out)
    thread_text, post_text = before["1000"]["text"], before["2000"]["text"]
    posts, _ = load_posts([out])
    raw_rt = Post(id="777", text=f"RT @someone: {post_text}", source="raw", provenance=Provenance("raw", 0, "t"))
    idx = SearchIndex.create(tmp_path / "idx")
    idx.add([*posts, raw_rt])
    assert "1000" in idx and "777" in idx
    runs = tmp_path / "runs"
    guard = runs / "x" / "memorization_guard.pkl"
    build_guard(str(out), guard, progress=False)
    in_guard = [t for t in (post_text, thread_text) if t.encode() in guard.read_bytes()]
    assert in_guard
    ids = tmp_path / "ids.txt"
    ids.write_text("2000\n1002\n")
    wrong = ["data", "forget", "--ids", str(ids), "--corpus", str(out), "--runs-dir", str(tmp_path / "nope")]
    assert main(wrong + ["--search-index", str(tmp_path / "idx")]) == 0  # the guard's folder was not given
    capsys.readouterr()
    again = SearchIndex.open(tmp_path / "idx")
    assert "1000" not in again and "777" not in again and "2000" not in again  # the thread and the raw copy too
    assert guard.read_bytes().count(post_text.encode()) >= 1  # not reached yet
    rerun = ["data", "forget", "--ids", str(ids), "--corpus", str(out), "--runs-dir", str(runs)]
    assert main(rerun) == 0  # nothing left in the corpus: the guard is still scrubbed, by the texts' digests
    assert f"memorization guard {guard}: {len(in_guard)} text(s) erased" in capsys.readouterr().out
    assert not any(t.encode() in guard.read_bytes() for t in in_guard)
