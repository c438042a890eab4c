"""Numeric precision of running the model (layer L2): one rule for training, evaluation and benchmarks.

``precision`` is ``"auto"`` (bf16 autocast on CUDA, fp32 on CPU), ``"bf16"`` (bf16 autocast on either device)
or ``"fp32"``. Autocast keeps weights in fp32 and runs matmuls in bf16 (mixed precision); on a CPU with
AVX512-BF16 the 135M shape trains 1.9x faster than in fp32 (``benchmarks/results/train_smollm2_cpu2_202612.md``).
"""

from __future__ import annotations

import torch


def uses_bf16(device: torch.device, precision: str) -> bool:
    """Whether ``precision`` autocasts to bf16 on ``device``."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast(device: torch.device, precision: str = "auto"):
    """The ``torch.autocast`` context for ``precision`` on ``device`` (a no-op for fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(device, precision))
