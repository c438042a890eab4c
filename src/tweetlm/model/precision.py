"""Numeric precision of running the model (layer L2): one rule for training, evaluation and benchmarks.

``precision`` is ``"auto"`` (bf16 autocast on CUDA, fp32 on CPU), ``"bf16"`` (bf16 autocast on either device,
whatever it costs) or ``"fp32"``. Autocast keeps weights in fp32 and
runs matmuls in bf16 (mixed precision). On a CPU with AVX512-BF16 the 135M shape trains 1.9x faster than in fp32
(``benchmarks/results/train_smollm2_cpu2_202612.md``); on one without (an AVX2-only AMD EPYC, 2026-12-03) a 1024^3
bf16 matmul took 2.3 s against 0.048 s in fp32, and one training step of ``demo_cpu`` 249 s against ~3 s: a
CPU recipe asks ``cpu_has_native_bf16`` before choosing bf16.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (the ``avx512_bf16`` or ``amx_bf16`` flag of Linux's
    ``/proc/cpuinfo``); ``False`` where the flags cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "").split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def uses_bf16(device: torch.device, precision: str) -> bool:
    """Whether ``precision`` autocasts to bf16 on ``device``."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast(device: torch.device, precision: str = "auto"):
    """The ``torch.autocast`` context for ``precision`` on ``device`` (a no-op for fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(device, precision))
