"""``tweetlm data <verb>`` (layer L6): argument parsing over ``tweetlm.data.pipeline``.

``build`` runs the ingestion pipeline into a corpus folder; ``forget`` removes posts from one and lists the runs
trained on them.
"""

from __future__ import annotations

import argparse
import time

BUILD_EXAMPLES = """examples:
  tweetlm data build --corpus ../shared/corpora --out corpora/all
  tweetlm data build --corpus ../shared/corpora --out corpora/all --workers 2      # both cores (16 tasks)
  tweetlm data build --corpus my_posts.jsonl archive.zip --out corpora/mine --set lang_detect=missing --rejects
  tweetlm data build --corpus posts/ --out corpora/en --set keep_languages=en,es --set max_template_repeats=5
  tweetlm data build --corpus export.csv --out corpora/csv --map text=body,id=post_id,created_at=ts
  tweetlm data build --corpus /data/posts --out /data/corpus --executor slurm --tasks 64 \\
      --slurm-partition cpu --slurm-time 04:00:00 --wait                            # on a Slurm cluster
  tweetlm data build --corpus /data/posts --out /data/corpus --executor ray --tasks 64 \\
      --ray-address 10.0.0.1:6379                                                  # on a Ray cluster
"""

FORGET_EXAMPLES = """examples:
  tweetlm data forget --ids delete_requests.txt --corpus corpora/all
  tweetlm data forget --ids delete_requests.txt --corpus runs/demo/data --runs-dir runs
  tweetlm data forget --ids delete_requests.txt --corpus runs/demo/data --search-index runs/demo/search
ids file: one post id per line; '#' starts a comment.
"""


def _pipeline_config(args: argparse.Namespace):
    from tweetlm.common.config import apply_overrides
    from tweetlm.data.pipeline.config import PipelineConfig

    cfg = PipelineConfig(tasks=args.tasks, workers=args.workers, executor=args.executor, write_rejects=args.rejects)
    # a setting given both by its own flag (not left at the config's default) and by --set would otherwise go to
    # whichever came last, silently
    flags = {"tasks": "--tasks", "workers": "--workers", "executor": "--executor", "write_rejects": "--rejects"}
    for a in args.set or []:
        key = a.split("=", 1)[0].strip()
        if key in flags and getattr(cfg, key) != PipelineConfig.__dataclass_fields__[key].default:
            flag = flags[key] + ("" if isinstance(getattr(cfg, key), bool) else f" {getattr(cfg, key)}")
            raise ValueError(f"--set {a.strip()} and {flag} both set data.{key}: give it once ({flags[key]})")
    apply_overrides(cfg, args.set or [])
    if args.map:
        cfg.columns = args.map
    cfg.validate()
    return cfg


def _cmd_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tweetlm.data.pipeline.build import STAGES, build_corpus, stage_seconds

    cfg = _pipeline_config(args)
    kwargs = {}
    if args.wait and args.executor != "slurm":
        raise ValueError("--wait is for --executor slurm (the local and Ray executors always wait)")
    if args.executor == "slurm":
        kwargs = {"partition": args.slurm_partition, "time": args.slurm_time, "wait": args.wait}
    if args.executor == "ray":
        kwargs = {"ray_address": args.ray_address, "cpus_per_task": args.ray_cpus_per_task}
        kwargs["mem_per_cpu_gb"] = args.ray_mem_per_cpu_gb
    elif args.ray_address:
        raise ValueError("--ray-address is for --executor ray")
    t0 = time.perf_counter()
    report = build_corpus(args.corpus, args.out, cfg, quiet=not args.verbose, progress=not args.no_progress, **kwargs)
    if report.get("submitted"):
        jobs = ", ".join(f"{s} {j}" for s, j in report.get("job_ids", {}).items())
        print(f"submitted to {args.executor}" + (f" (jobs: {jobs}; see squeue)" if jobs else ""))
        print(f"logs and completions in {report['work_dir']}/logs/; rerun with --wait to follow the jobs to the end")
        return 0
    if report["kept"] == 0:
        import json
        from collections import Counter

        qfile = Path(args.out) / "quarantine.jsonl"
        reasons = Counter(
            json.loads(line)["reason"]
            for line in (qfile.read_text(encoding="utf-8").splitlines() if qfile.exists() else ())
        )
        why = ", ".join(f"{r} {n}" for r, n in reasons.most_common(3))
        raise ValueError(
            f"no posts left in {' '.join(args.corpus)} after reading and cleaning: {report['equation'][-1]}"
            + (f"; quarantine reasons: {why} (see {qfile})" if why else "")
        )
    print(f"corpus: {args.out} ({report['train_posts']:,} train + {report['val_posts']:,} validation documents)")
    print(f"{cfg.task_count()} task(s), {time.perf_counter() - t0:.1f}s; corpus hash {report['corpus_hash'][:16]}")
    ran = stage_seconds(Path(args.out) / "_work")
    print("stages: " + ", ".join(f"{s} {ran[s]:.1f}s" if s in ran else f"{s} done before (skipped)" for s in STAGES))
    for s in report["steps"]:
        why = ", ".join(f"{r} {n:,}" for r, n in s["dropped"].items()) or "-"
        print(f"  {s['step']:<10} {s['in']:>9,} -> {s['out']:>9,}  dropped: {why}")
    print("languages: " + ", ".join(f"{k} {v:,}" for k, v in list(report["languages"].items())[:10]))
    print("detected language: " + ", ".join(f"{k} {v:,}" for k, v in list(report["languages_detected"].items())[:10]))
    print(report["equation"][-1])
    print(f"report: {args.out}/report.md, accounting.json, quarantine.jsonl, manifest.json")
    return 0


def _cmd_forget(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tweetlm.data.pipeline.forget import forget, read_ids

    ids = read_ids(args.ids)
    indexes = []
    if args.search_index:  # open every index first: a bad folder fails before the corpus changes
        from tweetlm.search.index import SearchIndex

        indexes = [(d, SearchIndex.open(d)) for d in args.search_index]
    res = forget(ids, args.corpus, args.runs_dir)
    n = sum(res["removed"].values())
    print(f"{len(ids)} id(s) asked, {len(res['found_ids'])} found; {n} document(s) removed from {args.corpus}")
    for source, k in sorted(res["removed"].items()):
        print(f"  {source}: {k}")
    if res["not_found_ids"]:
        print(
            f"not in this corpus: {', '.join(res['not_found_ids'][:10])}"
            + (" ..." if len(res["not_found_ids"]) > 10 else "")
        )
    if res["new_hash"] == res["old_hash"]:
        print(f"corpus unchanged (hash {res['old_hash'][:16]})")
    else:
        print(f"corpus hash {res['old_hash'][:16]} -> {res['new_hash'][:16]}")
    if res["runs"]:
        print("trained on a corpus that contained them (retrain or delete these checkpoints):")
        for r in res["runs"]:
            print(f"  {r['run']} ({r['matched_by']}): {len(r['checkpoints'])} checkpoint(s)")
            for c in r["checkpoints"]:
                print(f"    {c}")
    elif not Path(args.runs_dir).is_dir():
        print(f"--runs-dir {args.runs_dir} does not exist: no runs were checked (pass the folder holding your runs)")
    else:
        print(f"no run under {args.runs_dir} was trained on a corpus that contained them")
    if res["guards"]:
        from tweetlm.ads.guard import scrub_guards

        affected = [Path(r["run"]).resolve() for r in res["runs"]]
        for g in scrub_guards(res["guards"], res["changed_texts"], res["removed_text_digests"]):
            if g["error"]:
                print(f"memorization guard {g['path']} could not be read ({g['error']}): rebuild or delete it")
            elif g["erased"] or any(Path(g["path"]).resolve().is_relative_to(a) for a in affected):
                print(f"memorization guard {g['path']}: {g['erased']} text(s) erased")
    if res.get("sft_sets"):
        print("fine-tuning sets and search training pairs built from them (rebuild with tweetlm sft or tweetlm "
              "search train into a new folder):")  # fmt: skip
        for f in res["sft_sets"]:
            print(f"  {f}")
    gone_texts = [t for t, new in res["changed_texts"].items() if new is None]
    for folder, idx in indexes:
        # the ids, the documents the corpus removed or rebuilt (a thread holding one), the retweets the corpus
        # collapsed into them, retweets in the index of an original, and retweet copies of a removed text
        todo = ids | set(res["touched_ids"]) | set(idx.retweets_of(ids)) | set(idx.retweet_copies_of(gone_texts))
        todo = sorted(todo)
        missing = idx.delete(todo)
        n = len(todo) - len(missing)
        print(f"search index {folder}: {n} post(s) deleted (the ids, retweets of them, documents holding them)")
    for folder, held in _indexes_holding(ids, [Path(args.runs_dir), Path(args.corpus).parent], args.search_index):
        print(f"warning: search index {folder} still holds {held} of them: run again with --search-index {folder}")
    return 0


def _indexes_holding(ids: set[str], roots: list, named: list[str] | None) -> list[tuple[str, int]]:
    """Search indexes under ``roots`` (not among ``named``) that hold any of ``ids`` or a retweet of them:
    ``(folder, count)``; the deletion is not complete while they answer with those posts."""
    from pathlib import Path

    from tweetlm.search.index import SearchIndex

    done = {Path(d).resolve() for d in named or []}
    out, seen = [], set()
    for root in roots:
        if not root.is_dir():
            continue
        for mf in sorted(root.glob("**/index.json")):
            folder = mf.parent.resolve()
            if folder in done or folder in seen or not (mf.parent / "segments").is_dir():
                continue
            seen.add(folder)
            try:
                idx = SearchIndex.open(mf.parent)
            except (OSError, ValueError, KeyError):
                continue
            held = sum(idx.get(i) is not None for i in ids) + len(idx.retweets_of(ids))
            if held:
                out.append((str(mf.parent), held))
    return out


def register(sub) -> None:
    """Add ``data build`` and ``data forget`` to the ``tweetlm`` subparsers."""
    raw = argparse.RawDescriptionHelpFormatter
    d = sub.add_parser(
        "data", help="the ingestion pipeline: build a corpus, forget posts", epilog=BUILD_EXAMPLES, formatter_class=raw
    )
    verbs = d.add_subparsers(dest="data_verb", metavar="<verb>", required=True)
    b = verbs.add_parser(
        "build",
        help="read, clean, de-duplicate and thread posts into a corpus folder (datatrove)",
        description="Run the ingestion pipeline: read every record, normalize, language id, filters, "
        "PII scrub, retweet collapse, threads, exact and MinHash dedup; writes train.parquet, val.parquet, "
        "manifest.json, accounting.json, quarantine.jsonl and report.md/json/length_hist.png into --out.",
        epilog=BUILD_EXAMPLES,
        formatter_class=raw,
    )
    b.add_argument("--corpus", nargs="+", required=True, metavar="PATH", help="folders or files of posts")
    b.add_argument("--out", required=True, metavar="DIR", help="corpus folder to write")
    b.add_argument(
        "--tasks",
        type=int,
        default=0,
        help="datatrove tasks (default 0: 8 per worker with --workers 2 or more on the local executor, else 1)",
    )
    b.add_argument("--workers", type=int, default=0, help="tasks at once on this machine (default 0: all tasks)")
    b.add_argument("--executor", default="local", choices=["local", "slurm", "ray"], help="datatrove executor")
    b.add_argument(
        "--slurm-partition", help="Slurm partition (with --executor slurm; default: the cluster's default partition)"
    )
    b.add_argument("--slurm-time", default="04:00:00", help="Slurm time limit per task (default 04:00:00)")
    b.add_argument(
        "--ray-address",
        metavar="HOST:PORT",
        help="with --executor ray: the cluster to run on (default: $RAY_ADDRESS, else the one `ray start` left on "
        "this machine, else a new local one on every core)",
    )
    b.add_argument("--ray-cpus-per-task", type=int, default=1, metavar="N", help="Ray CPUs per task (default 1)")
    b.add_argument(
        "--ray-mem-per-cpu-gb", type=float, default=2.0, metavar="GIB", help="Ray memory per CPU, GiB (default 2)"
    )
    b.add_argument(
        "--wait",
        action="store_true",
        help="with --executor slurm: follow the jobs until the corpus is written, then print the summary (a failed "
        "stage ends it with an error naming its Slurm logs); without it the command returns once they are submitted",
    )
    b.add_argument(
        "--map",
        metavar="SPEC",
        help="column mapping for CSV/JSONL/Parquet posts, e.g. text=body,id=post_id,labels.sentiment=label",
    )
    b.add_argument("--rejects", action="store_true", help="write dropped posts with their reason under _work/rejects")
    b.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="pipeline setting, e.g. lang_detect=missing (repeatable)"
    )
    b.add_argument("--verbose", action="store_true", help="show datatrove's task logs")
    b.add_argument("--no-progress", action="store_true", help="no progress bar (logs and CI)")
    b.set_defaults(fn=_cmd_build)
    f = verbs.add_parser(
        "forget",
        help="remove posts (and retweets of them) from a corpus; list checkpoints trained on them",
        epilog=FORGET_EXAMPLES,
        formatter_class=raw,
    )
    f.add_argument("--ids", required=True, metavar="FILE", help="text file, one post id per line")
    f.add_argument(
        "--corpus", required=True, metavar="DIR", help="corpus folder (data build --out, or runs/<name>/data)"
    )
    f.add_argument("--runs-dir", default="runs", help="where to look for runs trained on them (default: runs)")
    f.add_argument(
        "--search-index",
        action="append",
        metavar="DIR",
        help="also delete the posts and retweets of them from this search index (repeatable)",
    )
    f.set_defaults(fn=_cmd_forget)
