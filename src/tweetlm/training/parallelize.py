"""The only place that wraps a model for training (layer L3): activation checkpointing, ``torch.compile``, then
DDP or FSDP2, in that order (as torchtitan).

- ``"none"``: the single-device module as built (one process).
- ``"ddp"``: ``DistributedDataParallel``; every rank holds the whole model and optimizer state.
- ``"fsdp"``: FSDP2, ``torch.distributed.fsdp.fully_shard`` on every transformer block, then on the root (the
  tied embedding and the final norm); parameters, gradients and optimizer state are sharded across ranks. On GPU
  parameters are gathered in bf16 and gradients reduced in fp32 (``MixedPrecisionPolicy``).
- ``"auto"``: ``"ddp"`` when the world size is above 1, else ``"none"``.

Activation checkpointing and compile act on each block in place (no wrapper module), so parameter names, the
``model.safetensors`` export and DCP checkpoints are the same with or without them. bf16 autocast of the forward
pass is ``model/precision.py``'s (``train.precision``). The model itself stays a single-device
``nn.Module`` (``model/gpt.py``); this module knows nothing about data or checkpoints.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

MODES = ("auto", "none", "ddp", "fsdp")


def resolve_mode(mode: str, world_size: int) -> str:
    """``ValueError`` for an unknown mode; ``"auto"`` becomes ``"ddp"`` or ``"none"``."""
    if mode not in MODES:
        raise ValueError(f"train.parallel must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "auto":
        return "ddp" if world_size > 1 else "none"
    if mode == "ddp" and world_size == 1:
        return "none"  # DDP over one rank is the plain module; same numerics, no process group needed
    return mode


def parallelize(
    model: nn.Module,
    mode: str,
    device: torch.device,
    world_size: int,
    activation_checkpointing: bool = False,
    compile: bool = False,
) -> nn.Module:
    """Wrap ``model`` (a ``GPT`` already on ``device``) for training and return the module to call.

    ``unwrap(returned)`` gives back the ``GPT`` whose parameter names match ``model.safetensors``.
    """
    mode = resolve_mode(mode, world_size)
    for block in model.blocks:
        if activation_checkpointing:
            # Recompute each block's activations in backward: memory O(n_layer * B * T * d) -> one block's worth.
            block.forward = functools.partial(
                torch.utils.checkpoint.checkpoint, block.forward, use_reentrant=False, preserve_rng_state=False
            )
        if compile:
            block.compile(fullgraph=False)
    if mode == "none":
        return model
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if device.type == "cuda"
        else MixedPrecisionPolicy()
    )
    for i, block in enumerate(model.blocks):
        # The last block's parameters are needed again right away in backward: do not reshard them after forward.
        fully_shard(block, mp_policy=mp, reshard_after_forward=i < len(model.blocks) - 1)
    fully_shard(model, mp_policy=mp)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The ``GPT`` inside a DDP wrapper (FSDP2 and the in-place options leave the module itself)."""
    return model.module if hasattr(model, "module") and not hasattr(model, "blocks") else model


def is_sharded(model: nn.Module) -> bool:
    """True when parameters are FSDP2 ``DTensor`` shards."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


@contextlib.contextmanager
def no_grad_sync(model: nn.Module, enabled: bool):
    """Skip the gradient all-reduce / reduce-scatter for a gradient-accumulation micro-step (when ``enabled``)."""
    if not enabled:
        yield
        return
    if hasattr(model, "no_sync"):  # DDP
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield
