"""What else could speed up decoding on a CPU, measured on the engine: threads, and ``torch.compile`` of the model.

Usage:
    python benchmarks/bench_decode_options.py --checkpoint runs/demo --precision int8

Greedy decoding of ``--new-tokens`` tokens past ``<|eos|>`` at batch 1 and 8 (best of ``--repeats``), with the
engine as shipped (eager, all cores' threads), with one thread, and with the model compiled by ``torch.compile``
(inductor, ``dynamic=True``: the KV-cache length changes every step; the compile time is reported apart).
Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def _decode_tps(engine, batch: int, n: int, repeats: int) -> float:
    from tweetlm.inference.engine import SamplingParams

    prompts = ["Monday morning and the coffee is"] * batch
    greedy = SamplingParams(max_tokens=n, temperature=0, ignore_eos=True)
    one = SamplingParams(max_tokens=1, temperature=0)
    engine.generate(prompts, SamplingParams(max_tokens=4, temperature=0))
    best_full = best_one = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        engine.generate(prompts, greedy)
        best_full = min(best_full, time.perf_counter() - t0)
        t0 = time.perf_counter()
        engine.generate(prompts, one)
        best_one = min(best_one, time.perf_counter() - t0)
    return batch * (n - 1) / max(best_full - best_one, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="runs/demo")
    ap.add_argument("--precision", default="int8", choices=["float32", "bfloat16", "int8"])
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    from tweetlm.inference.engine import Engine

    eng = Engine.from_checkpoint(args.checkpoint, precision=args.precision, prefix_caching=False)
    threads = torch.get_num_threads()
    out: dict = {"bench": "decode_options", "model": args.checkpoint, "precision": args.precision, "threads": threads}
    for batch in (1, 8):
        out[f"eager_batch{batch}_tokens_per_s"] = round(_decode_tps(eng, batch, args.new_tokens, args.repeats), 1)
        torch.set_num_threads(1)
        out[f"one_thread_batch{batch}_tokens_per_s"] = round(_decode_tps(eng, batch, args.new_tokens, args.repeats), 1)
        torch.set_num_threads(threads)
        print(out, flush=True)
    t0 = time.perf_counter()
    eng.model = torch.compile(eng.model, dynamic=True)
    try:
        _decode_tps(eng, 1, 4, 1)
        _decode_tps(eng, 8, 4, 1)
        out["compile_s"] = round(time.perf_counter() - t0, 1)
        for batch in (1, 8):
            out[f"compiled_batch{batch}_tokens_per_s"] = round(
                _decode_tps(eng, batch, args.new_tokens, args.repeats), 1
            )
    except Exception as e:  # report, do not hide: a compile failure is a result too
        out["compile_error"] = repr(e)[:300]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
