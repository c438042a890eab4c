"""TweetQA JSON (layer L1, data): a list of ``{"Tweet", "Question", "Answer", "qid"}`` records. The dataset
repeats a tweet once per question; the first record of a tweet is its post and later ones are dropped as
``same_tweet_as_earlier_question``, their questions kept in the post's ``tweetqa`` label."""

from __future__ import annotations

import json
from collections.abc import Iterator

from tweetlm.data.formats.files import FileInfo, FileReader, load_json, prov
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post


def _detect_tweetqa(info: FileInfo) -> bool:
    h = info.head[:4096]
    return info.name.lower().endswith(".json") and b'"Tweet"' in h and b'"qid"' in h and b'"Question"' in h


TWEETQA_LABEL = "tweetqa"
"""Label of a TweetQA tweet: a JSON list of ``{"qid", "question", "answers"}``, every question asked about it
(the supervised fine-tuning set turns them into grounded question answering, ``data.sft``)."""


def _read_tweetqa(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    """The source tweet of each question, once, with all its questions and answers as the ``tweetqa`` label.
    The tweet text keeps its trailing attribution as the dataset scraped it from the embed
    (``#PatriotPride\u2014 Doug Ducey (@dougducey) February 12, 2016``): it is what the questions were asked
    about, and cutting it reliably would need the original markup."""
    source = info.corpus
    data = load_json(info)
    if not isinstance(data, list):
        raise ValueError(f"{info.display}: expected a JSON list of TweetQA question objects")
    questions: dict[str, list[dict]] = {}
    for rec in data:
        if isinstance(rec, dict) and isinstance(rec.get("Tweet"), str) and isinstance(rec.get("Question"), str):
            answers = [a for a in rec.get("Answer") or [] if isinstance(a, str) and a.strip()]
            if answers:
                questions.setdefault(rec["Tweet"], []).append(
                    {"qid": str(rec.get("qid", "")), "question": rec["Question"], "answers": answers}
                )
    seen_texts: set[str] = set()
    for i, rec in enumerate(data):
        ledger.seen(source)
        tweet = rec.get("Tweet") if isinstance(rec, dict) else None
        if not isinstance(tweet, str):
            ledger.quarantine(source, info.display, i, "missing_text", json.dumps(rec, ensure_ascii=False))
            continue
        if tweet in seen_texts:
            ledger.drop(source, "same_tweet_as_earlier_question")
            continue
        seen_texts.add(tweet)
        yield Post(
            id=info.fallback_id(source, i),
            text=tweet,
            source=source,
            lang="en",
            labels={TWEETQA_LABEL: json.dumps(questions[tweet], ensure_ascii=False)} if tweet in questions else {},
            provenance=prov(info, i, "tweetqa_json"),
        )


READERS = (FileReader("tweetqa_json", _detect_tweetqa, _read_tweetqa),)
