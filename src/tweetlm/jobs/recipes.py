"""Named run recipes (layer L4): plain functions returning a ``RunConfig``; ``--set a.b=v`` overrides a field.

The run config composes each layer's own dataclass. Recipes:
- ``tiny_cpu``: the test recipe, a whole run in well under a minute on 2 CPU cores (2 layers, width 64,
  seq 64);
- ``demo_cpu``: the demo; sized so ``make demo`` (install included) ends within 15 minutes on a 2-core
  machine (see README for measured times).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tweetlm.data.clean import CleanConfig
from tweetlm.eval.bpb import EvalConfig
from tweetlm.inference.generate import SampleConfig
from tweetlm.model.config import ModelConfig
from tweetlm.tokenizer.bpe import TokenizerConfig
from tweetlm.training.config import TrainConfig


@dataclass
class RunConfig:
    name: str = "run"
    recipe: str = ""
    data: CleanConfig = field(default_factory=CleanConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)


def tiny_cpu() -> RunConfig:
    return RunConfig(
        recipe="tiny_cpu",
        tokenizer=TokenizerConfig(vocab_size=512),
        model=ModelConfig(n_layer=2, n_embd=64, n_head=2, max_seq_len=64),
        train=TrainConfig(batch_size=8, seq_len=64, max_steps=30, lr=3e-3, warmup_steps=5, ckpt_every=10, log_every=5),
        eval=EvalConfig(batch_size=64, max_docs_per_source=50),
        sample=SampleConfig(num_samples=3, max_new_tokens=20),
    )


def demo_cpu() -> RunConfig:
    return RunConfig(
        recipe="demo_cpu",
        tokenizer=TokenizerConfig(vocab_size=4096),
        model=ModelConfig(n_layer=4, n_embd=192, n_head=3, max_seq_len=128),
        train=TrainConfig(
            batch_size=32, seq_len=128, max_steps=1000, lr=3e-3, warmup_steps=50, ckpt_every=200, log_every=10
        ),
        eval=EvalConfig(batch_size=128),
        sample=SampleConfig(num_samples=8, max_new_tokens=60),
    )


RECIPES = {"tiny_cpu": tiny_cpu, "demo_cpu": demo_cpu}


def get_recipe(name: str) -> RunConfig:
    """The ``RunConfig`` of recipe ``name``; ``ValueError`` listing the recipes for an unknown name."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    return RECIPES[name]()
