"""Does LoRA pay for continued pretraining on a CPU? Full fine-tuning against LoRA (``peft``) of the same imported
base, each for the same wall time on the same token shards, then bits-per-byte of both (and of the base) on the
same seeded sample of validation posts.

    python benchmarks/bench_lora.py --run runs/demo --seconds 240       # a run folder made by `make demo`
    python benchmarks/bench_lora.py --run runs/demo --full-steps 64 --lora-steps 89   # fixed steps, cosine decay

Both arms use bf16 autocast, 4 x 256-token rows per step (the demo recipe), AdamW, 4 warmup steps then a constant
LR until ``--seconds`` have passed (no decay: neither arm needs to know its step count in advance); or, with
``--full-steps``/``--lora-steps``, that many steps each with the demo's cosine decay to 10% (choose the step counts
so both take about the same wall time, from a constant-LR run's tokens/s). LoRA: rank
16, alpha 32, dropout 0, on every attention and MLP projection (``wq wk wv wo w1 w2 w3``), LR 1e-3 (LoRA is usually
run at several times the full fine-tuning LR); full fine-tuning: LR 2e-4, as ``demo_cpu``. Prints one JSON line
last.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def train_for(model, params, loader, lr: float, seconds: float, warmup: int = 4, steps: int = 0) -> dict:
    import torch
    import torch.nn.functional as F

    from tweetlm.training.config import TrainConfig
    from tweetlm.training.schedule import lr_at

    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    model.train()
    t0, step, losses = time.perf_counter(), 0, []
    while (step < steps) if steps else (time.perf_counter() - t0 < seconds):
        ratio = min(1.0, (step + 1) / warmup)
        if steps:  # the demo's schedule: warmup, then cosine to 10%
            ratio = lr_at(step, TrainConfig(lr=1.0, warmup_steps=warmup, max_steps=steps, min_lr_ratio=0.1))
        for g in opt.param_groups:
            g["lr"] = lr * ratio
        x, y = loader.next_batch()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        step += 1
    wall = time.perf_counter() - t0
    return {"steps": step, "wall_s": wall, "tokens_per_s": step * x.numel() / wall, "last_loss": losses[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="run folder of a continued run (has base/, tokens/)")
    ap.add_argument("--seconds", type=float, default=240.0, help="training wall time of each arm")
    ap.add_argument("--docs", type=int, default=1000, help="validation posts scored (seeded sample)")
    ap.add_argument("--full-steps", type=int, default=0, help="fixed steps with cosine decay for full fine-tuning")
    ap.add_argument("--lora-steps", type=int, default=0, help="fixed steps with cosine decay for LoRA")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model

    from tweetlm.common.token_shards import open_shard
    from tweetlm.eval.bpb import EvalConfig, bpb_entry, select_docs
    from tweetlm.eval.bpb import score_docs as score
    from tweetlm.model.load import load_model
    from tweetlm.tokenizer.bpe import PostTokenizer
    from tweetlm.training.dataloader import PackedLoader

    run = Path(args.run)
    tok = PostTokenizer.load(run / "tokenizer.json")
    val = open_shard(run / "tokens" / "val")
    ecfg = EvalConfig(batch_size=32, sample_docs=args.docs, sample_seed=0, precision="bf16")
    doc_ids = select_docs(val, ecfg)
    nbytes = np.asarray(val.doc_bytes, dtype=np.int64)[doc_ids]

    def bpb(model) -> dict:
        nats, ntok = score(model, val, doc_ids, ecfg, tok.pad_id)
        return bpb_entry(nats, ntok, nbytes)

    out = {"base": bpb(load_model(run / "base"))}
    for arm in ("full", "lora"):
        torch.manual_seed(0)
        model = load_model(run / "base")
        loader = PackedLoader(open_shard(run / "tokens" / "train"), 4, 256, seed=1337)
        if arm == "lora":
            cfg = LoraConfig(
                r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["wq", "wk", "wv", "wo", "w1", "w2", "w3"]
            )
            model = get_peft_model(model, cfg)
            params = [p for p in model.parameters() if p.requires_grad]
            lr = 1e-3
        else:
            params, lr = list(model.parameters()), 2e-4
        steps = args.lora_steps if arm == "lora" else args.full_steps
        tr = train_for(model, params, loader, lr, args.seconds, steps=steps)
        tr["trainable_params"] = sum(p.numel() for p in params)
        model.eval()
        tr["eval"] = bpb(model)
        out[arm] = tr
        print(
            f"{arm}: {tr['steps']} steps in {tr['wall_s']:.0f} s, {tr['tokens_per_s']:.0f} tokens/s, "
            f"{tr['trainable_params']:,} trainable; bpb {tr['eval']['bpb']:.3f} +/- {tr['eval']['bpb_se']:.3f}",
            flush=True,
        )
    print(f"base: bpb {out['base']['bpb']:.3f} +/- {out['base']['bpb_se']:.3f}")
    out["lora_vs_full_tokens_per_s"] = out["lora"]["tokens_per_s"] / out["full"]["tokens_per_s"]
    print(json.dumps({"bench": "lora_cpu", "seconds": args.seconds, "docs": len(doc_ids), **out}))


if __name__ == "__main__":
    main()
