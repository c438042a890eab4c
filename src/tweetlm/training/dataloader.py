"""BOS-aligned packing dataloader over a token shard (layer L3), with a ``state_dict`` for exact resume.

Every training row (``seq_len + 1`` tokens: inputs and next-token targets overlap by one) starts at the ``<|bos|>``
of a document (a post, or a whole thread when the encode step writes a thread as one document), so a row never
begins in the middle of a post. Rows are filled with whole documents by best fit (as nanochat's BOS-aligned
loader): from a buffer of ``buffer_docs`` upcoming documents take the longest one that still fits; when none fits,
the shortest is cropped to fill the row exactly and its tail is dropped. The dropped share of tokens is reported as
``cropped_frac``. There is no padding, so every target counts in the loss.

A supervised fine-tuning shard (one with a ``loss_mask``) packs whole conversations instead: when no waiting
conversation fits the rest of a row, the row is closed with padding (inputs 0, targets ignored) rather than
cropping one (only a conversation longer than a row is cropped); targets whose token is context (mask 0) are set
to ``IGNORE_INDEX`` so only assistant tokens count in the loss (``F.cross_entropy``'s default ``ignore_index``).

The packing plan of an epoch is a pure function of ``(seed, epoch)`` and the document lengths, computed from the
shard's offsets alone (no token is read to plan). A global batch is ``batch_size * world_size`` consecutive rows of
the plan; rank ``r`` reads rows ``[r * batch_size, (r + 1) * batch_size)`` of it, so ranks read disjoint documents
and the global batch is the same for any world size. The state ``(epoch, position)`` is the same on every rank:
resuming replays nothing and skips nothing, also on a different world size with the same global batch.
What this module leaves to others: tokenization and shard writing (``tokenizer/encode.py``, ``common/token_shards``).
"""

from __future__ import annotations

import bisect

import numpy as np
import torch

from tweetlm.common.token_shards import TokenShard

IGNORE_INDEX = -100


def plan_epoch(
    doc_lens: np.ndarray, row_len: int, seed: int, epoch: int, buffer_docs: int = 64, pad: bool = False
) -> dict:
    """Pack documents into rows of exactly ``row_len`` tokens for one epoch.

    Args:
        doc_lens: ``(n_docs,)`` token counts of the documents (each starting with ``<|bos|>``).
        row_len: tokens per row (``seq_len + 1``).
        seed, epoch: the document order is ``default_rng([seed, epoch]).permutation(n_docs)``.
        buffer_docs: how many upcoming documents best fit chooses from.
        pad: close a row with padding (``seg_doc == -1``) when nothing fits, instead of cropping a document; a
            document longer than a whole row is still cropped.

    Returns:
        ``{"row_ptr": (n_rows + 1,), "seg_doc": (n_segs,), "seg_len": (n_segs,), "cropped": int, "padded": int,
        "tokens": int}``: row ``i`` is the first ``seg_len[j]`` tokens of document ``seg_doc[j]`` for ``j`` in
        ``row_ptr[i]:row_ptr[i+1]``, in order. A last row that cannot be filled is dropped (its tokens count as
        cropped) unless ``pad``, where it is padded.
    """
    order = np.random.default_rng([seed, epoch]).permutation(len(doc_lens))
    lens = np.asarray(doc_lens, dtype=np.int64)[order]
    buf_len: list[int] = []  # sorted lengths; buf_doc holds the document ids in the same order
    buf_doc: list[int] = []
    nxt = 0
    row_ptr, seg_doc, seg_len = [0], [], []
    cropped = padded = 0

    def refill() -> None:
        nonlocal nxt
        while len(buf_len) < buffer_docs and nxt < len(order):
            k = bisect.bisect_right(buf_len, int(lens[nxt]))
            buf_len.insert(k, int(lens[nxt]))
            buf_doc.insert(k, int(order[nxt]))
            nxt += 1

    refill()
    while buf_len:
        room = row_len
        start = len(seg_doc)
        while room > 0:
            refill()
            if not buf_len:
                break
            k = bisect.bisect_right(buf_len, room) - 1
            if k >= 0:  # the longest document that fits whole
                n, d = buf_len.pop(k), buf_doc.pop(k)
                seg_doc.append(d)
                seg_len.append(n)
                room -= n
            elif pad and room < row_len:  # nothing fits: close the row with padding
                seg_doc.append(-1)
                seg_len.append(room)
                padded += room
                room = 0
            else:  # nothing fits: crop the shortest to fill the row exactly
                n, d = buf_len.pop(0), buf_doc.pop(0)
                seg_doc.append(d)
                seg_len.append(room)
                cropped += n - room
                room = 0
        if room > 0 and pad and room < row_len:  # ran out of documents: pad the last row
            seg_doc.append(-1)
            seg_len.append(room)
            padded += room
        elif room > 0:  # ran out of documents: drop the partial row
            cropped += sum(seg_len[start:])
            del seg_doc[start:], seg_len[start:]
            break
        row_ptr.append(len(seg_doc))
    return {
        "row_ptr": np.asarray(row_ptr, dtype=np.int64),
        "seg_doc": np.asarray(seg_doc, dtype=np.int64),
        "seg_len": np.asarray(seg_len, dtype=np.int64),
        "cropped": int(cropped),
        "padded": int(padded),
        "tokens": int(lens.sum()),
    }


class PackedLoader:
    """Yields ``(x, y)`` int64 tensors of shape ``(batch_size, seq_len)`` for this rank; ``y`` is ``x`` shifted
    by one, with ``IGNORE_INDEX`` at padding and at context tokens of a shard with a loss mask. ``ValueError``
    when the shard cannot fill one global batch."""

    def __init__(
        self,
        shard: TokenShard,
        batch_size: int,
        seq_len: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        buffer_docs: int = 64,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.shard = shard
        self.B, self.T = batch_size, seq_len
        self.seed, self.rank, self.world = seed, rank, world_size
        self.buffer_docs = buffer_docs
        self.doc_lens = np.diff(shard.offsets)
        self.epoch, self.pos = 0, 0
        self._plan = self._make_plan()
        if self.num_rows < batch_size * world_size:
            raise ValueError(
                f"training split has {int(self.doc_lens.sum())} tokens ({self.num_rows} packed rows): too few for one "
                f"batch of {batch_size}x{seq_len} on {world_size} rank(s); use a bigger corpus or smaller "
                "train.batch_size"
            )

    def _make_plan(self) -> dict:
        pad = self.shard.loss_mask is not None
        return plan_epoch(self.doc_lens, self.T + 1, self.seed, self.epoch, self.buffer_docs, pad)

    @property
    def num_rows(self) -> int:
        return len(self._plan["row_ptr"]) - 1

    @property
    def cropped_frac(self) -> float:
        """Share of the current epoch's tokens dropped by cropping (0..1)."""
        return self._plan["cropped"] / max(1, self._plan["tokens"])

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "seed": self.seed, "num_docs": len(self.doc_lens)}

    def load_state_dict(self, state: dict) -> None:
        """Continue where ``state`` left off. ``ValueError`` when it came from other data or another seed."""
        if state.get("num_docs") != len(self.doc_lens) or state["seed"] != self.seed:
            raise ValueError("dataloader state does not match this token shard / seed (different data?)")
        self.epoch, self.pos = state["epoch"], state["pos"]
        self._plan = self._make_plan()

    @property
    def padded_frac(self) -> float:
        """Share of the current epoch's row tokens that are padding (0..1; fine-tuning shards only)."""
        return self._plan["padded"] / max(1, self._plan["tokens"] + self._plan["padded"])

    def _row(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Tokens of row ``i`` and, for a shard with a loss mask, which of them are targets (padding: no)."""
        p = self._plan
        mask = self.shard.loss_mask
        parts, masks = [], []
        for j in range(p["row_ptr"][i], p["row_ptr"][i + 1]):
            d, n = p["seg_doc"][j], p["seg_len"][j]
            if d < 0:
                parts.append(np.zeros(n, dtype=np.int64))
                masks.append(np.zeros(n, dtype=bool))
                continue
            a = self.shard.offsets[d]
            parts.append(np.asarray(self.shard.tokens[a : a + n], dtype=np.int64))
            if mask is not None:
                masks.append(np.asarray(mask[a : a + n], dtype=bool))
        return np.concatenate(parts), (np.concatenate(masks) if mask is not None else None)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        step = self.B * self.world
        if self.pos + step > self.num_rows:
            self.epoch, self.pos = self.epoch + 1, 0
            self._plan = self._make_plan()
        first = self.pos + self.rank * self.B
        self.pos += step
        rows = [self._row(i) for i in range(first, first + self.B)]
        t = torch.from_numpy(np.stack([r for r, _ in rows]))
        x, y = t[:, :-1], t[:, 1:].clone()
        if self.shard.loss_mask is not None:
            target = torch.from_numpy(np.stack([m for _, m in rows]))[:, 1:]
            y[~target] = IGNORE_INDEX
        return x, y
