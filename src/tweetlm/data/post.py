"""The Post record every reader produces (layer L1, data).

One schema for every source format, as in ARCHITECTURE.md "Formats". Ids are always strings (X ids exceed
2**53 and lose digits as floats). Readers fill what their source knows and leave the rest ``None``/empty.
This module only defines the record; reading, cleaning and writing live in sibling modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

POST_KINDS = ("post", "reply", "quote", "retweet", "thread")
"""``thread`` is a conversation document: the posts of one reply thread joined by newlines, in order."""

SPLITS = ("train", "val")


@dataclass(frozen=True)
class Provenance:
    """Where a record came from: the file, the 0-based record number in that file, and the reader's name."""

    file: str
    record: int
    reader: str


@dataclass
class Post:
    """One post (or one thread document) with its provenance.

    Attributes:
        id: post id as a string; corpora without ids get ``"<source>:<split>:<record>"``.
        text: the post text as the source gives it (cleaning happens later, in the pipeline: ``data.pipeline``).
        source: corpus name, e.g. ``"tweeteval/emoji"``; the unit of per-source accounting and evaluation.
        split: ``"train"`` or ``"val"`` when the corpus ships that split, else ``None`` (split later by id hash).
        created_at: ISO 8601 UTC timestamp when known.
        kind: one of ``POST_KINDS``.
        labels: dataset labels where the corpus has them, e.g. ``{"sentiment": "negative"}``.
        hashtags, mentions, cashtags, urls: entity values in text order, without ``#``/``@``/``$``; URLs
            expanded where the source gives the target of a ``t.co`` link.
        entities: the same entities with offsets, ``{"kind", "value", "start", "end"}``: ``[start, end)`` in
            code points of ``text`` as the reader produced it (see ``data.formats.entities``).
        edit_history_ids: ids of every version of an edited X post, oldest first, when the source gives them.
        truncated: the source cut the text off and the full text was not in the payload: an X retweet whose
            original is missing and whose text ends in ``...`` (U+2026), a v1.1 compat ``text`` with
            ``truncated: true`` and no ``extended_tweet`` (its trailing link to the full post removed), a generic
            text column cut at a fixed length (``data.formats.tabular.mark_cut_column``). The text is kept up to
            the cut; the pipeline keeps such posts marked unless ``drop_truncated`` is set.
    """

    id: str
    text: str
    source: str
    provenance: Provenance
    split: str | None = None
    created_at: str | None = None
    author_id: str | None = None
    lang: str | None = None
    kind: str = "post"
    reply_to_id: str | None = None
    conversation_id: str | None = None
    quoted_id: str | None = None
    retweeted_id: str | None = None
    hashtags: list[str] = field(default_factory=list)
    mentions: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    cashtags: list[str] = field(default_factory=list)
    entities: list[dict] = field(default_factory=list)
    edit_history_ids: list[str] = field(default_factory=list)
    truncated: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.id, str):
            raise TypeError(f"Post.id must be a str, got {type(self.id).__name__} ({self.id!r})")
        if self.kind not in POST_KINDS:
            raise ValueError(f"Post.kind must be one of {POST_KINDS}, got {self.kind!r}")
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"Post.split must be one of {SPLITS} or None, got {self.split!r}")

    def to_dict(self, copy: bool = True) -> dict:
        """A JSON/Parquet-ready dict; provenance flattened to ``prov_file``, ``prov_record``, ``prov_reader``.
        Lists and ``labels`` are copied one level deep (``dataclasses.asdict``'s recursive copy took 45% of the
        pipeline's per-post CPU time; the fields hold strings and flat dicts); ``copy=False`` shares them with
        this Post (for a Post made only to be converted, as the pipeline's reader does)."""
        d = dict(self.__dict__)
        prov = d.pop("provenance")
        if copy:
            for k in _LIST_FIELDS:
                if d[k]:
                    d[k] = list(d[k])
            if d["entities"]:
                d["entities"] = [dict(e) for e in d["entities"]]
            d["labels"] = dict(d["labels"])
        d["prov_file"], d["prov_record"], d["prov_reader"] = prov.file, prov.record, prov.reader
        return d


_LIST_FIELDS = ("hashtags", "mentions", "urls", "cashtags", "edit_history_ids")
