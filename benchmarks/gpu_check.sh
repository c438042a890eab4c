#!/usr/bin/env bash
# One prepared GPU check for a lent H200 (or any CUDA GPU): d12_gpu in bf16 for a few hundred steps on synthetic
# token shards, torch.compile on, then 100 steps without compile for comparison. Writes tokens/s and MFU to
# benchmarks/results/train_<gpu>_<YYYYMM>.md (and a copy under $OUT when set, for the device tool).
# Budget: ~6-8 minutes on an H200 (shard 1 min, compile ~1-2 min, 300 + 100 steps ~2 min).
#   bash benchmarks/gpu_check.sh                  # PYTHON=... to pick the interpreter with CUDA torch
#   STEPS=300 BATCH=32 SEQ=2048 bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
STEPS=${STEPS:-300}
BATCH=${BATCH:-32}
SEQ=${SEQ:-2048}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device visible to $PYTHON (torch $("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo missing)); nothing run" >&2
  exit 3
fi
"$PYTHON" -c "import numpy, safetensors, tqdm, tokenizers" || { echo "gpu_check: install tweetlm's dependencies first (pip install -e .)" >&2; exit 3; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
GPU=$("$PYTHON" -c "import torch; print(torch.cuda.get_device_name(0))")
TAG=$(echo "$GPU" | tr -c 'A-Za-z0-9\n' '_' | tr 'A-Z' 'a-z' | sed 's/^nvidia_//; s/__*/_/g; s/_$//')
STAMP=$(date +%Y%m)
RESULT=benchmarks/results/train_${TAG}_${STAMP}.md
echo "gpu_check: $GPU, d12_gpu, $STEPS steps of ${BATCH}x${SEQ}, work dir $WORK"
"$PYTHON" - "$WORK" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from bench_train import make_shard
make_shard(Path(sys.argv[1]), vocab=50304, num_docs=300_000)  # ~10.5M tokens: more than 300 x 65k
PY
run() {  # name, steps, extra --set args
  local name=$1 steps=$2; shift 2
  local sets=(--set train.max_steps=$steps --set train.batch_size=$BATCH --set train.seq_len=$SEQ
              --set train.grad_accum=1 --set train.ckpt_every=0 --set train.log_every=10 --set train.device=cuda "$@")
  timeout 420 "$PYTHON" -m tweetlm.cli.train --run-dir "$WORK" --out "$WORK/$name" --recipe d12_gpu --no-progress "${sets[@]}"
}
run compiled "$STEPS" --set train.compile=true
run eager 100 --set train.compile=false
"$PYTHON" - "$WORK" "$RESULT" "$GPU" "$STEPS" "$BATCH" "$SEQ" <<'PY'
import json, statistics, sys
from pathlib import Path
work, result, gpu, steps, batch, seq = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], *map(int, sys.argv[4:])
out = {"bench": "gpu_check", "gpu": gpu, "recipe": "d12_gpu", "batch": batch, "seq": seq}
lines = [f"# d12_gpu training on {gpu}", "", "Command: `bash benchmarks/gpu_check.sh` "
         f"(STEPS={steps} BATCH={batch} SEQ={seq}, bf16 autocast, synthetic token shards, vocab 50,304, 124M params).",
         "tokens/s and MFU are medians over the logged windows after the first 3 (compile and warm-up excluded); "
         "MFU against the datasheet dense bf16 peak.", "",
         "| run | steps | tokens/s | MFU | peak memory (MiB) | final loss |", "|---|---|---|---|---|---|"]
for name in ("compiled", "eager"):
    recs = [json.loads(l) for l in (work / name / "metrics.jsonl").read_text().splitlines()]
    steady = recs[3:] or recs
    r = {"steps": recs[-1]["step"], "tokens_per_s": statistics.median(x["tokens_per_s"] for x in steady),
         "mfu": statistics.median(x["mfu"] for x in steady), "peak_mem_mb": max(x["peak_mem_mb"] for x in recs),
         "final_loss": recs[-1]["loss"]}
    out[name] = r
    lines.append(f"| {name} | {r['steps']} | {r['tokens_per_s']:,.0f} | {100 * r['mfu']:.1f}% | "
                 f"{r['peak_mem_mb']:,.0f} | {r['final_loss']:.3f} |")
lines += ["", "```json", json.dumps(out), "```", ""]
result.parent.mkdir(parents=True, exist_ok=True)
result.write_text("\n".join(lines))
print("\n".join(lines))
print(json.dumps(out))
PY
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT" && cp "$RESULT" "$OUT/"; fi
echo "gpu_check: wrote $RESULT"
