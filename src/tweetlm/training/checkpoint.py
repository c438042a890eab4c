"""Checkpoints (layer L3): save atomically, find the latest, load for resume or for inference.

A checkpoint is a folder ``step_<N>/`` with ``model.safetensors`` (weights; a tied embedding stored once),
``config.json`` (the resolved run config), ``tokenizer.json`` and ``trainer_state.pt`` (optimizer state, step,
dataloader state, RNG states, corpus hash). It is written to ``step_<N>.tmp/`` and renamed when complete, and
``latest`` (a text file naming the newest complete checkpoint) is replaced atomically after that, so a crash at
any moment leaves the previous ``latest`` intact.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch


def save_checkpoint(
    ckpt_root: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict,
    run_config: dict,
    tokenizer_path: str | Path,
    keep: int = 2,
) -> Path:
    """Write ``ckpt_root/step_<step>/`` atomically and point ``latest`` at it; prune to the ``keep`` newest."""
    from safetensors.torch import save_model

    root = Path(ckpt_root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    tmp = root / f"step_{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    (tmp / "config.json").write_text(json.dumps(run_config, indent=1))
    shutil.copyfile(tokenizer_path, tmp / "tokenizer.json")
    state = dict(trainer_state, step=step, optimizer=optimizer.state_dict())
    torch.save(state, tmp / "trainer_state.pt")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest_tmp = root / "latest.tmp"
    latest_tmp.write_text(final.name)
    os.replace(latest_tmp, root / "latest")
    if keep > 0:
        done = sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(ckpt_root: str | Path) -> Path | None:
    """The folder ``latest`` names, or ``None`` when no complete checkpoint exists."""
    root = Path(ckpt_root)
    pointer = root / "latest"
    if not pointer.exists():
        return None
    path = root / pointer.read_text().strip()
    return path if (path / "model.safetensors").exists() else None


def load_trainer_state(ckpt_dir: str | Path) -> dict:
    """The ``trainer_state.pt`` of a checkpoint (optimizer, step, dataloader and RNG state)."""
    return torch.load(Path(ckpt_dir) / "trainer_state.pt", map_location="cpu", weights_only=False)
