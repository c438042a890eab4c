"""Checkpoints (layer L3): save atomically on any number of ranks, find the latest, resume on any world size,
export a consolidated ``model.safetensors``.

A checkpoint is a folder ``step_<N>/`` with
- ``model.safetensors``: the whole model, consolidated (a tied embedding stored once), what
  ``tweetlm.model.load.load_model`` reads for eval and inference;
- ``config.json`` (the resolved run config) and ``tokenizer.json`` (with ``tokenizer_config.json`` for an imported
  base's tokenizer);
- ``dcp/``: model and optimizer state written with ``torch.distributed.checkpoint`` (DCP), one file per rank;
  DCP reshards on load, so a checkpoint written by FSDP2 on 8 ranks resumes on 1 or 4 (and a one-process
  checkpoint resumes under FSDP2);
- ``trainer_state.pt``: step, dataloader state (rank-independent, see ``dataloader.py``), RNG states, tokens
  seen, corpus hash.

Every rank writes its DCP shard into ``step_<N>.tmp/``; after a barrier rank 0 adds the other files, renames the
folder to ``step_<N>/`` and then atomically replaces ``latest`` (a text file naming the newest complete
checkpoint), so a crash at any moment leaves the previous ``latest`` intact and a ``.tmp`` folder is never read.
The checkpoint folder must be on a file system every rank sees (one machine, or NFS/Lustre across nodes).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from tweetlm.model.config import ModelConfig
from tweetlm.model.gpt import GPT
from tweetlm.tokenizer.bpe import copy_tokenizer
from tweetlm.training.distributed import barrier, is_distributed

# DCP warns on every single-process save/load that it "assumes the intent" is one process; it is.
_ONE_PROCESS_WARNING = "torch.distributed is disabled, unavailable or uninitialized"


@contextlib.contextmanager
def _quiet_dcp():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_ONE_PROCESS_WARNING)
        yield


def _plain_gpt(cfg: ModelConfig) -> GPT:
    with torch.device("meta"):
        model = GPT(cfg)
    model.to_empty(device="cpu")
    model.tie_weights()
    model.init_weights(0)  # RoPE buffers; the weights are overwritten by the caller
    return model


def _write_safetensors(model: torch.nn.Module, sharded: bool, is_main: bool, path: Path) -> None:
    """Consolidate (an all-gather when ``sharded``: every rank must call) and write on rank 0."""
    from tweetlm.model.load import save_weights

    if sharded:
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if is_main:
            plain = _plain_gpt(model.cfg)
            plain.load_state_dict(full)
            save_weights(plain, path)
    elif is_main:
        save_weights(model, path)


def save_checkpoint(
    ckpt_root: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict,
    run_config: dict,
    tokenizer_path: str | Path,
    keep: int = 2,
    is_main: bool = True,
    sharded: bool = False,
) -> Path:
    """Write ``ckpt_root/step_<step>/`` atomically and point ``latest`` at it; prune to the ``keep`` newest.

    ``model`` is the unwrapped ``GPT`` (plain, under DDP, or FSDP2-sharded when ``sharded``). A collective: every
    rank calls it with its own model and optimizer; ``trainer_state`` is taken from rank 0.
    """
    root = Path(ckpt_root)
    final = root / f"step_{step:07d}"
    tmp = root / f"step_{step:07d}.tmp"
    if is_main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    barrier()
    msd, osd = get_state_dict(model, optimizer)
    with _quiet_dcp():
        dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(tmp / "dcp"), no_dist=not is_distributed())
    _write_safetensors(model, sharded, is_main, tmp / "model.safetensors")
    barrier()
    if is_main:
        (tmp / "config.json").write_text(json.dumps(run_config, indent=1))
        copy_tokenizer(tokenizer_path, tmp)  # tokenizer.json (+ tokenizer_config.json of an imported base)
        torch.save(dict(trainer_state, step=step), tmp / "trainer_state.pt")
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
    barrier()
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
    """The ``trainer_state.pt`` of a checkpoint (step, dataloader and RNG state)."""
    return torch.load(Path(ckpt_dir) / "trainer_state.pt", map_location="cpu", weights_only=False)


def load_checkpoint(ckpt_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model and optimizer in place from ``ckpt_dir/dcp`` (resharded to this world size and wrapping:
    plain, DDP or FSDP2) and return the trainer state. A collective under ``torchrun``.
    ``FileNotFoundError`` when the folder has no ``dcp/``."""
    path = Path(ckpt_dir) / "dcp"
    if not path.is_dir():
        raise FileNotFoundError(f"{path} not found: {ckpt_dir} has no resumable state (written by an older version?)")
    msd, osd = get_state_dict(model, optimizer)
    state = {"model": msd, "optim": osd}
    with _quiet_dcp():
        dcp.load(state, checkpoint_id=str(path), no_dist=not is_distributed())
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    return load_trainer_state(ckpt_dir)


def export_safetensors(ckpt_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write a consolidated ``model.safetensors`` from a checkpoint's ``dcp/`` state, whatever world size wrote it,
    in one process without a process group. ``out`` defaults to ``ckpt_dir/model.safetensors``."""
    from tweetlm.model.load import model_config_from_checkpoint, save_weights

    ckpt_dir = Path(ckpt_dir)
    model = _plain_gpt(model_config_from_checkpoint(ckpt_dir))
    msd = get_model_state_dict(model)
    with _quiet_dcp():
        dcp.load({"model": msd}, checkpoint_id=str(ckpt_dir / "dcp"), no_dist=True)
    set_model_state_dict(model, msd)
    out = Path(out) if out is not None else ckpt_dir / "model.safetensors"
    tmp = out.with_name(out.name + ".tmp")
    save_weights(model, tmp)
    os.replace(tmp, out)
    return out
