"""``tweetlm search <verb>`` and ``tweetlm ask`` (layer L6): argument parsing over ``tweetlm.search``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tweetlm.cli.engine_args import add_engine_args

SEARCH_EXAMPLES = """examples:
  tweetlm search build --corpus runs/demo/data --index runs/demo/search
  tweetlm search build --corpus ../shared/corpora/us_airline_sentiment --index idx/airline --granularity day
  tweetlm search build --corpus runs/demo/data --index runs/demo/search --sample 3000   # a quick try
  tweetlm search add --corpus new_posts.jsonl --index runs/demo/search
  tweetlm search build --overwrite --model runs/tuned/model --corpus runs/demo/data --index runs/demo/search
  tweetlm search query "delayed flight" --index idx/airline -k 5 --since 2015-02-20 --until 2015-02-22 --lang en
  tweetlm search query "delayed flight" --index idx/airline --as-of 2015-02-21T12:00:00Z --half-life-hours 24
  tweetlm search query "delayed flight" --index idx/airline --query-encoder onnx-int8   # fastest, approximate
  tweetlm search delete --index idx/airline 570306133677760513
  tweetlm search drop --index idx/airline --before 2015-02-01
  tweetlm search info --index idx/airline
"""

ASK_EXAMPLES = """examples:
  tweetlm ask "what do people say about lost luggage?" --index idx/airline --checkpoint runs/demo
  tweetlm ask "what do people say about lost luggage?" --index idx/airline --llm-url http://127.0.0.1:8000/v1
"""


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="post", disable=not enabled)
    return bar, bar.update


def _quiet_model_loading() -> None:
    """Silence transformers' own bars ("Loading weights") and the Hub's for this process (``--no-progress``)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # no transformers: nothing to silence
        return
    hf_logging.disable_progress_bar()


def _params(args: argparse.Namespace):
    from tweetlm.search.index import SearchParams

    return SearchParams(
        k=args.k,
        since=args.since,
        until=args.until,
        as_of=args.as_of,
        langs=args.lang or [],
        authors=args.author or [],
        kinds=args.kind or [],
        half_life_s=None if args.half_life_hours is None else args.half_life_hours * 3600,
        mode=args.mode,
        fusion=args.fusion,
        bm25_weight=args.bm25_weight,
        global_idf=args.global_idf,
    )


def _cmd_build(args: argparse.Namespace) -> int:
    from tweetlm.search.index import SearchIndex
    from tweetlm.search.posts import load_posts

    t0 = time.time()
    if args.no_progress:
        _quiet_model_loading()  # before the index loads the embedder
    posts, summary = load_posts(args.corpus)
    if args.limit:
        posts = posts[: args.limit]
    if args.sample and args.sample < len(posts):
        import random

        keep = sorted(random.Random(args.seed).sample(range(len(posts)), args.sample))
        posts = [posts[i] for i in keep]
    if args.command_verb == "add":  # the index's model unless --model: refused before anything is written
        from tweetlm.search.embed import Embedder

        emb = Embedder(args.model, cache_dir=args.index / "embed_cache") if args.model else None
    idx = (
        SearchIndex.open(args.index, wait_s=args.wait, embedder=emb)
        if args.command_verb == "add"
        else SearchIndex.create(
            args.index, model=args.model, granularity=args.granularity, overwrite=args.overwrite, wait_s=args.wait
        )
    )
    bar, update = _progress(len(posts), "embedding", not args.no_progress)
    res = idx.add(posts, progress=update)
    bar.close()
    info = idx.info()
    dt = time.time() - t0
    print(
        f"{'added to' if args.command_verb == 'add' else 'built'} {info['root']}: {res['added']} posts added, "
        f"{res['replaced']} replaced, {res['embedded']} embedded ({len(posts) - res['embedded']} from cache); "
        f"{info['posts']} posts in {len(info['segments'])} segments, {info['bytes'] / 1e6:.1f} MB; "
        f"{dt:.1f} s ({len(posts) / max(dt, 1e-9):.0f} posts/s)"
    )
    if summary["raw"]:
        src = summary["raw"]["sources"].values()
        n_in, kept = sum(s["in"] for s in src), sum(s["kept"] for s in src)
        dropped, quarantined = sum(sum(s["dropped"].values()) for s in src), sum(s["quarantined"] for s in src)
        print(f"raw inputs: {n_in} records in = {kept} kept + {dropped} dropped + {quarantined} quarantined")
    return 0


def open_index(path, args: argparse.Namespace, segments=None):
    """The index at ``path`` opened for queries with ``--query-encoder`` and, given ``--reranker``, a
    cross-encoder reranking the top ``--rerank-top`` hits of every search (query, ask, the server)."""
    from tweetlm.search.index import SearchIndex

    idx = SearchIndex.open(path, segments=segments, query_encoder=args.query_encoder)
    if not getattr(args, "reranker", None):
        from tweetlm.search.rerank import DEFAULT_BACKEND, DEFAULT_TOP_N, DEFAULT_WEIGHT

        given = [flag for flag, value, default in (("--rerank-top", "rerank_top", DEFAULT_TOP_N),
                 ("--rerank-weight", "rerank_weight", DEFAULT_WEIGHT),
                 ("--reranker-backend", "reranker_backend", DEFAULT_BACKEND))
                 if getattr(args, value, default) != default]  # fmt: skip
        if given:
            print(f"note: {', '.join(given)} ignored without --reranker DIR", file=sys.stderr)
    else:
        from tweetlm.search.rerank import Reranker

        idx.reranker = Reranker(
            args.reranker, top_n=args.rerank_top, weight=args.rerank_weight, backend=args.reranker_backend
        )
    return idx


def _cmd_query(args: argparse.Namespace) -> int:
    idx = open_index(args.index, args, args.segment)
    hits = idx.search(args.query, _params(args))
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False))
        return 0
    for i, h in enumerate(hits, 1):
        when = (h.created_at or "undated")[:19]
        text = " ".join(h.text.split())
        print(f"{i:>3}. [{h.id}] {when} {h.lang or '-'} {h.kind}  score={h.score:.4f}  {text[:200]}")
    if not hits:
        print("no posts found", file=sys.stderr)
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    from tweetlm.search.index import SearchIndex

    idx = SearchIndex.open(args.index, wait_s=args.wait)
    missing = idx.delete(args.ids)
    print(f"deleted {len(args.ids) - len(missing)} posts; not in the index: {missing or 'none'}")
    return 0


def _cmd_drop(args: argparse.Namespace) -> int:
    from tweetlm.search.index import SearchIndex

    idx = SearchIndex.open(args.index, wait_s=args.wait)
    dropped = idx.drop_before(args.before)
    print(f"dropped {len(dropped)} segments: {', '.join(dropped) or 'none'}; {len(idx)} posts left")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from tweetlm.search.index import SearchIndex

    print(json.dumps(SearchIndex.open(args.index).info(), indent=1))
    return 0


def _cmd_ask(args: argparse.Namespace) -> int:
    from tweetlm.search.ask import EngineGenerator, OpenAIGenerator, ask

    if bool(args.checkpoint) == bool(args.llm_url):
        raise ValueError("pass exactly one of --checkpoint (a tweetlm model) or --llm-url (an OpenAI-compatible API)")
    if args.checkpoint:
        from tweetlm.cli.engine_args import engine_from_args

        gen = EngineGenerator(engine_from_args(args), max_tokens=args.max_tokens)
    else:
        gen = OpenAIGenerator(args.llm_url, model=args.llm_model, api_key=args.api_key, max_tokens=args.max_tokens)
    index = open_index(args.index, args, args.segment)
    answer = ask(index, args.question, gen, _params(args))
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False))
        return 0
    print(answer.text or "(no answer)")
    print()
    for h in answer.posts:
        mark = "*" if h.id in answer.cited else " "
        print(f"{mark} [{h.id}] {' '.join(h.text.split())[:160]}")
    if answer.removed:
        print(f"removed citations of posts not given: {answer.removed}", file=sys.stderr)
    return 0


def _query_options(p: argparse.ArgumentParser, k: int) -> None:
    p.add_argument("--index", required=True, metavar="DIR", help="index folder made by 'tweetlm search build'")
    p.add_argument("-k", type=int, default=k, help=f"results (default {k})")
    p.add_argument("--since", help="earliest created_at, ISO 8601 (e.g. 2015-02-20)")
    p.add_argument("--until", help="latest created_at, ISO 8601 (a date alone includes that whole day)")
    p.add_argument("--as-of", help="query time: nothing created after it is returned (default: now)")
    p.add_argument("--lang", action="append", help="allowed language (repeatable)")
    p.add_argument("--author", action="append", help="allowed author id (repeatable)")
    p.add_argument("--kind", action="append", help="allowed kind: post, reply, quote, retweet, thread (repeatable)")
    p.add_argument("--half-life-hours", type=float, default=None, help="recency half-life (default: no decay)")
    p.add_argument("--mode", default="hybrid", choices=["hybrid", "bm25", "dense"], help="retrievers (default hybrid)")
    p.add_argument("--fusion", default="linear", choices=["linear", "rrf"],
                   help="how hybrid fuses BM25 and dense: linear (z-scored scores; default) or rrf")  # fmt: skip
    p.add_argument("--global-idf", action="store_true",
                   help="BM25 with the document frequencies of the whole index, not of each time segment")  # fmt: skip
    p.add_argument("--bm25-weight", type=float, default=0.5, metavar="W",
                   help="BM25's weight in a linear fusion, 0..1 (default 0.5; dense gets 1 - W)")  # fmt: skip
    p.add_argument("--segment", action="append", help="load only this time segment, e.g. 2015-02 (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON")
    query_encoder_option(p)
    reranker_option(p)


def reranker_option(p: argparse.ArgumentParser) -> None:
    """``--reranker DIR`` and ``--rerank-top N``: a cross-encoder reorders the top hits of every search."""
    from tweetlm.search.rerank import BACKENDS, DEFAULT_BACKEND, DEFAULT_TOP_N, DEFAULT_WEIGHT

    p.add_argument("--reranker", metavar="DIR", help="cross-encoder folder (reranker/ of 'tweetlm search train') "
                   "that reorders the top hits of every search")  # fmt: skip
    p.add_argument("--rerank-top", type=int, default=DEFAULT_TOP_N, metavar="N",
                   help=f"hits the reranker reorders, 1..100 (default {DEFAULT_TOP_N})")  # fmt: skip
    p.add_argument("--reranker-backend", default=DEFAULT_BACKEND, choices=BACKENDS,
                   help=f"how the reranker runs: onnx-int8 (fastest), onnx (fp32), torch (any --device); "
                   f"default {DEFAULT_BACKEND}")  # fmt: skip
    p.add_argument("--rerank-weight", type=float, default=DEFAULT_WEIGHT, metavar="W",
                   help=f"the reranker's share of the order, 0..1 (1: it alone; default {DEFAULT_WEIGHT})")  # fmt: skip


def query_encoder_option(p: argparse.ArgumentParser) -> None:
    """``--query-encoder``: how queries are embedded (corpus vectors are not affected)."""
    from tweetlm.search.embed import DEFAULT_QUERY_ENCODER, QUERY_ENCODERS

    p.add_argument(
        "--query-encoder",
        default=DEFAULT_QUERY_ENCODER,
        choices=QUERY_ENCODERS,
        help=f"how queries are embedded (default {DEFAULT_QUERY_ENCODER}: ONNX Runtime, same vectors as the "
        "model, ~2x faster; onnx-int8: faster, cosine >= 0.97 to them (0.99 on average); torch-int8: >= 0.91; see "
        "benchmarks/results/search_speed_cpu2_202612.md)",
    )


def _wait_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wait",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how long to wait while another process writes the index (default 600); after that exit 75 having "
        "written nothing",
    )


def register(sub) -> None:
    """Add ``search`` (build, add, query, delete, drop, info) and ``ask`` to the ``tweetlm`` subparsers."""
    from tweetlm.search.embed import DEFAULT_MODEL

    raw = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser(
        "search",
        help="search posts: hybrid BM25 + dense index with time, language, author and kind filters",
        epilog=SEARCH_EXAMPLES,
        formatter_class=raw,
    )
    verbs = s.add_subparsers(dest="command_verb", metavar="<verb>", required=True)
    for verb, help_ in (("build", "build a new index from posts"), ("add", "add posts to an index (no rebuild)")):
        b = verbs.add_parser(verb, help=help_, epilog=SEARCH_EXAMPLES, formatter_class=raw)
        b.add_argument("--corpus", nargs="+", required=True, metavar="PATH", help="run folder, data/ or post files")
        b.add_argument("--index", required=True, type=Path, metavar="DIR", help="index folder")
        b.add_argument("--limit", type=int, default=0, help="index only the first N posts (0: all)")
        b.add_argument(
            "--sample",
            type=int,
            default=0,
            metavar="N",
            help="index a seeded random sample of N posts (0: all), e.g. to try a big corpus quickly",
        )
        b.add_argument("--seed", type=int, default=0, help="seed of --sample")  # fmt: skip
        b.add_argument("--no-progress", action="store_true", help="no progress bar")
        _wait_option(b)
        if verb == "add":
            b.add_argument(
                "--model",
                default=None,
                help="sentence-transformers folder; must be the index's model (default: the index's model)",
            )
        if verb == "build":
            b.add_argument("--model", default=DEFAULT_MODEL, help="sentence-transformers folder (default: bundled)")
            b.add_argument("--granularity", default="month", choices=["year", "month", "day"], help="segment window")
            b.add_argument("--overwrite", action="store_true", help="replace an existing index (keeps its cache)")
        b.set_defaults(fn=_cmd_build)
    from tweetlm.cli.search_train import add_train_verb

    add_train_verb(verbs, raw)
    q = verbs.add_parser("query", help="search an index", epilog=SEARCH_EXAMPLES, formatter_class=raw)
    q.add_argument("query", help="the query text")
    _query_options(q, 10)
    q.set_defaults(fn=_cmd_query)
    d = verbs.add_parser(
        "delete", help="delete posts by id from both indexes", epilog=SEARCH_EXAMPLES, formatter_class=raw
    )
    d.add_argument("--index", required=True, metavar="DIR")
    d.add_argument("ids", nargs="+", help="post ids")
    _wait_option(d)
    d.set_defaults(fn=_cmd_delete)
    dr = verbs.add_parser("drop", help="drop whole time segments", epilog=SEARCH_EXAMPLES, formatter_class=raw)
    dr.add_argument("--index", required=True, metavar="DIR")
    dr.add_argument("--before", required=True, help="drop segments whose window ends at or before this time")
    _wait_option(dr)
    dr.set_defaults(fn=_cmd_drop)
    i = verbs.add_parser(
        "info", help="posts, segments and size of an index", epilog=SEARCH_EXAMPLES, formatter_class=raw
    )
    i.add_argument("--index", required=True, metavar="DIR")
    i.set_defaults(fn=_cmd_info)

    a = sub.add_parser(
        "ask", help="answer a question from retrieved posts, citing their ids", epilog=ASK_EXAMPLES, formatter_class=raw
    )
    a.add_argument("question", help="the question")
    _query_options(a, 5)
    a.add_argument("--checkpoint", help="tweetlm checkpoint or run folder to generate with")
    a.add_argument("--llm-url", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    a.add_argument("--llm-model", help="model name at --llm-url (default: the first it lists)")
    a.add_argument("--api-key", help="API key for --llm-url")
    a.add_argument("--max-tokens", type=int, default=128, help="longest answer in tokens")
    add_engine_args(a, max_batch=None)
    a.set_defaults(fn=_cmd_ask)
