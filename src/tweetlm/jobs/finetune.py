"""The ``tweetlm finetune`` job (layer L4): teach a pretrained checkpoint to write a post for a brief.

Every training post of the base run's clean corpus (``data/train.parquet``) becomes one document
``<|bos|> brief.prompt() + " " + post <|eos|>`` (``data.briefs``: the post's rarest words as required terms, its
hashtags, language, and its corpus's sentiment and brand labels as tone and brand), encoded with the base
checkpoint's own tokenizer into token shards in the output folder; the validation posts give a held-out shard.
Training starts from the base weights with a fresh AdamW and a short warmup + cosine schedule and writes
ordinary checkpoints (``checkpoints/step_*``, loadable by ``Engine.from_checkpoint`` and ``tweetlm serve``).

The loop is a short single-process one here rather than ``training.loop.train``, which always starts from
random weights; it reuses that module's optimizer, loss, schedule, packed loader and checkpoint writer. The loss
covers the brief tokens too (the packed loader has no loss mask): the brief is short and cheap to predict.
Held-out loss on brief documents is measured before and after, on the same batches.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tweetlm.common.runfolder import RunFolder


@dataclass
class FinetuneConfig:
    """Attributes:
    max_steps: optimizer steps; batch_size x seq_len tokens each (seq_len at most the model's context; 0: the
        model's context, at most 128).
    lr: peak learning rate (warmup then cosine to ``lr * min_lr_ratio``); warmup_steps: linear warmup.
    max_posts: training posts used (0: all), a seeded sample; val_posts: held-out posts for the loss.
    eval_batches: held-out batches for the loss before and after.
    seed: brief draws, sample and data order.
    """

    max_steps: int = 300
    batch_size: int = 32
    seq_len: int = 0
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    max_posts: int = 0
    val_posts: int = 2000
    eval_batches: int = 8
    log_every: int = 10
    seed: int = 0

    def validate(self) -> None:
        for name in ("max_steps", "batch_size", "eval_batches", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"finetune {name} must be > 0, got {getattr(self, name)}")
        if self.seq_len < 0:
            raise ValueError(f"finetune seq_len must be >= 0 (0: the model's context), got {self.seq_len}")
        if self.lr <= 0:
            raise ValueError(f"finetune lr must be > 0, got {self.lr}")


def _read_posts(path: Path, limit: int, seed: int, from_corpus: bool = False):
    import random

    import pyarrow.parquet as pq

    from tweetlm.data.post import Post, Provenance

    if not path.exists():
        if from_corpus:
            raise FileNotFoundError(
                f"{path} not found: --corpus must be a clean-corpus folder (train.parquet, val.parquet)"
            )
        raise FileNotFoundError(
            f"{path} not found: the base run folder needs its clean corpus (tweetlm run), or pass --corpus"
        )
    cols = [c for c in ("id", "text", "source", "lang", "labels") if c in pq.read_schema(path).names]
    rows = pq.read_table(path, columns=cols).to_pylist() if "text" in cols else []
    if limit and limit < len(rows):
        rows = random.Random(seed).sample(rows, limit)
    return [
        Post(
            id=str(r["id"]),
            text=r["text"],
            source=r.get("source") or "",
            provenance=Provenance(str(path), i, "parquet"),
            lang=r.get("lang"),
            labels=json.loads(r["labels"]) if r.get("labels") else {},
        )
        for i, r in enumerate(rows)
    ]


def finetune(
    base: str | Path, out: str | Path, cfg: FinetuneConfig | None = None, corpus: str | Path | None = None,
    progress: bool = True,
) -> dict:  # fmt: skip
    """Fine-tune the checkpoint ``base`` (a checkpoint folder or a run folder) on brief -> post documents.

    ``corpus``: a clean-corpus folder (``train.parquet``, ``val.parquet``); default the base run's ``data/``.
    Writes ``out/`` with ``tokens/``, ``checkpoints/``, ``metrics.jsonl``, ``config.json`` and
    ``finetune.json`` (the summary returned: steps, tokens, held-out loss before/after, wall seconds).
    Raises ``FileNotFoundError`` for a missing checkpoint or corpus, ``FileExistsError`` when ``out`` already
    holds checkpoints, ``ValueError`` for a bad config; ``out`` is removed again when this call created it and
    then failed.
    """
    out = Path(out)
    created = not out.exists()
    try:
        return _finetune(base, out, cfg, corpus, progress)
    except Exception:
        if created and out.is_dir():
            shutil.rmtree(out, ignore_errors=True)
        raise


def _finetune(base: str | Path, out: Path, cfg: FinetuneConfig | None, corpus: str | Path | None, progress: bool):
    import torch
    from tqdm import tqdm

    from tweetlm.common.token_shards import open_shard
    from tweetlm.data.briefs import DocFreq, brief_from_post, example
    from tweetlm.model.load import load_model, resolve_checkpoint
    from tweetlm.tokenizer.bpe import PostTokenizer, copy_tokenizer
    from tweetlm.tokenizer.encode import encode_split
    from tweetlm.training.checkpoint import latest_checkpoint, save_checkpoint
    from tweetlm.training.config import TrainConfig
    from tweetlm.training.dataloader import PackedLoader
    from tweetlm.training.loop import build_optimizer, token_cross_entropy
    from tweetlm.training.schedule import lr_at

    cfg = cfg or FinetuneConfig()
    cfg.validate()
    t0 = time.time()
    ckpt = resolve_checkpoint(base)
    run_config = json.loads((ckpt / "config.json").read_text())
    data_dir = Path(corpus) if corpus else ckpt.parents[1] / "data"
    dst = RunFolder.create(out)
    if latest_checkpoint(dst.checkpoints) is not None:
        raise FileExistsError(f"{dst.checkpoints} already holds checkpoints; fine-tune into another folder")
    tok = PostTokenizer.load(ckpt / "tokenizer.json")
    model = load_model(ckpt, "cpu")
    if not cfg.seq_len:
        cfg = replace(cfg, seq_len=min(128, model.cfg.max_seq_len))
    if cfg.seq_len > model.cfg.max_seq_len:
        raise ValueError(f"finetune seq_len={cfg.seq_len} exceeds the model's context ({model.cfg.max_seq_len})")

    train_posts = _read_posts(data_dir / "train.parquet", cfg.max_posts, cfg.seed, corpus is not None)
    val_posts = _read_posts(data_dir / "val.parquet", cfg.val_posts, cfg.seed, corpus is not None)
    df = DocFreq(p.text for p in train_posts)
    docs = {}
    for split, posts in (("train", train_posts), ("val", val_posts)):
        texts = [example(brief_from_post(p, df, cfg.seed), p.text) for p in posts]
        docs[split] = encode_split(texts, [p.source for p in posts], tok, dst.tokens / split, cfg.seed)
    tcfg = TrainConfig(
        batch_size=cfg.batch_size, seq_len=cfg.seq_len, max_steps=cfg.max_steps, lr=cfg.lr,
        min_lr_ratio=cfg.min_lr_ratio, warmup_steps=cfg.warmup_steps, seed=cfg.seed, device="cpu",
        tensorboard=False,
    )  # fmt: skip
    tcfg.validate()
    run_config = {**run_config, "finetune": asdict(cfg), "base_checkpoint": str(ckpt)}
    dst.config.write_text(json.dumps(run_config, indent=1))
    copy_tokenizer(ckpt / "tokenizer.json", dst.root)

    torch.manual_seed(cfg.seed)
    loader = PackedLoader(open_shard(dst.tokens / "train"), cfg.batch_size, cfg.seq_len, cfg.seed)
    val_batches = _fixed_batches(open_shard(dst.tokens / "val"), cfg)

    def held_out_loss() -> float:
        model.eval()
        with torch.no_grad():
            losses = [float(token_cross_entropy(model(x), y)) for x, y in val_batches]
        model.train()
        return sum(losses) / len(losses)

    loss_before = held_out_loss()
    opt = build_optimizer(model, tcfg)
    model.train()
    bar = tqdm(total=cfg.max_steps, desc="finetune", unit="step", disable=not progress)
    tokens = 0
    loss_val = float("nan")
    with open(dst.metrics, "w") as mf:
        for step in range(cfg.max_steps):
            for g in opt.param_groups:
                g["lr"] = lr_at(step, tcfg)
            x, y = loader.next_batch()
            loss = token_cross_entropy(model(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            tokens += x.numel()
            loss_val = float(loss.detach())
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.max_steps:
                mf.write(json.dumps({"step": step + 1, "loss": round(loss_val, 5), "lr": lr_at(step, tcfg)}) + "\n")
                mf.flush()
                bar.set_postfix(loss=f"{loss_val:.3f}")
            bar.update(1)
    bar.close()
    loss_after = held_out_loss()
    final = save_checkpoint(
        dst.checkpoints, cfg.max_steps, model, opt, {"tokens": tokens, "loss": loss_val}, run_config,
        ckpt / "tokenizer.json", keep=1,
    )  # fmt: skip
    summary = {
        "checkpoint": str(final),
        "base_checkpoint": str(ckpt),
        "steps": cfg.max_steps,
        "tokens": tokens,
        "train_docs": docs["train"]["docs"],
        "val_docs": docs["val"]["docs"],
        "final_train_loss": loss_val,
        "held_out_loss_before": loss_before,
        "held_out_loss_after": loss_after,
        "wall_s": time.time() - t0,
    }
    (dst.root / "finetune.json").write_text(json.dumps(summary, indent=1))
    return summary


def _fixed_batches(shard, cfg: FinetuneConfig) -> list:
    """Up to ``eval_batches`` ``(x, y)`` batches of the held-out shard, always the same ones."""
    from tweetlm.training.dataloader import PackedLoader

    try:
        loader = PackedLoader(shard, cfg.batch_size, cfg.seq_len, cfg.seed)
    except ValueError:
        loader = PackedLoader(shard, 1, cfg.seq_len, cfg.seed)
    return [loader.next_batch() for _ in range(cfg.eval_batches)]


def summary_text(res: dict) -> str:
    """A few lines for the terminal."""
    return (
        f"fine-tuned {res['steps']} steps ({res['tokens']:,} tokens) on {res['train_docs']:,} brief -> post "
        f"documents in {res['wall_s']:.0f} s\n"
        f"held-out loss on {res['val_docs']:,} brief documents: {res['held_out_loss_before']:.4f} (base) -> "
        f"{res['held_out_loss_after']:.4f}\ncheckpoint: {res['checkpoint']}"
    )
