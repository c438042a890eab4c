"""Decode throughput and time to first token of the tweetlm engine in each weight precision, against
``transformers`` ``generate()`` on the Hugging Face export of the same checkpoint, in the same run (the ratios
survive a noisy machine), with the bits-per-byte each precision costs on held-out posts.

Usage:
    python benchmarks/bench_inference.py                                  # runs/demo (135M) and runs/demo/scratch
    python benchmarks/bench_inference.py --checkpoint runs/demo --precisions float32,int8 --new-tokens 64
    python benchmarks/bench_inference.py --random                         # a scratch_cpu-shaped random model

Greedy decoding, ``--new-tokens`` tokens per row past ``<|eos|>`` (both engines), batch 1 and 8 of one prompt,
best of ``--repeats``. Time to first token (TTFT) = prefill + the first sampled token, measured as a 1-token
generation, with the engine's prefix caching off (transformers has none; with it on, rows 2..8 of one prompt
reuse row 1's keys and values: ``tweetlm_ttft_prefix_cached_ms``). Decode tokens/s = ``batch * (n - 1)`` over
the time of an ``n``-token generation minus its TTFT. transformers runs in float32 (the export's dtype) and in
bfloat16. Bits-per-byte: ``eval.bpb`` on a seeded sample of ``--bpb-docs`` validation posts of the run
(``<run>/tokens/val``) with the engine's model in each precision. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def _random_checkpoint(root: Path) -> Path:
    from tweetlm.jobs.recipes import scratch_cpu
    from tweetlm.model.gpt import GPT
    from tweetlm.tokenizer.bpe import TokenizerConfig, train_tokenizer
    from tweetlm.training.checkpoint import save_checkpoint

    cfg = scratch_cpu()
    texts = [f"post {i} about coffee, rain and the city #tag{i % 50} @user" for i in range(3000)]
    tok = train_tokenizer(texts, TokenizerConfig(vocab_size=cfg.tokenizer.vocab_size))
    tok.save(root / "tokenizer.json")
    cfg.model.vocab_size = tok.vocab_size
    model = GPT.build(cfg.model)
    opt = torch.optim.AdamW(model.parameters())
    return save_checkpoint(root / "ck", 0, model, opt, {}, {"model": cfg.model.__dict__}, root / "tokenizer.json")


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _val_shard(ckpt: Path, vocab_size: int):
    """The validation token shard of the run holding ``ckpt`` (encoded with its tokenizer), or None."""
    from tweetlm.common.token_shards import open_shard

    for d in (ckpt, *ckpt.parents):
        if (d / "tokens" / "val.bin").exists():
            shard = open_shard(d / "tokens" / "val")
            return shard if shard.vocab_size == vocab_size else None
    return None


def bench_checkpoint(ckpt: Path, tmp: Path, args, precisions: list[str]) -> dict:
    import transformers

    from tweetlm.eval.bpb import EvalConfig, evaluate_bpb
    from tweetlm.inference.engine import Engine, SamplingParams
    from tweetlm.inference.export_hf import export_hf

    hf_dir = export_hf(ckpt, tmp / f"hf_{abs(hash(str(ckpt)))}")
    hfs = {
        dt: transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=getattr(torch, dt)).eval()
        for dt in ("float32", "bfloat16")
    }
    engines = {p: Engine.from_checkpoint(ckpt, precision=p, max_batch=8, prefix_caching=False) for p in precisions}
    ref = engines.get("float32") or next(iter(engines.values()))
    ids = ref.encode_prompt(args.prompt)
    n = args.new_tokens
    out: dict = {"model": str(ckpt), "params": engines.get("float32", ref).model.num_params(),
                 "prompt_tokens": len(ids)}  # fmt: skip
    shard = _val_shard(ckpt, ref.cfg.vocab_size)
    if shard is not None and args.bpb_docs > 0:
        ecfg = EvalConfig(batch_size=16, sample_docs=args.bpb_docs, sample_seed=0, precision="fp32")
        for p, eng in engines.items():
            r = evaluate_bpb(eng.model, shard, ecfg, ref.tok.pad_id)["overall"]
            out[f"bpb_{p}"] = {"bpb": round(r["bpb"], 4), "se": round(r["bpb_se"], 4), "docs": r["docs"]}
            print(f"{ckpt} bits-per-byte {p}: {out[f'bpb_{p}']}", flush=True)
    for batch in (1, 8):
        prompts = [args.prompt] * batch
        row: dict = {}
        x = torch.tensor([ids] * batch)
        gen = dict(do_sample=False, pad_token_id=ref.tok.pad_id, eos_token_id=None)
        for dt, hf in hfs.items():

            def hf_run(k, hf=hf):
                with torch.no_grad():
                    hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=k, min_new_tokens=k, **gen)

            hf_run(2)
            full, ttft = _best(lambda: hf_run(n), args.repeats), _best(lambda: hf_run(1), args.repeats)
            row[f"hf_{dt}_decode_tokens_per_s"] = round(batch * (n - 1) / max(full - ttft, 1e-9), 1)
            row[f"hf_{dt}_ttft_ms"] = round(ttft * 1e3, 2)
        base = row["hf_float32_decode_tokens_per_s"]
        for p, eng in engines.items():
            greedy = SamplingParams(max_tokens=n, temperature=0, ignore_eos=True)
            eng.generate(prompts, SamplingParams(max_tokens=2, temperature=0))
            full = _best(lambda eng=eng: eng.generate(prompts, greedy), args.repeats)
            one = SamplingParams(max_tokens=1, temperature=0)
            ttft = _best(lambda eng=eng: eng.generate(prompts, one), args.repeats)
            tps = batch * (n - 1) / max(full - ttft, 1e-9)
            row[f"tweetlm_{p}_decode_tokens_per_s"] = round(tps, 1)
            row[f"tweetlm_{p}_ttft_ms"] = round(ttft * 1e3, 2)
            row[f"tweetlm_{p}_ratio_vs_hf_float32"] = round(tps / base, 3)
            row[f"tweetlm_{p}_ratio_vs_hf_bfloat16"] = round(tps / row["hf_bfloat16_decode_tokens_per_s"], 3)
        eng = engines[precisions[-1]]
        eng.prefix_caching = True
        eng.generate(prompts, SamplingParams(max_tokens=1, temperature=0))
        row[f"tweetlm_{precisions[-1]}_ttft_prefix_cached_ms"] = round(
            _best(lambda: eng.generate(prompts, SamplingParams(max_tokens=1, temperature=0)), args.repeats) * 1e3, 2
        )
        eng.prefix_caching = False
        out[f"batch{batch}"] = row
        print(f"{ckpt} batch {batch}: {row}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", nargs="+", default=["runs/demo", "runs/demo/scratch"])
    ap.add_argument("--random", action="store_true", help="use a random scratch_cpu-shaped model")
    ap.add_argument("--precisions", default="float32,bfloat16,int8")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--bpb-docs", type=int, default=300, help="validation posts scored per precision (0: skip)")
    ap.add_argument("--prompt", default="Monday morning and the coffee is")
    args = ap.parse_args()
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp())
    ckpts = [_random_checkpoint(tmp)] if args.random else [Path(c) for c in args.checkpoint]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    results = [bench_checkpoint(c, tmp, args, precisions) for c in ckpts]
    print(json.dumps({"bench": "inference", "new_tokens": args.new_tokens, "threads": torch.get_num_threads(),
                      "models": results}))  # fmt: skip


if __name__ == "__main__":
    main()
