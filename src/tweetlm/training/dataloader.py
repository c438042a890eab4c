"""Packed-sequence dataloader over a token shard (layer L3), with a ``state_dict`` for exact resume.

The shard's documents (``<|bos|> ... <|eos|>``) are read as one stream, cut into windows of ``seq_len + 1``
tokens at multiples of ``seq_len`` (inputs and next-token targets overlap by one token). Windows are visited in a
seeded random order, reshuffled every epoch; rank ``r`` of ``world_size`` takes every ``world_size``-th window of
each batch, so ranks read disjoint slices. The state is ``(epoch, position)``: resuming replays nothing and
skips nothing. Issue 4 replaces this with BOS-aligned packing of whole posts.
"""

from __future__ import annotations

import numpy as np
import torch

from tweetlm.common.token_shards import TokenShard


class PackedLoader:
    """Yields ``(x, y)`` int64 tensors of shape ``(batch_size, seq_len)``; ``y`` is ``x`` shifted by one."""

    def __init__(
        self, shard: TokenShard, batch_size: int, seq_len: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.tokens = shard.tokens
        self.B, self.T = batch_size, seq_len
        self.seed, self.rank, self.world = seed, rank, world_size
        self.num_windows = (len(self.tokens) - 1) // seq_len
        if self.num_windows < batch_size * world_size:
            raise ValueError(
                f"training split has {len(self.tokens)} tokens: too few for one batch of "
                f"{batch_size}x{seq_len} on {world_size} rank(s); use a bigger corpus or smaller train.batch_size"
            )
        self.epoch, self.pos = 0, 0
        self._order = self._perm()

    def _perm(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.num_windows)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "seed": self.seed, "num_windows": self.num_windows}

    def load_state_dict(self, state: dict) -> None:
        if state["num_windows"] != self.num_windows or state["seed"] != self.seed:
            raise ValueError("dataloader state does not match this token shard / seed (different data?)")
        self.epoch, self.pos = state["epoch"], state["pos"]
        self._order = self._perm()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        step = self.B * self.world
        if self.pos + step > self.num_windows:
            self.epoch, self.pos = self.epoch + 1, 0
            self._order = self._perm()
        idx = self._order[self.pos + self.rank : self.pos + step : self.world]
        self.pos += step
        T = self.T
        batch = np.stack([np.asarray(self.tokens[i * T : i * T + T + 1], dtype=np.int64) for i in idx])
        t = torch.from_numpy(batch)
        return t[:, :-1], t[:, 1:]
