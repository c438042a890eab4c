"""Twitter US Airline Sentiment CSV (Crowdflower, layer L1, data): real tweet ids, sentiment, airline and the
negative reason as labels; times in US Pacific time."""

from __future__ import annotations

from collections.abc import Iterator

from tweetlm.data.formats.base import id_or_none as _id_or_none
from tweetlm.data.formats.files import FileInfo, FileReader, parse_time, prov, utf8_csv_rows
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post

_AIRLINE_COLS = {"tweet_id", "airline_sentiment", "airline", "text", "tweet_created"}


def _detect_airline(info: FileInfo) -> bool:
    return info.name.lower().endswith(".csv") and _AIRLINE_COLS <= set(info.csv_header())


def _read_airline(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    source = info.corpus
    for i, header, row in utf8_csv_rows(info, ledger, source):
        d = dict(zip(header, row))
        labels = {"sentiment": d["airline_sentiment"], "brand": d["airline"]}
        if d.get("negativereason"):
            labels["negative_reason"] = d["negativereason"]
        yield Post(
            id=_id_or_none(d["tweet_id"]) or info.fallback_id(source, i),
            text=d["text"],
            source=source,
            lang="en",
            # "2/24/2015 11:35" is US Pacific time (UTC-8 in Feb 2015): all 14,640 rows match their id's timestamp
            created_at=parse_time(d["tweet_created"], "%m/%d/%Y %H:%M", utc_offset_hours=-8),
            labels=labels,
            provenance=prov(info, i, "airline_csv"),
        )


READERS = (FileReader("airline_csv", _detect_airline, _read_airline),)
