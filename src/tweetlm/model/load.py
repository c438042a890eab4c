"""Load a model from a checkpoint folder (layer L2): ``config.json`` + ``model.safetensors``.

Lives in the model layer so that training, eval and inference can all load weights without importing each
other. Raises ``FileNotFoundError`` naming the missing file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tweetlm.model.config import ModelConfig
from tweetlm.model.gpt import GPT


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder itself, or the one a run folder's ``checkpoints/latest`` names.

    Raises ``FileNotFoundError`` when neither holds ``model.safetensors``.
    """
    p = Path(path)
    pointer = p / "checkpoints" / "latest"
    if pointer.exists():
        p = p / "checkpoints" / pointer.read_text().strip()
    if not (p / "model.safetensors").exists():
        raise FileNotFoundError(f"no checkpoint at {path}: expected a folder with model.safetensors, or a run folder")
    return p


def model_config_from_checkpoint(ckpt_dir: str | Path) -> ModelConfig:
    path = Path(ckpt_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {ckpt_dir} a tweetlm checkpoint folder?")
    return ModelConfig(**json.loads(path.read_text())["model"])


def save_weights(weights: torch.nn.Module | dict, path: str | Path, metadata: dict | None = None) -> Path:
    """Write a module (shared tensors once, ``safetensors.torch.save_model``) or a dict of tensors to ``path``
    as safetensors, with the file mode the process umask allows (safetensors 0.8 writes 0600, which a serving
    user such as vLLM's could not read)."""
    import os

    from safetensors.torch import save_file, save_model

    path = Path(path)
    if isinstance(weights, torch.nn.Module):
        save_model(weights, str(path), metadata=metadata)
    else:
        save_file(weights, str(path), metadata=metadata)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return path


def load_model(ckpt_dir: str | Path, device: str | torch.device = "cpu") -> GPT:
    """The model of checkpoint ``ckpt_dir`` in eval mode on ``device``."""
    from safetensors.torch import load_model as st_load

    cfg = model_config_from_checkpoint(ckpt_dir)
    weights = Path(ckpt_dir) / "model.safetensors"
    if not weights.exists():
        raise FileNotFoundError(f"{weights} not found")
    with torch.device("meta"):
        model = GPT(cfg)
    model.to_empty(device=device)
    model.tie_weights()
    model.init_weights(0)  # fills non-persistent RoPE buffers; weights are overwritten below
    st_load(model, str(weights), device=str(device))
    return model.eval()
