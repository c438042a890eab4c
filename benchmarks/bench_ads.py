"""Ad copy and placement end to end: briefs from held-out airline posts -> variants -> placement beside posts.

Three ways to write the copy, same briefs, seeds and filters: the fine-tuned chat model (``tweetlm sft``) with
the append fix-up (``sft``), the same model with lexically constrained decoding (``sft_constrained``: the
decoder forces the required terms, hashtag and CTA in), and the model it was fine-tuned from with the append
fix-up (``base``). Fluency of the returned variants: bits per byte of each variant as a post under the
``--fluency`` model (default ``--base``), lower is more fluent.

Briefs: ``--briefs`` posts of the US airline corpus from the validation split of the fine-tuning corpus (never
trained on), a seeded sample spread over the six airlines. Each becomes an ad brief: product = the airline,
required terms = the post's rarest words (``data.briefs.brief_from_post``, at most 2), hashtag = the post's own
when it has one, CTA ``Book today`` on every other brief, banned term ``cheap``, tone positive, message = the
post. Copy: ``ads.copy.generate_copy``.

Reported: constraint pass rate of returned variants (re-checked here: text constraints, safety, memorization
guard; must be 100%), raw pass rate (candidates passing everything as sampled, before fix-up and filtering),
variants returned per brief, distinct-2 across all variants, share of variants the safety classifier flags
(must be 0). Placement: the airline posts are indexed with ``search.SearchIndex`` (hybrid BM25 + MiniLM, RRF);
each returned variant of the fine-tuned model is placed with ``ads.placement.place`` (k=10 of 50 candidates):
precision@10 by brand (the share of placements whose post's ``airline`` label is the ad's airline) and unsafe
contexts among placements (by the classifier; must be 0), against the retriever's own top 10 without the
safety filter.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_ads.py --checkpoint runs/demo_sft --base runs/demo \\
        --safety runs/ads_safety --guard runs/demo_sft/memorization_guard.pkl --corpus runs/chatdata

Prints Markdown tables, then one JSON line last. ``--dump FILE``: one JSON line per row and brief (the brief, its
raw failures, up to 8 rejected candidates as sampled with their checks, the variants), for reading why candidates
fail.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="fine-tuned chat model (tweetlm sft)")
    ap.add_argument("--fluency", help="model whose bits per byte scores fluency (default: --base)")
    ap.add_argument("--no-placement", action="store_true", help="skip the placement part")
    ap.add_argument("--base", required=True, help="the checkpoint it was fine-tuned from (baseline)")
    ap.add_argument("--safety", required=True, help="safety classifier folder (bench_safety.py --save)")
    ap.add_argument("--guard", required=True, help="memorization guard over the training posts")
    ap.add_argument("--corpus", required=True, help="the clean corpus the models were trained on (its val split)")
    ap.add_argument("--embed-cache", type=Path, default=REPO / "runs" / "bench_search" / "index" / "embed_cache")
    ap.add_argument("--index", type=Path, default=REPO / "runs" / "bench_ads" / "airline_index")
    ap.add_argument("--max-index-posts", type=int, default=4000)
    ap.add_argument("--briefs", type=int, default=60)
    ap.add_argument("-n", type=int, default=4, help="variants per brief")
    ap.add_argument("--candidates", type=int, default=16, help="samples per brief")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: the demo model is 10x faster on 2 busy cores)"
    )
    ap.add_argument(
        "--rows", default="sft,sft_constrained,base",
        help="which rows to run, comma-separated, of sft, sft_constrained, base (placement needs sft)",
    )  # fmt: skip
    ap.add_argument(
        "--temperature", type=float, help="sampling temperature of every row (default: what ads copy uses, 0.7)"
    )
    ap.add_argument("--top-p", type=float, default=0.95, help="nucleus of every row (default 0.95)")
    ap.add_argument("--min-p", type=float, default=0.0, help="min-p of every row (default 0: off)")
    ap.add_argument(
        "--dump", type=Path,
        help="write one JSON line per row and brief (brief, raw failures, rejected candidates as sampled, variants)",
    )  # fmt: skip
    args = ap.parse_args()
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = sorted(set(rows) - {"sft", "sft_constrained", "base"})
    if unknown or not rows:
        given = ", ".join(unknown) or "(none given)"
        ap.error(f"--rows: unknown row(s) {given}; choose from sft, sft_constrained, base")
    if "sft" not in rows:
        args.no_placement = True
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import pyarrow.parquet as pq
    import torch
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    from tweetlm.ads.copy import DEFAULT_TEMPERATURE, AdBrief, distinct_n, generate_copy, violations
    from tweetlm.ads.guard import MemorizationGuard
    from tweetlm.ads.safety import SafetyClassifier
    from tweetlm.data.briefs import DocFreq, brief_from_post, hashtags
    from tweetlm.data.post import Post, Provenance
    from tweetlm.inference.engine import Engine
    from tweetlm.search.embed import DEFAULT_MODEL, Embedder

    if args.temperature is None:
        args.temperature = DEFAULT_TEMPERATURE
    if args.dump:
        args.dump.write_text("")  # one run per file: rows append below
    t0 = time.time()
    emb = Embedder(DEFAULT_MODEL, cache_dir=args.embed_cache)

    def embed(texts):
        return np.asarray(emb.encode(list(texts)), dtype=np.float32)

    safety = SafetyClassifier.load(args.safety, embed)
    guard = MemorizationGuard.load(args.guard)

    def posts_of(split: str) -> list[Post]:
        rows = pq.read_table(Path(args.corpus) / f"{split}.parquet").to_pylist()
        return [
            Post(id=r["id"], text=r["text"], source=r["source"], provenance=Provenance("", i, "parquet"),
                 created_at=r.get("created_at"), lang=r.get("lang"), labels=json.loads(r["labels"] or "{}"))
            for i, r in enumerate(rows) if r["source"] == "us_airline_sentiment"
        ]  # fmt: skip

    train_air, val_air = posts_of("train"), posts_of("val")
    train_texts = pq.read_table(Path(args.corpus) / "train.parquet", columns=["text"]).column("text").to_pylist()
    df = DocFreq(train_texts)
    rng = random.Random(args.seed)
    brands = sorted({p.labels["brand"] for p in val_air})
    by_brand = {b: [p for p in val_air if p.labels["brand"] == b] for b in brands}
    for b in brands:
        rng.shuffle(by_brand[b])
    chosen: list[Post] = []
    while len(chosen) < args.briefs and any(by_brand.values()):
        for b in brands:
            if by_brand[b] and len(chosen) < args.briefs:
                chosen.append(by_brand[b].pop())
    briefs = []
    for i, p in enumerate(chosen):
        cb = brief_from_post(p, df, seed=args.seed, max_terms=2)
        terms = [t for t in cb.terms if t != "cheap"] or []
        tags = hashtags(p.text)
        briefs.append(
            AdBrief(product=p.labels["brand"], message=p.text, required_terms=terms, hashtag=tags[0] if tags else "",
                    cta="Book today" if i % 2 == 0 else "", banned_terms=["cheap"], lang="en", tone="positive")
        )  # fmt: skip
    fluency_engine = Engine.from_checkpoint(args.fluency or args.base)

    def bits_per_byte(texts: list[str]) -> float:
        """Pooled bits per byte of ``texts``, each scored as a whole post (<bos> text <eos>)."""
        import torch.nn.functional as F

        tok, model = fluency_engine.tok, fluency_engine.model
        nats = nbytes = 0.0
        with torch.no_grad():
            for t in texts:
                ids = torch.tensor([[tok.bos_id, *tok.encode(t), tok.eos_id]])
                logits = model(ids[:, :-1])
                nats += float(F.cross_entropy(logits[0].float(), ids[0, 1:], reduction="sum"))
                nbytes += len(t.encode())
        return nats / np.log(2) / max(nbytes, 1)

    results = {}
    runs = (("sft", args.checkpoint, False), ("sft_constrained", args.checkpoint, True), ("base", args.base, False))
    for name, ckpt, constrained in [r for r in runs if r[0] in rows]:
        engine = Engine.from_checkpoint(ckpt)
        t = time.time()
        out = []
        for i, b in enumerate(tqdm(briefs, desc=name, unit="brief", file=sys.stderr)):
            out.append(
                generate_copy(engine, b, args.n, args.candidates, safety, guard, embed, seed=args.seed + 1000 * i,
                              constrained=constrained, temperature=args.temperature, top_p=args.top_p,
                              min_p=args.min_p)
            )  # fmt: skip
        variants = [(b, v.text) for b, r in zip(briefs, out) for v in r.variants]
        texts = [t for _, t in variants]
        verdicts = safety.classify(texts, ["en"] * len(texts)) if texts else []
        ok = [
            not violations(t, b) and not s.unsafe and not guard.check(t).copy for (b, t), s in zip(variants, verdicts)
        ]
        results[name] = {
            "briefs": len(briefs),
            "variants": len(texts),
            "briefs_with_n_variants": sum(len(r.variants) == args.n for r in out),
            "constraint_pass_rate_returned": float(np.mean(ok)) if ok else float("nan"),
            "raw_pass_rate": sum(r.raw_pass for r in out) / sum(r.candidates for r in out),
            "raw_pass_rate_wilson95": wilson_interval(sum(r.raw_pass for r in out), sum(r.candidates for r in out)),
            "fixed_up_share": float(np.mean([v.fixed_up for r in out for v in r.variants])) if texts else 0.0,
            "distinct_2": distinct_n(texts, 2),
            "fluency_bpb_returned": bits_per_byte(texts) if texts else float("nan"),
            "safety_flagged_share": float(np.mean([s.unsafe for s in verdicts])) if verdicts else 0.0,
            **{
                f"raw_share_meeting_{c}": 1
                - sum(r.raw_failures.get(c, 0) for r in out) / sum(r.candidates for r in out)
                for c in ("required_term", "hashtag", "cta", "banned_term", "length", "unsafe")
            },
            "raw_share_with_product": 1
            - sum(r.raw_failures.get(f"required_term:{b.product}", 0) for b, r in zip(briefs, out))
            / sum(r.candidates for r in out),
            "near_copy_failures": sum(r.failures.get("near_copy_of_training_post", 0) for r in out),
            "unsafe_failures": sum(r.failures.get("unsafe", 0) for r in out),
            "seconds": round(time.time() - t, 1),
        }
        results[name]["_out"] = out
        if args.dump:
            with args.dump.open("a") as f:
                for b, r in zip(briefs, out):
                    f.write(json.dumps({"row": name, "brief": asdict(b), **r.to_dict()}, ensure_ascii=False) + "\n")
    placement: dict = {}
    if not args.no_placement:
        placement = _placement(args, rng, emb, train_air, val_air, results["sft"]["_out"], briefs, safety)
    _print_and_summarise(args, results, placement, briefs, brands, t0)
    return 0


def wilson_interval(k: int, n: int) -> str:
    """Wilson score 95% interval of ``k`` successes in ``n`` trials (scipy's ``binomtest``), ``"lo-hi"``. The
    candidates of one brief are not independent, so read it as a lower bound on the uncertainty."""
    if n == 0:
        return "nan"
    from scipy.stats import binomtest  # installed with scikit-learn (the ads extra)

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return f"{ci.low:.3f}-{ci.high:.3f}"


def _placement(args, rng, emb, train_air, val_air, fin, briefs, safety) -> dict:
    import numpy as np

    from tweetlm.ads.placement import place
    from tweetlm.search.embed import text_key
    from tweetlm.search.index import SearchIndex, SearchParams

    # placement over the airline corpus (train + val posts), preferring posts already in the embedding cache
    cache = emb._load_cache()
    pool = train_air + val_air
    rng.shuffle(pool)
    pool.sort(key=lambda p: text_key(p.text) not in cache)
    pool = pool[: args.max_index_posts]
    brand_of = {p.id: p.labels["brand"] for p in pool}
    idx = SearchIndex.create(args.index, overwrite=True, embedder=emb)
    idx.add(pool)

    def retriever(q, k):
        return [h.to_dict() for h in idx.search(q, SearchParams(k=min(k, 100), num_candidates=100))]

    p10, p10_raw, unsafe_placed, unsafe_raw, n_ads = [], [], 0, 0, 0
    for b, r in zip(briefs, fin):
        for v in r.variants:
            res = place(v.text, retriever, safety, k=10, num_candidates=50, banned_terms=b.banned_terms)
            got = [brand_of[h["id"]] == b.product for h in res.placements]
            p10.append(float(np.mean(got)) if got else 0.0)
            langs = [h.get("lang") for h in res.placements]  # as place() classifies them
            unsafe_placed += sum(s.unsafe for s in safety.classify([h["text"] for h in res.placements], langs))
            raw = retriever(v.text, 10)
            p10_raw.append(float(np.mean([brand_of[h["id"]] == b.product for h in raw])))
            unsafe_raw += sum(s.unsafe for s in safety.classify([h["text"] for h in raw], [h.get("lang") for h in raw]))
            n_ads += 1
    p10_brief, unsafe_brief = [], 0
    for b in briefs:  # the advertiser's targeting (what `tweetlm ads place --brief` queries) instead of the ad text
        q = ". ".join(x for x in (b.product, " ".join(b.required_terms), b.hashtag) if x)
        res = place(q, retriever, safety, k=10, num_candidates=50, banned_terms=b.banned_terms)
        p10_brief.append(float(np.mean([brand_of[h["id"]] == b.product for h in res.placements])))
        langs = [h.get("lang") for h in res.placements]
        unsafe_brief += sum(s.unsafe for s in safety.classify([h["text"] for h in res.placements], langs))
    return {
        "ads_placed": n_ads,
        "index_posts": len(pool),
        "precision_at_10_by_brand": float(np.mean(p10)) if p10 else float("nan"),
        "unsafe_contexts_in_placements": int(unsafe_placed),
        "retriever_top10_precision_at_10": float(np.mean(p10_raw)) if p10_raw else float("nan"),
        "retriever_top10_unsafe_contexts": int(unsafe_raw),
        "briefs_placed_by_brief_query": len(p10_brief),
        "brief_query_precision_at_10_by_brand": float(np.mean(p10_brief)) if p10_brief else float("nan"),
        "brief_query_unsafe_contexts_in_placements": int(unsafe_brief),
    }


def _print_and_summarise(args, results, placement, briefs, brands, t0) -> None:
    n_briefs = len(briefs)
    names = list(results)
    keys = [k for k in results[names[0]] if not k.startswith("_") and k != "briefs"]
    print(f"\n{n_briefs} briefs from held-out airline posts ({', '.join(brands)}), n={args.n}, "
          f"{args.candidates} candidates each\n")  # fmt: skip
    print("| metric | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for k in keys:
        vals = [results[n][k] for n in names]
        print(f"| {k} | " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in vals) + " |")
    print("\n| placement (sft variants) | value |\n|---|---|")
    for k, v in placement.items():
        print(f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |")
    summary = {
        "bench": "ads",
        "briefs": n_briefs,
        "n": args.n,
        "candidates": args.candidates,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "min_p": args.min_p,
        **{f"{name}.{k}": (round(v, 4) if isinstance(v, float) else v) for name, r in results.items()
           for k, v in r.items() if not k.startswith("_")},
        **{f"placement.{k}": (round(v, 4) if isinstance(v, float) else v) for k, v in placement.items()},
        "wall_s": round(time.time() - t0, 1),
    }  # fmt: skip
    for name in [n for n in ("sft", "sft_constrained") if n in results]:
        print(f"\nexamples ({name}):")
        for b, r in list(zip(briefs, results[name]["_out"]))[:6]:
            for v in r.variants[:1]:
                print(f"- [{b.instruction()}] {'(fixed up) ' if v.fixed_up else '(as sampled) '}{v.text}")
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
