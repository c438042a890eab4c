"""Decode throughput and time to first token of the tweetlm engine, against ``transformers`` ``generate()`` on the
Hugging Face export of the same model, in the same run (the ratio survives a noisy machine).

Usage:
    python benchmarks/bench_inference.py --checkpoint runs/demo            # the demo model
    python benchmarks/bench_inference.py --random                          # a scratch_cpu-shaped random model

Greedy decoding, ``--new-tokens`` tokens per row past ``<|eos|>`` (both engines), batch 1 and 8, best of
``--repeats``. Time to first token (TTFT) = prefill + the first sampled token, measured as a 1-token generation.
Prints one JSON line last.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="runs/demo")
    ap.add_argument("--random", action="store_true", help="use a random scratch_cpu-shaped model")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompt", default="Monday morning and the coffee is")
    args = ap.parse_args()

    import transformers

    from tweetlm.inference.engine import Engine, SamplingParams
    from tweetlm.inference.export_hf import export_hf

    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp())
    ckpt = _random_checkpoint(tmp) if args.random else Path(args.checkpoint)
    engine = Engine.from_checkpoint(ckpt)
    hf_dir = export_hf(ckpt, tmp / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32).eval()
    ids = engine.encode_prompt(args.prompt)
    rows = {}
    for batch in (1, 8):
        prompts = [args.prompt] * batch
        n = args.new_tokens
        ours_full = _best(
            lambda: engine.generate(prompts, SamplingParams(max_tokens=n, temperature=0, ignore_eos=True)), args.repeats
        )
        ours_ttft = _best(lambda: engine.generate(prompts, SamplingParams(max_tokens=1, temperature=0)), args.repeats)
        x = torch.tensor([ids] * batch)
        gen = dict(do_sample=False, pad_token_id=engine.tok.pad_id, eos_token_id=None)

        def hf_run(k):
            with torch.no_grad():
                hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=k, min_new_tokens=k, **gen)

        hf_full = _best(lambda: hf_run(n), args.repeats)
        hf_ttft = _best(lambda: hf_run(1), args.repeats)
        ours_tps = batch * (n - 1) / max(ours_full - ours_ttft, 1e-9)
        hf_tps = batch * (n - 1) / max(hf_full - hf_ttft, 1e-9)
        rows[f"batch{batch}"] = {
            "tweetlm_decode_tokens_per_s": round(ours_tps, 1),
            "hf_decode_tokens_per_s": round(hf_tps, 1),
            "decode_ratio_vs_hf": round(ours_tps / hf_tps, 3),
            "tweetlm_ttft_ms": round(ours_ttft * 1e3, 2),
            "hf_ttft_ms": round(hf_ttft * 1e3, 2),
        }
        print(f"batch {batch}: {rows[f'batch{batch}']}", flush=True)
    result = {
        "bench": "inference",
        "model": "random scratch_cpu shape" if args.random else str(ckpt),
        "params": engine.model.num_params(),
        "new_tokens": args.new_tokens,
        "prompt_tokens": len(ids),
        "threads": torch.get_num_threads(),
        **rows,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
