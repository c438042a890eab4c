"""On a real Slurm cluster (the one-node cluster of ``scripts/slurm_local.sh``, which ``.ci/run`` starts):
``tweetlm data build --executor slurm`` runs its four stages as sbatch array jobs and writes the corpus the local
executor writes, and ``runs/slurm_tiny_cpu.sbatch`` (torchrun, 2 gloo processes) trains, then, submitted again
with more steps, resumes from its checkpoint. Skipped with the reason when ``sbatch`` is not on ``PATH`` or the
cluster does not answer; every job a test submits is cancelled when it ends."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from tweetlm.cli.main import main
from tweetlm.common.token_shards import ShardWriter

REPO = Path(__file__).resolve().parents[1]
FORMATS = REPO.parent / "shared" / "formats"
SBATCH = REPO / "runs" / "slurm_tiny_cpu.sbatch"
# the model and schedule of tests/test_distributed.py: constant LR after warmup, so a 4-step run continued to 8
# steps follows the schedule of an 8-step run
TRAIN_SETS = [
    "model.n_embd=32", "model.max_seq_len=32", "train.seq_len=32", "train.batch_size=4", "train.schedule=wsd",
    "train.decay_frac=0", "train.warmup_steps=2", "train.lr=1e-2", "train.log_every=1", "train.ckpt_every=0",
    "train.tensorboard=false",
]  # fmt: skip
DONE_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL"}


@pytest.fixture(scope="module")
def cluster() -> None:
    if shutil.which("sbatch") is None:
        pytest.skip("sbatch not on PATH: no Slurm here (scripts/slurm_local.sh starts a one-node cluster, as root)")
    try:
        p = subprocess.run(["sinfo", "-h", "-o", "%a %t"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"the Slurm cluster does not answer ({e}); scripts/slurm_local.sh starts it")
    states = p.stdout.split()
    if p.returncode != 0 or not any(s in ("idle", "mix", "alloc") for s in states[1::2]):
        pytest.skip(f"the Slurm cluster has no node up (sinfo: {p.stdout.strip() or p.stderr.strip()})")


@pytest.fixture
def cancel_leftovers(tmp_path):
    """Cancel this test's jobs that are still queued when it ends (they were submitted from ``tmp_path``)."""
    yield
    p = subprocess.run(["squeue", "-h", "-o", "%F|%Z"], capture_output=True, text=True, timeout=30)
    ids = {j for j, cwd in (ln.split("|", 1) for ln in p.stdout.splitlines()) if cwd.startswith(str(tmp_path))}
    if ids:
        subprocess.run(["scancel", *sorted(ids)], timeout=30)


def _wait_job(job_id: str, timeout: float = 150) -> str:
    """The final state of a job, polled every 0.5 s (``sbatch --wait`` polls every 2, 8, then 32 s)."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
        state = next((f.split("=", 1)[1] for f in out.split() if f.startswith("JobState=")), "")
        if state in DONE_STATES:
            return state
        time.sleep(0.5)
    raise AssertionError(f"Slurm job {job_id} still not done after {timeout:.0f} s")


def test_data_build_on_slurm_equals_local(cluster, corpora, tmp_path, cancel_leftovers, capsys, monkeypatch):
    if not FORMATS.is_dir():
        pytest.skip(f"shared format samples not found at {FORMATS}")
    paths = [str(FORMATS / n) for n in ("mastodon", "bluesky", "x_account_archive_alrocar")]
    paths.append(str(corpora / "xlmt_umsab_sentiment" / "spanish"))  # 2,161 posts in a train/val split
    slurm, local = tmp_path / "slurm", tmp_path / "local"
    cmd = ["data", "build", "--corpus", *paths, "--tasks", "2"]
    monkeypatch.chdir(tmp_path)  # sbatch records it as the jobs' working folder: cancel_leftovers finds them by it
    assert main([*cmd, "--out", str(slurm), "--executor", "slurm", "--wait"]) == 0
    out = capsys.readouterr().out
    assert "slurm: prepare 0/2, buckets 0/2, decide 0/1, finalize 0/1" in out and f"corpus: {slurm}" in out
    assert main([*cmd, "--out", str(local), "--no-progress"]) == 0
    # the stages ran as Slurm array jobs: one log per array task, a completion marker per datatrove task
    logs = slurm / "_work" / "logs"
    (second,) = (logs / "prepare" / "slurm_logs").glob("*_1.out")  # (datatrove's merge-stats job logs *_0 too)
    assert (second.parent / second.name.replace("_1.out", "_0.out")).exists()
    assert sorted(p.name for p in (logs / "prepare" / "completions").iterdir()) == ["00000", "00001"]
    assert "launch_pickled_pipeline" in (logs / "decide" / "launch_script.slurm").read_text()
    manifest = {d: json.loads((d / "manifest.json").read_text()) for d in (slurm, local)}
    assert manifest[slurm]["corpus_hash"] == manifest[local]["corpus_hash"]
    assert manifest[slurm]["shards"]["train.parquet"]["num_posts"] > 1500
    accounting = {d: json.loads((d / "accounting.json").read_text()) for d in (slurm, local)}
    assert accounting[slurm] == accounting[local]
    for name in ("train.parquet", "val.parquet"):
        assert pq.read_table(slurm / name).equals(pq.read_table(local / name)), name


def test_failed_stage_is_an_error_and_its_dependents_are_cancelled(cluster, tmp_path, cancel_leftovers, monkeypatch):
    from tweetlm.data.pipeline.build import build_corpus
    from tweetlm.data.pipeline.config import PipelineConfig

    if not FORMATS.is_dir():
        pytest.skip(f"shared format samples not found at {FORMATS}")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match=r"Slurm stage prepare \(job \d+\) ended with 0/2 tasks") as e:
        # every prepare task exits at once; Slurm would keep the later stages pending forever
        build_corpus(
            [FORMATS / "mastodon"], out, PipelineConfig(tasks=2, executor="slurm"), wait=True, env_command="exit 3"
        )
    assert "cancelled the jobs waiting on it" in str(e.value)
    assert f"{out}/_work/logs/prepare/slurm_logs" in str(e.value)
    p = subprocess.run(["squeue", "-h", "-o", "%F|%Z"], capture_output=True, text=True, timeout=30)
    assert str(tmp_path) not in p.stdout  # nothing of this build left in the queue
    assert not (out / "report.json").exists()


def _tiny_run(root: Path) -> Path:
    """A run folder with 600 synthetic posts of token ids (vocabulary 64): what tweetlm train reads."""
    rng = np.random.default_rng(0)
    w = ShardWriter(root / "tokens" / "train", 64)
    for _ in range(600):
        start = int(rng.integers(3, 40))
        w.add([1, *range(start, start + int(rng.integers(3, 20))), 2], "synthetic", 10)
    w.close()
    (root / "tokenizer.json").write_text("{}")
    return root


def _sbatch_train(run: Path, log: Path, max_steps: int) -> str:
    """Submit runs/slurm_tiny_cpu.sbatch from ``log``'s folder; the job's output once it completed."""
    sets = [a for s in [*TRAIN_SETS, f"train.max_steps={max_steps}"] for a in ("--set", s)]
    cmd = ["sbatch", "--parsable", f"--output={log}", str(SBATCH), str(run), *sets]
    env = dict(os.environ, PYTHON=sys.executable)
    p = subprocess.run(cmd, cwd=log.parent, env=env, capture_output=True, text=True, timeout=30, check=True)
    job = p.stdout.strip().split(";")[0]
    state = _wait_job(job)
    assert state == "COMPLETED", f"job {job}: {state}\n" + (log.read_text()[-3000:] if log.exists() else "")
    return log.read_text()


def test_sbatch_cpu_training_resumes_its_checkpoint(cluster, tmp_path, cancel_leftovers):
    run = _tiny_run(tmp_path / "run")
    first = _sbatch_train(run, tmp_path / "first.out", 4)
    assert "trained 4 steps (1,024 tokens) on 2 process(es), parallel=ddp" in first
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines] == [1, 2, 3, 4]
    state = torch.load(run / "checkpoints" / "step_0000004" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 4 and state["world_size"] == 2
    second = _sbatch_train(run, tmp_path / "second.out", 8)
    assert "trained 8 steps (2,048 tokens) on 2 process(es)" in second
    after = (run / "metrics.jsonl").read_text().splitlines()
    # resumed, not restarted: the first job's lines (with their own tokens/s) are kept as written, steps 5-8 follow
    assert after[:4] == lines
    rows = [json.loads(ln) for ln in after]
    assert [r["step"] for r in rows] == list(range(1, 9)) and rows[4]["tokens"] == 5 * 256
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert torch.load(run / "checkpoints" / "step_0000008" / "trainer_state.pt", weights_only=False)["step"] == 8
