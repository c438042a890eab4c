"""Training throughput: tokens/s, MFU and peak memory of ``tweetlm train`` (1 process, and 2 processes under
torchrun with DDP) against a plain single-process loop of the same model in the same run (no compile, no fusions:
GPT + AdamW + cross-entropy + clipping, nothing else), on synthetic token shards.

    python benchmarks/bench_train.py                       # scratch_cpu and d12_gpu shapes, CPU
    python benchmarks/bench_train.py --shapes smollm2_135m --steps 8
    python benchmarks/bench_train.py --shapes scratch_cpu --steps 20

The ``smollm2_135m`` shape (SmolLM2-135M: 30 layers, width 576, GQA 9/3 heads, vocab 49,152, random weights) runs
the ``demo_cpu`` recipe's batch (8 x 128) and compares, each in its own process with the same threads: the plain
loop (fp32), a plain ``transformers`` ``LlamaForCausalLM`` loop of the same shape (fp32), the tweetlm loop as the
recipe runs it (bf16 autocast) and the tweetlm loop in fp32 (what the loop itself costs).

On CPU the d12_gpu shape (124M parameters) runs at seq 128 and batch 2 per process, a few steps (its real seq 2048
x 32 does not fit a CPU budget); scratch_cpu runs at its recipe's shape. tokens/s is the median over the steps after
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
SMOLLM2 = [  # SmolLM2-135M's shape (HuggingFaceTB/SmolLM2-135M config.json), random weights
    "base=", "model.n_layer=30", "model.n_embd=576", "model.n_head=9", "model.n_kv_head=3",
    "model.ffn_hidden_size=1536", "model.max_seq_len=2048", "model.rope_theta=100000", "tokenizer.vocab_size=49152",
]  # fmt: skip
SHAPES = {  # recipe, overrides for a CPU benchmark, runs
    "scratch_cpu": ("scratch_cpu", [], ("baseline", "tweetlm", "ddp2")),
    "d12_gpu": (
        "d12_gpu",
        ["train.seq_len=128", "train.batch_size=2", "train.grad_accum=1", "train.compile=false"],
        ("baseline", "tweetlm", "ddp2"),
    ),
    "smollm2_135m": ("demo_cpu", SMOLLM2, ("baseline", "transformers", "tweetlm", "tweetlm_fp32")),
}


def make_shard(root: Path, vocab: int, num_docs: int = 20000, seed: int = 0) -> None:
    from tweetlm.common.token_shards import ShardWriter

    rng = np.random.default_rng(seed)
    w = ShardWriter(root / "tokens" / "train", vocab)
    for _ in range(num_docs):  # tweet-like lengths: 10..60 tokens between <|bos|>=1 and <|eos|>=2
        w.add([1, *rng.integers(3, vocab, int(rng.integers(10, 60))).tolist(), 2], "synthetic", 100)
    w.close()
    (root / "tokenizer.json").write_text("{}")


def baseline(recipe: str, sets: list[str], steps: int, vocab: int, hf: bool = False) -> dict:
    """The plain loop (``hf``: of ``transformers``' ``LlamaForCausalLM`` of the same shape), fp32, in this
    process (the benchmark runs it in a worker process of its own)."""
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
    num_params = model.num_params()
    forward = model
    if hf:
        from transformers import LlamaConfig, LlamaForCausalLM

        from tweetlm.model.hf_format import hf_config

        model = LlamaForCausalLM(LlamaConfig(**hf_config(cfg.model, 1, 2, 0)))
        num_params = sum(p.numel() for p in model.parameters())

        def forward(x):
            return model(x).logits

    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay)
    times = []
    for _ in range(steps):
        x = torch.randint(3, vocab, (t.batch_size, t.seq_len + 1))
        t0 = time.perf_counter()
        logits = forward(x[:, :-1])
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
        "num_params": num_params,
    }


def baseline_in_worker(recipe: str, sets: list[str], steps: int, vocab: int, hf: bool) -> dict:
    """``baseline`` in a fresh process (peak memory is the process's own; one thread count for all runs)."""
    cmd = [sys.executable, __file__, "--worker", "hf" if hf else "plain", "--recipe", recipe, "--steps", str(steps)]
    cmd += ["--vocab", str(vocab), *[a for s in sets for a in ("--set", s)]]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def ours(run: Path, recipe: str, sets: list[str], steps: int, procs: int, tag: str = "") -> dict:
    out = run / f"out_{procs}{tag}"
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
    ap.add_argument("--shapes", default="scratch_cpu,d12_gpu", help=f"comma-separated: {', '.join(SHAPES)}")
    ap.add_argument("--steps", type=int, default=12, help="steps per measurement (the first 2 are warm-up)")
    ap.add_argument("--d12-steps", type=int, default=6)
    ap.add_argument("--worker", choices=["plain", "hf"], help=argparse.SUPPRESS)
    ap.add_argument("--recipe", help=argparse.SUPPRESS)
    ap.add_argument("--vocab", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    if args.worker:
        print(json.dumps(baseline(args.recipe, args.set, args.steps, args.vocab, hf=args.worker == "hf")))
        return
    from tweetlm.common.config import apply_overrides
    from tweetlm.jobs.recipes import get_recipe

    results = {}
    for shape in args.shapes.split(","):
        recipe, sets, runs = SHAPES[shape]
        vocab = apply_overrides(get_recipe(recipe), sets).tokenizer.vocab_size
        steps = args.d12_steps if shape == "d12_gpu" else args.steps
        r: dict = {"steps": steps}
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp)
            make_shard(run, vocab)
            for name in runs:
                if name in ("baseline", "transformers"):
                    m = baseline_in_worker(recipe, sets, steps, vocab, hf=name == "transformers")
                    r.setdefault("num_params", m.pop("num_params"))
                    m.pop("num_params", None)
                elif name == "tweetlm_fp32":
                    m = ours(run, recipe, [*sets, "train.precision=fp32"], steps, 1, tag="fp32")
                else:
                    m = ours(run, recipe, sets, steps, 2 if name == "ddp2" else 1)
                r[name] = m
        for name in runs:
            r[name]["ratio_vs_baseline"] = r[name]["tokens_per_s"] / r["baseline"]["tokens_per_s"]
        results[shape] = r
        print(f"{shape} ({r['num_params'] / 1e6:.1f}M params, {steps} steps)")
        for name in runs:
            m = r[name]
            print(
                f"  {name:14s} {m['tokens_per_s']:10,.0f} tokens/s  MFU {100 * m['mfu']:5.2f}%  "
                f"peak mem {m['peak_mem_mb']:8,.0f} MiB  x{m['ratio_vs_baseline']:.2f} vs baseline"
            )
    print(json.dumps({"bench": "train_cpu", "threads": os.cpu_count(), "results": results}))


if __name__ == "__main__":
    main()
