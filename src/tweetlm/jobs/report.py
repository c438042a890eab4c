"""Run report (layer L4): ``report.md``, the loss-curve PNG and the one-screen summary printed at the end.

Reads what the stages recorded (``stages.json``, ``metrics.jsonl``, ``eval.json``, ``samples.json``); computes
nothing new about the model.
"""

from __future__ import annotations

import json
import math

from tweetlm.common.runfolder import RunFolder


def _metrics(rf: RunFolder) -> list[dict]:
    """The rows of ``metrics.jsonl``; a line torn by a crash, or one that is not an object, is skipped, and a
    non-finite number (a diverged run's ``NaN`` loss) becomes ``None``."""
    if not rf.metrics.exists():
        return []
    rows = []
    for line in rf.metrics.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append({k: _finite(v) for k, v in row.items()})
    return rows


def _finite(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def plot_loss(rf: RunFolder) -> bool:
    """Write ``loss.png`` (training loss against tokens); ``False`` when there is nothing to plot."""
    rows = _metrics(rf)
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot([r["tokens"] / 1e6 for r in rows], [r["loss"] for r in rows], lw=1.2)
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("train loss (nats/token)")
    ax.set_title(f"{rf.root.name}: training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(rf.loss_plot)
    plt.close(fig)
    return True


def _fmt(e: dict | None) -> str:
    return "n/a" if not e else f"{e['bpb']:.3f} +/- {e.get('bpb_se', 0):.3f}"


def _comparison(ev: dict, stages: dict) -> list[str]:
    """The table of the base as imported, the continued model and the from-scratch model, scored on the same
    validation posts (empty for a plain from-scratch run)."""
    base, scratch = ev.get("base"), stages.get("scratch")
    if not base and not scratch:
        return []
    tr = stages["train"]
    n = ev["overall"]["docs"]
    lines = [
        f"## Base vs continued vs from scratch (the same {n:,} validation posts, bits-per-byte +/- standard error)",
        "",
        "| model | parameters | training | TweetEval val | all sampled posts |",
        "|---|---:|---|---:|---:|",
    ]
    if base:
        name = stages.get("import", {}).get("base", {}).get("name", "base")
        lines.append(
            f"| base as imported ({name}) | {base['params']:,} | none here | {_fmt(base.get('tweeteval_val'))} | "
            f"{_fmt(base['overall'])} |"
        )
    what = "continued" if base else "this run"
    lines.append(
        f"| {what} | {ev.get('params', tr['num_params']):,} | {tr['steps']} steps, {tr['tokens']:,} tokens, "
        f"{tr['train_wall_s']:.0f} s | {_fmt(ev.get('tweeteval_val'))} | {_fmt(ev['overall'])} |"
    )
    if scratch:
        st, se = scratch["train"], scratch["eval"]
        lines.append(
            f"| from scratch (`{scratch['recipe']}`, own BPE) | {se['params']:,} | {st['steps']} steps, "
            f"{st['tokens']:,} tokens, {st['train_wall_s']:.0f} s | {_fmt(se.get('tweeteval_val'))} | "
            f"{_fmt(se['overall'])} |"
        )
    if base:
        d = base["overall"]["bpb"] - ev["overall"]["bpb"]
        lines += ["", f"Continued pretraining changed bits-per-byte by {-d:+.3f} on these posts."]
    return lines + [""]


def write_report(rf: RunFolder, cfg, stages: dict) -> str:
    """Write ``report.md`` and ``loss.png``; return the one-screen summary text."""
    plot_loss(rf)
    data, tok, enc, tr = stages["data"], stages["tokenizer"], stages["encode"], stages["train"]
    ev = json.loads(rf.eval.read_text())
    samples = json.loads(rf.samples.read_text())
    tw = ev.get("tweeteval_val")
    walls = {k: v["wall_s"] for k, v in stages.items() if isinstance(v, dict) and "wall_s" in v}

    lines = [f"# tweetlm run `{rf.root.name}` (recipe `{cfg.recipe or 'custom'}`)", ""]
    lines += ["## Data: records in = kept + dropped + quarantined", "", "```", *data["equation"], "```", ""]
    lines += [
        f"Train posts {data['train_posts']:,}, validation posts {data['val_posts']:,}; corpus hash "
        f"`{data['corpus_hash'][:16]}`. Quarantined records: `data/quarantine.jsonl`.",
        "",
    ]
    lines += [
        "## Tokenizer and tokens",
        "",
        f"Byte-level BPE, vocabulary {tok['vocab_size']:,}; train {enc['train']['tokens']:,} tokens "
        f"({enc['train']['bytes']:,} bytes, {enc['bytes_per_token']:.2f} bytes/token); validation "
        f"{enc['val']['tokens']:,} tokens. Every post decodes back to its exact text (checked while encoding).",
        "",
    ]
    lines += [
        "## Training",
        "",
        f"Parameters {tr['num_params']:,}; {tr['steps']:,} steps, {tr['tokens']:,} tokens; final train loss "
        f"{tr['final_loss']:.3f}; {tr['tokens_per_s']:,.0f} tokens/s; "
        f"{tr['flops_per_token'] / 1e6:.1f} MFLOP/token (training).",
        "",
        "![loss](loss.png)",
        "",
    ]
    lines += _comparison(ev, stages)
    lines += [
        "## Evaluation (held-out posts, bits-per-byte)",
        "",
        "| source | docs | bytes | loss (nats/token) | bits-per-byte | standard error |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = list(ev["per_source"].items())
    if tw:
        rows.append(("**TweetEval val (all tasks)**", tw))
    rows.append(("**overall**", ev["overall"]))
    for name, e in rows:
        se = f"{e['bpb_se']:.3f}" if "bpb_se" in e else ""
        lines.append(f"| {name} | {e['docs']:,} | {e['bytes']:,} | {e['loss']:.3f} | {e['bpb']:.3f} | {se} |")
    lines += [
        "",
        f"## Samples (sample i uses seed {samples['settings']['seed']} + i, "
        f"temperature {samples['settings']['temperature']}, "
        f"top-p {samples['settings']['top_p']})",
        "",
    ]
    lines += [f"{i + 1}. {s!r}" for i, s in enumerate(samples["samples"])]
    lines += ["", "## Wall time per stage (s)", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in walls.items()]
    lines += [f"| total | {stages.get('total_wall_s', sum(walls.values())):.1f} |", ""]
    rf.report.write_text("\n".join(lines))

    bpb_line = f"bits-per-byte: {ev['overall']['bpb']:.3f} overall"
    if tw:
        bpb_line += f", {tw['bpb']:.3f} on TweetEval val ({tw['docs']:,} posts)"
    for label, other in (("base as imported", ev.get("base")), ("from scratch", stages.get("scratch", {}).get("eval"))):
        if other:
            o = other.get("tweeteval_val") if tw else other["overall"]
            bpb_line += f"; {label} {o['bpb']:.3f}"
    summary = [
        "",
        f"== tweetlm run '{rf.root.name}' done in {stages.get('total_wall_s', 0):.0f}s ==",
        f"posts: {data['records_in']:,} in = {data['kept']:,} kept + {sum(data['dropped'].values()):,} dropped "
        f"+ {data['quarantined']:,} quarantined; train {data['train_posts']:,} / val {data['val_posts']:,}",
        f"tokens: {enc['train']['tokens']:,} train, vocab {tok['vocab_size']:,}, "
        f"{enc['bytes_per_token']:.2f} bytes/token",
        f"model: {tr['num_params']:,} params, {tr['steps']} steps, {tr['tokens_per_s']:,.0f} tokens/s, "
        f"final train loss {tr['final_loss']:.3f}"
        + (f" (resumed from step {tr['resumed_from']})" if tr.get("resumed_from") else ""),
        bpb_line,
        "samples:",
        *[f"  - {s[:100]!r}" for s in samples["samples"][:3]],
        "stages (s): " + ", ".join(f"{k} {v:.0f}" for k, v in walls.items()),
        f"outputs: {rf.report} (report), {rf.eval}, {rf.loss_plot}, checkpoint {tr['checkpoint']}",
    ]
    return "\n".join(summary)


# --- run folders as data (the console's Runs page, GET /v1/runs) ---------------------------------------------


def _read_json(path, problems: list[str] | None = None) -> dict | None:
    """The JSON object in ``path``; ``None`` when the file is missing, and also (with a line in ``problems``)
    when it is not UTF-8 JSON holding an object (a half-written file). Non-finite numbers become ``None``."""
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda _: None)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        if problems is not None:
            problems.append(f"{path.name}: unreadable ({type(e).__name__}: {e})")
        return None
    if not isinstance(value, dict):
        if problems is not None:
            problems.append(f"{path.name}: not a JSON object")
        return None
    return value


def is_run(folder) -> bool:
    """A folder some tweetlm stage wrote: it holds ``stages.json``, ``metrics.jsonl`` or ``checkpoints/``."""
    rf = RunFolder(folder)
    return folder.is_dir() and (rf.stages.exists() or rf.metrics.exists() or rf.checkpoints.is_dir())


def list_runs(runs_dir) -> list[dict]:
    """One summary per run folder directly under ``runs_dir`` (sorted by name): ``name``, ``steps`` logged,
    ``final_loss``, ``bpb`` (held-out bits per byte, ``None`` before evaluation), ``checkpoints`` (count),
    ``has_data`` (a clean corpus with accounting), ``modified`` (Unix seconds of the newest of those files)."""
    from pathlib import Path

    out = []
    root = Path(runs_dir)
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not is_run(folder):
            continue
        rf = RunFolder(folder)
        rows = _metrics(rf)
        problems: list[str] = []
        ev = _read_json(rf.eval, problems) or {}
        overall = ev.get("overall") if isinstance(ev.get("overall"), dict) else {}
        files = [f for f in (rf.stages, rf.metrics, rf.eval) if f.exists()]
        out.append(
            {
                "name": folder.name,
                "steps": rows[-1].get("step") if rows else 0,
                "final_loss": rows[-1].get("loss") if rows else None,
                "bpb": overall.get("bpb"),
                "problems": problems,
                "checkpoints": len(list(rf.checkpoints.glob("step_*"))) if rf.checkpoints.is_dir() else 0,
                "has_data": (rf.data / "accounting.json").exists(),
                "modified": max((f.stat().st_mtime for f in files), default=folder.stat().st_mtime),
            }
        )
    return out


def length_histogram(data_dir, bin_chars: int = 20, max_chars: int = 400) -> dict:
    """Post lengths of a clean corpus (``train.parquet`` and ``val.parquet``) in characters: ``edges`` (bin
    starts, ``bin_chars`` wide up to ``max_chars``; the last bin holds every longer post) and ``counts``."""
    from pathlib import Path

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    counts = [0] * (max_chars // bin_chars + 1)
    for name in ("train.parquet", "val.parquet"):
        f = Path(data_dir) / name
        if not f.exists():
            continue
        lengths = pc.utf8_length(pq.read_table(f, columns=["text"]).column("text")).to_numpy(zero_copy_only=False)
        for b in (lengths // bin_chars).clip(0, len(counts) - 1):
            counts[int(b)] += 1
    return {"bin_chars": bin_chars, "edges": [i * bin_chars for i in range(len(counts))], "counts": counts}


def run_summary(run_dir) -> dict:
    """What the Runs page shows of one run folder: ``accounting`` (per source ``in``, ``kept``, ``dropped`` by
    reason, ``quarantined``; ``data/accounting.json``), ``equation`` lines, ``languages`` and ``kinds`` (post
    counts), ``lengths`` (``length_histogram``), ``eval`` (``eval.json``: bits per byte overall and per
    source), ``samples`` (``samples.json``), ``checkpoints`` (names, oldest first), ``config``, ``stages``.
    Missing parts are ``None`` (a run stopped early has no eval); a file that is there but cannot be read is
    ``None`` too and named in ``problems``."""
    rf = RunFolder(run_dir)
    problems: list[str] = []
    report = _read_json(rf.data / "report.json", problems) or {}
    acc = _read_json(rf.data / "accounting.json", problems)
    samples = _read_json(rf.samples, problems)
    has_corpus = (rf.data / "train.parquet").exists()
    try:
        lengths = length_histogram(rf.data) if has_corpus else None
    except (OSError, ValueError) as e:  # a half-written parquet file
        problems.append(f"data/train.parquet: unreadable ({type(e).__name__}: {e})")
        lengths = None
    return {
        "name": rf.root.name,
        "problems": problems,
        "accounting": (acc or {}).get("sources"),
        "equation": report.get("equation"),
        "languages": report.get("languages"),
        "kinds": report.get("kinds"),
        "lengths": lengths,
        "eval": _read_json(rf.eval, problems),
        "samples": (samples or {}).get("samples"),
        "checkpoints": sorted(p.name for p in rf.checkpoints.glob("step_*")) if rf.checkpoints.is_dir() else [],
        "config": _read_json(rf.config, problems),
        "stages": _read_json(rf.stages, problems),
        "steps": len(_metrics(rf)),
    }


def run_metrics(run_dir) -> list[dict]:
    """Every row of the run's ``metrics.jsonl`` (one per logged step: ``step``, ``loss``, ``lr``, ``tokens``...)."""
    return _metrics(RunFolder(run_dir))
