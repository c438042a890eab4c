"""Learning-rate schedules (layer L3): linear warmup, then cosine decay or warmup-stable-decay (WSD, Hu et al.
2024, "MiniCPM"). Pure functions of the step, so resuming needs no scheduler state beyond the step."""

from __future__ import annotations

import math

from tweetlm.training.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``cfg.max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    floor = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "cosine":
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    decay_start = int(cfg.max_steps * (1.0 - cfg.decay_frac))
    if step < decay_start:
        return cfg.lr
    progress = (step - decay_start) / max(1, cfg.max_steps - decay_start)
    return cfg.lr - (cfg.lr - floor) * min(1.0, progress)
