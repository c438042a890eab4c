"""The training loop (layer L3): one code path from a laptop CPU to ``torchrun`` on many GPUs.

``train`` joins the ``torchrun`` process group when there is one (``distributed.py``), builds the single-device
model, hands it to ``parallelize.py`` (DDP or FSDP2, activation checkpointing, compile), and runs AdamW with the
LR schedule, gradient accumulation (gradients synchronised on the last micro-batch only) and clipping. Each rank
reads its own rows of every global batch (``dataloader.py``); one process is world size 1. Metrics (loss averaged
over ranks, lr, grad norm, tokens/s, MFU, peak memory, cropped share of tokens) go to ``metrics.jsonl`` and
TensorBoard (``metrics.py``); checkpoints are DCP plus a consolidated ``model.safetensors`` (``checkpoint.py``).
Resume restores weights, optimizer, step, dataloader position and RNG state, so the resumed run continues the same
sequence of batches and losses, also after a ``SIGKILL``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from tweetlm.common.token_shards import open_shard
from tweetlm.model.config import ModelConfig
from tweetlm.model.flops import train_flops_per_token
from tweetlm.model.gpt import GPT
from tweetlm.model.precision import autocast, uses_bf16
from tweetlm.training import distributed as D
from tweetlm.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from tweetlm.training.config import TrainConfig
from tweetlm.training.dataloader import PackedLoader
from tweetlm.training.metrics import MetricsWriter, device_peak_flops, peak_memory_mb
from tweetlm.training.parallelize import no_grad_sync, parallelize, resolve_mode
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
    mfu: float = 0.0
    peak_mem_mb: float = 0.0
    cropped_frac: float = 0.0
    world_size: int = 1
    parallel: str = "none"

    def to_dict(self) -> dict:
        """JSON-ready record of the run (``checkpoint`` as a string, ``wall_s`` as ``train_wall_s``)."""
        d = dataclasses.asdict(self)
        d["checkpoint"] = str(self.checkpoint)
        d["train_wall_s"] = d.pop("wall_s")
        return d


def pick_device(name: str) -> torch.device:
    """``"auto"``: CUDA when present, else CPU. Raises ``ValueError`` for an unknown name or for CUDA on a
    machine (or a torch build) without it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"train.device={name!r} is not a device name (use auto, cpu or cuda)") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but this torch build or machine has no CUDA; use train.device=cpu")
    return device


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on 2-D weights except the embedding (tied or not), none on norms. Build it after
    ``parallelize`` (FSDP2 replaces the parameters with sharded ones)."""
    decay, no_decay = [], []
    emb = model.tok_emb.weight if hasattr(model, "tok_emb") else None
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and p is not emb else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # One fused kernel for the whole update on GPU (foreach, PyTorch's default, launches several per tensor list).
    fused = bool(decay) and decay[0].device.type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8, fused=fused or None)


def load_initial_weights(model: GPT, ckpt_dir: str | Path) -> None:
    """Copy the weights of checkpoint ``ckpt_dir`` (e.g. an imported base) into ``model`` in place, before it is
    wrapped. ``ValueError`` when the checkpoint's model shape differs from ``model.cfg`` (naming the fields)."""
    from safetensors.torch import load_model as st_load

    from tweetlm.model.load import model_config_from_checkpoint, resolve_checkpoint

    ckpt = resolve_checkpoint(ckpt_dir)
    theirs, ours = dataclasses.asdict(model_config_from_checkpoint(ckpt)), dataclasses.asdict(model.cfg)
    diff = [f"{k}: {theirs.get(k)!r} vs {v!r}" for k, v in ours.items() if k != "init_std" and theirs.get(k) != v]
    if diff:
        raise ValueError(f"train.init_from={ckpt_dir}: its model shape differs from the run's ({'; '.join(diff)})")
    st_load(model, str(ckpt / "model.safetensors"), device=str(model.tok_emb.weight.device))
    model.tie_weights()


def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy in nats: ``logits`` (B, T, V) in any float dtype, ``targets`` (B, T) int64.
    The log-softmax runs in fp32. Compiled (``train.compile``), the upcast and the softmax fuse into one kernel
    instead of materialising a (B, T, V) fp32 copy of the logits (13 GB for 32 x 2048 x 50,304)."""
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))


def _to_float(t) -> float:
    if hasattr(t, "full_tensor"):  # a DTensor norm under FSDP2
        t = t.full_tensor()
    return float(t.item()) if torch.is_tensor(t) else float(t)


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
    """Train from ``token_dir/train`` and return where the final checkpoint is (on every rank).

    ``resume`` continues from ``ckpt_root/latest`` when it exists (else starts fresh); without it an existing
    checkpoint is a ``FileExistsError`` (a fresh run would mix its checkpoints with the old ones). ``stop_after``
    ends the loop after that many steps without touching the schedule (tests use it to simulate a stop).
    Under ``torchrun`` every rank calls this; ``train.batch_size`` is per rank, so the global batch is
    ``batch_size * grad_accum * world_size`` sequences.
    """
    from tqdm import tqdm

    cfg.validate()
    owns_group = not D.is_distributed()
    info = D.init_distributed(cfg.device)
    try:
        result = _train(
            info, model_cfg, cfg, token_dir, ckpt_root, tokenizer_path, run_config, metrics_path, resume,
            extra_state, progress, stop_after, tqdm,
        )  # fmt: skip
        if owns_group:
            # every rank done with its collectives before any tears the group down: once in about ten test runs a
            # gloo rank aborted at exit ("terminate called without an active exception") after a finished run.
            # Only after success: a rank that failed must not wait here for the others (torchrun ends them).
            D.barrier()
        return result
    finally:
        if owns_group:
            D.destroy()


def _train(
    info, model_cfg, cfg, token_dir, ckpt_root, tokenizer_path, run_config, metrics_path, resume, extra_state,
    progress, stop_after, tqdm,
) -> TrainResult:  # fmt: skip
    device, world = info.device, info.world_size
    mode = resolve_mode(cfg.parallel, world)
    torch.manual_seed(cfg.seed)
    shard = open_shard(Path(token_dir) / "train")
    loader = PackedLoader(shard, cfg.batch_size, cfg.seq_len, cfg.seed, info.rank, world)
    model = GPT.build(model_cfg, device=device, seed=cfg.seed)
    if cfg.init_from and not (resume and latest_checkpoint(ckpt_root) is not None):
        load_initial_weights(model, cfg.init_from)
    if cfg.freeze_embeddings:
        model.tok_emb.weight.requires_grad_(False)
    num_params = model.num_params()
    wrapped = parallelize(model, mode, device, world, cfg.activation_checkpointing, cfg.compile)
    opt = build_optimizer(model, cfg)
    step, resumed_from = 0, None
    tokens_seen = 0
    loss_val = float("nan")
    last_ckpt: Path | None = None
    ck = latest_checkpoint(ckpt_root)
    if ck is not None and not resume:
        raise FileExistsError(
            f"{ckpt_root} already holds checkpoints ({ck.name}); resume them (--resume) or train into another folder"
        )
    if resume and ck is not None:
        state = load_checkpoint(ck, model, opt)
        loader.load_state_dict(state["loader"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        step = resumed_from = state["step"]
        tokens_seen = state.get("tokens", 0)
        loss_val = state.get("loss", float("nan"))
        last_ckpt = ck
    fpt = train_flops_per_token(model_cfg, cfg.seq_len)
    peak = cfg.peak_flops or device_peak_flops(device, uses_bf16(device, cfg.precision))[0]
    metrics = MetricsWriter(
        metrics_path,
        Path(metrics_path).parent / "tb" if cfg.tensorboard else None,
        resume_step=resumed_from,
        enabled=info.is_main,
    )
    end_step = cfg.max_steps if stop_after is None else min(cfg.max_steps, step + stop_after)
    bar = tqdm(
        total=cfg.max_steps,
        initial=step,
        disable=not (progress and info.is_main),
        desc="train",
        unit="step",
        dynamic_ncols=True,
    )
    t_start = time.perf_counter()
    t_log, tok_log = t_start, 0
    tokens_per_step = cfg.batch_size * cfg.seq_len * cfg.grad_accum * world
    mfu = mem = 0.0

    def checkpoint() -> Path:
        trainer_state = {
            "loader": loader.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "tokens": tokens_seen,
            "loss": loss_val,
            "world_size": world,
            "parallel": mode,
            **(extra_state or {}),
        }
        return save_checkpoint(
            ckpt_root, step, model, opt, trainer_state, run_config, tokenizer_path, cfg.keep_checkpoints,
            is_main=info.is_main, sharded=mode == "fsdp",
        )  # fmt: skip

    loss_fn = torch.compile(token_cross_entropy) if cfg.compile else token_cross_entropy
    wrapped.train()
    while step < end_step:
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        loss_sum = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum):
            x, y = loader.next_batch()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with no_grad_sync(wrapped, world > 1 and micro < cfg.grad_accum - 1):
                with autocast(device, cfg.precision):
                    logits = wrapped(x)
                loss = loss_fn(logits, y)
                (loss / cfg.grad_accum).backward()
            loss_sum += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(wrapped.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else 0.0
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += tokens_per_step
        tok_log += tokens_per_step
        is_log = step % cfg.log_every == 0 or step == end_step
        is_ckpt = bool(cfg.ckpt_every) and step % cfg.ckpt_every == 0 and step < cfg.max_steps
        if is_log or is_ckpt:
            (loss_val,) = D.all_reduce_mean([loss_sum.item() / cfg.grad_accum], device)
        if is_log:
            gn = _to_float(grad_norm)
            now = time.perf_counter()
            tps = tok_log / max(now - t_log, 1e-9)
            t_log, tok_log = now, 0
            mfu = tps * fpt / (peak * world) if peak > 0 else 0.0
            mem = D.all_reduce_max(peak_memory_mb(device), device)
            metrics.write(
                {
                    "step": step,
                    "loss": round(loss_val, 5),
                    "lr": lr,
                    "grad_norm": round(gn, 4),
                    "tokens": tokens_seen,
                    "tokens_per_s": round(tps, 1),
                    "mfu": round(mfu, 5),
                    "peak_mem_mb": round(mem, 1),
                    "cropped_frac": round(loader.cropped_frac, 5),
                    "elapsed_s": round(now - t_start, 2),
                }
            )
            bar.set_postfix(loss=f"{loss_val:.3f}", tok_s=f"{tps:,.0f}", mfu=f"{100 * mfu:.1f}%")
        bar.update(1)
        if is_ckpt:
            last_ckpt = checkpoint()
    bar.close()
    metrics.close()
    wall = time.perf_counter() - t_start
    if last_ckpt is None or not last_ckpt.name.endswith(f"{step:07d}"):
        last_ckpt = checkpoint()
    done_steps = step - (resumed_from or 0)
    tps_run = done_steps * tokens_per_step / max(wall, 1e-9)
    return TrainResult(
        checkpoint=last_ckpt,
        steps=step,
        tokens=tokens_seen,
        final_loss=loss_val,
        tokens_per_s=tps_run,
        wall_s=wall,
        num_params=num_params,
        flops_per_token=fpt,
        resumed_from=resumed_from,
        mfu=tps_run * fpt / (peak * world) if peak > 0 else 0.0,
        peak_mem_mb=mem,
        cropped_frac=loader.cropped_frac,
        world_size=world,
        parallel=mode,
    )
