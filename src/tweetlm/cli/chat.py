"""``tweetlm sft`` and ``tweetlm chat`` (layer L6): argument parsing over ``jobs.sft`` and the engine's chat."""

from __future__ import annotations

import argparse
import sys

from tweetlm.cli.ads import NONNEG_INT, POS_FLOAT, POS_INT
from tweetlm.cli.engine_args import add_engine_args

RAW = argparse.RawDescriptionHelpFormatter

SFT_EXAMPLES = """examples:
  tweetlm sft --base runs/demo --out runs/demo_sft
  tweetlm sft --base runs/demo --out runs/demo_sft --steps 300 --precision bf16 --qa-eval 200
  tweetlm sft --base runs/demo/base --corpus runs/demo/data --out runs/base_sft --steps 50
  tweetlm sft --base runs/demo --out runs/demo_sft --resume     # continue an interrupted run
then: tweetlm chat --checkpoint runs/demo_sft"""

CHAT_EXAMPLES = """examples:
  tweetlm chat --checkpoint runs/demo_sft
  tweetlm chat --checkpoint runs/demo_sft --search-index runs/demo/search --tweet
commands inside the chat:
  /reset        forget the conversation
  /tweet        tweet mode on/off (a reply of at most 280 weighted characters)
  /search on    answer from posts retrieved for each message, citing them by id (/search off to stop)
  /help, /quit  (or Ctrl-D)"""


def _cmd_sft(args: argparse.Namespace) -> int:
    from tweetlm.data.sft import SFTDataConfig
    from tweetlm.jobs.sft import SFTConfig, run_sft, summary_text

    data = SFTDataConfig(max_threads=args.max_threads, max_qa=args.max_qa, max_briefs=args.max_briefs,
                         max_posts=args.max_posts, max_val=args.max_val, brand_briefs_first=args.brand_briefs_first,
                         seed=args.seed)  # fmt: skip
    cfg = SFTConfig(data=data, max_steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
                    precision=args.precision, qa_eval=args.qa_eval, seed=args.seed)  # fmt: skip
    res = run_sft(args.base, args.out, cfg, corpus=args.corpus, resume=args.resume, progress=not args.no_progress)
    print(summary_text(res))
    if not args.no_guard:  # ad copy from this model is checked against near-copies of the training posts
        from pathlib import Path

        from tweetlm.ads.guard import build_guard

        path, n = build_guard(res["corpus"], Path(args.out) / "memorization_guard.pkl", not args.no_progress)
        print(f"memorization guard over {n:,} training posts: {path}")
    return 0


def _cmd_chat(args: argparse.Namespace) -> int:
    from tweetlm.cli.engine_args import engine_from_args
    from tweetlm.inference.engine import SamplingParams
    from tweetlm.search.chat import ChatSession

    engine = engine_from_args(args)
    index = None
    if args.search_index:
        from tweetlm.search.index import SearchIndex

        index = SearchIndex.open(args.search_index)
        index.search("warm up")  # loads the embedding model now, not in the middle of the first answer
    params = SamplingParams(
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
        tweet_mode=args.tweet,
    )
    params.validate()  # a bad --temperature or --top-p is refused now, not at every turn
    session = ChatSession(engine, params, index, args.system)
    template = "its own chat template" if engine.tok.chat_template else "tweetlm's chat template"
    print(f"tweetlm chat with {engine.model_name} ({template}, context {engine.max_seq_len} tokens). "
          f"/help for commands, Ctrl-D to quit.")  # fmt: skip
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):  # Ctrl-D or Ctrl-C at the prompt ends the chat
            print()
            return 0
        if not line.strip():
            print("(empty message: type something, or /help)")
            continue
        if line.lstrip().startswith("/"):
            out = session.command(line)
            if out is None:
                return 0
            print(out)
            continue
        sys.stdout.write("bot> ")
        sys.stdout.flush()
        try:
            notes = session.turn(line)
        except ValueError as e:
            session.messages.pop()  # the message that failed is not part of the conversation
            print(f"(not sent: {str(e).removeprefix('conversation 0: ')})")
            continue
        except KeyboardInterrupt:  # Ctrl-C during a reply stops it; the message is dropped
            session.messages.pop()
            print("\n(reply interrupted; the message was not kept)")
            continue
        for n in notes:
            print(n)


def register(sub) -> None:
    """Add ``sft`` and ``chat`` to the ``tweetlm`` subcommands."""
    s = sub.add_parser(
        "sft",
        help="supervised fine-tuning into a chat model, on threads, TweetQA, briefs and posts of the corpus",
        description="Builds a fine-tuning set from a clean corpus (reply threads as dialogues, TweetQA questions "
        "as grounded answers with citations, briefs -> posts, plain posts; split by post), trains with the loss "
        "on assistant tokens only, and reports held-out loss and TweetQA BLEU-1/METEOR/ROUGE-L for the base and "
        "the fine-tuned model (sft.json, report.md in --out).",
        epilog=SFT_EXAMPLES,
        formatter_class=RAW,
    )
    s.add_argument("--base", required=True, help="checkpoint folder or run folder to fine-tune")
    s.add_argument("--out", required=True, help="output run folder")
    s.add_argument("--corpus", help="clean-corpus folder (default: the base run's data/)")
    s.add_argument("--steps", type=POS_INT, default=200, help="optimizer steps (default 200; warmup: 10 or a tenth)")
    s.add_argument("--batch-size", type=POS_INT, default=8, help="rows of --seq-len tokens per step (default 8)")
    s.add_argument("--seq-len", type=NONNEG_INT, default=0, help="tokens per row (0: the model's context, <= 512)")
    s.add_argument("--lr", type=POS_FLOAT, default=1e-4, help="peak learning rate, cosine to a tenth (default 1e-4)")
    s.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="auto: bf16 on GPU, fp32 on CPU (bf16: 1.9x faster on CPU for the 135M base)")  # fmt: skip
    s.add_argument("--max-threads", type=int, default=-1, help="thread dialogues (-1: all)")
    s.add_argument("--max-qa", type=int, default=-1, help="TweetQA questions (-1: all)")
    s.add_argument("--max-briefs", type=int, default=4000, help="brief -> post examples")
    s.add_argument("--max-posts", type=int, default=2000, help="'write a post' examples")
    s.add_argument("--brand-briefs-first", action="store_true",
                   help="when --max-briefs caps: briefs that name a brand (like ads) first")  # fmt: skip
    s.add_argument("--max-val", type=NONNEG_INT, default=500, help="validation examples per task")
    s.add_argument("--qa-eval", type=NONNEG_INT, default=100, help="held-out TweetQA questions answered (0: skip)")
    s.add_argument("--seed", type=int, default=0, help="example sampling and data order (default 0)")
    s.add_argument("--resume", action="store_true", help="continue from --out's latest checkpoint")
    s.add_argument("--no-guard", action="store_true",
                   help="skip the memorization guard (ads copy then needs 'tweetlm ads guard')")  # fmt: skip
    s.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    s.set_defaults(fn=_cmd_sft)

    c = sub.add_parser(
        "chat",
        help="chat with a model in the terminal (streams; /reset, /tweet, /search on)",
        description="An interactive conversation with a checkpoint in its chat template; with --search-index, "
        "/search on answers from retrieved posts and cites them.",
        epilog=CHAT_EXAMPLES,
        formatter_class=RAW,
    )
    c.add_argument("--checkpoint", required=True, help="checkpoint folder, or a run folder (uses its latest)")
    c.add_argument("--search-index", metavar="DIR", help="index for grounded answers (/search on)")
    c.add_argument("--system", help="a system message that opens every conversation")
    c.add_argument("--max-tokens", type=POS_INT, default=128)
    c.add_argument("--temperature", type=float, default=0.7)
    c.add_argument("--top-p", type=POS_FLOAT, default=0.9)
    c.add_argument("--repetition-penalty", type=POS_FLOAT, default=1.0, help="1: off; 1.1-1.3 curbs loops")
    c.add_argument("--seed", type=int, default=None)
    c.add_argument("--tweet", action="store_true", help="start in tweet mode (replies of at most 280 weighted chars)")
    add_engine_args(c, max_batch=None)
    c.set_defaults(fn=_cmd_chat)
