"""Fuzzing the readers (issue 17): seeded damage to a real file of every format never crashes a read or a build,
and every record is accounted (in = kept + dropped + quarantined, per source).

Seeds are the real format samples of ../shared/formats (X API v2 pages, v1.1 tweets in both formats, the X
archive's tweets.js, Mastodon statuses, Bluesky records) plus generic CSV/JSONL/Parquet files and gzip/zip
copies. The damage: truncation at a random byte, random byte flips, and, for JSON, fields replaced by values of
the wrong type or absurd size, removed, or nested thousands deep. Each damaged file is read beside an intact
anchor file, whose posts must all come out (one bad file never costs another its records). A seeded generator
of our own rather than Hypothesis: the cases are the same on every run, and a failure names its seed.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from tweetlm.data.formats.dispatch import read_corpus
from tweetlm.data.ledger import Ledger

FORMATS = Path(__file__).resolve().parents[1].parent / "shared" / "formats"
SEEDS = [
    "twitter_v2_twarc_csv_testdata/two_tweets.jsonl",
    "twitter_v2_twarc_csv_testdata/edited.jsonl",
    "twitter_v2_twarc_csv_testdata/cotweet.jsonl",
    "twitter_v11_tweet_parser_examples/original_format_missing_field.json",
    "twitter_v11_tweet_parser_examples/activity_streams_additional_field.json",
    "twitter_v11_tweet_updates_samples/initial_extended_classic_14002.json",
    "mastodon/examples/statuses__04.json",
    "mastodon/examples/Status__00.json",
    "bluesky/docs_examples/creating-a-post__02.json",
]
CASES_PER_SEED = 40

JETSTREAM = [
    {"did": "did:plc:a", "time_us": 1725911162329308, "kind": "commit",
     "commit": {"rev": "1", "operation": "create", "collection": "app.bsky.feed.post", "rkey": f"3l3q{i}",
                "record": {"$type": "app.bsky.feed.post", "createdAt": "2024-09-09T19:46:02.102Z",
                           "langs": ["en"], "text": f"jetstream post number {i} about the weather"},
                "cid": f"bafy{i}"}}
    for i in range(4)
]  # fmt: skip
GENERIC = [
    {"id": str(100 + i), "text": f"a generic post number {i}, with a link https://t.co/x{i}",
     "created_at": f"2021-03-0{1 + i}T10:00:00Z", "author_id": f"u{i % 3}", "lang": "en"}
    for i in range(6)
]  # fmt: skip


def _read(paths: list[Path]):
    ledger = Ledger()
    posts = list(read_corpus([str(p) for p in paths], ledger))
    ledger.check(dict(Counter(p.source for p in posts)))  # in = kept + dropped + quarantined, per source
    return posts, ledger


def _wrong_value(rng: random.Random) -> object:
    return rng.choice(
        [None, True, False, 0, -1, 2**70, 1.5e308, float("nan"), "", "x" * rng.choice([1, 300, 20_000]),
         [], {}, [None], {"text": 5}, "2015-13-45T99:99:99Z", "0001-01-01T00:00:00+14:00", "\ud800", "\x00"]
    )  # fmt: skip


def _nodes(obj: object, path=(), depth: int = 12):
    yield path, obj
    if depth and isinstance(obj, dict):
        for k, v in obj.items():
            yield from _nodes(v, (*path, k), depth - 1)
    elif depth and isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _nodes(v, (*path, i), depth - 1)


def _mutate_json(value: object, rng: random.Random) -> object:
    """Replace, remove or deeply nest a few random nodes of a parsed JSON value (in place; returns the root)."""
    for _ in range(rng.randint(1, 4)):
        nodes = [(p, o) for p, o in _nodes(value) if p]
        if not nodes:
            return _wrong_value(rng)
        path, _ = rng.choice(nodes)
        parent = value
        for k in path[:-1]:
            parent = parent[k]
        action = rng.random()
        if action < 0.6:
            parent[path[-1]] = _wrong_value(rng)
        elif action < 0.85 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = f"__deep_{rng.choice([50, 5000, 100_000])}__"  # nested lists, written by _dump
    return value


def _dump(value: object) -> str:
    """JSON text of ``value`` (ASCII: a lone surrogate is written as a ``\\ud800`` escape), a ``"__deep_N__"``
    string written as N nested lists."""
    text = json.dumps(value)
    for n in (50, 5000, 100_000):
        text = text.replace(f'"__deep_{n}__"', "[" * n + '"bottom"' + "]" * n)
    return text


def _damage(data: bytes, name: str, rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.25 and data:
        return data[: rng.randrange(len(data))]
    if kind < 0.5 and data:
        b = bytearray(data)
        for _ in range(rng.choice([1, 3, 10, 50])):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if name.endswith(".jsonl"):
        lines = data.decode("utf-8").splitlines()
        i = rng.randrange(len(lines))
        lines[i] = _dump(_mutate_json(json.loads(lines[i]), rng))
        return ("\n".join(lines) + "\n").encode()
    if name.endswith(".json"):
        return _dump(_mutate_json(json.loads(data), rng)).encode()
    if name.endswith(".csv"):
        lines = data.decode().splitlines()
        i = rng.randrange(1, len(lines))
        lines[i] = rng.choice(['"' + lines[i], lines[i] + ',extra,"cols', "", lines[i].replace(",", '","', 1),
                               lines[i] + "x" * 200_000, "\x00" + lines[i]])  # fmt: skip
        return ("\n".join(lines) + "\n").encode()
    b = bytearray(data)  # binary formats: flip bytes
    for _ in range(rng.choice([1, 5, 40])):
        b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)


def _generic_files() -> dict[str, bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_text = "id,text,created_at,author_id\n" + "".join(
        f'{r["id"]},"{r["text"]}",{r["created_at"]},{r["author_id"]}\n' for r in GENERIC
    )
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(GENERIC), buf)
    jsonl = "".join(json.dumps(r) + "\n" for r in GENERIC).encode()
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("posts.jsonl", jsonl)
    return {
        "sheet.csv": csv_text.encode(),
        "posts.jsonl": jsonl,
        "table.parquet": buf.getvalue(),
        "jetstream.jsonl": "".join(json.dumps(e) + "\n" for e in JETSTREAM).encode(),
        "posts.jsonl.gz": gzip.compress(jsonl, mtime=0),
        "export.zip": zbuf.getvalue(),
    }


def _seed_files() -> dict[str, bytes]:
    files = _generic_files()
    if FORMATS.is_dir():
        for rel in SEEDS:
            files[rel.replace("/", "__")] = (FORMATS / rel).read_bytes()
    return files


@pytest.fixture(scope="module")
def anchor(tmp_path_factory):
    d = tmp_path_factory.mktemp("anchor")
    f = d / "anchor.jsonl"
    f.write_text("".join(json.dumps({**r, "id": "9" + r["id"]}) + "\n" for r in GENERIC))
    return f


@pytest.mark.parametrize("name", sorted(_seed_files()))
def test_damaged_files_never_crash_a_read_and_every_record_is_counted(name, anchor, tmp_path):
    data = _seed_files()[name]
    _, intact = _read([_write(tmp_path / "intact" / name, data)])
    assert intact.totals().records_in > 0
    for case in range(CASES_PER_SEED):
        seed = f"{name}:{case}"
        rng = random.Random(seed)
        inner = name[: -len(".gz")] if name.endswith(".gz") else name
        if name.endswith(".gz") and rng.random() < 0.5:  # damage the content, then compress it intact
            damaged = gzip.compress(_damage(gzip.decompress(data), inner, rng), mtime=0)
        elif name.endswith(".zip") and rng.random() < 0.5:
            zbuf = io.BytesIO()
            with zipfile.ZipFile(zbuf, "w") as z:
                z.writestr("posts.jsonl", _damage(json_lines(), "posts.jsonl", rng))
            damaged = zbuf.getvalue()
        else:
            damaged = _damage(data, name, rng)
        f = _write(tmp_path / str(case) / name, damaged)
        try:
            posts, ledger = _read([f, anchor])
        except Exception as e:  # noqa: BLE001
            raise AssertionError(f"seed {seed!r}: {type(e).__name__}: {e}") from e
        assert {p.id for p in posts} >= {"9" + r["id"] for r in GENERIC}, seed  # the intact file is all read
        assert ledger.totals().records_in >= len(GENERIC), seed  # a file no reader knows is named in a warning


def json_lines() -> bytes:
    return "".join(json.dumps(r) + "\n" for r in GENERIC).encode()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_build_over_damaged_files_accounts_for_every_record(tmp_path):
    """The whole pipeline (read, clean, MinHash, threads, split) over one damaged copy of every seed."""
    from tweetlm.data.pipeline.build import build_corpus
    from tweetlm.data.pipeline.config import PipelineConfig

    src = tmp_path / "in"
    for name, data in sorted(_seed_files().items()):
        rng = random.Random(f"build:{name}")
        _write(src / name, _damage(data, name, rng) if rng.random() < 0.7 else data)
    report = build_corpus([src], tmp_path / "out", PipelineConfig(workers=1))
    acc = json.loads((tmp_path / "out" / "accounting.json").read_text())["sources"]
    for source, c in acc.items():
        assert c["in"] == c["kept"] + sum(c["dropped"].values()) + c["quarantined"], source
    assert report["kept"] > 0
