"""``tweetlm safety <verb>`` and ``tweetlm ads <verb>`` (layer L6): argument parsing over ``tweetlm.ads``; the
embedding model and the search index are wired in here. (The model that writes the copy is fine-tuned by
``tweetlm sft``, whose set teaches brief instructions.)"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tweetlm.cli.engine_args import add_engine_args, engine_from_args

RAW = argparse.RawDescriptionHelpFormatter


def _number(kind, low: float, strict: bool, high: float | None = None, high_strict: bool = False):
    """An argparse ``type``: ``kind`` (int or float) > ``low`` (``strict``) or >= ``low``, and when ``high`` is
    given < ``high`` (``high_strict``) or <= ``high``; argparse names the flag in the error (``argument --steps:
    must be > 0, got 0``)."""

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be a{'n integer' if kind is int else ' number'}, got {text!r}"
            ) from None
        if v < low or (strict and v == low) or v != v:
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}, got {text}")
        if high is not None and (v > high or (high_strict and v == high)):
            raise argparse.ArgumentTypeError(f"must be {'<' if high_strict else '<='} {high:g}, got {text}")
        return v

    return parse


POS_INT, NONNEG_INT, POS_FLOAT, NONNEG_FLOAT = (
    _number(int, 0, True),
    _number(int, 0, False),
    _number(float, 0, True),
    _number(float, 0, False),
)
TOP_P = _number(float, 0, True, 1.0)  # (0, 1]
MIN_P = _number(float, 0, False, 1.0, True)  # [0, 1)

SAFETY_EXAMPLES = """examples:
  tweetlm safety train --corpora ../shared/corpora --out runs/safety
  tweetlm safety train --corpora ../shared/corpora --out runs/safety_tfidf --features tfidf --target-precision 0.8
  tweetlm safety classify --model runs/safety "have a great flight" "you are an idiot"
  tweetlm safety classify --model runs/safety --file posts.txt --lang id
"""

ADS_EXAMPLES = """examples:
  tweetlm ads segments --corpus ../shared/corpora/us_airline_sentiment --out runs/segments -k 12 --max-posts 3000
  tweetlm ads copy --brief brief.json -n 8 --checkpoint runs/demo_sft --safety runs/safety
  tweetlm ads place --index runs/airline_index --safety runs/safety --ad "Fly Delta to Boston #travel" -k 10
  tweetlm ads guard --corpus runs/demo/data --out runs/demo_sft/memorization_guard.pkl
brief.json:
  {"product": "Delta", "message": "more legroom on every flight", "required_terms": ["legroom"],
   "hashtag": "#travel", "cta": "Book at delta.com", "banned_terms": ["cheap"], "lang": "en", "tone": "positive"}
"""


def _embedder(cache: str | None):
    from tweetlm.search.embed import DEFAULT_MODEL, Embedder

    return Embedder(DEFAULT_MODEL, cache_dir=cache)


def _embed_fn(emb):
    import numpy as np

    return lambda texts: np.asarray(emb.encode(list(texts)), dtype=np.float32)


def load_safety(path: str, embed_cache: str | None = None):
    """The safety classifier at ``path``, with the embedding model it was trained with when it needs one."""
    from tweetlm.ads.safety import SafetyClassifier

    meta_path = Path(path) / "safety.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"no safety classifier at {path} (train one with 'tweetlm safety train')")
    needs = json.loads(meta_path.read_text())["features"] != "tfidf"
    return SafetyClassifier.load(path, _embed_fn(_embedder(embed_cache)) if needs else None)


def held_out_table(cal: dict, res: dict) -> list[str]:
    """Lines of the ``safety train`` table: per head its threshold and calibration precision/recall, then one
    row per held-out corpus of the head (``res["heads"]`` is keyed ``head:corpus``; ``ads.safety.evaluate``)."""
    nan = float("nan")
    lines = [
        f"{'head':<11} {'thr':>6} {'cal P':>6} {'cal R':>6} | held out: {'corpus':<26} {'n':>7} {'ROC-AUC':>7} "
        f"{'P@thr':>6} {'R@thr':>6}"
    ]
    for h, c in cal.items():
        rows = [(k.split(":", 1)[1], m) for k, m in res["heads"].items() if k.split(":", 1)[0] == h]
        for corpus, m in rows or [("-", {})]:
            lines.append(
                f"{h:<11} {c['threshold']:6.3f} {c['precision']:6.3f} {c['recall']:6.3f} | {corpus:<36} "
                f"{m.get('n', 0):>7,} {m.get('roc_auc', nan):7.3f} {m.get('precision_at_threshold', nan):6.3f} "
                f"{m.get('recall_at_threshold', nan):6.3f}"
            )
    return lines


def _cmd_safety_train(args: argparse.Namespace) -> int:
    from tweetlm.ads.safety import SafetyClassifier, evaluate, load_examples

    t0 = time.time()
    ex = load_examples(args.corpora)
    if args.max_per_head:
        import random

        keep = []
        for head in sorted({e.head for e in ex}):
            tr = [e for e in ex if e.head == head and e.split == "train"]
            keep += random.Random(args.seed).sample(tr, min(args.max_per_head, len(tr)))
            keep += [e for e in ex if e.head == head and e.split == "val"]
        ex = keep
    embed = None
    if args.features != "tfidf":
        emb = _embedder(args.embed_cache or str(Path(args.out) / "embed_cache"))
        texts = list(dict.fromkeys(e.text for e in ex))
        from tqdm import tqdm

        with tqdm(total=len(texts), desc="embed", unit="post", disable=args.no_progress) as bar:
            emb.encode(texts, progress=bar.update)
        embed = _embed_fn(emb)
    clf = SafetyClassifier(args.features, embed, C=args.C, target_precision=args.target_precision)
    cal = clf.fit(ex)
    res = evaluate(clf, ex)
    clf.save(args.out, {"embed_model": "all-MiniLM-L6-v2" if embed else None, "held_out": res})
    print(
        f"trained {len(cal)} safety heads on {sum(e.split == 'train' for e in ex):,} posts in {time.time() - t0:.0f} s"
    )
    for line in held_out_table(cal, res):
        print(line)
    for lang, m in res["langs"].items():
        print(f"language {lang}: {m['n']:,} held-out posts, flagged precision {m['flag_precision']:.3f}, "
              f"recall {m['flag_recall']:.3f}")  # fmt: skip
    print(f"saved to {args.out}")
    return 0


def _cmd_safety_classify(args: argparse.Namespace) -> int:
    texts = list(args.text or [])
    if args.file:
        texts += [ln for ln in Path(args.file).read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not texts:
        raise ValueError("give texts as arguments or --file")
    clf = load_safety(args.model, args.embed_cache)
    res = clf.classify(texts, [args.lang] * len(texts))
    for t, r in zip(texts, res):
        print(json.dumps({"text": t, **r.to_dict()}, ensure_ascii=False))
    print(f"{sum(r.unsafe for r in res)} of {len(res)} unsafe", file=sys.stderr)
    return 0


def _cmd_guard(args: argparse.Namespace) -> int:
    from tweetlm.ads.guard import build_guard

    path, n = build_guard(args.corpus, args.out, not args.no_progress)
    print(f"memorization guard over {n:,} training posts: {path}")
    return 0


def _cmd_segments(args: argparse.Namespace) -> int:
    import random

    from tweetlm.ads.segments import build_segments
    from tweetlm.search.posts import load_posts

    posts, _ = load_posts(args.corpus)
    if args.max_posts and len(posts) > args.max_posts:
        posts = random.Random(args.seed).sample(posts, args.max_posts)
    emb = _embedder(args.embed_cache or str(Path(args.out) / "embed_cache"))
    from tqdm import tqdm

    with tqdm(total=len(posts), desc="embed", unit="post", disable=args.no_progress) as bar:
        emb.encode([p.text for p in posts], progress=bar.update)
    seg = build_segments(posts, _embed_fn(emb), k=args.k, seed=args.seed)
    seg.save(args.out)
    print(f"{len(seg.segments)} segments over {len(posts):,} posts, {len(seg.authors):,} authors assigned")
    for s in seg.segments:
        tags = " ".join(t for t, _ in s.top_hashtags[:3])
        langs = ",".join(list(s.langs)[:3])
        print(f"  [{s.id:>2}] {s.size:>6,} posts ({100 * s.share:4.1f}%) {langs:<8} {s.label}  {tags}")
    print(f"saved to {args.out}/segments.json")
    return 0


def _read_brief(path: str):
    from tweetlm.ads.copy import AdBrief

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"brief file {path} not found")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    try:
        return AdBrief.from_dict(d)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None


def _guard_path(checkpoint: str, guard: str | None) -> Path:
    if guard:
        return Path(guard)
    p = Path(checkpoint)
    for cand in (p / "memorization_guard.pkl", p.parent.parent / "memorization_guard.pkl"):
        if cand.exists():
            return cand
    raise FileNotFoundError(
        f"no memorization_guard.pkl beside {checkpoint}; pass --guard (build one with 'tweetlm ads guard')"
    )


def failures_text(failures: dict[str, int]) -> str:
    """``{"unsafe": 2, "cta": 3}`` as ``unsafe 2, cta 3`` (``none`` when empty)."""
    return ", ".join(f"{k} {v:,}" for k, v in failures.items()) or "none"


def _cmd_copy(args: argparse.Namespace) -> int:
    from tweetlm.ads.copy import DEFAULT_TEMPERATURE, generate_copy
    from tweetlm.ads.guard import MemorizationGuard

    brief = _read_brief(args.brief)
    if not Path(args.checkpoint).exists():
        raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist (a checkpoint or run folder)")
    guard = MemorizationGuard.load(_guard_path(args.checkpoint, args.guard))
    safety = load_safety(args.safety, args.embed_cache)
    engine = engine_from_args(args)
    emb = _embed_fn(_embedder(args.embed_cache))
    from tqdm import tqdm

    temperature = DEFAULT_TEMPERATURE if args.temperature is None else args.temperature
    t0 = time.time()
    with tqdm(total=args.candidates, desc="sample", unit="post", disable=args.no_progress) as bar:
        res = generate_copy(engine, brief, args.n, args.candidates, safety, guard, emb, seed=args.seed,
                            temperature=temperature, top_p=args.top_p, min_p=args.min_p,
                            fixup=not args.no_fixup, constrained=args.constrained,
                            progress=bar.update)  # fmt: skip
    if args.json:
        print(json.dumps(res.to_dict(), ensure_ascii=False, indent=1))
    else:
        for i, v in enumerate(res.variants, 1):
            tag = " (terms appended)" if v.fixed_up else ""
            print(f"{i}. {v.text}\n   [{v.weighted_length}/280, relevance {v.relevance:.3f}{tag}]")
    print(
        f"{len(res.variants)} of {res.requested} variants from {res.candidates} candidates in {time.time() - t0:.0f} s;"
        f" raw pass rate {100 * res.raw_pass_rate:.1f}% ({res.raw_pass}), after fix-up {res.passed} passed; "
        f"failures: {failures_text(res.failures)}" + (f"\n{res.note}" if res.note else ""),
        file=sys.stderr,
    )
    return 0


def search_retriever(index, half_life_hours: float | None = None, as_of: str | None = None, langs=None):
    """A placement ``Retriever`` over a ``search.SearchIndex``: hybrid search, recency decay, ``as_of``."""
    from tweetlm.search.index import SearchParams

    def retrieve(query: str, k: int) -> list[dict]:
        params = SearchParams(
            k=min(k, 100),
            as_of=as_of,
            langs=list(langs or []),
            half_life_s=None if half_life_hours is None else half_life_hours * 3600,
            num_candidates=max(100, k),
        )
        return [h.to_dict() for h in index.search(query, params)]

    return retrieve


def _cmd_place(args: argparse.Namespace) -> int:
    from tweetlm.ads.placement import place
    from tweetlm.search.index import SearchIndex

    if bool(args.ad) == bool(args.brief):
        raise ValueError("give the ad as --ad TEXT or --brief brief.json (one of them)")
    banned = list(args.banned or [])
    if args.brief:
        b = _read_brief(args.brief)
        ad = ". ".join(x for x in (b.product, b.message, " ".join(b.required_terms), b.hashtag) if x)
        banned += b.banned_terms
    else:
        ad = args.ad
    index = SearchIndex.open(args.index)
    safety = load_safety(args.safety, args.embed_cache)
    res = place(ad, search_retriever(index, args.half_life_hours, args.as_of, args.lang), safety, args.k,
                args.candidates, banned)  # fmt: skip
    if args.json:
        print(json.dumps(res.to_dict(), ensure_ascii=False, indent=1))
    else:
        for h in res.placements:
            print(f"{h['rank']:>2}. [{h['id']}] {h.get('created_at') or '-'}  {h['text'][:110]}")
    print(
        f"{len(res.placements)} placements from {res.candidates} candidates; excluded {len(res.excluded_unsafe)} "
        f"unsafe, {len(res.excluded_banned)} with a banned term",
        file=sys.stderr,
    )
    return 0


def register(sub) -> None:
    """Add ``safety`` and ``ads`` to the ``tweetlm`` subcommands."""
    s = sub.add_parser("safety", help="brand safety: train and run the classifier", epilog=SAFETY_EXAMPLES,
                       formatter_class=RAW)  # fmt: skip
    ssub = s.add_subparsers(dest="command_verb", metavar="<verb>", required=True)
    t = ssub.add_parser(
        "train",
        help="train the brand-safety heads on the labelled shared corpora",
        description="One logistic-regression head per labelled corpus (TweetEval offensive and hate, Davidson, "
        "Ibrohim); thresholds chosen for --target-precision on a calibration split; held-out results per head "
        "and per language.",
        epilog=SAFETY_EXAMPLES,
        formatter_class=RAW,
    )
    t.add_argument("--corpora", required=True, help="the shared corpora folder (../shared/corpora)")
    t.add_argument("--out", required=True, help="output folder (safety.json, safety.joblib)")
    t.add_argument("--features", choices=["both", "tfidf", "embed"], default="both")
    t.add_argument("--target-precision", type=float, default=0.9)
    t.add_argument("--C", type=POS_FLOAT, default=4.0, help="inverse regularisation strength")
    t.add_argument(
        "--max-per-head", type=NONNEG_INT, default=0, help="training posts per head, a seeded sample (0: all)"
    )
    t.add_argument("--embed-cache", help="embedding cache folder (default: <out>/embed_cache)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(fn=_cmd_safety_train)
    c = ssub.add_parser("classify", help="classify texts", epilog=SAFETY_EXAMPLES, formatter_class=RAW)
    c.add_argument("text", nargs="*", help="texts to classify")
    c.add_argument("--model", required=True, help="folder made by 'tweetlm safety train'")
    c.add_argument("--file", help="one text per line")
    c.add_argument("--lang", default=None, help="language code of the texts (default: unknown, every head)")
    c.add_argument("--embed-cache", help="embedding cache folder")
    c.set_defaults(fn=_cmd_safety_classify)

    a = sub.add_parser("ads", help="advertising: segments, ad copy, placement", epilog=ADS_EXAMPLES,
                       formatter_class=RAW)  # fmt: skip
    asub = a.add_subparsers(dest="command_verb", metavar="<verb>", required=True)
    g = asub.add_parser("segments", help="cluster posts into interest segments", epilog=ADS_EXAMPLES,
                        formatter_class=RAW)  # fmt: skip
    g.add_argument("--corpus", nargs="+", required=True, help="post files or folders, or a clean corpus")
    g.add_argument("--out", required=True, help="output folder (segments.json, centroids.npy)")
    g.add_argument("-k", type=int, default=20, help="number of segments")
    g.add_argument("--max-posts", type=NONNEG_INT, default=5000, help="posts clustered, a seeded sample (0: all)")
    g.add_argument("--embed-cache", help="embedding cache folder (default: <out>/embed_cache)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--no-progress", action="store_true")
    g.set_defaults(fn=_cmd_segments)
    cp = asub.add_parser("copy", help="ad variants for a brief", epilog=ADS_EXAMPLES, formatter_class=RAW)
    cp.add_argument("--brief", required=True, help="brief JSON file (see the example below)")
    cp.add_argument("-n", type=int, default=8, help="variants wanted")
    cp.add_argument("--checkpoint", required=True, help="fine-tuned checkpoint or run folder")
    cp.add_argument("--safety", required=True, help="folder made by 'tweetlm safety train'")
    cp.add_argument("--guard", help="memorization guard file (default: memorization_guard.pkl of the run)")
    cp.add_argument("--candidates", type=POS_INT, default=64, help="posts sampled before filtering")
    cp.add_argument(
        "--temperature", type=NONNEG_FLOAT, help="sampling temperature (default: ads.copy.DEFAULT_TEMPERATURE, 0.7)"
    )
    cp.add_argument("--top-p", type=TOP_P, default=0.95, help="nucleus sampling: keep the best tokens up to this mass")
    cp.add_argument(
        "--min-p", type=MIN_P, default=0.0, help="keep tokens of at least this x the best token's probability"
    )
    cp.add_argument("--seed", type=int, default=0)
    cp.add_argument("--no-fixup", action="store_true", help="never append missing terms; only filter")
    cp.add_argument(
        "--constrained",
        action="store_true",
        help="lexically constrained decoding: the decoder forces terms, hashtag and CTA in while writing",
    )
    cp.add_argument("--embed-cache", help="embedding cache folder")
    cp.add_argument("--json", action="store_true", help="print the whole result as JSON")
    cp.add_argument("--no-progress", action="store_true")
    add_engine_args(cp, max_batch=16)
    cp.set_defaults(fn=_cmd_copy)
    pl = asub.add_parser("place", help="brand-safe conversations to show an ad beside", epilog=ADS_EXAMPLES,
                         formatter_class=RAW)  # fmt: skip
    pl.add_argument("--index", required=True, help="search index folder ('tweetlm search build')")
    pl.add_argument("--safety", required=True, help="folder made by 'tweetlm safety train'")
    pl.add_argument("--ad", help="the ad text")
    pl.add_argument("--brief", help="or a brief JSON file (product, message, terms, hashtag; its banned terms)")
    pl.add_argument("-k", type=int, default=10)
    pl.add_argument("--candidates", type=POS_INT, default=50, help="posts retrieved before the safety filter")
    pl.add_argument("--banned", action="append", help="exclude contexts containing this term (repeatable)")
    pl.add_argument("--half-life-hours", type=POS_FLOAT, default=None, help="recency half-life (default: none)")
    pl.add_argument("--as-of", default=None, help="query time (ISO 8601); nothing later is placed against")
    pl.add_argument("--lang", action="append", help="only contexts in this language (repeatable)")
    pl.add_argument("--embed-cache", help="embedding cache folder")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(fn=_cmd_place)
    gd = asub.add_parser("guard", help="build a memorization guard over a clean corpus's training posts",
                         epilog=ADS_EXAMPLES, formatter_class=RAW)  # fmt: skip
    gd.add_argument("--corpus", required=True, help="run folder, its data/, or a train.parquet")
    gd.add_argument("--out", required=True, help="output file (e.g. runs/x/memorization_guard.pkl)")
    gd.add_argument("--no-progress", action="store_true")
    gd.set_defaults(fn=_cmd_guard)


def ads_services(safety: str, checkpoint: str, guard: str | None = None, index=None):
    """The ``serve.ads_routes.AdsServices`` of ``tweetlm serve --ads-safety``: the safety classifier, the
    checkpoint's memorization guard (when there is one), a retriever over ``index`` and the embedding model."""
    from tweetlm.ads.guard import MemorizationGuard
    from tweetlm.serve.ads_routes import AdsServices

    try:
        g = MemorizationGuard.load(_guard_path(checkpoint, guard))
    except FileNotFoundError:
        if guard:
            raise
        g = None
    retriever = None
    if index is not None:

        def retriever(half_life_hours, as_of, langs):
            return search_retriever(index, half_life_hours, as_of, langs)

    return AdsServices(load_safety(safety), g, retriever, _embed_fn(_embedder(None)))
