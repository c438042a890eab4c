"""Fetch the public TweetEval corpus with Hugging Face ``datasets`` (layer L1, data), for machines without
``../shared/corpora``. Writes the TweetEval layout (``<task>/train_text.txt``, ``val_text.txt``,
``*_labels.txt``) so the ordinary reader reads it. Needs the ``download`` extra and network access; offline it
raises ``RuntimeError`` with what to do instead.
"""

from __future__ import annotations

from pathlib import Path

TWEETEVAL_TASKS = ("emoji", "emotion", "hate", "irony", "offensive", "sentiment")


def download_tweeteval(dest: str | Path, tasks: tuple[str, ...] = TWEETEVAL_TASKS) -> Path:
    """Download TweetEval (``cardiffnlp/tweet_eval``) train and validation splits into ``dest/tweeteval``."""
    try:
        from datasets import load_dataset
    except ImportError as e:
        raise RuntimeError(
            "no corpus given and ../shared/corpora is absent; downloading TweetEval needs the 'download' extra: "
            "pip install 'tweetlm[download]', or pass --corpus PATH to your own posts"
        ) from e
    root = Path(dest) / "tweeteval"
    for task in tasks:
        out = root / task
        if (out / "val_text.txt").exists():
            continue
        try:
            ds = load_dataset("cardiffnlp/tweet_eval", task)
        except Exception as e:  # network errors come in many types from datasets/huggingface_hub
            raise RuntimeError(
                f"could not download TweetEval task {task!r} ({type(e).__name__}: {e}). Offline? Pass "
                "--corpus PATH to a folder of posts (.txt one per line, .csv with a text column, .jsonl with 'text')"
            ) from e
        out.mkdir(parents=True, exist_ok=True)
        for split, name in (("train", "train"), ("validation", "val")):
            rows = ds[split]
            with open(out / f"{name}_text.txt", "w", encoding="utf-8") as f:
                f.writelines(t.replace("\n", " ") + "\n" for t in rows["text"])
            with open(out / f"{name}_labels.txt", "w", encoding="utf-8") as f:
                f.writelines(f"{label}\n" for label in rows["label"])
    return root
