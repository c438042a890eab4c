"""``tweetlm import`` (layer L4): an open base -> a tweetlm checkpoint folder, the starting point of continued
pretraining (``tweetlm run --base``) and usable as it is by eval, generate, serve and export.

The folder holds ``model.safetensors`` (our names, fp32), ``config.json`` (``{"model": ..., "base": ...}``: the
model shape and the base's provenance -- name, source, kind, sha256 of the weight files), the base's own
``tokenizer.json`` and a ``tokenizer_config.json`` naming the post boundary tokens and the chat template. Reading
and checking the weights is ``model/hf_format.py``'s work; this module only writes the folder, atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from tweetlm.common.config import to_dict


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that would lose anything: a file, a folder holding anything but a tweetlm checkpoint,
    or a checkpoint without ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a new or empty folder")
    if not out.exists() or not any(out.iterdir()):
        return
    is_checkpoint = (out / "model.safetensors").exists() and (out / "config.json").exists()
    if not is_checkpoint:
        raise ValueError(f"--out {out} is not empty and is not a tweetlm checkpoint; give a new or empty folder")
    if not overwrite:
        raise FileExistsError(f"{out} already holds a checkpoint; choose another --out (or pass --overwrite)")


def import_base(source: str, out: str | Path, overwrite: bool = False) -> dict:
    """Import base ``source`` (short name such as ``smollm2-135m``, ``.gguf`` file, Hugging Face folder, hub id,
    or a tweetlm checkpoint) into checkpoint folder ``out``; returns a summary dict (``checkpoint``, ``params``,
    ``base``...).

    Raises ``ValueError`` for a source that is not a supported model (see ``model.hf_format.read_base``) or an
    ``out`` that is a file or a non-empty folder other than a checkpoint, and ``FileExistsError`` when ``out``
    already holds a checkpoint and ``overwrite`` is false. Nothing at ``out`` changes until the new checkpoint is
    complete.
    """
    import tempfile

    import torch

    from tweetlm.model.gpt import GPT
    from tweetlm.model.hf_format import read_base
    from tweetlm.model.load import save_weights
    from tweetlm.tokenizer.bpe import PostTokenizer

    out = Path(out).resolve()
    _check_out(out, overwrite)
    t0 = time.perf_counter()
    base = read_base(source)
    with torch.device("meta"):
        model = GPT(base.config)
    model.to_empty(device="cpu")
    model.tie_weights()
    model.init_weights(0)  # RoPE tables; every weight is overwritten next
    missing, unexpected = model.load_state_dict(base.state_dict, strict=False)
    missing = [m for m in missing if not (base.config.tie_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"{source}: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    tok = PostTokenizer(base.tokenizer, base.specials, base.chat_template)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.importing-", dir=out.parent))
    try:
        save_weights(model, tmp / "model.safetensors")
        tok.save(tmp / "tokenizer.json")
        provenance = {**base.provenance, "base_special_tokens": base.base_specials, "document_tokens": base.specials}
        cfg = {"model": to_dict(base.config), "base": provenance}
        (tmp / "config.json").write_text(json.dumps(cfg, indent=1))
        os.chmod(tmp, 0o755)
        if out.exists():
            _check_out(out, overwrite)  # still only a checkpoint (or empty) right before it is replaced
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "checkpoint": str(out),
        "params": model.num_params(),
        "base": provenance,
        "vocab_size": base.config.vocab_size,
        "layers": base.config.n_layer,
        "width": base.config.n_embd,
        "context": base.config.max_seq_len,
        "wall_s": round(time.perf_counter() - t0, 2),
    }


def base_provenance(ckpt_dir: str | Path) -> dict | None:
    """The ``base`` record of a checkpoint's ``config.json`` (an imported or continued model), else ``None``."""
    path = Path(ckpt_dir) / "config.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("base")
