"""Supervised fine-tuning sets from the corpus itself (layer L1, data): conversations a chat model learns from.

Four tasks, each an example of ``{"role", "content"}`` messages that ends with the assistant's turn:

- ``thread``: a reply thread as a dialogue. The posts of a thread document (the pipeline's ``thread_texts``, or a
  reader's ``kind="thread"`` text such as IndoLEM's, one post per line) alternate as user / assistant turns
  starting with the user; a trailing user turn is left out (nothing answers it). A branching tree is read in the
  pipeline's depth-first order, so its siblings follow each other as turns.
- ``qa``: each TweetQA question (the reader's ``tweetqa`` label) as grounded question answering: the user turn is
  ``grounded_prompt`` over the tweet (and, with probability ``distractor_prob``, one other TweetQA tweet of the
  same split, in random order), the answer is the first reference answer followed by the tweet's id in square
  brackets, so the model learns to answer from the posts it is given and to cite them.
- ``brief``: a post's brief (``data.briefs.brief_from_post``) as an instruction (``Brief.instruction``), the post
  as the answer: the instruction following ad copy needs (terms to use, hashtags, a closing phrase to end with
  as a call to action asks).
- ``post``: a plain post for "Write a post ..." (in its language, or about one of its words), so the model keeps
  its tweet style.

In ``brief`` and ``post`` answers the leading run of @-mentions (the addressees of a reply, ``@user`` in the
anonymised corpora) is left out: 23% of the shared corpus's training posts start with one, and a model taught to
open a post with it answered every instruction with ``@user @user @user ...`` (measured on the first SFT run of
the demo model, greedy and at temperature 0.7). Where that run addressed the account of the post's ``brand``
label, the answer opens with the brand's name instead (``answer_text``): an ad must name its product. A post with
fewer than 3 words left gives no example.

Every example keeps the ids of the posts it was built from (``source_ids``): ``data forget`` finds the sets and
the models built from a removed post. Examples are split by source post, never by example: the corpus already
puts each post in ``train`` or ``val``, and an example only combines posts of one split, so no post is on both
sides. This module knows nothing of tokenizers or models (``tokenizer.chat`` renders the examples).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tweetlm.data.briefs import LANGUAGE_NAMES, DocFreq, brief_from_post, is_brand_handle, name_brand_handles, words
from tweetlm.data.post import Post

TASKS = ("thread", "qa", "brief", "post")
SFT_FILE = "sft_{split}.jsonl"

GROUNDED_INSTRUCTION = (
    "Answer the question using only the posts below. After each claim, cite the posts it rests on by their id "
    "in square brackets, like [{example}]."
)


def grounded_prompt(question: str, posts: list[tuple[str, str, str]]) -> str:
    """The question over numbered posts, as ``tweetlm ask``, grounded chat and the ``qa`` examples write it.

    ``posts``: ``(id, meta, text)`` each; ``meta`` (e.g. ``"2016-02-12, @dougducey"``) may be empty. One line per
    post, ``[id] (meta) text`` with whitespace collapsed, then ``Question: ...``.
    """
    lines = [GROUNDED_INSTRUCTION.format(example=posts[0][0] if posts else "123"), "", "Posts:"]
    for pid, meta, text in posts:
        text = " ".join(text.split())
        lines.append(f"[{pid}] ({meta}) {text}" if meta else f"[{pid}] {text}")
    lines += ["", f"Question: {question.strip()}"]
    return "\n".join(lines)


@dataclass
class SFTExample:
    """One fine-tuning conversation. ``id``: unique within the set (``<task>:<post id>[:<n>]``);
    ``source_ids``: the posts it was built from; ``source``: the corpus of the first of them; ``answers``: the
    reference answers of a ``qa`` example (for BLEU-1 / METEOR / ROUGE-L), else empty."""

    id: str
    task: str
    messages: list[dict]
    source_ids: list[str]
    source: str
    split: str
    answers: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


@dataclass
class SFTDataConfig:
    """How many examples of each task (0: none, -1: all there are), per split before the validation cap.

    Attributes:
        max_threads, max_qa, max_briefs, max_posts: caps on the training examples of each task (a seeded sample).
        max_val: cap on validation examples per task.
        max_turns: a thread longer than this keeps its first ``max_turns`` posts.
        distractor_prob: chance that a ``qa`` example lists a second, unrelated TweetQA tweet.
        brand_briefs_first: when ``max_briefs`` caps the briefs, take those that name a brand (a post about a
            product that names it: the closest to ad copy) before the others.
        seed: sampling, distractors, instruction wording.
    """

    max_threads: int = -1
    max_qa: int = -1
    max_briefs: int = 4000
    max_posts: int = 2000
    max_val: int = 500
    max_turns: int = 8
    distractor_prob: float = 0.5
    brand_briefs_first: bool = False
    seed: int = 0

    def validate(self) -> None:
        for name in ("max_threads", "max_qa", "max_briefs", "max_posts", "max_val"):
            if getattr(self, name) < -1:
                raise ValueError(f"sft data {name} must be -1 (all), 0 (none) or a count, got {getattr(self, name)}")
        if self.max_turns < 2:
            raise ValueError(f"sft data max_turns must be >= 2, got {self.max_turns}")
        if not 0 <= self.distractor_prob <= 1:
            raise ValueError(f"sft data distractor_prob must be in [0, 1], got {self.distractor_prob}")


def thread_turns(post: Post, thread_texts: list[str] | None = None) -> list[str]:
    """The posts of a thread document in order (``thread_texts`` when the pipeline joined it, else its lines)."""
    if thread_texts:
        return [t for t in thread_texts if t.strip()]
    return [t for t in post.text.split("\n") if t.strip()] if post.kind == "thread" else []


def _thread_example(post: Post, turns: list[str], ids: list[str], split: str, max_turns: int) -> SFTExample | None:
    turns = turns[:max_turns]
    if len(turns) % 2:
        turns = turns[:-1]
    if len(turns) < 2:
        return None
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    return SFTExample(f"thread:{post.id}", "thread", msgs, ids or [post.id], post.source, split)


_LEADING_MENTIONS = re.compile(r"^(?:\s*[@\uff20]\w+[:,]?)+\s*")


def strip_leading_mentions(text: str) -> str:
    """``text`` without its leading run of @-mentions (``"@user @user thanks!"`` -> ``"thanks!"``)."""
    return _LEADING_MENTIONS.sub("", text, count=1)


def answer_text(post: Post) -> str:
    """What a ``brief`` or ``post`` example teaches the model to write for ``post``: its text without the leading
    run of @-mentions (``strip_leading_mentions``), except that where the run addressed the account of the post's
    ``brand`` label the answer opens with the brand's name, and later mentions of that account are written as the
    name too (``briefs.name_brand_handles``): ``"@bob @SouthwestAir where is my bag"`` -> ``"Southwest where is my
    bag"``. An ad names its product; a post that only addresses the brand's handle would teach it not to."""
    brand = post.labels.get("brand", "")
    m = _LEADING_MENTIONS.match(post.text)
    lead, rest = (m.group(0), post.text[m.end() :]) if m else ("", post.text)
    rest = name_brand_handles(rest, brand)
    if brand and any(is_brand_handle(h, brand) for h in re.findall(r"[@\uff20](\w+)", lead)):
        rest = f"{brand.strip()} {rest}".rstrip()
    return rest


def _post_instruction(post: Post, rng: random.Random, df: DocFreq) -> str:
    lang = LANGUAGE_NAMES.get(post.lang or "", "")
    cand = sorted({w for w in words(post.text) if df.df.get(w, 0) >= 3}, key=lambda w: (-df.idf(w), w))[:3]
    r = rng.random()
    if cand and r < 0.4:
        return f"Write a post about {rng.choice(cand)}."
    if lang and r < 0.8:
        return f"Write a post in {lang}."
    return "Write a post."


def build_examples(
    posts: dict[str, list[Post]], cfg: SFTDataConfig, thread_texts: dict[str, list[str]] | None = None,
    thread_ids: dict[str, list[str]] | None = None,
) -> tuple[dict[str, list[SFTExample]], Counter]:  # fmt: skip
    """Fine-tuning examples of each split from that split's posts.

    Args:
        posts: ``{"train": [...], "val": [...]}`` posts of a clean corpus (``data.corpus.read_corpus_posts``).
        cfg: caps and seed.
        thread_texts, thread_ids: per post id, the members of a thread the pipeline joined (corpus columns).

    Returns:
        ``({split: examples}, counts)``; ``counts`` holds ``"<split>:<task>:candidates"`` (examples made, before
        the caps; a post is a candidate brief and a candidate plain post, and ends up in at most one of them) and
        ``"skipped:<reason>"`` for posts that gave no example (``thread_too_short``, ``under_3_words``).
    """
    cfg.validate()
    thread_texts, thread_ids = thread_texts or {}, thread_ids or {}
    counts: Counter = Counter()
    out: dict[str, list[SFTExample]] = {}
    answer_texts = {p.id: answer_text(p) for plist in posts.values() for p in plist}
    df = DocFreq(answer_texts[p.id] for p in posts.get("train", []))  # the words as the answers have them
    for split, plist in posts.items():
        rng = random.Random(f"{cfg.seed}:{split}")
        by_task: dict[str, list[SFTExample]] = {t: [] for t in TASKS}
        qa_posts = [p for p in plist if p.labels.get("tweetqa")]
        branded: set[str] = set()  # posts whose brief names a brand
        for p in plist:
            turns = thread_turns(p, thread_texts.get(p.id))
            if turns:
                ex = _thread_example(p, turns, thread_ids.get(p.id) or [p.id], split, cfg.max_turns)
                if ex is None:
                    counts["skipped:thread_too_short"] += 1
                else:
                    by_task["thread"].append(ex)
                continue
            if p.labels.get("tweetqa"):
                for n, q in enumerate(json.loads(p.labels["tweetqa"])):
                    given = [p]
                    if len(qa_posts) > 1 and rng.random() < cfg.distractor_prob:
                        other = rng.choice(qa_posts)
                        if other.id != p.id:
                            given.append(other)
                            rng.shuffle(given)
                    user = grounded_prompt(q["question"], [(g.id, "", g.text) for g in given])
                    answer = f"{q['answers'][0].strip()} [{p.id}]"
                    msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
                    ids = [g.id for g in given]
                    by_task["qa"].append(SFTExample(f"qa:{p.id}:{n}", "qa", msgs, ids, p.source, split, q["answers"]))
                continue
            text = answer_texts[p.id]
            if len(text.split()) < 3:
                counts["skipped:under_3_words"] += 1
                continue
            brief = brief_from_post(replace(p, text=text), df, cfg.seed)
            if brief.brand:
                branded.add(p.id)
            msgs = [{"role": "user", "content": brief.instruction()}, {"role": "assistant", "content": text}]
            by_task["brief"].append(SFTExample(f"brief:{p.id}", "brief", msgs, [p.id], p.source, split))
            msgs = [
                {"role": "user", "content": _post_instruction(p, rng, df)},
                {"role": "assistant", "content": text},
            ]
            by_task["post"].append(SFTExample(f"post:{p.id}", "post", msgs, [p.id], p.source, split))
        caps = {"thread": cfg.max_threads, "qa": cfg.max_qa, "brief": cfg.max_briefs, "post": cfg.max_posts}
        chosen: list[SFTExample] = []
        taken: set[str] = set()  # a post is a brief or a plain post, not both
        for task in TASKS:
            exs = by_task[task]
            counts[f"{split}:{task}:candidates"] += len(exs)
            cap = (
                caps[task] if split == "train" else (min(caps[task], cfg.max_val) if caps[task] != -1 else cfg.max_val)
            )
            if task in ("brief", "post"):
                exs = [e for e in exs if e.source_ids[0] not in taken]
            rng.shuffle(exs)
            if task == "brief" and cfg.brand_briefs_first:
                exs.sort(key=lambda e: e.source_ids[0] not in branded)  # stable: each group stays shuffled
            if cap != -1:
                exs = exs[:cap]
            taken.update(e.source_ids[0] for e in exs if task == "brief")
            chosen += exs
        rng.shuffle(chosen)
        out[split] = chosen
    return out, counts


def write_examples(out_dir: str | Path, examples: dict[str, list[SFTExample]]) -> dict[str, Path]:
    """``sft_<split>.jsonl`` per split in ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, exs in examples.items():
        path = out_dir / SFT_FILE.format(split=split)
        with open(path, "w", encoding="utf-8") as f:
            for e in exs:
                f.write(e.to_json() + "\n")
        paths[split] = path
    return paths


def read_examples(path: str | Path) -> list[SFTExample]:
    """Examples of one ``sft_<split>.jsonl``. ``ValueError`` naming the line of a malformed record."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(SFTExample(**json.loads(line)))
            except (json.JSONDecodeError, TypeError) as e:
                raise ValueError(f"{path}:{n}: not a fine-tuning example ({e})") from None
    return out
