"""Training: schedule shape, dataloader resume, checkpoint atomicity, and exact resume after a stop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tweetlm.common.token_shards import ShardWriter, open_shard
from tweetlm.model.config import ModelConfig
from tweetlm.model.load import load_model
from tweetlm.training.checkpoint import latest_checkpoint
from tweetlm.training.config import TrainConfig
from tweetlm.training.dataloader import PackedLoader
from tweetlm.training.loop import train
from tweetlm.training.schedule import lr_at

V = 64


@pytest.fixture
def token_dir(tmp_path):
    rng = np.random.default_rng(0)
    w = ShardWriter(tmp_path / "tokens" / "train", V)
    for _ in range(400):  # a learnable pattern: runs of increasing ids
        start = int(rng.integers(3, 40))
        w.add([1, *range(start, start + int(rng.integers(3, 20))), 2], "synthetic", 10)
    w.close()
    (tmp_path / "tokenizer.json").write_text("{}")
    return tmp_path


def _cfgs(steps=12):
    m = ModelConfig(vocab_size=V, n_layer=2, n_embd=32, n_head=2, max_seq_len=32)
    t = TrainConfig(
        batch_size=4,
        seq_len=32,
        max_steps=steps,
        lr=1e-2,
        warmup_steps=2,
        log_every=1,
        ckpt_every=4,
        keep_checkpoints=5,
    )
    return m, t


def _run(root, name, resume=False, stop_after=None, steps=12):
    m, t = _cfgs(steps)
    return train(
        m,
        t,
        root / "tokens",
        root / name,
        root / "tokenizer.json",
        {"model": m.__dict__},
        root / f"{name}.jsonl",
        resume=resume,
        progress=False,
        stop_after=stop_after,
    )


def _losses(path):
    return {r["step"]: r["loss"] for r in map(json.loads, path.read_text().splitlines())}


def test_schedules():
    c = TrainConfig(max_steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, c) == pytest.approx(0.1) and lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(99, c) == pytest.approx(0.1, abs=1e-3)
    assert lr_at(10, c) > lr_at(50, c) > lr_at(90, c)
    w = TrainConfig(max_steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.0, schedule="wsd", decay_frac=0.2)
    assert lr_at(50, w) == 1.0 and lr_at(79, w) == 1.0 and lr_at(90, w) == pytest.approx(0.5)


def test_dataloader_state_resumes_exactly(token_dir):
    shard = open_shard(token_dir / "tokens" / "train")
    a = PackedLoader(shard, 4, 16, seed=3)
    first = [a.next_batch()[0] for _ in range(200)]  # crosses several epochs
    b = PackedLoader(shard, 4, 16, seed=3)
    for _ in range(77):
        b.next_batch()
    c = PackedLoader(shard, 4, 16, seed=3)
    c.load_state_dict(b.state_dict())
    assert all(torch.equal(first[77 + i], c.next_batch()[0]) for i in range(123))
    x, y = a.next_batch()
    assert torch.equal(x[:, 1:], y[:, :-1])
    # two ranks read disjoint windows of the same global batch
    r0, r1 = PackedLoader(shard, 2, 16, 3, 0, 2), PackedLoader(shard, 2, 16, 3, 1, 2)
    g = PackedLoader(shard, 4, 16, 3)
    assert torch.equal(torch.cat([r0.next_batch()[0], r1.next_batch()[0]]).sort(0)[0], g.next_batch()[0].sort(0)[0])


def test_training_lowers_loss(token_dir):
    r = _run(token_dir, "ck", steps=40)
    losses = _losses(token_dir / "ck.jsonl")
    assert losses[40] < losses[1] - 1.0, losses
    assert r.steps == 40 and r.checkpoint.name == "step_0000040"
    model = load_model(r.checkpoint)
    assert model.cfg.vocab_size == V


def test_resume_reproduces_uninterrupted_run(token_dir):
    _run(token_dir, "full")
    _run(token_dir, "split", stop_after=6)  # "crash" after step 6; the step-4 checkpoint survives
    ck = latest_checkpoint(token_dir / "split")
    assert ck is not None and ck.name == "step_0000006"
    # a half-written checkpoint (crash during save) is never picked up as latest
    (token_dir / "split" / "step_0000008.tmp").mkdir()
    r = _run(token_dir, "split", resume=True)
    assert r.resumed_from == 6
    full, split = _losses(token_dir / "full.jsonl"), _losses(token_dir / "split.jsonl")
    assert sorted(split) == list(range(1, 13))
    for step in range(7, 13):
        assert split[step] == full[step], (step, split[step], full[step])
    a = load_model(token_dir / "full" / "step_0000012")
    b = load_model(r.checkpoint)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n
