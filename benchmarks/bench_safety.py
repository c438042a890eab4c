"""Brand safety: the classifier (TF-IDF + all-MiniLM-L6-v2 embeddings, logistic-regression heads) against a TF-IDF +
logistic-regression baseline trained on the same posts in the same run.

Reported on the TweetEval offensive and hate validation files (never used for fitting or thresholds): ROC-AUC,
PR-AUC (average precision), macro-F1 (at probability 0.5), precision at recall 0.85, and precision/recall at the
threshold chosen for ``--target-precision`` on the calibration split; then per language (en, id) the combined
verdict on held-out posts. Training posts: up to ``--max-train-per-source`` per corpus, preferring posts already
in the embedding cache (filled by the search benchmark with a seeded shuffle of all corpora, so the choice is
blind to labels); held-out Davidson and Ibrohim posts likewise up to ``--max-val-per-source``.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_safety.py --save runs/ads_safety

Prints a Markdown table, then one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO.parent / "shared" / "corpora"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", type=Path, default=CORPORA)
    ap.add_argument("--embed-cache", type=Path, default=REPO / "runs" / "bench_search" / "index" / "embed_cache")
    ap.add_argument("--max-train-per-source", type=int, default=4000)
    ap.add_argument("--max-val-per-source", type=int, default=1000, help="Davidson and Ibrohim held-out posts")
    ap.add_argument("--target-precision", type=float, default=0.9)
    ap.add_argument("--C", type=float, default=4.0)
    ap.add_argument("--save", type=Path, help="save the classifier here (for bench_ads and the CLI)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not (args.corpora / "tweeteval" / "offensive").is_dir():
        print(f"TweetEval not found under {args.corpora}; pass --corpora", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from tweetlm.ads.safety import SafetyClassifier, evaluate, load_examples, metrics
    from tweetlm.search.embed import DEFAULT_MODEL, Embedder, text_key

    t0 = time.time()
    ex = load_examples(args.corpora)
    emb = Embedder(DEFAULT_MODEL, cache_dir=args.embed_cache)
    cached = emb._load_cache()
    rng = random.Random(args.seed)
    chosen = []
    for source in sorted({e.source for e in ex}):
        for split, cap in (("train", args.max_train_per_source), ("val", args.max_val_per_source)):
            pool = [e for e in ex if e.source == source and e.split == split]
            if split == "val" and source.startswith("tweeteval/"):
                chosen += pool  # the whole validation file
                continue
            rng.shuffle(pool)
            pool.sort(key=lambda e: text_key(e.text) not in cached)  # stable: cached first, shuffled within
            chosen += pool[:cap]
    texts = list(dict.fromkeys(e.text for e in chosen))
    n_cached = sum(text_key(t) in cached for t in texts)
    from tqdm import tqdm

    t_emb = time.time()
    with tqdm(total=len(texts), desc="embed", unit="post", file=sys.stderr) as bar:
        emb.encode(texts, progress=bar.update)
    t_emb = time.time() - t_emb

    def embed(batch):
        return np.asarray(emb.encode(list(batch)), dtype=np.float32)

    results, fit_s = {}, {}
    models = {}
    for name, feats in (("baseline_tfidf_lr", "tfidf"), ("classifier_tfidf_minilm_lr", "both")):
        t = time.time()
        clf = SafetyClassifier(feats, embed if feats != "tfidf" else None, args.C, args.target_precision)
        clf.fit(chosen)
        fit_s[name] = time.time() - t
        models[name] = clf
        res = {}
        for task in ("offensive", "hate"):
            val = [e for e in chosen if e.source == f"tweeteval/{task}" and e.split == "val"]
            p = clf.predict_proba([e.text for e in val], task)
            res[task] = metrics(np.array([e.label for e in val]), p, clf.heads[task]["threshold"])
        res["held_out"] = evaluate(clf, chosen)
        res["calibration"] = clf.calibration
        results[name] = res

    base, ours = results["baseline_tfidf_lr"], results["classifier_tfidf_minilm_lr"]
    print(f"\n{len(chosen):,} posts ({sum(e.split == 'train' for e in chosen):,} train), {len(texts):,} texts embedded "
          f"({n_cached:,} cached, {len(texts) - n_cached:,} computed in {t_emb:.0f} s)\n")  # fmt: skip
    cols = ["roc_auc", "pr_auc", "macro_f1", "precision_at_recall_0.85"]
    cols += ["precision_at_threshold", "recall_at_threshold"]
    print("| TweetEval val | model | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for task in ("offensive", "hate"):
        for name, res in results.items():
            print(f"| {task} | {name} | " + " | ".join(f"{res[task][c]:.3f}" for c in cols) + " |")
    print("\n| language | model | n | ROC-AUC (score) | flagged precision | flagged recall |")
    print("|---|---|---|---|---|---|")
    for lang in ("en", "id"):
        for name, res in results.items():
            m = res["held_out"]["langs"][lang]
            print(f"| {lang} | {name} | {m['n']} | {m['roc_auc']:.3f} | {m['flag_precision']:.3f} | "
                  f"{m['flag_recall']:.3f} |")  # fmt: skip
    beats = {t: ours[t]["roc_auc"] > base[t]["roc_auc"] for t in ("offensive", "hate")}
    print(f"\nclassifier beats the baseline on ROC-AUC: {beats}")
    if args.save:
        models["classifier_tfidf_minilm_lr"].save(
            args.save, {"embed_model": "all-MiniLM-L6-v2", "held_out": ours["held_out"], "bench": "bench_safety.py"}
        )
        print(f"saved the classifier to {args.save}")
    summary = {
        "bench": "safety",
        "train_posts": sum(e.split == "train" for e in chosen),
        "target_precision": args.target_precision,
        "fit_s": {k: round(v, 1) for k, v in fit_s.items()},
        "wall_s": round(time.time() - t0, 1),
        "beats_baseline_roc_auc": beats,
    }
    for name, res in results.items():
        for task in ("offensive", "hate"):
            summary[f"{name}.{task}"] = {c: round(res[task][c], 4) for c in cols}
        summary[f"{name}.langs"] = {
            lang: {k: round(v, 4) for k, v in m.items() if k in ("n", "roc_auc", "flag_precision", "flag_recall")}
            for lang, m in res["held_out"]["langs"].items()
        }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
