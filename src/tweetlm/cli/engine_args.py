"""Command-line options of the inference engine, shared by every verb that generates (generate, serve, chat,
ask, ads copy): one set of flags, one way to load an engine."""

from __future__ import annotations

import argparse

PRECISIONS = ("float32", "bfloat16", "int8")  # inference.engine.PRECISIONS (checked equal in the tests)


def add_engine_args(p: argparse.ArgumentParser, max_batch: int | None = 8, threads: int = 0) -> None:
    """Add ``--precision``, ``--max-context``, ``--threads`` (default ``threads``; 0: PyTorch's, one per core;
    -1: one less than the cores) and (unless ``max_batch`` is None: one request at a time) ``--max-batch``."""
    p.add_argument(
        "--precision", choices=PRECISIONS, default="float32",
        help="weights as trained (float32), bfloat16, or int8 (weight-only; CPU only): see README "
        "'Serving speed' for the measured speed and bits-per-byte of each",
    )  # fmt: skip
    from tweetlm.cli.ads import POS_INT, _number

    p.add_argument("--threads", type=_number(int, -1, False), default=threads,
                   help=f"PyTorch threads for the model (0: one per core; -1: one less than the cores; default "
                   f"{threads})")  # fmt: skip
    if max_batch is not None:
        p.add_argument("--max-batch", type=POS_INT, default=max_batch,
                       help=f"requests decoded together, KV-cache slots (default {max_batch})")  # fmt: skip
    p.add_argument("--max-context", type=POS_INT, default=None,
                   help="tokens per slot, prompt + reply (default: the model's context, at most 2048)")  # fmt: skip


def engine_from_args(args: argparse.Namespace, checkpoint: str | None = None, **kwargs):
    """The ``Engine`` of ``args.checkpoint`` (or ``checkpoint``) with the flags of ``add_engine_args``."""
    import os

    import torch

    from tweetlm.inference.engine import Engine

    threads = getattr(args, "threads", 0)
    if threads:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1) if threads < 0 else threads)

    return Engine.from_checkpoint(
        checkpoint or args.checkpoint, precision=args.precision, max_batch=getattr(args, "max_batch", 1),
        max_context=args.max_context, **kwargs,
    )  # fmt: skip
