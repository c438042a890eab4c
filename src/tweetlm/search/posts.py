"""Posts to index, from a clean corpus or from raw inputs (layer L4, search).

``load_posts(paths)`` accepts, in any mix: a run folder (its ``data/``), a clean-corpus folder written by
``data.corpus.write_corpus`` (``manifest.json`` beside ``train.parquet``/``val.parquet``), single ``.parquet``
files of that layout, or anything ``data.formats.dispatch.read_corpus`` reads, which is first built into a corpus
by the ingestion pipeline (``data.pipeline.build_corpus``, one task, in a temporary folder: normalized,
filtered, threads joined, duplicates dropped; both splits are indexed), so an index over raw files holds what a
corpus of them would. Reading and cleaning rules live in ``data``; this module only routes paths to them.
"""

from __future__ import annotations

import json
from pathlib import Path

from tweetlm.data.post import Post, Provenance

_POST_FIELDS = (
    "created_at",
    "author_id",
    "lang",
    "kind",
    "reply_to_id",
    "conversation_id",
    "quoted_id",
    "retweeted_id",
    "split",
)


def _parquet_files(path: Path) -> list[Path] | None:
    """The clean-corpus Parquet files ``path`` stands for, or ``None`` when it is raw input."""
    if path.is_file() and path.suffix == ".parquet":
        return [path]
    if path.is_dir():
        for d in (path / "data", path):
            if (d / "manifest.json").exists() and list(d.glob("*.parquet")):
                return sorted(d.glob("*.parquet"))
    return None


def read_parquet_posts(path: Path) -> list[Post]:
    """Posts of one Parquet shard written by ``write_corpus`` (an empty shard gives ``[]``)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if "text" not in table.column_names:
        return []
    out = []
    for i, r in enumerate(table.to_pylist()):
        labels = r.get("labels")
        out.append(
            Post(
                id=str(r["id"]),
                text=r["text"],
                source=r.get("source") or path.stem,
                provenance=Provenance(
                    r.get("prov_file") or str(path), int(r.get("prov_record") or i), r.get("prov_reader") or "parquet"
                ),
                hashtags=list(r.get("hashtags") or []),
                mentions=list(r.get("mentions") or []),
                urls=list(r.get("urls") or []),
                labels=json.loads(labels) if isinstance(labels, str) and labels else {},
                **{k: r.get(k) for k in _POST_FIELDS if r.get(k) is not None},
            )
        )
    return out


def load_posts(paths: list[str | Path], val_fraction: float = 0.05) -> tuple[list[Post], dict]:
    """All posts under ``paths`` and a summary ``{"clean_corpus_files": [...], "raw": accounting dict or None}``.

    Raises ``ValueError`` for a path that does not exist or holds no readable posts (from ``build_corpus``).
    """
    import tempfile

    from tweetlm.data.pipeline.build import SPLIT_FILES, build_corpus
    from tweetlm.data.pipeline.config import PipelineConfig

    posts: list[Post] = []
    raw: list[Path] = []
    parquet: list[str] = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise ValueError(f"corpus path {str(p)!r} does not exist; pass a run folder, its data/ or post files")
        files = _parquet_files(path)
        if files is None:
            raw.append(path)
            continue
        for f in files:
            parquet.append(str(f))
            posts += read_parquet_posts(f)
    accounting = None
    if raw:
        with tempfile.TemporaryDirectory(prefix="tweetlm_search_corpus_") as tmp:
            build_corpus(raw, Path(tmp) / "corpus", PipelineConfig(val_fraction=val_fraction, workers=1))
            for name in reversed(SPLIT_FILES):  # validation first, as before
                posts += read_parquet_posts(Path(tmp) / "corpus" / name)
            accounting = json.loads((Path(tmp) / "corpus" / "accounting.json").read_text())
    return posts, {"clean_corpus_files": parquet, "raw": accounting}
