"""``tweetlm search train`` (layer L6): argument parsing over ``tweetlm.search.tune``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TRAIN_EXAMPLES = """examples:
  tweetlm search train --corpus runs/demo/data --out runs/search_model
  tweetlm search train --corpus runs/demo/data --out runs/search_model --retriever-minutes 5 --reranker-steps 0
  tweetlm search build --corpus runs/demo/data --index runs/demo/search_tuned --model runs/search_model/retriever
  tweetlm search query "delayed flight" --index runs/demo/search_tuned --reranker runs/search_model/reranker
"""


def _cmd_train(args: argparse.Namespace) -> int:
    from tweetlm.search.pairs import PairConfig
    from tweetlm.search.tune import StageConfig, TuneConfig, train_search

    caps = {"hashtag": args.max_hashtag_pairs, "thread": args.max_thread_pairs}
    cfg = TuneConfig(
        base=args.base,
        pairs=PairConfig(max_per_kind=caps, seed=args.seed),
        retriever=StageConfig(
            steps=args.retriever_steps,
            batch_size=args.batch_size,
            lr=args.retriever_lr,
            seconds=args.retriever_minutes * 60,
            train_layers=args.train_layers,
            hard_negatives=args.retriever_hard_negatives,
        ),
        reranker=StageConfig(
            steps=args.reranker_steps,
            batch_size=args.reranker_batch_size,
            lr=args.reranker_lr,
            seconds=args.reranker_minutes * 60,
            train_layers=args.train_layers,
            keep_layers=args.reranker_layers,
        ),
        max_val=args.max_val,
        seed=args.seed,
        device=args.device,
    )
    report = train_search(args.corpus, args.out, cfg, progress=not args.no_progress, overwrite=args.overwrite)
    keep = ("retriever", "reranker", "pairs", "hard_negatives", "seconds")
    print(json.dumps({k: report[k] for k in keep if k in report}))
    made = [f"{args.out}/{m}" for m in ("retriever", "reranker") if m in report]
    print(f"wrote {', '.join(made + [f'{args.out}/search_model.json'])}")
    return 0


def add_train_verb(verbs, raw) -> None:
    """The ``train`` verb of ``tweetlm search``."""
    from tweetlm.search.embed import DEFAULT_MODEL

    t = verbs.add_parser(
        "train",
        help="fine-tune a retriever and a reranker on pairs mined from a clean corpus",
        description="Mine (query, post) pairs from a clean corpus (TweetQA questions, replies, quotes, thread "
        "neighbours, hashtags), add one BM25 hard negative each, then fine-tune the embedding model "
        "(MultipleNegativesRankingLoss) and a cross-encoder reranker. Validation: pairs of the corpus's val split.",
        epilog=TRAIN_EXAMPLES,
        formatter_class=raw,
    )
    t.add_argument("--corpus", required=True, type=Path, metavar="DIR", help="clean corpus (tweetlm data build)")
    t.add_argument("--out", required=True, type=Path, metavar="DIR", help="new folder for the models")
    t.add_argument(
        "--base", default=DEFAULT_MODEL, help="sentence-transformers folder both start from (default: bundled)"
    )
    t.add_argument("--retriever-steps", type=int, default=400, help="retriever steps (0: no retriever; default 400)")
    t.add_argument(
        "--retriever-minutes",
        type=float,
        default=8.0,
        help="minutes of retriever steps (default 8; mining and evaluation add to it)",
    )
    t.add_argument("--retriever-lr", type=float, default=3e-5, help="retriever peak learning rate (default 3e-5)")
    t.add_argument("--batch-size", type=int, default=32, help="retriever pairs per step (default 32)")
    t.add_argument("--reranker-steps", type=int, default=400, help="reranker steps (0: no reranker; default 400)")
    t.add_argument(
        "--reranker-minutes",
        type=float,
        default=10.0,
        help="minutes of reranker steps (default 10; evaluation adds to it)",
    )
    t.add_argument("--reranker-lr", type=float, default=1e-4, help="reranker peak learning rate (default 1e-4)")
    t.add_argument("--reranker-batch-size", type=int, default=16, help="reranker pairs per step (default 16)")
    t.add_argument("--reranker-layers", type=int, default=1, metavar="N",
                   help="keep the base's first N transformer layers in the reranker (0: all; default 1, the "
                   "measured choice for one CPU thread); its cost per candidate is proportional to N")  # fmt: skip
    t.add_argument("--max-hashtag-pairs", type=int, default=5000, help="cap on hashtag pairs (-1: all; default 5000)")
    t.add_argument("--max-thread-pairs", type=int, default=5000, help="cap on thread pairs (-1: all; default 5000)")
    t.add_argument("--train-layers", type=int, default=2,
                   help="top transformer layers that learn, the rest frozen (0: all; default 2)")  # fmt: skip
    t.add_argument("--retriever-hard-negatives", action="store_true",
                   help="also give the retriever the BM25 hard negatives (50%% more compute per step)")  # fmt: skip
    t.add_argument("--max-val", type=int, default=1000, help="validation pairs evaluated (default 1000)")
    t.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--overwrite", action="store_true", help="replace an earlier training in --out (when done)")
    t.add_argument("--no-progress", action="store_true", help="no progress lines")
    t.set_defaults(fn=_cmd_train)
