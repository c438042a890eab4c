"""The data report of a pipeline run (layer L1, data): ``report.json``, ``report.md`` and ``length_hist.png``.

Per step: posts in, out, dropped by reason; per source: the ledger equation; per language (the reader's where it
gave one, else detected; and detected alone) and per kind: kept posts; kept documents whose text the source cut off
(``truncated``) and those dropped for it (``truncated_text``); the length histogram of kept posts in
characters (matplotlib, Agg backend; skipped with a note when matplotlib is missing). It reads what
``build.FinalizeCorpus`` hands it and computes nothing else.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from tweetlm.data.ledger import Ledger
from tweetlm.data.pipeline.config import PipelineConfig

STEP_TITLES = {
    "reader": "read (quarantine and reader drops)",
    "normalize": "normalize",
    "lang": "language id",
    "filter": "length / language / spam filter",
    "pii": "PII scrub",
    "decide": "retweets, threads, exact / template / MinHash dedup",
}


def _hist_png(lengths: list[int], path: Path) -> str | None:
    try:  # a Figure of its own, without pyplot: no switch of the backend of the process that builds
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    top = max(lengths) if lengths else 1
    import numpy as np

    # counted by numpy: ``ax.hist`` on a Python list of 231k lengths took 0.6 s of a 60 s cProfile run of the build
    counts, edges = np.histogram(np.minimum(np.asarray(lengths, dtype=np.int64), 600), bins=60, range=(0, 600))
    ax.stairs(counts, edges, fill=True, color="#4477aa")
    ax.set_xlabel(f"characters per post (longer ones in the last bin; max {top})")
    ax.set_ylabel("posts")
    ax.set_title(f"length of {len(lengths):,} kept posts")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path.name


def write_report(
    out: Path,
    ledger: Ledger,
    per_step: dict[str, Counter],
    corpus_hash: str,
    cfg: PipelineConfig,
    paths: list[str],
    stage_seconds: dict[str, float] | None = None,
) -> dict:
    """Write and return the report of the corpus in ``out`` (see module docstring). ``stage_seconds``: wall
    seconds of the stages this run ran before the report (``build.stage_seconds``; stages a rerun skipped are
    absent)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    cols = ["text", "lang", "lang_detected", "kind", "split", "truncated"]
    tables = [pq.read_table(out / f, columns=cols) for f in ("train.parquet", "val.parquet")]
    # characters per post counted by Arrow (code points, as len(str)), without making 231k Python strings
    lengths = [n for tb in tables for n in pc.utf8_length(tb.column("text")).to_pylist()]
    langs = Counter(x or "und" for tb in tables for x in tb.column("lang").to_pylist())
    detected = Counter(x or "not_run" for tb in tables for x in tb.column("lang_detected").to_pylist())
    kinds = Counter(x for tb in tables for x in tb.column("kind").to_pylist())
    num_truncated = sum(bool(x) for tb in tables for x in tb.column("truncated").to_pylist())
    totals = ledger.totals()
    n = totals.records_in - totals.quarantined - per_step.get("reader", Counter()).total()
    steps = [{"step": "read", "in": totals.records_in, "out": n,
              "dropped": dict(per_step.get("reader", {})), "quarantined": totals.quarantined}]  # fmt: skip
    for name in ("normalize", "lang", "filter", "pii", "decide"):
        dropped = per_step.get(name, Counter())
        steps.append({"step": name, "in": n, "out": n - dropped.total(), "dropped": dict(sorted(dropped.items()))})
        n -= dropped.total()
    report = {
        "inputs": paths,
        "corpus_hash": corpus_hash,
        "records_in": totals.records_in,
        "kept": totals.kept,
        "dropped": dict(sorted(totals.dropped.items())),
        "quarantined": totals.quarantined,
        "train_posts": tables[0].num_rows,
        "val_posts": tables[1].num_rows,
        "equation": ledger.equation_lines(),
        "steps": steps,
        "languages": dict(langs.most_common()),
        "languages_detected": dict(detected.most_common()),
        "kinds": dict(kinds.most_common()),
        "truncated": {"kept": num_truncated, "dropped": totals.dropped.get("truncated_text", 0)},
        "length_chars": {
            "mean": round(sum(lengths) / max(1, len(lengths)), 1),
            "max": max(lengths, default=0),
            "over_280": sum(1 for x in lengths if x > 280),
        },
        "tasks": cfg.task_count(),
        "stage_seconds": {k: round(v, 2) for k, v in (stage_seconds or {}).items()},
        "histogram": _hist_png(lengths, out / "length_hist.png"),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    lines = [
        "# Data report",
        "",
        f"Inputs: {', '.join(paths)}; {cfg.task_count()} task(s); corpus hash `{corpus_hash}`.",
        "",
    ]
    if report["stage_seconds"]:
        ran = ", ".join(f"{k} {v:.1f} s" for k, v in report["stage_seconds"].items())
        lines += [f"Wall time of the stages this run ran before this report: {ran}.", ""]
    lines += ["## Steps", "", "| step | in | out | dropped by reason |", "|---|---:|---:|---|"]
    for s in steps:
        why = ", ".join(f"{r} {c:,}" for r, c in s["dropped"].items()) or "-"
        if s.get("quarantined"):
            why += f"; quarantined {s['quarantined']:,}"
        lines.append(f"| {STEP_TITLES.get(s['step'], s['step'])} | {s['in']:,} | {s['out']:,} | {why} |")
    lines += ["", "## Records in = kept + dropped + quarantined", "", "```", *report["equation"], "```", ""]
    lines += ["## Kept posts per language", "", ", ".join(f"{k} {v:,}" for k, v in langs.most_common()), ""]
    lines += ["Detected (language id): " + ", ".join(f"{k} {v:,}" for k, v in detected.most_common()), ""]
    lines += ["## Kept documents per kind", "", ", ".join(f"{k} {v:,}" for k, v in kinds.most_common()), ""]
    cut = report["truncated"]
    lines += [
        f"Text cut off by the source (`truncated`): {cut['kept']:,} kept and marked, {cut['dropped']:,} dropped "
        f"(`drop_truncated` is {'on' if cfg.drop_truncated else 'off'}).",
        "",
    ]
    if report["histogram"]:
        lines += ["## Length", "", f"![length histogram]({report['histogram']})", ""]
    else:
        lines += ["## Length", "", "(no histogram: matplotlib is not installed; `pip install tweetlm[data]`)", ""]
    (out / "report.md").write_text("\n".join(lines))
    return report
