"""IndoLEM tweet files (layer L1, data): sentiment CSVs (``sentence,sentiment``) and the tweet-ordering JSON,
whose records are threads (one ``kind="thread"`` document each). ``train*`` and ``dev*`` files keep their
split; ``test*`` files get none."""

from __future__ import annotations

import json
from collections.abc import Iterator

from tweetlm.data.formats.files import FileInfo, FileReader, load_json, prov, utf8_csv_rows
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post

_INDOLEM_SENTIMENT = {"0": "negative", "1": "positive"}


def _stem_split(stem: str) -> str | None:
    s = stem.lower()
    if s.startswith("train"):
        return "train"
    if s.startswith(("dev", "val")):
        return "val"
    return None


def _detect_indolem_sentiment(info: FileInfo) -> bool:
    return info.name.lower().endswith(".csv") and info.csv_header() == ["sentence", "sentiment"]


def _read_indolem_sentiment(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    source = info.dir_source
    split = _stem_split(info.stem)
    for i, _header, row in utf8_csv_rows(info, ledger, source):
        value = row[1].strip()
        yield Post(
            id=info.fallback_id(source, i),
            text=row[0],
            source=source,
            split=split,
            lang="id",
            labels={"sentiment": _INDOLEM_SENTIMENT.get(value, value)},
            provenance=prov(info, i, "indolem_sentiment_csv"),
        )


def _detect_indolem_ordering(info: FileInfo) -> bool:
    return info.name.lower().endswith(".json") and b'"tweets"' in info.head[:4096] and b'"order"' in info.head


def _read_indolem_ordering(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    """One thread document per record. ``order[i]`` is the position of ``tweets[i]`` in the thread (the IndoLEM
    model predicts a position per tweet), so the thread reads ``sorted(range(n), key=order.__getitem__)``."""
    source = info.dir_source
    split = _stem_split(info.stem)
    data = load_json(info)
    if not isinstance(data, list):
        raise ValueError(f"{info.display}: expected a JSON list of {{tweets, order}} objects")
    for i, rec in enumerate(data):
        ledger.seen(source)
        tweets = rec.get("tweets") if isinstance(rec, dict) else None
        order = rec.get("order") if isinstance(rec, dict) else None
        if (
            not isinstance(tweets, list)
            or not all(isinstance(t, str) for t in tweets)
            or not isinstance(order, list)
            or sorted(order) != list(range(len(tweets)))
        ):
            ledger.quarantine(source, info.display, i, "invalid_thread", json.dumps(rec, ensure_ascii=False))
            continue
        text = "\n".join(tweets[j] for j in sorted(range(len(tweets)), key=order.__getitem__))
        yield Post(
            id=info.fallback_id(source, i),
            text=text,
            source=source,
            split=split,
            lang="id",
            kind="thread",
            provenance=prov(info, i, "indolem_ordering_json"),
        )


READERS = (
    FileReader("indolem_sentiment_csv", _detect_indolem_sentiment, _read_indolem_sentiment),
    FileReader("indolem_ordering_json", _detect_indolem_ordering, _read_indolem_ordering),
)
