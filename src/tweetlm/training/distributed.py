"""Process-group setup for ``torchrun`` (layer L3): who am I, on which device, and the collectives the loop needs.

World size 1 (``tweetlm train``, ``tweetlm run``, tests) is the smallest case of the same code: no process group
is created and every collective below is the identity. Under ``torchrun`` the environment variables ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` are set by the launcher; the backend is NCCL on
GPUs and gloo on CPUs. This module wraps no model (that is ``parallelize.py``) and starts no processes (that is
``torchrun``, Slurm or Kubernetes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Read the ``torchrun`` environment, pick the device and, when ``WORLD_SIZE > 1``, join the process group.

    ``device``: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``; on CUDA each process uses GPU
    ``LOCAL_RANK``. Raises ``ValueError`` for ``"cuda"`` on a machine without one.
    """
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("train.device=cuda but no CUDA device is visible; use --set train.device=cpu")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if dev.type == "cuda" else "gloo", device_id=dev if dev.type == "cuda" else None
        )
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_mean(values: list[float], device: torch.device) -> list[float]:
    """Mean of each value over ranks (identity on one process)."""
    if not is_distributed():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / dist.get_world_size()).tolist()


def all_reduce_max(value: float, device: torch.device) -> float:
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def destroy() -> None:
    if is_distributed():
        dist.destroy_process_group()
