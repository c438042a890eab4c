"""The engine's KV cache (layer L3, inference): preallocated per slot, written in place, never reallocated.

One tensor per keys and per values, ``(n_layer, slots, n_kv_head, max_len, head_dim)``, is allocated when the
engine first runs. A request holds one slot for its life; prefill writes its prompt's keys and values at
positions ``0..``, each decode step writes one position per slot, and attention reads the slots' first ``span``
positions as views (no concatenation, no copy per step). A slot remembers which token ids its keys and values
belong to (``ids``), also after its request finished, so a later request whose prompt starts the same way (a
chat's earlier turns, the shared prompt of ad-copy candidates) reuses that prefix instead of computing it again
(``longest_prefix``, ``copy_prefix``), as vLLM's automatic prefix caching does with paged blocks.
"""

from __future__ import annotations

import torch


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two id lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class _DecodeView:
    """One layer's cache as seen by a decode step over slots ``0..n-1``: writes ``(n, H, 1, D)`` at each slot's
    own position and returns the first ``span`` positions of those slots (views)."""

    __slots__ = ("k", "v", "rows", "pos", "span")

    def __init__(self, k: torch.Tensor, v: torch.Tensor, rows: torch.Tensor, pos: torch.Tensor, span: int) -> None:
        self.k, self.v, self.rows, self.pos, self.span = k, v, rows, pos, span

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.rows.numel()
        self.k[self.rows, :, self.pos] = k[:, :, 0]
        self.v[self.rows, :, self.pos] = v[:, :, 0]
        return self.k[:n, :, : self.span], self.v[:n, :, : self.span]


class _BatchView:
    """One layer's cache as seen by a batched prefill of ``slots`` ``(n,)``: writes ``(n, H, T, D)`` at
    positions ``pos`` ``(n, T)`` of each row's slot and returns those slots' first ``span`` positions (a copy)."""

    __slots__ = ("k", "v", "slots", "pos", "span")

    def __init__(self, k: torch.Tensor, v: torch.Tensor, slots: torch.Tensor, pos: torch.Tensor, span: int) -> None:
        self.k, self.v, self.slots, self.pos, self.span = k, v, slots, pos, span

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.slots.view(-1, 1)
        self.k[rows, :, self.pos] = k.transpose(1, 2).to(self.k.dtype)
        self.v[rows, :, self.pos] = v.transpose(1, 2).to(self.v.dtype)
        return self.k[self.slots, :, : self.span], self.v[self.slots, :, : self.span]


class SlotKVCache:
    """Keys and values of ``slots`` sequences of at most ``max_len`` tokens, for a model of ``n_layer`` blocks
    with ``n_kv`` key/value heads of ``head_dim``: ``k`` and ``v`` are ``(n_layer, slots, n_kv, max_len,
    head_dim)`` of ``dtype``. ``ids[s]``: the token ids whose keys and values slot ``s`` holds at positions
    ``0..len(ids[s])-1``."""

    def __init__(
        self, n_layer: int, slots: int, n_kv: int, max_len: int, head_dim: int, device, dtype=torch.float32
    ) -> None:  # fmt: skip
        self.k = torch.zeros(n_layer, slots, n_kv, max_len, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.max_len = max_len
        self.ids: list[list[int]] = [[] for _ in range(slots)]

    @property
    def nbytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()

    def batch_views(self, slots: torch.Tensor, pos: torch.Tensor, span: int) -> list[_BatchView]:
        """Per-layer views for a batched prefill: row ``i`` writes positions ``pos[i]`` of slot ``slots[i]``
        (attention sees positions ``0..span-1`` of each)."""
        return [_BatchView(self.k[i], self.v[i], slots, pos, span) for i in range(self.k.shape[0])]

    def decode_views(self, pos: torch.Tensor, span: int) -> list[_DecodeView]:
        """Per-layer views for one decode step over slots ``0..n-1`` (``pos`` ``(n,)``: where each writes)."""
        rows = torch.arange(pos.numel(), device=pos.device)
        return [_DecodeView(self.k[i], self.v[i], rows, pos, span) for i in range(self.k.shape[0])]

    def longest_prefix(self, ids: list[int], slots: list[int]) -> tuple[int, int]:
        """``(slot, length)`` of the longest prefix of ``ids`` held by one of ``slots`` (the first on ties);
        ``(-1, 0)`` when none shares a token."""
        best, best_len = -1, 0
        for s in slots:
            m = common_prefix(self.ids[s], ids)
            if m > best_len:
                best, best_len = s, m
        return best, best_len

    def copy_prefix(self, src: int, dst: int, length: int) -> None:
        """Copy the first ``length`` positions of slot ``src`` into slot ``dst`` (every layer)."""
        self.k[:, dst, :, :length] = self.k[:, src, :, :length]
        self.v[:, dst, :, :length] = self.v[:, src, :, :length]
        self.ids[dst] = self.ids[src][:length]
