"""The ``tweetlm train`` job (layer L4): pretraining alone, from the token shards of an existing run folder.

``tweetlm run`` makes the corpus, tokenizer and token shards and then trains; this job repeats only the last
step, with any recipe and overrides, in one process or under ``torchrun`` (every rank runs this same function;
``training.loop.train`` is the training function of both jobs). The vocabulary size is taken from the token
shards. Outputs (``checkpoints/``, ``metrics.jsonl``, ``tb/``, ``config.json``) go to ``out`` (default: the run
folder itself). A run folder made from an imported base (``tweetlm run --base``) trains the base's shape,
starting from the base's weights (``train.init_from``). Evaluation and sampling stay with ``tweetlm run`` / eval.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tweetlm.common.config import to_dict
from tweetlm.common.runfolder import RunFolder
from tweetlm.common.token_shards import open_shard
from tweetlm.jobs.recipes import RunConfig


def train_run(
    cfg: RunConfig, run_dir: str | Path, out: str | Path | None = None, resume: bool = False, progress: bool = True
) -> dict:
    """Train ``cfg`` on ``run_dir/tokens/train`` into ``out``; returns the training summary (every rank).

    Raises ``FileNotFoundError`` when ``run_dir`` has no token shards or tokenizer (run ``tweetlm run`` first).
    """
    from tweetlm.training.loop import train

    src = RunFolder(Path(run_dir))
    if not (src.tokens / "train.json").exists() or not src.tokenizer.exists():
        raise FileNotFoundError(
            f"{src.root} has no token shards or tokenizer.json: make them with 'tweetlm run --corpus ... --name "
            f"{src.root.name}' first"
        )
    dst = RunFolder(Path(out)) if out else src
    made_with = json.loads(src.config.read_text()) if src.config.exists() else {}
    if made_with.get("base") and (src.root / "base" / "model.safetensors").exists():
        from tweetlm.jobs.run import adopt_base  # a run continued from an imported base: its shape and weights

        cfg.base = made_with["base"]
        adopt_base(cfg, src.root / "base")
    cfg.model.vocab_size = open_shard(src.tokens / "train").vocab_size
    is_main = int(os.environ.get("RANK", 0)) == 0
    if is_main:
        dst.root.mkdir(parents=True, exist_ok=True)
        dst.config.write_text(json.dumps(to_dict(cfg), indent=1))
    manifest = src.data / "manifest.json"
    corpus_hash = json.loads(manifest.read_text()).get("corpus_hash") if manifest.exists() else None
    r = train(
        cfg.model,
        cfg.train,
        src.tokens,
        dst.checkpoints,
        src.tokenizer,
        to_dict(cfg),
        dst.metrics,
        resume=resume,
        extra_state={"corpus_hash": corpus_hash},
        progress=progress,
    )
    return {**r.to_dict(), "is_main": is_main}


def summary(res: dict) -> str:
    """A few lines for the terminal."""
    return (
        f"trained {res['steps']} steps ({res['tokens']:,} tokens) on {res['world_size']} process(es), "
        f"parallel={res['parallel']}\n"
        f"final loss {res['final_loss']:.4f} | {res['tokens_per_s']:,.0f} tokens/s | MFU {100 * res['mfu']:.2f}% | "
        f"peak memory {res['peak_mem_mb']:,.0f} MiB | cropped {100 * res['cropped_frac']:.2f}% of tokens\n"
        f"checkpoint: {res['checkpoint']}"
    )
