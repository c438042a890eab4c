"""``tweetlm`` command line (layer L6): argument parsing only; every command calls one library function.

Bad user input (missing corpus, unknown recipe or ``--set`` key, unreadable file) prints one ``error:`` line
and exits with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys

RUN_EXAMPLES = """examples:
  tweetlm run --corpus ../shared/corpora --recipe demo_cpu --name demo
  tweetlm run --corpus my_posts.jsonl --recipe tiny_cpu --name try --set train.max_steps=50
  tweetlm run --corpus ../shared/corpora --name demo --resume        # continue after a crash
  tweetlm run --corpus hf:tweeteval --name from_hub                  # download TweetEval (needs network)
"""


def _cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tweetlm.common.config import apply_overrides
    from tweetlm.jobs.recipes import get_recipe
    from tweetlm.jobs.run import run

    cfg = get_recipe(args.recipe)
    cfg.name = args.name or args.recipe
    apply_overrides(cfg, args.set or [])
    corpus = list(args.corpus)
    if corpus == ["hf:tweeteval"]:
        from tweetlm.data.download import download_tweeteval

        corpus = [str(download_tweeteval(Path(args.runs_dir) / "_downloads"))]
    result = run(cfg, corpus, runs_dir=args.runs_dir, resume=args.resume, progress=not args.no_progress)
    print(result.summary)
    return 0


def _cmd_recipes(args: argparse.Namespace) -> int:
    import json

    from tweetlm.common.config import to_dict
    from tweetlm.jobs.recipes import RECIPES

    for name, fn in RECIPES.items():
        if args.show:
            print(f"{name}: {json.dumps(to_dict(fn()), indent=1)}")
        else:
            m = fn().model
            print(f"{name}: {m.n_layer} layers, width {m.n_embd}, seq {m.max_seq_len}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tweetlm",
        description="Turn a corpus of social-media posts into a generative language model.",
        epilog="examples:\n  tweetlm run --corpus ../shared/corpora --recipe demo_cpu --name demo\n"
        "  tweetlm recipes --show\nRun 'tweetlm <command> --help' for the options of each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="<command>")
    r = sub.add_parser(
        "run",
        help="the main job: posts -> corpus -> tokenizer -> pretraining -> evaluation -> samples -> report",
        description="Run the whole chain into runs/<name>/: clean corpus, tokenizer.json, token shards, "
        "checkpoints, metrics.jsonl, eval.json (bits-per-byte), samples.json, loss.png and report.md.",
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument(
        "--corpus",
        nargs="+",
        required=True,
        metavar="PATH",
        help="folders or files of posts (TweetEval/SemEval/CSV/JSONL/TXT...), or hf:tweeteval",
    )
    r.add_argument("--recipe", default="demo_cpu", help="named config (see 'tweetlm recipes'); default demo_cpu")
    r.add_argument("--name", help="run folder name under --runs-dir (default: the recipe name)")
    r.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override one config field, e.g. --set train.max_steps=100 (repeatable, type-checked)",
    )
    r.add_argument("--runs-dir", default="runs", help="parent folder of run folders (default: runs)")
    r.add_argument("--resume", action="store_true", help="continue a run from its latest checkpoint")
    r.add_argument("--no-progress", action="store_true", help="no progress bars (logs and CI)")
    r.set_defaults(fn=_cmd_run)
    rc = sub.add_parser(
        "recipes",
        help="list the named recipes",
        epilog="example:\n  tweetlm recipes --show",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rc.add_argument("--show", action="store_true", help="print each recipe's full config")
    rc.set_defaults(fn=_cmd_recipes)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue with the same command plus --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
