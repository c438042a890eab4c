"""Load test of ``tweetlm serve`` on 127.0.0.1: latency percentiles, requests/s, errors below the limit, 503s
above it.

Usage:
    python benchmarks/bench_serve.py --checkpoint runs/demo
    python benchmarks/bench_serve.py --random          # a scratch_cpu-shaped random model

Starts the real server as a subprocess (``tweetlm serve`` on a free loopback port), then runs two bounded
phases with an async ``httpx`` client: (1) ``--clients`` concurrent clients, within what the server admits
(``max_batch + queue_size``), each sending ``--requests`` completions; (2) a burst of ``--burst`` simultaneous
requests, more than it admits, which must be answered 503 (never hang). The baseline for the latency is the
same request sent alone (one client). Only 127.0.0.1 is ever contacted. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


async def _phase(url: str, clients: int, per_client: int, body: dict) -> tuple[list[float], dict, float]:
    import httpx

    lat: list[float] = []
    codes: dict[int, int] = {}

    async def one_client(c: httpx.AsyncClient):
        for _ in range(per_client):
            t0 = time.perf_counter()
            r = await c.post("/v1/completions", json=body)
            codes[r.status_code] = codes.get(r.status_code, 0) + 1
            if r.status_code == 200:
                lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        await asyncio.gather(*[one_client(c) for _ in range(clients)])
    return lat, codes, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="runs/demo")
    ap.add_argument("--random", action="store_true")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=5, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--queue-size", type=int, default=8)
    ap.add_argument("--burst", type=int, default=64)
    args = ap.parse_args()

    ckpt = args.checkpoint
    if args.random:
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_inference import _random_checkpoint

        ckpt = str(_random_checkpoint(Path(tempfile.mkdtemp())))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "tweetlm.cli.main",
        "serve",
        "--checkpoint",
        ckpt,
        "--port",
        str(port),
        "--max-batch",
        str(args.max_batch),
        "--queue-size",
        str(args.queue_size),
    ]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        import httpx

        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError(f"server did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        body = {"prompt": "Monday morning", "max_tokens": args.max_tokens, "temperature": 0.9, "seed": 1}
        base_lat, base_codes, _ = asyncio.run(_phase(url, 1, 5, body))
        lat, codes, wall = asyncio.run(_phase(url, args.clients, args.requests, body))
        burst_lat, burst_codes, burst_wall = asyncio.run(_phase(url, args.burst, 1, body))
    finally:
        server.terminate()
        server.wait(timeout=30)
    admitted = args.max_batch + args.queue_size
    result = {
        "bench": "serve",
        "model": "random scratch_cpu shape" if args.random else ckpt,
        "max_tokens": args.max_tokens,
        "single_client_p50_s": round(statistics.median(base_lat), 4),
        "clients": args.clients,
        "requests": sum(codes.values()),
        "errors_below_limit": sum(n for c, n in codes.items() if c != 200),
        "p50_s": round(_pct(lat, 50), 4),
        "p95_s": round(_pct(lat, 95), 4),
        "p99_s": round(_pct(lat, 99), 4),
        "requests_per_s": round(len(lat) / wall, 2),
        "p50_ratio_vs_single_client": round(_pct(lat, 50) / statistics.median(base_lat), 2),
        "burst": args.burst,
        "burst_admitted_capacity": admitted,
        "burst_200": burst_codes.get(200, 0),
        "burst_503": burst_codes.get(503, 0),
        "burst_other": sum(n for c, n in burst_codes.items() if c not in (200, 503)),
        "burst_wall_s": round(burst_wall, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
