"""Training metrics (layer L3): ``metrics.jsonl`` and TensorBoard events, MFU, and peak memory.

MFU (model FLOPs utilisation, PaLM appendix B) = achieved model FLOP/s / peak FLOP/s of the devices, with the
model's training FLOPs per token from ``tweetlm.model.flops`` (recomputation for activation checkpointing is not
counted, by definition). The peak is the datasheet dense bf16 figure for known GPUs and, on a CPU, the fp32
matmul rate measured here on this process's threads (there is no trustworthy datasheet for an arbitrary CPU, and
a measured peak makes CPU MFU comparable between runs on one machine). Only rank 0 writes.
TensorBoard events need the ``tensorboard`` package (``pip install tweetlm[tensorboard]``); without it only
``metrics.jsonl`` is written.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import torch

# Dense bf16 tensor-core peak per GPU, FLOP/s, from the vendors' datasheets (without sparsity).
GPU_PEAK_BF16 = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 NVL": 835e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,  # an unlabelled "H100" reports as SXM-class (HBM3)
    "GH200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 70e12,
    "RTX 4090": 165e12,
}

_cpu_peak_cache: dict[tuple[int, torch.dtype], float] = {}


def measure_cpu_matmul_flops(n: int = 1024, seconds: float = 0.5, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of an ``n x n`` matmul in ``dtype`` (fp32, or bf16 for bf16 autocast) on this process's
    ``torch.get_num_threads()`` threads, the best of a few timed runs (cached per thread count and dtype)."""
    threads = torch.get_num_threads()
    if (threads, dtype) in _cpu_peak_cache:
        return _cpu_peak_cache[(threads, dtype)]
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)  # warm-up
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2.0 * n**3 / (time.perf_counter() - t0))
    _cpu_peak_cache[(threads, dtype)] = best
    return best


def device_peak_flops(device: torch.device, bf16: bool = False) -> tuple[float, str]:
    """Peak FLOP/s of one device and where the figure comes from. ``0.0`` for an unknown GPU (MFU not reported).
    On CPU the matmul rate is measured, in bf16 when ``bf16`` (training under bf16 autocast)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in GPU_PEAK_BF16.items():
            if key in name:
                return peak, f"datasheet bf16 ({name})"
        return 0.0, f"unknown GPU {name!r}: set train.peak_flops"
    dtype = torch.bfloat16 if bf16 else torch.float32
    return measure_cpu_matmul_flops(dtype=dtype), f"measured {dtype} matmul, {torch.get_num_threads()} thread(s)"


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated GPU memory, or peak resident set size of this process on CPU, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


class MetricsWriter:
    """Appends one JSON object per logged step to ``metrics.jsonl`` and the same scalars to TensorBoard
    (``tb_dir``) when the package is installed. A no-op on ranks other than 0."""

    def __init__(
        self, path: str | Path, tb_dir: str | Path | None, resume_step: int | None, enabled: bool = True
    ) -> None:
        """``resume_step``: the checkpoint step a resumed run restarts from; lines logged after it (by the run
        that crashed) are dropped, since the resumed run logs those steps again. ``None`` starts a new file."""
        self.enabled = enabled
        self._f = None
        if enabled:
            path = Path(path)
            if resume_step is not None and path.exists():
                kept = []
                for ln in path.read_text().splitlines():
                    try:
                        if json.loads(ln)["step"] <= resume_step:
                            kept.append(ln)
                    except (ValueError, KeyError):  # a line torn by the crash
                        continue
                path.write_text("".join(ln + "\n" for ln in kept))
            self._f = open(path, "a" if resume_step is not None else "w")
        self._tb = None
        if enabled and tb_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: metrics.jsonl only
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(str(tb_dir))

    def write(self, rec: dict) -> None:
        if not self.enabled:
            return
        self._f.write(json.dumps(rec) + "\n")
        self._f.flush()
        if self._tb is not None:
            for k, v in rec.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._tb.add_scalar(f"train/{k}", v, rec["step"])

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
        if self._tb is not None:
            self._tb.close()
