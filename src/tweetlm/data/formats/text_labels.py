"""TweetEval-style ``<split>_text.txt`` / ``<split>_labels.txt`` pairs (layer L1, data): TweetEval and the XLM-T
multilingual sentiment corpus. One post per line; the label of line ``i`` is line ``i`` of the labels file, named
through ``mapping.txt`` (TweetEval) or the XLM-T README. ``train_``/``val_``/``dev_`` files keep their split,
``test_`` files get none. The ``sentiment`` files of TweetEval and XLM-T ``english`` are built from SemEval-2017
and carry its escapes, undone with ``semeval.repair_semeval_text``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from tweetlm.data.formats.files import FileInfo, FileReader, decode_or_none, log, prov, split_lines
from tweetlm.data.formats.semeval import repair_semeval_text
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post

_PAIR_TEXT = re.compile(r"^(train|val|dev|test)_text\.txt$")

_PAIR_SPLIT = {"train": "train", "val": "val", "dev": "val", "test": None}

_XLMT_LANG = {
    "arabic": "ar",
    "english": "en",
    "french": "fr",
    "german": "de",
    "hindi": "hi",
    "italian": "it",
    "portuguese": "pt",
    "spanish": "es",
}

_XLMT_SENTIMENT = {"0": "negative", "1": "neutral", "2": "positive"}  # cardiffnlp/xlm-t README


def _load_mapping(folder: Path, stop: int) -> dict[str, str]:
    """``mapping.txt`` (``id<TAB>name[<TAB>...]``) from the folder or up to ``stop`` folders above it."""
    for d in [folder, *list(folder.parents)[:stop]]:
        m = d / "mapping.txt"
        if m.is_file():
            out = {}
            for line in m.read_text(encoding="utf-8").splitlines():
                parts = line.split("\t")
                if len(parts) >= 2 and parts[0].strip():
                    out[parts[0].strip()] = parts[1].strip()
            return out
    return {}


def _read_text_labels(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    prefix = _PAIR_TEXT.match(info.name).group(1)
    split = _PAIR_SPLIT[prefix]
    source = info.dir_source
    corpus = info.rel[0] if len(info.rel) > 2 else ""
    sub = info.rel[1] if len(info.rel) > 2 else ""
    lang = None
    repair = False
    if corpus == "tweeteval":
        key, lang, mapping = sub, "en", _load_mapping(info.path.parent, stop=len(info.rel) - 2)
        repair = sub == "sentiment"  # built from the SemEval-2017 files, escapes and all
    elif corpus == "xlmt_umsab_sentiment":
        key, lang, mapping = "sentiment", _XLMT_LANG.get(sub), _XLMT_SENTIMENT
        repair = sub == "english"
    else:
        key, mapping = "label", _load_mapping(info.path.parent, stop=1)
    extra = {"target": info.rel[2]} if corpus == "tweeteval" and sub == "stance" and len(info.rel) > 3 else {}

    labels_path = info.path.with_name(f"{prefix}_labels.txt")
    label_lines = None
    if labels_path.is_file():
        label_lines = [ln.decode("utf-8", errors="replace").strip() for ln in split_lines(labels_path.read_bytes())]
    lines = split_lines(info.read_bytes())
    if label_lines is not None and len(label_lines) != len(lines):
        log.warning("%s has %d lines but %s has %d", info.display, len(lines), labels_path.name, len(label_lines))
    for i, raw in enumerate(lines):
        ledger.seen(source)
        text = decode_or_none(raw)
        if text is None:
            ledger.quarantine(source, info.display, i, "invalid_utf8", raw.decode("utf-8", errors="replace"))
            continue
        labels: dict[str, str] = {}
        if label_lines is not None:
            if i >= len(label_lines):
                ledger.quarantine(source, info.display, i, "missing_label", text)
                continue
            value = label_lines[i]
            labels = {key: mapping.get(value, value), **extra}
        if repair:
            text = repair_semeval_text(text)
        yield Post(
            id=info.fallback_id(source, i),
            text=text,
            source=source,
            split=split,
            lang=lang,
            labels=labels,
            provenance=prov(info, i, "text_labels"),
        )


def _detect_text_labels(info: FileInfo) -> bool:
    return bool(_PAIR_TEXT.match(info.name))


READERS = (FileReader("text_labels", _detect_text_labels, _read_text_labels),)
