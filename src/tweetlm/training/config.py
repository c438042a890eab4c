"""Training configuration (layer L3)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Attributes:
    batch_size: sequences per micro-batch.
    grad_accum: micro-batches per optimizer step (global batch = batch_size * grad_accum * world size).
    seq_len: tokens per training sequence.
    max_steps: optimizer steps in the whole run.
    lr: peak learning rate; min_lr_ratio: final LR as a fraction of ``lr``.
    schedule: ``"cosine"`` (warmup then cosine decay) or ``"wsd"`` (warmup, stable, then linear decay over the
        last ``decay_frac`` of steps).
    warmup_steps: linear warmup from 0.
    weight_decay, beta1, beta2: AdamW; decay applies to matrices only (not norms or embeddings).
    grad_clip: max global grad norm (0 disables).
    ckpt_every: save a checkpoint every N steps (0: only at the end); keep_checkpoints: how many to keep.
    log_every: metrics line every N steps.
    seed: data order and init seed.
    device: ``"auto"`` (CUDA if present), ``"cpu"`` or ``"cuda"``.
    precision: ``"auto"`` (bf16 autocast on CUDA, fp32 on CPU), ``"bf16"`` (bf16 autocast on either; see
        ``model/precision.py``) or ``"fp32"``. Weights, gradients and optimizer state stay fp32 (mixed precision).
    init_from: a checkpoint folder (``tweetlm import``) whose ``model.safetensors`` initialises the weights:
        continued pretraining. Its ``config.json`` model shape must equal the run's. Ignored on resume.
    freeze_embeddings: keep the token embedding (and a tied output head) fixed.
    parallel: ``"auto"`` (DDP when launched by torchrun on more than one process), ``"none"``, ``"ddp"`` or
        ``"fsdp"`` (FSDP2 per block, then the root); see ``parallelize.py``.
    compile: ``torch.compile`` each block (GPU runs; slow to start on CPU).
    activation_checkpointing: recompute each block's activations in backward (less memory, ~1/3 more compute).
    peak_flops: peak FLOP/s of one device for MFU; 0 picks the datasheet bf16 peak of a known GPU or measures
        the CPU's fp32 matmul rate.
    tensorboard: also write TensorBoard events to ``tb/`` beside ``metrics.jsonl`` (needs ``tensorboard``).
    """

    batch_size: int = 32
    grad_accum: int = 1
    seq_len: int = 128
    max_steps: int = 1000
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    schedule: str = "cosine"
    warmup_steps: int = 50
    decay_frac: float = 0.2
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    ckpt_every: int = 0
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 1337
    device: str = "auto"
    parallel: str = "auto"
    precision: str = "auto"
    init_from: str = ""
    freeze_embeddings: bool = False
    compile: bool = False
    activation_checkpointing: bool = False
    peak_flops: float = 0.0
    tensorboard: bool = True

    def validate(self) -> None:
        if self.schedule not in ("cosine", "wsd"):
            raise ValueError(f"train.schedule must be 'cosine' or 'wsd', got {self.schedule!r}")
        if self.parallel not in ("auto", "none", "ddp", "fsdp"):
            raise ValueError(f"train.parallel must be one of auto, none, ddp, fsdp; got {self.parallel!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"train.precision must be one of auto, bf16, fp32; got {self.precision!r}")
        for name in ("batch_size", "grad_accum", "seq_len", "max_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"train.{name} must be > 0, got {getattr(self, name)}")
