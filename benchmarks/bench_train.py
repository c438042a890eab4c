"""Training throughput: tokens/s, MFU and peak memory of ``tweetlm train`` (1 process, and 2 processes under
torchrun with DDP) against a plain single-process loop of the same model in the same run (no compile, no fusions:
GPT + AdamW + cross-entropy + clipping, nothing else), on synthetic token shards.

    python benchmarks/bench_train.py                       # demo_cpu and d12_gpu shapes, CPU
    python benchmarks/bench_train.py --shapes demo_cpu --steps 20

On CPU the d12_gpu shape (124M parameters) runs at seq 128 and batch 2 per process, a few steps (its real seq 2048
x 32 does not fit a CPU budget); demo_cpu runs at its recipe's shape. tokens/s is the median over the steps after
the first two (warm-up); under 2 processes it counts both ranks (the global batch is twice as big) and each rank
gets one thread (torchrun's default), the baseline the machine's threads. MFU uses the measured fp32 matmul peak of
each process's threads (``training/metrics.py``). Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHAPES = {  # recipe, overrides for a CPU benchmark
    "demo_cpu": ("demo_cpu", []),
    "d12_gpu": ("d12_gpu", ["train.seq_len=128", "train.batch_size=2", "train.grad_accum=1", "train.compile=false"]),
}


def make_shard(root: Path, vocab: int, num_docs: int = 20000, seed: int = 0) -> None:
    from tweetlm.common.token_shards import ShardWriter

    rng = np.random.default_rng(seed)
    w = ShardWriter(root / "tokens" / "train", vocab)
    for _ in range(num_docs):  # tweet-like lengths: 10..60 tokens between <|bos|>=1 and <|eos|>=2
        w.add([1, *rng.integers(3, vocab, int(rng.integers(10, 60))).tolist(), 2], "synthetic", 100)
    w.close()
    (root / "tokenizer.json").write_text("{}")


def baseline(recipe: str, sets: list[str], steps: int, vocab: int) -> dict:
    """The plain loop, in this process."""
    import torch
    import torch.nn.functional as F

    from tweetlm.common.config import apply_overrides
    from tweetlm.jobs.recipes import get_recipe
    from tweetlm.model.flops import train_flops_per_token
    from tweetlm.model.gpt import GPT
    from tweetlm.training.metrics import measure_cpu_matmul_flops, peak_memory_mb

    cfg = apply_overrides(get_recipe(recipe), sets)
    cfg.model.vocab_size = vocab
    t = cfg.train
    torch.manual_seed(0)
    model = GPT.build(cfg.model, device="cpu", seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay)
    times = []
    for _ in range(steps):
        x = torch.randint(3, vocab, (t.batch_size, t.seq_len + 1))
        t0 = time.perf_counter()
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    tps = t.batch_size * t.seq_len / statistics.median(times[2:])
    peak = measure_cpu_matmul_flops()
    return {
        "tokens_per_s": tps,
        "mfu": tps * train_flops_per_token(cfg.model, t.seq_len) / peak,
        "peak_mem_mb": peak_memory_mb(torch.device("cpu")),
        "num_params": model.num_params(),
    }


def ours(run: Path, recipe: str, sets: list[str], steps: int, procs: int) -> dict:
    out = run / f"out_{procs}"
    cmd = [sys.executable, "-m", "tweetlm.cli.train"]
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
        cmd += ["-m", "tweetlm.cli.train"]
    cmd += ["--run-dir", str(run), "--out", str(out), "--recipe", recipe, "--no-progress"]
    for s in [*sets, f"train.max_steps={steps}", "train.log_every=1", "train.ckpt_every=0", "train.device=cpu"]:
        cmd += ["--set", s]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][2:]
    return {
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in recs),
        "mfu": statistics.median(r["mfu"] for r in recs),
        "peak_mem_mb": max(r["peak_mem_mb"] for r in recs),
        "cropped_frac": recs[-1]["cropped_frac"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="demo_cpu,d12_gpu")
    ap.add_argument("--steps", type=int, default=12, help="steps per measurement (the first 2 are warm-up)")
    ap.add_argument("--d12-steps", type=int, default=6)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from tweetlm.jobs.recipes import get_recipe

    results = {}
    for shape in args.shapes.split(","):
        recipe, sets = SHAPES[shape]
        vocab = get_recipe(recipe).tokenizer.vocab_size
        steps = args.d12_steps if shape == "d12_gpu" else args.steps
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp)
            make_shard(run, vocab)
            base = baseline(recipe, sets, steps, vocab)
            one = ours(run, recipe, sets, steps, 1)
            two = ours(run, recipe, sets, steps, 2)
        results[shape] = {
            "steps": steps,
            "num_params": base.pop("num_params"),
            "baseline_1proc": base,
            "tweetlm_1proc": one,
            "tweetlm_2proc_ddp": two,
            "ratio_1proc_vs_baseline": one["tokens_per_s"] / base["tokens_per_s"],
            "ratio_2proc_vs_baseline": two["tokens_per_s"] / base["tokens_per_s"],
        }
        r = results[shape]
        print(f"{shape} ({r['num_params'] / 1e6:.1f}M params, {steps} steps)")
        for k in ("baseline_1proc", "tweetlm_1proc", "tweetlm_2proc_ddp"):
            m = r[k]
            print(
                f"  {k:18s} {m['tokens_per_s']:10,.0f} tokens/s  MFU {100 * m['mfu']:5.2f}%  "
                f"peak mem {m['peak_mem_mb']:8,.0f} MiB"
            )
        print(
            f"  ratio vs baseline: 1 proc {r['ratio_1proc_vs_baseline']:.3f}, 2 proc {r['ratio_2proc_vs_baseline']:.3f}"
        )
    print(json.dumps({"bench": "train_cpu", "threads": os.cpu_count(), "results": results}))


if __name__ == "__main__":
    main()
