"""The training loop (layer L3): AdamW, LR schedule, gradient accumulation and clipping, metrics, checkpoints,
exact resume.

One process, CPU or one GPU; issue 4 adds torchrun and ``parallelize.py``. Metrics go to ``metrics.jsonl``
(one JSON object per logged step: step, loss, lr, grad_norm, tokens, tokens_per_s, elapsed_s) and a tqdm bar
shows loss and tokens/s. Resume restores weights, optimizer, step, dataloader position and RNG state, so the
resumed run continues the same sequence of batches.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from tweetlm.common.token_shards import open_shard
from tweetlm.model.config import ModelConfig
from tweetlm.model.flops import train_flops_per_token
from tweetlm.model.gpt import GPT
from tweetlm.training.checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint
from tweetlm.training.config import TrainConfig
from tweetlm.training.dataloader import PackedLoader
from tweetlm.training.schedule import lr_at


@dataclass
class TrainResult:
    checkpoint: Path
    steps: int
    tokens: int
    final_loss: float
    tokens_per_s: float
    wall_s: float
    num_params: int
    flops_per_token: float
    resumed_from: int | None


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on 2-D weights except the embedding (tied or not), none on norms."""
    decay, no_decay = [], []
    emb = model.tok_emb.weight if hasattr(model, "tok_emb") else None
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and p is not emb else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8)


def train(
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    token_dir: str | Path,
    ckpt_root: str | Path,
    tokenizer_path: str | Path,
    run_config: dict,
    metrics_path: str | Path,
    resume: bool = False,
    extra_state: dict | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train from ``token_dir/train`` and return where the final checkpoint is.

    ``resume`` continues from ``ckpt_root/latest`` when it exists (else starts fresh). ``stop_after`` ends the
    process-level loop after that many steps without touching the schedule (used by tests to simulate a crash).
    """
    from tqdm import tqdm

    cfg.validate()
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    shard = open_shard(Path(token_dir) / "train")
    loader = PackedLoader(shard, cfg.batch_size, cfg.seq_len, cfg.seed)
    model = GPT.build(model_cfg, device=device, seed=cfg.seed)
    opt = build_optimizer(model, cfg)
    step, resumed_from = 0, None
    tokens_seen = 0
    loss_val = float("nan")
    last_ckpt: Path | None = None
    if resume and (ck := latest_checkpoint(ckpt_root)) is not None:
        from safetensors.torch import load_model as st_load

        st_load(model, str(ck / "model.safetensors"), device=str(device))
        state = load_trainer_state(ck)
        opt.load_state_dict(state["optimizer"])
        loader.load_state_dict(state["loader"])
        torch.set_rng_state(state["rng_cpu"])
        step = resumed_from = state["step"]
        tokens_seen = state.get("tokens", 0)
        loss_val = state.get("loss", float("nan"))
        last_ckpt = ck
    fpt = train_flops_per_token(model_cfg, cfg.seq_len)
    metrics_f = open(metrics_path, "a" if resumed_from else "w")
    end_step = cfg.max_steps if stop_after is None else min(cfg.max_steps, step + stop_after)
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not progress, desc="train", unit="step", dynamic_ncols=True)
    t_start = time.perf_counter()
    t_log, tok_log = t_start, 0
    tokens_per_step = cfg.batch_size * cfg.seq_len * cfg.grad_accum

    def checkpoint() -> Path:
        trainer_state = {
            "loader": loader.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "tokens": tokens_seen,
            "loss": loss_val,
            **(extra_state or {}),
        }
        return save_checkpoint(
            ckpt_root, step, model, opt, trainer_state, run_config, tokenizer_path, cfg.keep_checkpoints
        )

    model.train()
    while step < end_step:
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        loss_sum = 0.0
        for _ in range(cfg.grad_accum):
            x, y = loader.next_batch()
            x, y = x.to(device), y.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(x)
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))
            (loss / cfg.grad_accum).backward()
            loss_sum += loss.item()
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip).item() if cfg.grad_clip > 0 else 0.0
        )
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += tokens_per_step
        tok_log += tokens_per_step
        loss_val = loss_sum / cfg.grad_accum
        if step % cfg.log_every == 0 or step == end_step:
            now = time.perf_counter()
            tps = tok_log / max(now - t_log, 1e-9)
            t_log, tok_log = now, 0
            rec = {
                "step": step,
                "loss": round(loss_val, 5),
                "lr": lr,
                "grad_norm": round(grad_norm, 4),
                "tokens": tokens_seen,
                "tokens_per_s": round(tps, 1),
                "elapsed_s": round(now - t_start, 2),
            }
            metrics_f.write(json.dumps(rec) + "\n")
            metrics_f.flush()
            bar.set_postfix(loss=f"{loss_val:.3f}", tok_s=f"{tps:,.0f}")
        bar.update(1)
        if cfg.ckpt_every and step % cfg.ckpt_every == 0 and step < cfg.max_steps:
            last_ckpt = checkpoint()
    bar.close()
    metrics_f.close()
    wall = time.perf_counter() - t_start
    if last_ckpt is None or not last_ckpt.name.endswith(f"{step:07d}"):
        last_ckpt = checkpoint()
    done_steps = step - (resumed_from or 0)
    return TrainResult(
        checkpoint=last_ckpt,
        steps=step,
        tokens=tokens_seen,
        final_loss=loss_val,
        tokens_per_s=done_steps * tokens_per_step / max(wall, 1e-9),
        wall_s=wall,
        num_params=model.num_params(),
        flops_per_token=fpt,
        resumed_from=resumed_from,
    )
