"""The ``tweetlm sft`` job (layer L4): supervised fine-tuning of a checkpoint into a chat model, from the corpus.

1. **data**: the fine-tuning set is built from a clean corpus (default: the base run's ``data/``) by
   ``data.sft.build_examples`` (threads, TweetQA questions, briefs, plain posts) and written to
   ``<out>/sft_train.jsonl`` / ``sft_val.jsonl`` with the post ids of every example (deletion requests:
   ``data forget`` lists this folder when one of them is removed). Train and validation come from the corpus's
   own split by post, so no post is on both sides.
2. **encode**: every conversation is rendered with the checkpoint's chat template (``tokenizer.chat``: the base's
   own, or tweetlm's for a model without one, which the fine-tuned checkpoint then carries) into token shards
   with a loss mask that is 1 on assistant tokens only. A conversation longer than a row is left out and counted.
3. **train**: ``training.loop.train``, the pretraining loop and checkpoint format, from the base weights
   (``train.init_from``), rows packed with whole conversations (padding instead of cropping).
4. **report**: held-out loss on the validation conversations (assistant tokens), before (the base) and after;
   and on held-out TweetQA questions answered from their tweet (greedy, citations stripped), BLEU-1, METEOR and
   ROUGE-L (``eval.qa``), for the base and the fine-tuned model. ``<out>/sft.json`` and ``report.md``.

Resumable: ``--resume`` continues training from ``<out>/checkpoints/latest``; the data and shards are reused.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tweetlm.common.runfolder import RunFolder
from tweetlm.data.sft import SFTDataConfig


@dataclass
class SFTConfig:
    """Attributes:
    data: which examples (``data.sft.SFTDataConfig``).
    max_steps, batch_size, seq_len (0: the model's context, at most 512), lr (peak; warmup then cosine to
        ``lr * min_lr_ratio``), warmup_steps, grad_accum, precision (``auto``/``bf16``/``fp32``; bf16 autocast
        trained the 135M base 1.9x faster on CPU, benchmarks/results/train_smollm2_cpu2_202612.md).
    qa_eval: held-out TweetQA questions answered for the report (0: skip); qa_max_tokens: answer length cap.
    seed: data order and sampling.
    """

    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    max_steps: int = 200
    batch_size: int = 8
    seq_len: int = 0
    lr: float = 1e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    grad_accum: int = 1
    precision: str = "auto"
    qa_eval: int = 100
    ckpt_every: int = 50  # a checkpoint every N steps, so an interrupted run resumes (--resume); the last is kept
    qa_max_tokens: int = 24
    log_every: int = 5
    seed: int = 0

    def validate(self) -> None:
        self.data.validate()
        for name in ("max_steps", "batch_size", "grad_accum", "log_every", "qa_max_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"sft {name} must be > 0, got {getattr(self, name)}")
        if self.seq_len < 0 or self.qa_eval < 0:
            raise ValueError("sft seq_len and qa_eval must be >= 0")
        if self.lr <= 0:
            raise ValueError(f"sft lr must be > 0, got {self.lr}")


def _encode(examples, chat, stem: Path, max_len: int) -> dict:
    from tweetlm.common.token_shards import ShardWriter

    w = ShardWriter(stem, chat.tok.vocab_size, with_loss_mask=True)
    kept = too_long = 0
    tokens = targets = 0
    for ex in examples:
        ids, mask = chat.encode_chat(ex.messages)
        if len(ids) > max_len:
            too_long += 1
            continue
        w.add(ids, ex.task, sum(len(m["content"].encode()) for m in ex.messages if m["role"] == "assistant"), mask)
        kept += 1
        tokens += len(ids)
        targets += sum(mask)
    w.close()
    return {"docs": kept, "too_long": too_long, "tokens": tokens, "target_tokens": targets}


def _held_out_loss(ckpt: Path, stem: Path, precision: str, progress: bool) -> float:
    import numpy as np

    from tweetlm.common.token_shards import open_shard
    from tweetlm.eval.bpb import EvalConfig, score_docs
    from tweetlm.model.load import load_model

    shard = open_shard(stem)
    model = load_model(ckpt)
    nats, ntok = score_docs(model, shard, np.arange(shard.num_docs), EvalConfig(batch_size=16, precision=precision),
                            0, progress)  # fmt: skip
    return float(nats.sum() / max(1, ntok.sum()))


def answer_questions(engine, examples, max_tokens: int, batch: int = 8) -> list[str]:
    """Greedy answers of the chat ``engine`` to the first user turn of each ``qa`` example, citations stripped."""
    from tweetlm.eval.qa import strip_citations
    from tweetlm.inference.engine import SamplingParams

    out = []
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    for i in range(0, len(examples), batch):
        convs = [[ex.messages[0]] for ex in examples[i : i + batch]]
        out += [strip_citations(c.text) for c in engine.chat(convs, params)]
    return out


def run_sft(
    base: str | Path, out: str | Path, cfg: SFTConfig | None = None, corpus: str | Path | None = None,
    resume: bool = False, progress: bool = True,
) -> dict:  # fmt: skip
    """Fine-tune checkpoint ``base`` (a checkpoint or run folder) into ``out``; returns the summary (also in
    ``out/sft.json``). ``FileNotFoundError`` for a missing base or corpus; ``FileExistsError`` when ``out`` holds
    checkpoints and ``resume`` is off; ``ValueError`` for a bad config or a corpus that gives no example. ``out``
    is removed again when this call created it and then failed."""
    import shutil

    created = not Path(out).exists()
    try:
        return _run_sft(base, Path(out), cfg, corpus, resume, progress)
    except BaseException:
        if created and Path(out).is_dir():
            shutil.rmtree(out, ignore_errors=True)
        raise


def _run_sft(base, out: Path, cfg: SFTConfig | None, corpus, resume: bool, progress: bool) -> dict:
    from tweetlm.common.config import to_dict
    from tweetlm.data.corpus import read_corpus_posts
    from tweetlm.data.sft import build_examples, read_examples, write_examples
    from tweetlm.inference.engine import Engine
    from tweetlm.model.load import model_config_from_checkpoint, resolve_checkpoint
    from tweetlm.tokenizer.bpe import PostTokenizer
    from tweetlm.tokenizer.chat import TWEETLM_CHAT_TEMPLATE, ChatFormat
    from tweetlm.training.config import TrainConfig
    from tweetlm.training.loop import train

    cfg = cfg or SFTConfig()
    cfg.validate()
    t0 = time.time()
    ckpt = resolve_checkpoint(base).resolve()
    model_cfg = model_config_from_checkpoint(ckpt)
    seq_len = cfg.seq_len or min(512, model_cfg.max_seq_len)
    if seq_len > model_cfg.max_seq_len:
        raise ValueError(f"sft seq_len={seq_len} exceeds the model's context ({model_cfg.max_seq_len})")
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; give a new folder")
    if out == ckpt or ckpt.is_relative_to(out) or out.is_relative_to(ckpt):
        raise ValueError(f"--out {out} overlaps the base checkpoint {ckpt}; give a new folder")
    previous = out / "sft_data.json"
    if out.is_dir() and any(out.iterdir()) and not previous.exists():
        raise FileExistsError(f"--out {out} already holds other files; give a new or empty folder")
    if previous.exists() and not resume:
        raise FileExistsError(f"--out {out} already holds a fine-tuning run; add --resume or choose another --out")
    if resume and (out / "config.json").exists():
        old = json.loads((out / "config.json").read_text()).get("train", {})
        for name, now in (("seq_len", seq_len), ("batch_size", cfg.batch_size), ("max_steps", cfg.max_steps)):
            if name in old and old[name] != now:
                flag = "--" + name.replace("_", "-").replace("max-steps", "steps")
                raise ValueError(f"--resume with {flag} {now}, but the run was started with {old[name]}: "
                                 "resume with the same settings")  # fmt: skip
    rf = RunFolder.create(out)
    tok = PostTokenizer.load(ckpt / "tokenizer.json")
    if not tok.chat_template:  # a model of tweetlm's own tokenizer: the fine-tuned one carries tweetlm's template
        tok.chat_template = TWEETLM_CHAT_TEMPLATE
    tok.save(rf.tokenizer)
    chat = ChatFormat(tok)

    stats: dict = {}
    if not (rf.root / "sft_train.jsonl").exists() or not (rf.tokens / "train.json").exists():
        data_dir = Path(corpus).resolve() if corpus else ckpt.parents[1] / "data"
        if not corpus and not (data_dir / "train.parquet").exists():
            raise FileNotFoundError(
                f"the base {base} is not inside a run folder with its corpus ({data_dir} has no train.parquet): "
                "pass --corpus (a folder written by tweetlm data build)"
            )
        posts, tids, ttexts = {}, {}, {}
        for split in ("train", "val"):
            posts[split], a, b = read_corpus_posts(data_dir, split)
            tids.update(a)
            ttexts.update(b)
        examples, counts = build_examples(posts, cfg.data, ttexts, tids)
        if not examples.get("train"):
            raise ValueError(f"{data_dir}: no fine-tuning example could be built (no threads, TweetQA or posts)")
        write_examples(rf.root, examples)
        for split in ("train", "val"):
            stats[split] = _encode(examples[split], chat, rf.tokens / split, seq_len + 1)
        if not stats["train"]["docs"]:
            raise ValueError(f"no training conversation fits a row of --seq-len {seq_len} tokens; raise --seq-len")
        stats["built"] = dict(counts)
        stats["corpus"] = str(data_dir)
        (rf.root / "sft_data.json").write_text(json.dumps(stats, indent=1))
    else:
        stats = json.loads((rf.root / "sft_data.json").read_text())
    val_examples = read_examples(rf.root / "sft_val.jsonl")

    tcfg = TrainConfig(
        batch_size=cfg.batch_size, seq_len=seq_len, max_steps=cfg.max_steps, lr=cfg.lr, min_lr_ratio=cfg.min_lr_ratio,
        warmup_steps=min(cfg.warmup_steps, max(1, cfg.max_steps // 10)), grad_accum=cfg.grad_accum, seed=cfg.seed,
        precision=cfg.precision, init_from=str(ckpt), log_every=cfg.log_every, tensorboard=False,
        ckpt_every=cfg.ckpt_every, keep_checkpoints=1,
    )  # fmt: skip
    base_cfg = json.loads((ckpt / "config.json").read_text())
    run_config = {**base_cfg, "model": asdict(model_cfg), "train": to_dict(tcfg), "sft": to_dict(cfg),
                  "sft_base": {"checkpoint": str(ckpt.resolve()), "base": base_cfg.get("base")}}  # fmt: skip
    rf.config.write_text(json.dumps(run_config, indent=1))
    tr = train(model_cfg, tcfg, rf.tokens, rf.checkpoints, rf.tokenizer, run_config, rf.metrics, resume=resume,
               progress=progress)  # fmt: skip
    final = tr.checkpoint

    summary: dict = {
        "base_checkpoint": str(ckpt),
        "checkpoint": str(final),
        "corpus": stats["corpus"],
        "train": {k: v for k, v in tr.to_dict().items() if k != "checkpoint"},
        "resumed_from_step": tr.resumed_from,
        "data": {s: stats[s] for s in ("train", "val")},
    }
    if stats["val"]["docs"]:
        summary["held_out_loss"] = {
            "base": _held_out_loss(ckpt, rf.tokens / "val", cfg.precision, progress),
            "sft": _held_out_loss(final, rf.tokens / "val", cfg.precision, progress),
            "conversations": stats["val"]["docs"],
            "target_tokens": stats["val"]["target_tokens"],
        }
    room = model_cfg.max_seq_len - cfg.qa_max_tokens  # questions whose prompt leaves room for the answer
    qa = [e for e in val_examples if e.task == "qa" and e.answers and len(chat.encode_prompt(e.messages[:1])) <= room]
    qa = qa[: cfg.qa_eval]
    if qa:
        from tweetlm.eval.qa import qa_scores

        refs = [e.answers for e in qa]
        summary["tweetqa"] = {"questions": len(qa)}
        for name, path in (("base", ckpt), ("sft", final)):
            engine = Engine.from_checkpoint(path)  # a base without a template is asked in tweetlm's own
            answers = answer_questions(engine, qa, cfg.qa_max_tokens)
            summary["tweetqa"][name] = qa_scores(answers, refs)
            summary["tweetqa"][f"{name}_examples"] = [
                {"question": e.messages[0]["content"].rsplit("Question: ", 1)[-1], "answer": a, "references": e.answers}
                for e, a in list(zip(qa, answers))[:5]
            ]
    summary["wall_s"] = time.time() - t0
    (rf.root / "sft.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    (rf.root / "report.md").write_text(report_text(summary))
    return summary


def report_text(s: dict) -> str:
    """``report.md`` of a fine-tuning run: data, held-out loss, TweetQA metrics, example answers."""
    lines = ["# Supervised fine-tuning", "", f"- base: `{s['base_checkpoint']}`", f"- checkpoint: `{s['checkpoint']}`"]
    tr = s["train"]
    lines.append(f"- {tr['steps']} steps, {tr['tokens']:,} tokens, {tr['tokens_per_s']:.0f} tokens/s, "
                 f"{tr['train_wall_s']:.0f} s")  # fmt: skip
    for split in ("train", "val"):
        d = s["data"][split]
        lines.append(f"- {split}: {d['docs']:,} conversations ({d['target_tokens']:,} of {d['tokens']:,} tokens are "
                     f"assistant targets), {d['too_long']:,} left out as longer than a row")  # fmt: skip
    if "held_out_loss" in s:
        h = s["held_out_loss"]
        lines += ["", "## Held-out loss (assistant tokens, nats per token)", "", "| model | loss |", "|---|---|",
                  f"| base | {h['base']:.4f} |", f"| fine-tuned | {h['sft']:.4f} |"]  # fmt: skip
    if "tweetqa" in s:
        q = s["tweetqa"]
        lines += ["", f"## TweetQA, {q['questions']} held-out questions (answer from the tweet, greedy)", "",
                  "| model | BLEU-1 | METEOR | ROUGE-L |", "|---|---|---|---|"]  # fmt: skip
        for name in ("base", "sft"):
            m = q[name]
            lines.append(f"| {name} | {m['bleu1']:.1f} | {m['meteor']:.1f} | {m['rouge_l']:.1f} |")
        lines += ["", "| question | base | fine-tuned | reference |", "|---|---|---|---|"]
        for b, f in zip(q["base_examples"], q["sft_examples"]):
            cell = lambda t: t.replace("|", "/").replace("\n", " ")[:80]  # noqa: E731
            lines.append(f"| {cell(b['question'])} | {cell(b['answer'])} | {cell(f['answer'])} | "
                         f"{cell(' / '.join(b['references']))} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def summary_text(s: dict) -> str:
    """A few lines for the terminal."""
    tr = s["train"]
    resumed = f" (resumed at step {s['resumed_from_step']})" if s.get("resumed_from_step") is not None else ""
    out = [f"fine-tuned {tr['steps']} steps{resumed} on {s['data']['train']['docs']:,} conversations: training "
           f"{tr['train_wall_s']:.0f} s, all {s['wall_s']:.0f} s -> {s['checkpoint']}"]  # fmt: skip
    if "held_out_loss" in s:
        h = s["held_out_loss"]
        out.append(f"held-out loss ({h['conversations']:,} conversations): base {h['base']:.4f} -> {h['sft']:.4f}")
    if "tweetqa" in s:
        q = s["tweetqa"]
        out.append(f"TweetQA ROUGE-L ({q['questions']} held-out questions): base {q['base']['rouge_l']:.1f} -> "
                   f"{q['sft']['rouge_l']:.1f}")  # fmt: skip
    out.append("chat with it: tweetlm chat --checkpoint " + str(Path(s["checkpoint"]).parents[1]))
    return "\n".join(out)
