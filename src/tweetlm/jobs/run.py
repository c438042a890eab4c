"""The main job, ``tweetlm run`` (layer L4): posts -> clean corpus -> tokenizer -> token shards -> pretraining
-> evaluation -> sample posts -> report, all in one run folder.

Each stage is a library call into its own layer; this module only orders them, times them and records what
they produced in ``stages.json``. With ``resume=True`` a stage whose outputs exist is not redone and training
continues from the latest checkpoint, so a crashed run is restarted with the same command plus ``--resume``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tweetlm.common.config import to_dict
from tweetlm.common.runfolder import RunFolder
from tweetlm.jobs.recipes import RunConfig


@dataclass
class RunResult:
    folder: RunFolder
    stages: dict = field(default_factory=dict)
    eval: dict = field(default_factory=dict)
    summary: str = ""


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def stage_data(cfg: RunConfig, corpus: list[str], rf: RunFolder) -> dict:
    """Run the ingestion pipeline (``data.pipeline``: read, normalize, language id, filters, PII scrub, retweet
    collapse, threads, exact and MinHash dedup) into ``rf.data``; returns the stage record.

    ``cfg.data`` is the ``PipelineConfig`` (every recipe's data section). Raises ``ValueError`` when nothing is
    left, or no validation or no training posts (the messages say what to change).
    """
    from tweetlm.data.pipeline.build import build_corpus

    report = build_corpus(corpus, rf.data, cfg.data, quiet=True)
    if report["kept"] == 0:
        reasons: Counter = Counter()
        qfile = rf.data / "quarantine.jsonl"
        for line in qfile.read_text(encoding="utf-8").splitlines() if qfile.exists() else ():
            reasons[json.loads(line)["reason"]] += 1
        why = ", ".join(f"{r} {n}" for r, n in reasons.most_common(3))
        raise ValueError(
            f"no posts left in {corpus} after reading and cleaning: {report['equation'][-1]}"
            + (f"; quarantine reasons: {why} (see {qfile})" if why else "")
        )
    if not report["val_posts"]:
        vf, kept = cfg.data.val_fraction, report["kept"]
        raise ValueError(
            f"the corpus {corpus} gave no validation posts: either every kept post is marked 'train' by its corpus "
            "layout (e.g. a *train_text.txt file): add the corpus's val/dev file too, or give the posts as a plain "
            "file (e.g. posts.txt) so a share of them (data.val_fraction) is held out by id hash; or there are too "
            f"few posts for that share: data.val_fraction={vf} x {kept} kept posts = {vf * kept:.2f} expected in "
            "validation (add posts, or raise it, e.g. --set data.val_fraction=0.1)"
        )
    if not report["train_posts"]:
        raise ValueError(f"the corpus {corpus} gave no training posts, only validation ones; add training posts")
    keys = ("records_in", "kept", "dropped", "quarantined", "train_posts", "val_posts", "equation", "corpus_hash")
    return {**{k: report[k] for k in keys}, "steps": report["steps"], "languages": report["languages"]}


def stage_tokenizer(cfg: RunConfig, rf: RunFolder, base_ckpt: Path | None = None) -> dict:
    """Train byte-level BPE on the training posts, or, for a run from an imported base, take the base's own
    tokenizer as it is (``base_ckpt/tokenizer.json`` and its ``tokenizer_config.json``)."""
    from tweetlm.tokenizer.bpe import PostTokenizer, copy_tokenizer

    if base_ckpt is not None:
        copy_tokenizer(base_ckpt / "tokenizer.json", rf.root)
        tok = PostTokenizer.load(rf.tokenizer)
        return {"vocab_size": tok.vocab_size, "from_base": str(base_ckpt), "document_tokens": tok.specials}
    from tweetlm.data.corpus import read_corpus_texts
    from tweetlm.tokenizer.bpe import train_tokenizer

    texts, _ = read_corpus_texts(rf.data, "train")
    tok = train_tokenizer(texts, cfg.tokenizer, length=len(texts))
    tok.save(rf.tokenizer)
    return {"vocab_size": tok.vocab_size, "trained_on_posts": len(texts)}


def adopt_base(cfg: RunConfig, base_ckpt: Path) -> None:
    """Give ``cfg`` the shape of the imported base at ``base_ckpt`` and start training from its weights (unless
    ``train.init_from`` names another checkpoint)."""
    from tweetlm.model.load import model_config_from_checkpoint

    cfg.model = model_config_from_checkpoint(base_ckpt)
    cfg.train.init_from = cfg.train.init_from or str(base_ckpt)


def stage_import(cfg: RunConfig, rf: RunFolder) -> dict:
    """Import ``cfg.base`` into ``rf.base`` (a checkpoint folder: the model as imported, evaluated beside the
    continued one)."""
    from tweetlm.jobs.import_base import import_base

    return import_base(cfg.base, rf.root / "base", overwrite=True)


def stage_scratch(cfg: RunConfig, rf: RunFolder, doc_ids: list[int], progress: bool) -> dict:
    """The from-scratch comparison: recipe ``cfg.scratch_recipe`` trained on this run's corpus in
    ``rf.root/scratch`` (its own BPE tokenizer and token shards) and scored on the same validation documents as
    the main model (``doc_ids``: indices into the validation split, the same posts whatever the tokenizer)."""
    from tweetlm.jobs.recipes import get_recipe

    sub = get_recipe(cfg.scratch_recipe)
    sub.name, sub.data, sub.eval = f"{cfg.name}/scratch", cfg.data, cfg.eval
    if cfg.scratch_steps > 0:
        sub.train.max_steps = cfg.scratch_steps
        sub.train.warmup_steps = min(sub.train.warmup_steps, max(1, cfg.scratch_steps // 10))
    sf = RunFolder.create(rf.root / "scratch")
    if not sf.data.exists():  # the corpus is shared, not rebuilt
        sf.data.symlink_to(Path("..") / "data")
    tok = stage_tokenizer(sub, sf)
    enc = stage_encode(sub, sf)
    sub.model.vocab_size = tok["vocab_size"]
    sf.config.write_text(json.dumps(to_dict(sub), indent=1))
    from tweetlm.training.checkpoint import latest_checkpoint

    resume = latest_checkpoint(sf.checkpoints) is not None
    tr = stage_train(sub, sf, resume, progress, json.loads((rf.data / "manifest.json").read_text())["corpus_hash"])
    ev = evaluate_checkpoint(tr["checkpoint"], sf, sub.eval, progress, doc_ids)
    sf.eval.write_text(json.dumps(ev, indent=1))
    return {"recipe": cfg.scratch_recipe, "tokenizer": tok, "encode": enc, "train": tr, "eval": ev}


def stage_encode(cfg: RunConfig, rf: RunFolder) -> dict:
    from tweetlm.data.corpus import read_corpus_texts
    from tweetlm.tokenizer.bpe import PostTokenizer
    from tweetlm.tokenizer.encode import encode_split

    tok = PostTokenizer.load(rf.tokenizer)
    out = {}
    for split in ("train", "val"):
        texts, sources = read_corpus_texts(rf.data, split)
        seed = cfg.train.seed if split == "train" else None
        out[split] = encode_split(texts, sources, tok, rf.tokens / split, shuffle_seed=seed)
    out["bytes_per_token"] = out["train"]["bytes"] / max(1, out["train"]["tokens"])
    return out


def stage_train(cfg: RunConfig, rf: RunFolder, resume: bool, progress: bool, corpus_hash: str) -> dict:
    from tweetlm.training.loop import train

    r = train(
        cfg.model,
        cfg.train,
        rf.tokens,
        rf.checkpoints,
        rf.tokenizer,
        to_dict(cfg),
        rf.metrics,
        resume=resume,
        extra_state={"corpus_hash": corpus_hash},
        progress=progress,
    )
    return r.to_dict()


GROUPS = {"tweeteval_val": "tweeteval/"}  # pooled entries of eval.json besides overall and per source


def evaluate_checkpoint(ckpt, rf: RunFolder, ecfg, progress: bool, doc_ids: list[int] | None = None) -> dict:
    """Bits-per-byte of checkpoint ``ckpt`` on ``rf``'s validation shard (the documents ``ecfg`` selects, or
    exactly ``doc_ids``)."""
    from tweetlm.common.token_shards import open_shard
    from tweetlm.eval.bpb import evaluate_bpb
    from tweetlm.model.load import load_model
    from tweetlm.tokenizer.bpe import PostTokenizer

    model = load_model(ckpt)
    tok = PostTokenizer.load(rf.tokenizer)
    shard = open_shard(rf.tokens / "val")
    res = evaluate_bpb(model, shard, ecfg, tok.pad_id, progress=progress, groups=GROUPS, doc_ids=doc_ids)
    res["checkpoint"] = str(ckpt)
    res["params"] = model.num_params()
    return res


def stage_eval(cfg: RunConfig, rf: RunFolder, ckpt: str, progress: bool) -> dict:
    """Evaluate the final checkpoint (and, for a run from a base, the base as imported on the same documents)
    into ``eval.json``."""
    res = evaluate_checkpoint(ckpt, rf, cfg.eval, progress)
    if cfg.base:
        res["base"] = evaluate_checkpoint(rf.root / "base", rf, cfg.eval, progress, res["doc_ids"])
    rf.eval.write_text(json.dumps(res, indent=1))
    return {k: v for k, v in res.items() if k != "doc_ids"}


def stage_samples(cfg: RunConfig, rf: RunFolder, ckpt: str) -> dict:
    """Generate ``cfg.sample.num_samples`` whole posts with the inference engine; sample ``i`` uses seed
    ``cfg.sample.seed + i``."""
    from dataclasses import asdict

    from tweetlm.inference.engine import Engine, SamplingParams

    engine = Engine.from_checkpoint(ckpt)
    s = cfg.sample
    params = [
        SamplingParams(
            max_tokens=s.max_new_tokens,
            temperature=s.temperature,
            top_k=s.top_k,
            top_p=s.top_p,
            seed=s.seed + i,
            tweet_mode=s.tweet_mode,
        )
        for i in range(s.num_samples)
    ]
    outs = engine.generate([""] * s.num_samples, params)
    out = {"settings": asdict(s), "checkpoint": ckpt, "samples": [o.text for o in outs]}
    rf.samples.write_text(json.dumps(out, indent=1, ensure_ascii=False))
    return out


def check_config(cfg: RunConfig) -> None:
    """Reject a bad run config before any stage runs (``ValueError`` naming the field)."""
    import copy

    if not cfg.name or cfg.name in (".", "..") or "/" in cfg.name or "\\" in cfg.name:
        raise ValueError(f"--name {cfg.name!r} must be a plain folder name (no path separators)")
    cfg.train.validate()
    from tweetlm.training.loop import pick_device

    pick_device(cfg.train.device)
    cfg.data.validate()  # val_fraction, languages, executor, tasks, MinHash settings, column mapping
    if cfg.scratch_recipe:
        from tweetlm.jobs.recipes import get_recipe

        get_recipe(cfg.scratch_recipe)
    if cfg.base:
        from tweetlm.model.hf_format import resolve_base

        resolve_base(cfg.base)  # a bad name or path fails now, not after the data stage
        return  # the model section comes from the base (checked when it is imported)
    if cfg.train.seq_len > cfg.model.max_seq_len:
        raise ValueError(f"train.seq_len={cfg.train.seq_len} exceeds model.max_seq_len={cfg.model.max_seq_len}")
    shape = copy.deepcopy(cfg.model)
    shape.vocab_size = cfg.tokenizer.vocab_size
    shape.validate()


# Sections that shape the data, tokenizer or model: a resumed run must keep them (training length may change).
_FROZEN_ON_RESUME = ("data", "tokenizer", "model")


def check_resume_matches(rf: RunFolder, cfg: RunConfig, corpus: list[str], stages: dict) -> None:
    """``ValueError`` when ``--resume`` is asked with another corpus or another data/tokenizer/model config than
    the run folder was made with, or when its built corpus (``data/manifest.json``) no longer has the hash the data
    stage recorded, e.g. after ``tweetlm data forget`` (the old outputs would be silently reused)."""
    old_corpus = stages.get("corpus")
    if old_corpus is not None and old_corpus != [str(c) for c in corpus]:
        raise ValueError(
            f"{rf.root} was made from --corpus {' '.join(old_corpus)}; resume with the same corpus, or use a new --name"
        )
    manifest = rf.data / "manifest.json"
    recorded = stages.get("data", {}).get("corpus_hash")
    if recorded and manifest.exists():
        current = json.loads(manifest.read_text()).get("corpus_hash")
        if current != recorded:
            raise ValueError(
                f"cannot resume {rf.root}: its corpus changed since the run was made (corpus hash "
                f"{str(recorded)[:16]} -> {str(current)[:16]}, e.g. by `tweetlm data forget`), but its tokenizer, "
                "token shards and checkpoints were built on the old corpus. Start a new run with another --name"
            )
    if not rf.config.exists():
        return
    old, new = json.loads(rf.config.read_text()), to_dict(cfg)
    diffs = []
    if old.get("base", "") != cfg.base and "import" in stages:  # a base that failed to import may be corrected
        diffs.append(f"base: {old.get('base', '')!r} -> {cfg.base!r}")
    for section in _FROZEN_ON_RESUME:
        if section == "model" and cfg.base:
            continue  # the model is the base's
        for key, value in new[section].items():
            if section == "model" and key == "vocab_size":
                continue
            if old.get(section, {}).get(key) != value:
                diffs.append(f"{section}.{key}: {old.get(section, {}).get(key)!r} -> {value!r}")
    if diffs:
        raise ValueError(
            f"cannot resume {rf.root} with a different config ({'; '.join(diffs)}); only train.*, eval.* and "
            "sample.* may change on resume. Use a new --name for a new run"
        )


def run(
    cfg: RunConfig,
    corpus: list[str],
    runs_dir: str | Path = "runs",
    resume: bool = False,
    progress: bool = True,
    quiet: bool = False,
) -> RunResult:
    """Run every stage for ``cfg`` on the posts at ``corpus`` into ``runs_dir/cfg.name``.

    Raises ``ValueError`` for a missing or empty corpus (the message says how to point at one) and
    ``FileExistsError`` when the run folder already holds a finished run and ``resume`` is false.
    """
    from tweetlm.jobs.report import write_report

    check_config(cfg)
    rf = RunFolder.create(Path(runs_dir) / cfg.name)
    if not resume and rf.stages.exists():
        raise FileExistsError(
            f"{rf.root} already holds a run; pass --resume to continue it, or --name to start another"
        )
    stages: dict = json.loads(rf.stages.read_text()) if (resume and rf.stages.exists()) else {}
    if stages:
        check_resume_matches(rf, cfg, corpus, stages)
    stages["corpus"] = [str(c) for c in corpus]
    rf.config.write_text(json.dumps(to_dict(cfg), indent=1))
    t_run = time.perf_counter()

    def do(name: str, fn: Callable[[], dict], skip_if: Path | None = None) -> dict:
        if resume and name in stages and (skip_if is None or skip_if.exists()):
            _say(f"[{name}] done in an earlier attempt, skipped", quiet)
            return stages[name]
        _say(f"[{name}] ...", quiet)
        t0 = time.perf_counter()
        out = fn()
        out["wall_s"] = round(time.perf_counter() - t0, 2)
        stages[name] = out
        rf.stages.write_text(json.dumps(stages, indent=1, ensure_ascii=False))
        _say(f"[{name}] {out['wall_s']:.1f}s", quiet)
        return out

    data = do("data", lambda: stage_data(cfg, corpus, rf), rf.data / "manifest.json")
    for line in data["equation"]:
        _say("  " + line, quiet)
    base_ckpt = None
    if cfg.base:
        imp = do("import", lambda: stage_import(cfg, rf), rf.root / "base" / "model.safetensors")
        base_ckpt = Path(imp["checkpoint"])
        adopt_base(cfg, base_ckpt)
        if cfg.train.seq_len > cfg.model.max_seq_len:
            raise ValueError(f"train.seq_len={cfg.train.seq_len} exceeds the base's context {cfg.model.max_seq_len}")
    do("tokenizer", lambda: stage_tokenizer(cfg, rf, base_ckpt), rf.tokenizer)
    do("encode", lambda: stage_encode(cfg, rf), rf.tokens / "val.json")
    cfg.model.vocab_size = stages["tokenizer"]["vocab_size"]
    rf.config.write_text(json.dumps(to_dict(cfg), indent=1))
    for later in ("train", "eval", "scratch", "samples"):  # training resumes from its own checkpoint
        stages.pop(later, None)
    tr = do("train", lambda: stage_train(cfg, rf, resume, progress, data["corpus_hash"]))
    ev = do("eval", lambda: stage_eval(cfg, rf, tr["checkpoint"], progress))
    if cfg.scratch_recipe:
        doc_ids = json.loads(rf.eval.read_text())["doc_ids"]
        do("scratch", lambda: stage_scratch(cfg, rf, doc_ids, progress))
    do("samples", lambda: stage_samples(cfg, rf, tr["checkpoint"]))
    stages["total_wall_s"] = round(time.perf_counter() - t_run, 2)
    rf.stages.write_text(json.dumps(stages, indent=1, ensure_ascii=False))
    summary = write_report(rf, cfg, stages)
    return RunResult(folder=rf, stages=stages, eval=ev, summary=summary)
