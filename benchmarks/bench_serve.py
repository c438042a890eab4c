"""Load test of ``tweetlm serve`` on 127.0.0.1: static against continuous batching at the same load, then a burst
above what the server admits.

Usage:
    python benchmarks/bench_serve.py --checkpoint runs/demo --precision int8     # 3 x 64 requests at 12/s
    python benchmarks/bench_serve.py --random          # a scratch_cpu-shaped random model

Starts the real server twice as a subprocess (``tweetlm serve`` on a free loopback port; ``--static-batching``,
then the default continuous batching) and sends each the same open-loop load with an async ``httpx`` client:
``--requests`` completions arriving as a Poisson process of ``--rate`` per second (seeded), each with its own
``max_tokens`` drawn from ``--lengths`` and its own seed, so both servers generate exactly the same tokens. Latency
= arrival to the last byte of the answer; requests/s = completed requests over the time from the first arrival to
the last answer. ``--repeats`` runs with different arrival seeds; medians are reported (static batching's numbers
swing with which requests happen to share a batch). A hostile mix replays the first schedule on the continuous
server with ``--hostile-share`` of its requests replaced by invalid ones (bad fields, bad JSON, bad UTF-8, an
oversized body): every valid one must still answer 200 (their p99 is reported), every invalid one 4xx. Then a burst
of ``--burst`` simultaneous requests against the continuous server, more than it admits (``max_batch +
queue_size``): the rest must be answered 503 at once (never hang). Only 127.0.0.1 is ever contacted. Prints one
JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


@contextmanager
def _server(ckpt: str, args, extra: list[str]):
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "tweetlm.cli.main", "serve", "--checkpoint", ckpt, "--port", str(port),
           "--max-batch", str(args.max_batch), "--queue-size", str(args.queue_size), "--precision", args.precision,
           "--max-tokens-limit", str(max(args.lengths)), "--threads", str(args.threads), *extra]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError(f"server did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


async def _poisson_load(url: str, schedule: list[tuple[float, dict]]) -> dict:
    import httpx

    lat: list[float] = []
    codes: dict[int, int] = {}
    t0 = time.perf_counter()
    done_at: list[float] = []

    bad_codes: dict[int, int] = {}

    async def one(c: httpx.AsyncClient, at: float, body: dict):
        await asyncio.sleep(max(0.0, at - (time.perf_counter() - t0)))
        start = time.perf_counter()
        if "__bad__" in body:  # a hostile request: its answer is counted apart
            kw = {"content": body["__bad__"]} if isinstance(body["__bad__"], bytes) else {"json": body["__bad__"]}
            r = await c.post("/v1/completions", headers={"Content-Type": "application/json"}, **kw)
            bad_codes[r.status_code] = bad_codes.get(r.status_code, 0) + 1
            return
        r = await c.post("/v1/completions", json=body)
        codes[r.status_code] = codes.get(r.status_code, 0) + 1
        if r.status_code == 200:
            lat.append(time.perf_counter() - start)
            done_at.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=len(schedule) + 8)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as c:
        # warm up (the first request loads kernels and allocates the KV cache)
        await c.post("/v1/completions", json={"prompt": "warm", "max_tokens": 2})
        t0 = time.perf_counter()
        await asyncio.gather(*[one(c, at, body) for at, body in schedule])
    span = max(done_at) - schedule[0][0] if done_at else float("nan")
    extra = {"invalid_requests": sum(bad_codes.values()), "invalid_codes": bad_codes} if bad_codes else {}
    return {
        **extra,
        "completed": len(lat),
        "errors": sum(n for c, n in codes.items() if c != 200),
        "requests_per_s": round(len(lat) / span, 3),
        "p50_s": round(_pct(lat, 50), 3),
        "p95_s": round(_pct(lat, 95), 3),
        "p99_s": round(_pct(lat, 99), 3),
    }


async def _burst(url: str, n: int, body: dict) -> dict:
    import httpx

    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=n + 8)) as c:
        rs = await asyncio.gather(*[c.post("/v1/completions", json=body) for _ in range(n)])
    codes = [r.status_code for r in rs]
    return {
        "burst": n,
        "burst_200": codes.count(200),
        "burst_503": codes.count(503),
        "burst_other": sum(c not in (200, 503) for c in codes),
        "burst_wall_s": round(time.perf_counter() - t0, 2),
    }


HOSTILE = [
    {"prompt": "x", "seed": 2**70},
    {"prompt": "x", "stop": ""},
    {"prompt": "x", "repetition_penalty": 1e-300},
    {"prompt": "x", "temperature": -1},
    {"prompt": "x", "max_tokens": 10**9},
    {"prompt": "x", "model": "gpt-4o"},
    {"prompt": "x", "tools": [{"type": "function"}]},
    b'{"prompt": "caf\\ud800"}',  # a lone surrogate
    b'{"prompt": "x",',  # invalid JSON
    b'{"prompt": "\xff\xfe"}',  # not UTF-8
    {"prompt": "x" * 2_000_000},  # over the body limit
]


def _hostile(args, prompts: list[str]) -> list[tuple[float, dict]]:
    """A Poisson schedule like the main one, long enough that every kind of ``HOSTILE`` request comes once, with
    every ``1 / --hostile-share``-th request replaced by the next invalid one."""
    rng = random.Random(args.seed)
    every = max(1, round(1 / args.hostile_share))
    n = max(args.requests, every * len(HOSTILE))
    at, out = 0.0, []
    for i in range(n):
        at += rng.expovariate(args.rate)
        if i % every == every - 1:
            out.append((at, {"__bad__": HOSTILE[(i // every) % len(HOSTILE)]}))
        else:
            out.append((at, {"prompt": rng.choice(prompts), "max_tokens": rng.choice(args.lengths),
                             "temperature": 0.9, "seed": i}))  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="runs/demo")
    ap.add_argument("--random", action="store_true")
    ap.add_argument("--precision", default="int8", choices=["float32", "bfloat16", "int8"])
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--rate", type=float, default=12.0, help="mean arrivals per second (Poisson)")
    ap.add_argument("--lengths", type=lambda s: [int(x) for x in s.split(",")], default=[8, 16, 32, 64],
                    help="max_tokens of a request, drawn uniformly from these")  # fmt: skip
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=-1, help="the server's --threads (-1: one less than the cores)")
    ap.add_argument("--queue-size", type=int, default=64)
    ap.add_argument("--burst", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hostile-share", type=float, default=0.1, help="share of invalid requests in the hostile mix")
    ap.add_argument("--repeats", type=int, default=3, help="runs with different arrival seeds (medians reported)")
    args = ap.parse_args()

    ckpt = args.checkpoint
    if args.random:
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_inference import _random_checkpoint

        ckpt = str(_random_checkpoint(Path(tempfile.mkdtemp())))
    prompts = ["Monday morning", "The game last night", "Coffee first,", "Flight delayed again", "New phone who dis"]
    runs: list[dict] = []
    rows: dict = {}
    for rep in range(args.repeats):
        rng = random.Random(args.seed + rep)
        at, schedule = 0.0, []
        for i in range(args.requests):
            at += rng.expovariate(args.rate)
            body = {"prompt": rng.choice(prompts), "max_tokens": rng.choice(args.lengths), "temperature": 0.9,
                    "seed": i}  # fmt: skip
            schedule.append((at, body))
        run = {}
        for name, extra in (("static", ["--static-batching"]), ("continuous", [])):
            with _server(ckpt, args, extra) as url:
                run[name] = asyncio.run(_poisson_load(url, schedule))
                print(f"run {rep} {name}: {run[name]}", flush=True)
                if name == "continuous" and rep == 0:
                    rows["hostile"] = asyncio.run(_poisson_load(url, _hostile(args, prompts)))
                    print(f"hostile mix: {rows['hostile']}", flush=True)
                    body = {"prompt": "Monday morning", "max_tokens": 16, "temperature": 0.9, "seed": 1}
                    rows["burst"] = asyncio.run(_burst(url, args.burst, body))
                    print(f"burst: {rows['burst']}", flush=True)
        run["requests_per_s_ratio"] = round(run["continuous"]["requests_per_s"] / run["static"]["requests_per_s"], 3)
        run["p95_ratio"] = round(run["continuous"]["p95_s"] / run["static"]["p95_s"], 3)
        runs.append(run)
    med = lambda xs: statistics.median(xs)  # noqa: E731
    rows["static"] = {k: med([r["static"][k] for r in runs]) for k in runs[0]["static"]}
    rows["continuous"] = {k: med([r["continuous"][k] for r in runs]) for k in runs[0]["continuous"]}
    s, c = rows["static"], rows["continuous"]
    result = {
        "bench": "serve",
        "model": "random scratch_cpu shape" if args.random else ckpt,
        "precision": args.precision,
        "threads": args.threads,
        "requests": args.requests,
        "rate_per_s": args.rate,
        "lengths": args.lengths,
        "max_batch": args.max_batch,
        "static": s,
        "continuous": c,
        "repeats": args.repeats,
        "requests_per_s_ratio_median": med([r["requests_per_s_ratio"] for r in runs]),
        "p95_ratio_median": med([r["p95_ratio"] for r in runs]),
        "hostile_mix": rows["hostile"],
        "per_run": runs,
        **rows["burst"],
        "burst_admitted_capacity": args.max_batch + args.queue_size,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
