"""Distributed training on CPU (gloo): 2-process DDP and FSDP2 match one process on the same global batch, a
checkpoint written by 2 FSDP2 ranks resumes in 1 process and exports ``model.safetensors``, and a run killed with
SIGKILL resumes to the same losses as an uninterrupted run. Processes are real: ``torchrun`` and ``os.kill``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from killing import sigkill_at_step

from tweetlm.cli.main import main
from tweetlm.common.token_shards import ShardWriter
from tweetlm.model.load import load_model
from tweetlm.training.checkpoint import export_safetensors, latest_checkpoint

REPO = Path(__file__).resolve().parents[1]
V = 64
# Constant LR after warmup (WSD without decay), so a 5-step run and an 8-step run share their first 5 LRs and
# a run can be continued past its max_steps with the same schedule.
COMMON = [
    "--recipe", "tiny_cpu", "--no-progress",
    "--set", "model.n_embd=32", "--set", "model.max_seq_len=32", "--set", "train.seq_len=32",
    "--set", "train.schedule=wsd", "--set", "train.decay_frac=0", "--set", "train.warmup_steps=2",
    "--set", "train.lr=1e-2", "--set", "train.log_every=1", "--set", "train.ckpt_every=0",
    "--set", "train.tensorboard=false",
]  # fmt: skip
# fp32 everywhere. One process averages the loss over 8 rows; two ranks average 4 rows each and then average the
# gradients (all-reduce for DDP, reduce-scatter for FSDP2). Only the order of float32 additions differs, which moves
# gradients by ~1e-7 relative; AdamW passes such differences through at about the same relative size, so after 5
# steps the losses (~4 nats, logged to 5 decimals) agree to 1e-5 (measured: identical to the last logged decimal).
# A real bug (a rank reading the wrong rows, gradients summed instead of averaged, a lost micro-batch) moves them by
# 1e-2 or more.
TOL = 1e-4


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist") / "src_run"
    rng = np.random.default_rng(0)
    w = ShardWriter(root / "tokens" / "train", V)
    for _ in range(600):  # a learnable pattern: runs of increasing ids, one post each
        start = int(rng.integers(3, 40))
        w.add([1, *range(start, start + int(rng.integers(3, 20))), 2], "synthetic", 10)
    w.close()
    (root / "tokenizer.json").write_text("{}")
    return root


def _env(threads: int | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _torchrun(run_dir: Path, out: Path, *sets: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "tweetlm.cli.train", "--run-dir", str(run_dir), "--out", str(out), *COMMON]
    for s in sets:
        cmd += ["--set", s]
    p = subprocess.run(cmd, env=_env(1), capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]


def _losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}


def _train_here(run_dir: Path, out: Path, *sets: str, resume: bool = False) -> None:
    argv = ["train", "--run", str(run_dir), "--out", str(out), *COMMON] + [a for s in sets for a in ("--set", s)]
    assert main(argv + (["--resume"] if resume else [])) == 0


def test_ddp_and_fsdp_match_one_process_and_reshard(run_dir, tmp_path):
    one = tmp_path / "one"
    _train_here(run_dir, one, "train.batch_size=8", "train.max_steps=8")
    ref = _losses(one)
    assert sorted(ref) == list(range(1, 9)) and ref[8] < ref[1]
    for mode in ("ddp", "fsdp"):
        out = tmp_path / mode
        _torchrun(run_dir, out, "train.batch_size=4", "train.max_steps=5", f"train.parallel={mode}")
        got = _losses(out)
        assert sorted(got) == list(range(1, 6)), mode
        for s in range(1, 6):
            assert abs(got[s] - ref[s]) < TOL, (mode, s, got[s], ref[s])
        print(mode, "max |loss diff| vs one process:", max(abs(got[s] - ref[s]) for s in got))
        assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["mfu"] > 0
    # the checkpoint 2 FSDP2 ranks wrote (sharded DCP) resumes in one process and continues the reference run
    fsdp = tmp_path / "fsdp"
    ck = latest_checkpoint(fsdp / "checkpoints")
    assert ck is not None and ck.name == "step_0000005" and (ck / "dcp" / ".metadata").exists()
    assert len(list((ck / "dcp").glob("*.distcp"))) == 2  # one shard file per rank
    state = torch.load(ck / "trainer_state.pt", weights_only=False)
    assert state["world_size"] == 2 and state["parallel"] == "fsdp"
    _train_here(run_dir, fsdp, "train.batch_size=8", "train.max_steps=8", resume=True)
    cont = _losses(fsdp)
    for s in range(6, 9):
        assert abs(cont[s] - ref[s]) < TOL, (s, cont[s], ref[s])
    # the consolidated export of the sharded checkpoint equals the model.safetensors written at save time
    exported = export_safetensors(ck, tmp_path / "export.safetensors")
    a = load_model(ck)
    from safetensors.torch import load_file

    b = load_file(exported)
    sd = a.state_dict()
    assert len(b) == len(list(a.parameters()))  # every tensor once (the tied embedding is stored once)
    for name, t in b.items():
        assert torch.equal(sd[name], t), name


def test_sigkill_then_resume_matches_uninterrupted(run_dir, tmp_path):
    steps = ["train.batch_size=8", "train.max_steps=80", "train.ckpt_every=5", "train.keep_checkpoints=2"]
    full = tmp_path / "full"
    _train_here(run_dir, full, *steps)
    ref = _losses(full)
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "tweetlm.cli.train", "--run", str(run_dir), "--out", str(killed), *COMMON]
    for s in steps:
        cmd += ["--set", s]
    threads = str(torch.get_num_threads())  # same matmul blocking as this process, so the same float results
    proc = subprocess.Popen(cmd, env=_env(int(threads)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sigkill_at_step(proc, killed / "metrics.jsonl", 22, timeout=120)
    ck = latest_checkpoint(killed / "checkpoints")
    assert ck is not None and 20 <= int(ck.name.split("_")[1]) < 80
    before = _losses(killed)
    for s, v in before.items():  # the killed run was on the reference path up to the kill
        assert v == ref[s], (s, v, ref[s])
    p = subprocess.run(cmd + ["--resume"], env=_env(int(threads)), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    after = _losses(killed)
    logged = [json.loads(ln)["step"] for ln in (killed / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 81))  # steps logged after the checkpoint by the killed run are not repeated
    for s in range(int(ck.name.split("_")[1]) + 1, 81):
        assert after[s] == ref[s], (s, after[s], ref[s])
    a, b = load_model(full / "checkpoints" / "step_0000080"), load_model(latest_checkpoint(killed / "checkpoints"))
    for (n, x), (_, y) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(x, y), n


def test_packing_is_bos_aligned_and_world_size_independent(run_dir):
    from tweetlm.common.token_shards import open_shard
    from tweetlm.training.dataloader import PackedLoader, plan_epoch

    shard = open_shard(run_dir / "tokens" / "train")
    lens = np.diff(shard.offsets)
    plan = plan_epoch(lens, 33, seed=5, epoch=0)
    rows = len(plan["row_ptr"]) - 1
    used = 0
    for i in range(rows):
        a, b = plan["row_ptr"][i], plan["row_ptr"][i + 1]
        seg_len, seg_doc = plan["seg_len"][a:b], plan["seg_doc"][a:b]
        assert seg_len.sum() == 33
        assert (seg_len[:-1] == lens[seg_doc[:-1]]).all()  # only the last document of a row may be cropped
        used += seg_len.sum()
    assert len(set(plan["seg_doc"].tolist())) == len(plan["seg_doc"])  # no document twice in an epoch
    assert used + plan["cropped"] == lens.sum() == plan["tokens"]
    one = PackedLoader(shard, 8, 32, seed=5)
    assert 0 < one.cropped_frac < 0.1  # best fit over 64 buffered posts crops little (about 7% here)
    r0, r1 = PackedLoader(shard, 4, 32, 5, 0, 2), PackedLoader(shard, 4, 32, 5, 1, 2)
    for _ in range(rows // 8 + 3):  # past an epoch boundary
        x, y = one.next_batch()
        assert (x[:, 0] == 1).all()  # every row starts at a <|bos|>
        assert torch.equal(torch.cat([r0.next_batch()[0], r1.next_batch()[0]]), x)
    assert one.epoch == r0.epoch == 1 and one.state_dict() == r0.state_dict() == r1.state_dict()


def test_activation_checkpointing_keeps_losses(run_dir, tmp_path):
    """Recomputing activations in backward changes memory, not numerics (same ops, same order)."""
    for name, ac in (("plain", "false"), ("ac", "true")):
        _train_here(
            run_dir, tmp_path / name, "train.batch_size=8", "train.max_steps=3", f"train.activation_checkpointing={ac}"
        )
    assert _losses(tmp_path / "plain") == _losses(tmp_path / "ac")


def test_fsdp_continues_from_an_initial_checkpoint_like_one_process(run_dir, tmp_path):
    """Continued pretraining under torchrun: ``train.init_from`` loads the starting weights on every rank before
    FSDP2 shards them, and the 2-rank losses follow the 1-process ones from the same start."""
    start = tmp_path / "start"
    _train_here(run_dir, start, "train.batch_size=8", "train.max_steps=6")
    init = f"train.init_from={latest_checkpoint(start / 'checkpoints')}"
    fresh, one, two = tmp_path / "fresh", tmp_path / "one", tmp_path / "two"
    _train_here(run_dir, fresh, "train.batch_size=8", "train.max_steps=3", "train.seed=7")
    _train_here(run_dir, one, "train.batch_size=8", "train.max_steps=3", "train.seed=7", init)
    _torchrun(run_dir, two, "train.batch_size=4", "train.max_steps=3", "train.seed=7", "train.parallel=fsdp", init)
    ref, got = _losses(one), _losses(two)
    assert ref[1] < _losses(fresh)[1] - 0.5  # it starts from the trained weights, not from a fresh init
    for s in range(1, 4):
        assert abs(got[s] - ref[s]) < TOL, (s, got[s], ref[s])
