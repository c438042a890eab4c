"""Answers to held-out TweetQA questions from the imported base, the continued model and the fine-tuned (SFT) one.

The questions are the ``qa`` examples of the SFT run's validation set (``<sft>/sft_val.jsonl``): their tweets are
in the corpus's validation split, so no tweet of them was in any training set (split by post, not by example).
Each model answers every question, greedy, through the engine's chat (its own chat template), in three settings:

- ``closed``: the question alone (no post given);
- ``gold``: the question over its own tweet (the TweetQA reading-comprehension setting);
- ``retrieval``: the question over the top ``--k`` posts a hybrid search returns from an index of every
  held-out TweetQA tweet plus ``--distractors`` other validation posts (``search.ask.ground_messages``).

Scores: ROUGE-L, BLEU-1 and METEOR (``eval.qa``: best over the reference answers, 0..100), citations stripped;
for ``retrieval`` also recall@k of the question's tweet. The last line is one JSON object.

    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_chat.py --base runs/demo/base \
        --continued runs/demo --sft runs/demo_sft --corpus runs/chatdata --questions 100
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the imported base (checkpoint or run folder)")
    ap.add_argument("--continued", help="the continued-pretraining model")
    ap.add_argument("--sft", required=True, help="the tweetlm sft run folder (its sft_val.jsonl gives the questions)")
    ap.add_argument("--corpus", required=True, help="the clean corpus the SFT set was built from (distractors)")
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--distractors", type=int, default=1000)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--settings", default="closed,gold,retrieval")
    ap.add_argument("--index-dir", default="runs/bench_chat_index")
    ap.add_argument("--out", help="write the JSON result here too")
    args = ap.parse_args(argv)

    from tweetlm.data.corpus import read_corpus_posts
    from tweetlm.data.sft import grounded_prompt, read_examples
    from tweetlm.eval.qa import qa_scores, strip_citations
    from tweetlm.inference.engine import Engine, SamplingParams

    t0 = time.time()
    qa = [e for e in read_examples(Path(args.sft) / "sft_val.jsonl") if e.task == "qa" and e.answers]
    qa = qa[: args.questions]
    if not qa:
        print(f"no held-out qa examples in {args.sft}/sft_val.jsonl", file=sys.stderr)
        return 2
    gold_id = [next(i for i in e.source_ids if e.id.startswith(f"qa:{i}:")) for e in qa]
    questions = [e.messages[0]["content"].rsplit("Question: ", 1)[-1] for e in qa]
    val_posts, _, _ = read_corpus_posts(args.corpus, "val")
    by_id = {p.id: p for p in val_posts}
    settings = args.settings.split(",")

    convs: dict[str, list[list[dict]]] = {}
    recall = None
    if "closed" in settings:
        convs["closed"] = [[{"role": "user", "content": q}] for q in questions]
    if "gold" in settings:
        convs["gold"] = [
            [{"role": "user", "content": grounded_prompt(q, [(g, "", by_id[g].text)])}]
            for q, g in zip(questions, gold_id)
        ]
    if "retrieval" in settings:
        from tweetlm.search.ask import ground_messages
        from tweetlm.search.index import SearchIndex, SearchParams

        qa_tweets = [p for p in val_posts if p.labels.get("tweetqa")]
        others = [p for p in val_posts if not p.labels.get("tweetqa") and p.kind != "thread"]
        random.Random(0).shuffle(others)
        posts = qa_tweets + others[: args.distractors]
        idx = SearchIndex.create(args.index_dir, overwrite=True)
        idx.add(posts)
        convs["retrieval"], hit = [], 0
        for q, g in zip(questions, gold_id):
            msgs, hits = ground_messages(idx, [{"role": "user", "content": q}], SearchParams(k=args.k))
            convs["retrieval"].append(msgs)
            hit += g in {h.id for h in hits}
        recall = hit / len(questions)
        print(
            f"index: {len(posts)} posts ({len(qa_tweets)} TweetQA tweets); recall@{args.k} {recall:.3f}",
            file=sys.stderr,
        )

    models = {"base": args.base, **({"continued": args.continued} if args.continued else {}), "sft": args.sft}
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
    refs = [e.answers for e in qa]
    result: dict = {"questions": len(qa), "k": args.k, "recall_at_k": recall, "scores": {}, "examples": {}}
    for name, path in models.items():
        eng = Engine.from_checkpoint(path)
        result["scores"][name] = {}
        for setting, cs in convs.items():
            t = time.time()
            answers = []
            for i in range(0, len(cs), args.batch):
                answers += [strip_citations(c.text) for c in eng.chat(cs[i : i + args.batch], params)]
            result["scores"][name][setting] = {k: round(v, 2) for k, v in qa_scores(answers, refs).items()}
            result["examples"].setdefault(setting, []).append({name: answers[:3]})
            s = result["scores"][name][setting]
            print(f"{name:9s} {setting:9s} ROUGE-L {s['rouge_l']:5.1f} BLEU-1 {s['bleu1']:5.1f} METEOR "
                  f"{s['meteor']:5.1f}  ({time.time() - t:.0f} s)", file=sys.stderr)  # fmt: skip
    result["references"] = refs[:3]
    result["questions_shown"] = questions[:3]
    result["wall_s"] = round(time.time() - t0, 1)
    line = json.dumps(result, ensure_ascii=False)
    if args.out:
        Path(args.out).write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
