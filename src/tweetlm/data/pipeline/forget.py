"""Deletion requests (layer L1, data): remove posts from a built corpus and find the runs trained on them.

``forget(ids, corpus_dir, runs_dir)`` removes from the corpus shards every post whose id is listed, every
retweet of one (a retweet kept in place of a missing original, ``retweeted_id``), and every listed post inside a
thread document (the thread is rebuilt from its other posts, or removed when none is left); retweet counts of
kept originals lose the listed retweets. It then writes a new corpus hash, appends the old one with the removed
ids to ``manifest.json["history"]``, books the removals in ``accounting.json`` (reason ``deleted_on_request``,
so the ledger equation still holds; ``report.json`` and ``report.md`` say so too) and deletes the pipeline's work
folder (``_work/``: intermediate files hold
the texts too).

Checkpoints: a run folder under ``runs_dir`` was trained on a corpus that contained a listed post when its
``stages.json`` records a corpus hash of this corpus from before the removal (the current one or one in
``history`` up to the request that removed the post), or when its own ``data/manifest.json`` lists one of the
ids. Runs made by ``tweetlm train --out`` record the hash only inside ``trainer_state.pt`` and are found through
the run folder they were trained from. Fine-tuned folders (``tweetlm sft``: their ``config.json`` names the base
under ``sft_base``) whose base checkpoint lies in an affected run are affected too, and so is an ``sft`` folder
whose fine-tuning set (``sft_train.jsonl``/``sft_val.jsonl``, ``source_ids`` of every example) lists a removed
post; so is a ``tweetlm search train`` folder whose ``pairs_<split>.jsonl`` lists one (its ``retriever/`` and
``reranker/`` are given as its checkpoints); those files are returned as ``sft_sets`` (rebuild them with
``tweetlm sft`` / ``tweetlm search train``). Every
``memorization_guard.pkl`` under ``runs_dir`` is returned as ``guards`` and the texts the removal changed as
``changed_texts`` (a removed document's text -> ``None``, a rebuilt thread's old text -> its new one), for the
caller to erase from the guards (``ads.guard.scrub_guards``; ``tweetlm data forget`` does). Nothing outside
``corpus_dir`` is changed here: retraining is the caller's decision.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from tweetlm.data.ledger import Ledger, SourceCounts
from tweetlm.data.pipeline.build import SPLIT_FILES, corpus_hash_of

DELETED = "deleted_on_request"


def read_ids(path: str | Path) -> set[str]:
    """Post ids from a text file, one per line (blank lines and ``#`` comments ignored). ``ValueError`` (naming
    the file) when it does not exist, is not UTF-8 text or lists no id."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--ids {p}: no such file; give a text file with one post id per line")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"--ids {p} is not UTF-8 text ({e}); give a text file with one post id per line") from None
    ids = {ln.strip() for ln in text.splitlines()}
    ids = {i for i in ids if i and not i.startswith("#")}
    if not ids:
        raise ValueError(f"--ids {p} lists no post id (one id per line)")
    return ids


def _forget_rows(
    cols: dict[str, list], ids: set[str]
) -> tuple[dict[str, list], Counter, set[str], dict[str, str | None], set[str]]:
    """The rows of one shard without the listed posts; returns ``(columns, removed per source, ids found,
    changed texts, touched ids)``: ``changed`` maps each removed document's text to ``None`` and each rebuilt
    thread's old text to its new one; ``touched`` holds the ids of the documents removed or rebuilt and of the
    retweets collapsed into them (what a search index built from the corpus may hold)."""
    n = len(cols["id"])
    keep = []
    removed: Counter = Counter()
    found: set[str] = set()
    changed: dict[str, str | None] = {}
    touched: set[str] = set()  # documents removed or rebuilt, and the retweets collapsed into them
    for i in range(n):
        members = cols["thread_ids"][i] or []
        if members and ids.intersection(members):
            found.update(ids.intersection(members))
            touched.add(cols["id"][i])
            pairs = [(m, t) for m, t in zip(members, cols["thread_texts"][i]) if m not in ids]
            if not pairs:
                removed[cols["source"][i]] += 1
                changed[cols["text"][i]] = None
                continue
            cols["thread_ids"][i] = [m for m, _ in pairs]
            cols["thread_texts"][i] = [t for _, t in pairs]
            old = cols["text"][i]
            cols["text"][i] = "\n".join(t for _, t in pairs)
            changed[old] = cols["text"][i]
            cols["id"][i] = pairs[0][0]
            if len(pairs) == 1:
                cols["kind"][i], cols["thread_ids"][i], cols["thread_texts"][i] = "post", [], []
        elif cols["id"][i] in ids or (cols["retweeted_id"][i] or None) in ids:
            found.add(cols["id"][i] if cols["id"][i] in ids else cols["retweeted_id"][i])
            removed[cols["source"][i]] += 1
            changed[cols["text"][i]] = None
            touched.update([cols["id"][i], *(cols["retweet_ids"][i] or [])])
            continue
        rts = cols["retweet_ids"][i] or []
        if rts and ids.intersection(rts):
            found.update(ids.intersection(rts))
            cols["retweet_ids"][i] = [r for r in rts if r not in ids]
            cols["retweets"][i] = len(cols["retweet_ids"][i])
        keep.append(i)
    return {c: [v[i] for i in keep] for c, v in cols.items()}, removed, found, changed, touched


def _ledger_from(accounting: dict) -> Ledger:
    ledger = Ledger()
    for name, c in accounting["sources"].items():
        ledger.sources[name] = SourceCounts(c["in"], Counter(c["dropped"]), c["quarantined"])
    return ledger


def _affected_runs(runs_dir: Path, hashes: set[str], ids: set[str]) -> list[dict]:
    runs = []
    if not runs_dir.is_dir():
        return runs
    for stages_file in sorted(runs_dir.glob("*/stages.json")):
        run = stages_file.parent
        try:
            h = json.loads(stages_file.read_text()).get("data", {}).get("corpus_hash")
        except json.JSONDecodeError:
            h = None
        why = "corpus hash" if h in hashes else None
        manifest = run / "data" / "manifest.json"
        if why is None and manifest.exists():
            shards = json.loads(manifest.read_text()).get("shards", {})
            if any(ids.intersection(s.get("ids", ())) for s in shards.values()):
                why = "its data/manifest.json lists the posts"
        if why:
            # the run's own checkpoints and those of a from-scratch comparison trained beside it (scratch/)
            ckpts = sorted(
                str(p)
                for sub in ("checkpoints", "scratch/checkpoints")
                for p in (run / sub).glob("step_*")
                if p.is_dir()
            )
            runs.append({"run": str(run), "corpus_hash": h, "matched_by": why, "checkpoints": ckpts})
    # fine-tuned runs (tweetlm sft) whose base checkpoint lies in an affected run, also fine-tunes of those
    affected = [Path(r["run"]).resolve() for r in runs]
    tunes = []
    for f in sorted(runs_dir.glob("**/config.json")):  # tweetlm sft folders
        try:
            base = (json.loads(f.read_text()).get("sft_base") or {}).get("checkpoint")
        except (json.JSONDecodeError, OSError, AttributeError):
            base = None
        if base:
            tunes.append((f.parent, _resolve_base(Path(base), f.parent)))
    for folder in sorted({Path(p).parent for p in _sft_sets(runs_dir, ids)}):
        if folder.resolve() not in affected:
            affected.append(folder.resolve())
            ckpts = sorted(str(p) for p in (folder / "checkpoints").glob("step_*") if p.is_dir())
            ckpts += [str(folder / m) for m in ("retriever", "reranker") if (folder / m).is_dir()]  # search train
            runs.append({"run": str(folder), "corpus_hash": None, "checkpoints": ckpts,
                         "matched_by": "its fine-tuning set or search training pairs list the posts"})  # fmt: skip
    changed = True
    while changed:
        changed = False
        for folder, base in tunes:
            hit = next((a for a in affected if base.is_relative_to(a)), None)
            if hit is not None and folder.resolve() not in affected:
                affected.append(folder.resolve())
                ckpts = sorted(str(p) for p in (folder / "checkpoints").glob("step_*") if p.is_dir())
                why = f"fine-tuned from {base}"
                runs.append({"run": str(folder), "corpus_hash": None, "matched_by": why, "checkpoints": ckpts})
                changed = True
    return runs


def _resolve_base(base: Path, folder: Path) -> Path:
    """A fine-tune's base checkpoint as an absolute path. Runs made before bases were stored absolute hold it
    relative to the folder ``tweetlm sft`` ran in, unknown here: the first of the current folder and the
    fine-tune's own ancestors under which it exists wins (so ``data forget`` finds it from any folder)."""
    if base.is_absolute():
        return base.resolve()
    for root in (Path.cwd(), *folder.resolve().parents):
        if (root / base).exists():
            return (root / base).resolve()
    return base.resolve()


def _sft_sets(runs_dir: Path, ids: set[str]) -> list[str]:
    """``sft_<split>.jsonl`` (``tweetlm sft``) and ``pairs_<split>.jsonl`` (``tweetlm search train``) files under
    ``runs_dir`` with an example built from one of ``ids``."""
    hits = []
    for f in sorted([*runs_dir.glob("**/sft_*.jsonl"), *runs_dir.glob("**/pairs_*.jsonl")]):
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                try:
                    src = json.loads(line).get("source_ids") or []
                except (json.JSONDecodeError, AttributeError):
                    continue
                if ids.intersection(src):
                    hits.append(str(f))
                    break
    return hits


def text_digest(text: str) -> str:
    """Hex BLAKE2b-128 of ``text`` (UTF-8): how the corpus history remembers a removed text without keeping it."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _guard_files(runs_dir: Path) -> list[str]:
    """Every ``memorization_guard.pkl`` under ``runs_dir`` (guards hold training texts verbatim)."""
    return sorted(str(g) for g in runs_dir.glob("**/memorization_guard.pkl")) if runs_dir.is_dir() else []


def forget(ids: set[str], corpus_dir: str | Path, runs_dir: str | Path = "runs") -> dict:
    """Remove ``ids`` (and retweets of them) from the corpus in ``corpus_dir``; see module docstring.

    Returns ``{"removed": {source: n}, "found_ids", "not_found_ids", "old_hash", "new_hash", "runs": [...],
    "guards": [paths], "changed_texts": {old text: new text or None}, "removed_text_digests": [...] (every
    removal of this corpus so far), "touched_ids": [...], "sft_sets": [...]}``; the caller erases the texts from
    the guards (``ads.guard.scrub_guards``: the data layer does not load models) and ``touched_ids`` from search
    indexes.
    Raises ``ValueError`` when ``corpus_dir`` holds no corpus built by the pipeline.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(corpus_dir)
    manifest_file = out / "manifest.json"
    if not manifest_file.exists() or not all((out / f).exists() for f in SPLIT_FILES):
        raise ValueError(
            f"{out} is not a corpus folder (no manifest.json/train.parquet/val.parquet); pass a folder made by "
            "'tweetlm data build' or a run's data/ folder"
        )
    manifest = json.loads(manifest_file.read_text())
    old_hash = manifest["corpus_hash"]
    removed: Counter = Counter()
    found: set[str] = set()
    changed: dict[str, str | None] = {}
    touched: set[str] = set()
    for name in SPLIT_FILES:
        table = pq.read_table(out / name)
        if "thread_ids" not in table.column_names:
            raise ValueError(f"{out / name} was not written by the ingestion pipeline (no thread_ids column)")
        cols, rem, fnd, chg, tch = _forget_rows({c: table.column(c).to_pylist() for c in table.column_names}, ids)
        changed.update(chg)
        touched |= tch
        if rem or fnd:
            new = pa.Table.from_arrays(
                [pa.array(cols[c], type=table.schema.field(c).type) for c in cols], schema=table.schema
            )
            tmp = out / (name + ".tmp")
            pq.write_table(new, tmp)
            tmp.replace(out / name)
        removed.update(rem)
        found.update(fnd)
    history = manifest.get("history", [])
    hashes = set()
    if found:
        hashes = {old_hash} | {h["corpus_hash"] for h in history}
    for k, entry in enumerate(history):
        if ids.intersection(entry.get("removed_ids", ())):
            hashes |= {h["corpus_hash"] for h in history[: k + 1]}
    new_hash, shards = corpus_hash_of(out)
    if new_hash != old_hash:
        history.append(
            {
                "corpus_hash": old_hash,
                "removed_ids": sorted(found),
                # digests, never the texts: a later forget (a rerun, another --runs-dir) still finds them in guards
                "removed_text_digests": sorted(text_digest(t) for t in changed),
                "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
        manifest.update(shards=shards, corpus_hash=new_hash, history=history)
        manifest_file.write_text(json.dumps(manifest))
        acc_file = out / "accounting.json"
        if acc_file.exists():
            acc = json.loads(acc_file.read_text())
            ledger = _ledger_from(acc)
            for source, n in removed.items():
                ledger.drop(source, DELETED, n)
            kept = Counter()
            for name in SPLIT_FILES:
                kept.update(pq.read_table(out / name, columns=["source"]).column("source").to_pylist())
            ledger.check(dict(kept))
            acc["sources"] = ledger.to_dict()["sources"]
            acc_file.write_text(json.dumps(acc, indent=1, ensure_ascii=False))
            report_file = out / "report.json"
            if report_file.exists():
                report = json.loads(report_file.read_text())
                t = ledger.totals()
                report.update(
                    corpus_hash=new_hash,
                    kept=t.kept,
                    dropped=dict(sorted(t.dropped.items())),
                    equation=ledger.equation_lines(),
                    train_posts=shards["train.parquet"]["num_posts"],
                    val_posts=shards["val.parquet"]["num_posts"],
                )
                report_file.write_text(json.dumps(report, indent=1, ensure_ascii=False))
            report_md = out / "report.md"
            if report_md.exists():
                note = (
                    f"\n## Deletion on request, {history[-1]['at']}\n\n{sum(removed.values())} document(s) removed "
                    f"({len(found)} id(s) found); corpus hash now `{new_hash}`. Current equation:\n\n```\n"
                    + "\n".join(ledger.equation_lines())
                    + "\n```\n"
                )
                report_md.write_text(report_md.read_text() + note)
    if (out / "_work").is_dir():
        shutil.rmtree(out / "_work")
    runs = _affected_runs(Path(runs_dir), hashes, ids)
    return {
        "removed": dict(removed),
        "found_ids": sorted(found),
        "not_found_ids": sorted(ids - found),
        "old_hash": old_hash,
        "new_hash": new_hash,
        "runs": runs,
        "guards": _guard_files(Path(runs_dir)),
        "changed_texts": changed,
        "removed_text_digests": sorted({d for h in history for d in h.get("removed_text_digests", ())}),
        "touched_ids": sorted(touched),
        "sft_sets": _sft_sets(Path(runs_dir), ids) if Path(runs_dir).is_dir() else [],
    }
