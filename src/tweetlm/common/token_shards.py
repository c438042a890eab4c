"""Token shard format (layer L0): flat token ids with document boundaries, memory-mappable.

One shard is three files sharing a stem:
- ``<stem>.bin``: all token ids back to back, little-endian ``uint16`` when the vocabulary fits in 16 bits,
  else ``uint32``;
- ``<stem>.idx.npy``: ``(n_docs + 1,)`` int64 offsets, document ``i`` is ``tokens[offsets[i]:offsets[i+1]]``;
- ``<stem>.json``: metadata: dtype, vocab size, token and document counts, the source of each document
  (as an index into ``sources``) and its UTF-8 byte count (the denominator of bits-per-byte);
- ``<stem>.mask.bin`` (supervised fine-tuning shards only): one ``uint8`` per token, 1 where the token is a
  target the loss counts (an assistant turn), 0 where it is context.

The tokenizer's encode step writes shards and training/eval read them, both through this module only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """``uint16`` for vocabularies up to 65,536 ids, else ``uint32``."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


class ShardWriter:
    """Append documents (lists of token ids) and write the shard on ``close``.

    Example:
        >>> w = ShardWriter(path / "val", vocab_size=4096)
        >>> w.add([1, 17, 42, 2], source="tweeteval/emoji", num_bytes=9)
        >>> w.close()
    """

    def __init__(self, stem: str | Path, vocab_size: int, with_loss_mask: bool = False) -> None:
        self.stem = Path(stem)
        self.vocab_size = vocab_size
        self.dtype = dtype_for_vocab(vocab_size)
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.stem.with_suffix(".bin.tmp")
        self._f = open(self._tmp, "wb")
        self._mask_tmp = self.stem.with_suffix(".mask.bin.tmp") if with_loss_mask else None
        self._fm = open(self._mask_tmp, "wb") if with_loss_mask else None
        self._offsets = [0]
        self._sources: dict[str, int] = {}
        self._doc_source: list[int] = []
        self._doc_bytes: list[int] = []

    def add(self, ids: list[int] | np.ndarray, source: str, num_bytes: int, loss_mask: list[int] | None = None) -> None:
        """Append one document; ``num_bytes`` is the UTF-8 length of its text (special tokens excluded);
        ``loss_mask`` (0/1 per token) is required exactly when the writer was made ``with_loss_mask``."""
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"token id out of range [0, {self.vocab_size}) in document {len(self._doc_bytes)}")
        if (loss_mask is not None) != (self._fm is not None):
            raise ValueError("loss_mask must be given for every document of a shard made with_loss_mask, else never")
        if self._fm is not None:
            m = np.asarray(loss_mask, dtype=np.uint8)
            if m.shape != arr.shape:
                raise ValueError(f"loss_mask has {m.size} entries for {arr.size} tokens")
            self._fm.write(m.tobytes())
        self._f.write(arr.astype(self.dtype).tobytes())
        self._offsets.append(self._offsets[-1] + arr.size)
        self._doc_source.append(self._sources.setdefault(source, len(self._sources)))
        self._doc_bytes.append(int(num_bytes))

    def close(self) -> None:
        self._f.close()
        self._tmp.replace(self.stem.with_suffix(".bin"))
        if self._fm is not None:
            self._fm.close()
            self._mask_tmp.replace(self.stem.with_suffix(".mask.bin"))
        np.save(self.stem.with_suffix(".idx.npy"), np.asarray(self._offsets, dtype=np.int64))
        meta = {
            "format_version": FORMAT_VERSION,
            "dtype": self.dtype.name,
            "vocab_size": self.vocab_size,
            "num_tokens": self._offsets[-1],
            "num_docs": len(self._doc_bytes),
            "num_bytes": int(sum(self._doc_bytes)),
            "loss_mask": self._fm is not None,
            "sources": list(self._sources),
            "doc_source": self._doc_source,
            "doc_bytes": self._doc_bytes,
        }
        self.stem.with_suffix(".json").write_text(json.dumps(meta))


@dataclass
class TokenShard:
    """A shard opened read-only: ``tokens`` is a ``np.memmap`` of shape ``(num_tokens,)``; ``loss_mask`` the
    same shape of ``uint8`` for a fine-tuning shard, else ``None`` (every token is a target)."""

    tokens: np.ndarray
    offsets: np.ndarray
    sources: list[str]
    doc_source: np.ndarray
    doc_bytes: np.ndarray
    vocab_size: int
    loss_mask: np.ndarray | None = None

    @property
    def num_docs(self) -> int:
        return len(self.offsets) - 1

    def doc(self, i: int) -> np.ndarray:
        """Token ids of document ``i``, shape ``(len_i,)``."""
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]


def open_shard(stem: str | Path) -> TokenShard:
    """Memory-map the shard at ``stem`` (without suffix). Raises ``FileNotFoundError`` naming the missing file and
    ``ValueError`` for a shard of an unknown format version."""
    stem = Path(stem)
    meta_path = stem.with_suffix(".json")
    if not meta_path.exists():
        raise FileNotFoundError(f"token shard metadata {meta_path} not found (run the encode step first)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{meta_path}: format_version {meta.get('format_version')} != {FORMAT_VERSION}")
    n = meta["num_tokens"]
    tokens = (
        np.memmap(stem.with_suffix(".bin"), dtype=np.dtype(meta["dtype"]), mode="r", shape=(n,))
        if n
        else np.zeros(0, dtype=np.dtype(meta["dtype"]))
    )
    mask = None
    if meta.get("loss_mask"):
        mask = (
            np.memmap(stem.with_suffix(".mask.bin"), dtype=np.uint8, mode="r", shape=(n,))
            if n
            else np.zeros(0, np.uint8)
        )
    return TokenShard(
        loss_mask=mask,
        tokens=tokens,
        offsets=np.load(stem.with_suffix(".idx.npy")),
        sources=meta["sources"],
        doc_source=np.asarray(meta["doc_source"], dtype=np.int64),
        doc_bytes=np.asarray(meta["doc_bytes"], dtype=np.int64),
        vocab_size=meta["vocab_size"],
    )
