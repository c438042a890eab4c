"""Named run recipes (layer L4): plain functions returning a ``RunConfig``; ``--set a.b=v`` overrides a field.

The run config composes each layer's own dataclass. Recipes:
- ``tiny_cpu``: the test recipe, a whole run in well under a minute on 2 CPU cores (2 layers, width 64,
  seq 64);
- ``tiny_base_cpu``: ``tiny_cpu`` continued from a base named with ``--base`` (tests of continued pretraining);
- ``scratch_cpu``: a 2.56M-parameter model from scratch with its own BPE (the demo before the open base);
- ``demo_cpu``: the demo: SmolLM2-135M imported and continued on the posts, compared with ``scratch_cpu``; sized
  so ``make demo`` (install included) ends within 15 minutes on a 2-core machine (see README for measured times).
- ``d12_gpu``: one GPU, bf16, nanochat-like depth 12 (width 768 = 64 * depth, 6 heads of 128), GPT-2-small size
  (124M parameters with the tied 50,304-token embedding), seq 2048, 524,288 tokens per step (32 x 2048 x 8 micro
  batches), 5,000 steps = 2.6B tokens (about 21 tokens per parameter, Hoffmann et al. 2022).
- ``d20_8gpu_fsdp``: 8 GPUs (one node, or more with Slurm/Kubernetes, see ``runs/``), FSDP2, depth 20, width 1280
  (458M parameters), 32 x 2048 tokens per GPU per step = 524,288 in all, 17,500 steps = 9.2B tokens (~20 per
  parameter). Launch: ``torchrun --nproc_per_node=8 -m tweetlm.cli.train --run-dir runs/<name> --recipe d20_8gpu_fsdp``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tweetlm.data.pipeline.config import PipelineConfig
from tweetlm.eval.bpb import EvalConfig
from tweetlm.inference.generate import SampleConfig
from tweetlm.model.config import ModelConfig
from tweetlm.tokenizer.bpe import TokenizerConfig
from tweetlm.training.config import TrainConfig


@dataclass
class RunConfig:
    name: str = "run"
    recipe: str = ""
    data: PipelineConfig = field(default_factory=lambda: PipelineConfig(workers=2))  # 2 cores, 8 tasks each
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    base: str = ""  # an open base to continue (tweetlm import names: smollm2-135m, a .gguf, an HF folder, a hub id)
    scratch_recipe: str = ""  # also train this from-scratch recipe on the same corpus and compare (report)
    scratch_steps: int = 0  # its max_steps (0: the recipe's own)


def tiny_cpu() -> RunConfig:
    return RunConfig(
        recipe="tiny_cpu",
        tokenizer=TokenizerConfig(vocab_size=512),
        model=ModelConfig(n_layer=2, n_embd=64, n_head=2, max_seq_len=64),
        train=TrainConfig(batch_size=8, seq_len=64, max_steps=30, lr=3e-3, warmup_steps=5, ckpt_every=10, log_every=5),
        eval=EvalConfig(batch_size=64, max_docs_per_source=50),
        sample=SampleConfig(num_samples=3, max_new_tokens=20),
    )


def scratch_cpu() -> RunConfig:
    """The from-scratch CPU model (the demo before the open base): 2.56M parameters, own 4,096-token BPE."""
    return RunConfig(
        recipe="scratch_cpu",
        tokenizer=TokenizerConfig(vocab_size=4096),
        model=ModelConfig(n_layer=4, n_embd=192, n_head=3, max_seq_len=128),
        train=TrainConfig(
            batch_size=32, seq_len=128, max_steps=1000, lr=3e-3, warmup_steps=50, ckpt_every=200, log_every=10
        ),
        eval=EvalConfig(batch_size=128),
        sample=SampleConfig(num_samples=8, max_new_tokens=60),
    )


def demo_cpu() -> RunConfig:
    """SmolLM2-135M continued on the posts, in bf16 autocast where the CPU computes bf16 natively, else in fp32
    (``model/precision.py``: bf16 without native support is 50x slower), with a from-scratch
    ``scratch_cpu`` model trained beside it for a comparable wall time; both and the base as imported are scored
    on the same seeded sample of validation posts. Sized for ``make demo`` in 15 minutes on 2 cores."""
    from tweetlm.model.precision import cpu_has_native_bf16

    # bf16 where the CPU has it natively (3.3 s per step measured), else fp32: on an AVX2-only EPYC 8.8 s per step,
    # 56 s per model to score 500 posts, 1.4 scratch steps/s; there 24 steps, 500 posts and 300 scratch steps (about
    # the continued model's 210 s) keep make demo within 15 minutes (15 min 45 s with 450 scratch steps)
    precision = "bf16" if cpu_has_native_bf16() else "fp32"
    steps, docs, scratch_steps = (64, 1000, 450) if precision == "bf16" else (24, 500, 300)
    return RunConfig(
        recipe="demo_cpu",
        base="smollm2-135m",
        model=ModelConfig(),  # replaced by the base's shape
        # 4 x 256 tokens per step: best-fit packing crops 8% of the tokens at seq 256 against 18% at 128 (the
        # long tail of threads; measured on the shared corpora's shards), for ~6% more attention FLOPs per token.
        train=TrainConfig(
            batch_size=4,
            seq_len=256,
            max_steps=steps,
            lr=2e-4,
            min_lr_ratio=0.1,
            warmup_steps=4,
            weight_decay=0.0,
            precision=precision,
            ckpt_every=32,
            keep_checkpoints=1,
            log_every=1,
        ),
        eval=EvalConfig(batch_size=32, sample_docs=docs, sample_seed=0, precision=precision),
        sample=SampleConfig(num_samples=6, max_new_tokens=100, tweet_mode=True),
        scratch_recipe="scratch_cpu",
        scratch_steps=scratch_steps,  # about the continued model's training wall time (450: ~225 s at ~2 steps/s)
    )


def tiny_base_cpu() -> RunConfig:
    """The test recipe for continued pretraining: ``tiny_cpu``'s training settings from a base given with
    ``--base`` (e.g. a tiny model written by ``tweetlm export hf``)."""
    cfg = tiny_cpu()
    cfg.recipe = "tiny_base_cpu"
    cfg.train.lr = 1e-3
    return cfg


def d12_gpu() -> RunConfig:
    return RunConfig(
        recipe="d12_gpu",
        tokenizer=TokenizerConfig(vocab_size=50304),
        model=ModelConfig(n_layer=12, n_embd=768, n_head=6, max_seq_len=2048),
        train=TrainConfig(
            batch_size=32,
            grad_accum=8,
            seq_len=2048,
            max_steps=5000,
            lr=6e-4,
            warmup_steps=250,
            device="cuda",
            compile=True,
            ckpt_every=500,
            keep_checkpoints=3,
            log_every=10,
        ),
        eval=EvalConfig(batch_size=64),
    )


def d20_8gpu_fsdp() -> RunConfig:
    return RunConfig(
        recipe="d20_8gpu_fsdp",
        tokenizer=TokenizerConfig(vocab_size=50304),
        model=ModelConfig(n_layer=20, n_embd=1280, n_head=10, max_seq_len=2048),
        train=TrainConfig(
            batch_size=32,
            grad_accum=1,
            seq_len=2048,
            max_steps=17500,
            lr=3e-4,
            warmup_steps=500,
            device="cuda",
            parallel="fsdp",
            compile=True,
            ckpt_every=1000,
            keep_checkpoints=3,
            log_every=10,
        ),
        eval=EvalConfig(batch_size=64),
    )


RECIPES = {
    "tiny_cpu": tiny_cpu,
    "tiny_base_cpu": tiny_base_cpu,
    "scratch_cpu": scratch_cpu,
    "demo_cpu": demo_cpu,
    "d12_gpu": d12_gpu,
    "d20_8gpu_fsdp": d20_8gpu_fsdp,
}


def get_recipe(name: str) -> RunConfig:
    """The ``RunConfig`` of recipe ``name``; ``ValueError`` listing the recipes for an unknown name."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    return RECIPES[name]()
