"""Davidson et al. 2017 hate speech and offensive language CSV (layer L1, data): ``labeled_data.csv`` with
annotator counts and a ``class`` column (named from the corpus readme); no tweet ids, so ids are made up."""

from __future__ import annotations

from collections.abc import Iterator

from tweetlm.data.formats.base import has_surrogates
from tweetlm.data.formats.files import FileInfo, FileReader, csv_records, prov
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post

_DAVIDSON_CLASS = {"0": "hate_speech", "1": "offensive_language", "2": "neither"}  # the corpus readme


def _detect_davidson(info: FileInfo) -> bool:
    h = info.csv_header() if info.name.lower().endswith(".csv") else []
    return bool(h) and h[-1] == "tweet" and {"hate_speech", "offensive_language", "neither", "class"} <= set(h)


def _read_davidson(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    source = info.corpus
    text = info.read_bytes().decode("utf-8", errors="surrogateescape")
    for i, header, row in csv_records(info, text, ledger, source):
        ledger.seen(source)
        if has_surrogates(*row):
            ledger.quarantine(source, info.display, i, "invalid_utf8", ",".join(row))
            continue
        d = dict(zip(header, row))
        cls = d["class"].strip()
        yield Post(
            id=info.fallback_id(source, i),
            text=d["tweet"],
            source=source,
            lang="en",
            labels={"class": _DAVIDSON_CLASS.get(cls, cls)},
            provenance=prov(info, i, "davidson_csv"),
        )


READERS = (FileReader("davidson_csv", _detect_davidson, _read_davidson),)
