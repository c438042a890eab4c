"""Fill the search benchmarks' embedding cache on a GPU machine that cannot see ../shared or the model package.

bench_search_quality.py and bench_search_speed.py embed every shared-corpus post with all-MiniLM-L6-v2; on 2 CPU
cores that is ~55 posts/s idle (~70 min for 236k posts) and far slower on a shared machine. This script moves that
work to a GPU in three steps, each an ordinary command:

    # here: the texts the cache lacks (gzip JSON) + a float16 copy of the model (the fp32 one is 91 MB)
    PYTHONPATH=src .venv/bin/python benchmarks/embed_on_gpu.py export --out .carry/emb
    # on the GPU machine (repo copy, .carry/emb carried): cache part files for one half of the texts
    PYTHONPATH=src python3 benchmarks/embed_on_gpu.py embed --dir .carry/emb --part 0 --parts 2 --out $OUT
    # here: add the returned part files to the cache the benchmarks read
    PYTHONPATH=src .venv/bin/python benchmarks/embed_on_gpu.py import --from /work/.device/N

``export`` also measures, on CPU, how far the float16 copy's vectors are from the float32 model's (cosine over a
sample) and prints it: the cached vectors are float16 either way. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "runs" / "bench_search" / "index" / "embed_cache"


def export(args) -> dict:
    import torch
    from safetensors.torch import load_file, save_file

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_search_quality import CORPORA, prepare

    from tweetlm.search.embed import Embedder, text_key

    posts, _, _, _ = prepare(CORPORA, args.max_distractors, 0, 0)
    emb = Embedder(cache_dir=args.cache)
    cache = emb._load_cache()
    missing = sorted({p.text for p in posts if text_key(p.text) not in cache})
    args.out.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.out / "texts.json.gz", "wt", encoding="utf-8") as f:
        json.dump({"model_id": emb.model_id, "texts": missing}, f, ensure_ascii=False)
    model_dir = args.out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(emb.path, model_dir, ignore=shutil.ignore_patterns("model.safetensors", "README.md", "*.pyc"))
    weights = load_file(emb.path / "model.safetensors")
    save_file({k: v.to(torch.float16) for k, v in weights.items()}, model_dir / "model.safetensors")
    sample = [p.text for p in posts[:: max(1, len(posts) // 500)]][:500]
    full = Embedder().encode(sample).astype(np.float32)
    half = Embedder(model=model_dir).encode(sample).astype(np.float32)
    cos = (full * half).sum(1) / (np.linalg.norm(full, axis=1) * np.linalg.norm(half, axis=1))
    return {
        "step": "export",
        "posts": len(posts),
        "cached": len(posts) - len(missing),
        "missing_texts": len(missing),
        "fp16_vs_fp32_cosine_min": round(float(cos.min()), 6),
        "fp16_vs_fp32_cosine_mean": round(float(cos.mean()), 6),
    }


def embed(args) -> dict:
    from tweetlm.search.embed import Embedder, text_key

    with gzip.open(args.dir / "texts.json.gz", "rt", encoding="utf-8") as f:
        blob = json.load(f)
    texts = blob["texts"][args.part :: args.parts]
    emb = Embedder(model=args.dir / "model", device=args.device, batch_size=args.batch_size)
    t0 = time.perf_counter()
    vecs = emb.encode(texts)
    dt = time.perf_counter() - t0
    keys = np.array([text_key(t) for t in texts], dtype="S16")
    args.out.mkdir(parents=True, exist_ok=True)
    per_file = -(-len(texts) // args.files)
    for i in range(args.files):  # the device tool returns at most 8 files of 16 MiB each
        sl = slice(i * per_file, (i + 1) * per_file)
        np.savez(args.out / f"part-gpu{args.part}-{i}.npz", keys=keys[sl], vecs=vecs[sl].astype(np.float16))
    return {"step": "embed", "part": args.part, "texts": len(texts), "seconds": round(dt, 1),
            "posts_per_s": round(len(texts) / max(dt, 1e-9), 1), "device": args.device,
            "model_id": blob["model_id"]}  # fmt: skip


def import_parts(args) -> dict:
    from tweetlm.search.embed import Embedder

    target = Path(args.cache) / Embedder().model_id
    target.mkdir(parents=True, exist_ok=True)
    n = 0
    for src in sorted(Path(args.src).glob("part-gpu*.npz")):
        z = np.load(src)
        assert z["keys"].dtype == np.dtype("S16") and z["vecs"].dtype == np.float16, src
        n += len(z["keys"])
        shutil.copyfile(src, target / f"part-{time.time_ns()}-{src.stem}.npz")
    return {"step": "import", "vectors": n, "cache": str(target)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--out", type=Path, default=REPO / ".carry" / "emb")
    e.add_argument("--cache", type=Path, default=CACHE)
    e.add_argument("--max-distractors", type=int, default=240000)
    g = sub.add_parser("embed")
    g.add_argument("--dir", type=Path, default=REPO / ".carry" / "emb")
    g.add_argument("--part", type=int, default=0)
    g.add_argument("--parts", type=int, default=1)
    g.add_argument("--files", type=int, default=4)
    g.add_argument("--device", default="cuda")
    g.add_argument("--batch-size", type=int, default=1024)
    g.add_argument("--out", type=Path, required=True)
    i = sub.add_parser("import")
    i.add_argument("--from", dest="src", type=Path, required=True)
    i.add_argument("--cache", type=Path, default=CACHE)
    args = ap.parse_args()
    out = {"export": export, "embed": embed, "import": import_parts}[args.cmd](args)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
