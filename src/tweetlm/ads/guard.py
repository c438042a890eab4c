"""The memorization guard (layer L4, ads): is a generated post a near-copy of a training post?

A model trained on posts can reproduce one of them; an ad must not. Each training post is reduced to the set of
its character 5-grams (case-folded, URLs removed, whitespace collapsed) and indexed with MinHash LSH
(``datasketch``; Broder 1997, Indyk and Motwani 1998). A candidate's LSH neighbours (LSH threshold
``lsh_threshold``, below the decision threshold so near-threshold pairs are not missed) are then compared
exactly: the candidate is a near-copy when the Jaccard similarity of the two 5-gram sets reaches ``threshold``
(0.5 by default: one word changed in a 60-character post still scores about 0.75; two posts sharing a hashtag
and a brand name score far below).

The guard keeps the training texts (for the exact check) and is saved with ``pickle``; load only files you
made.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_URL = re.compile(r"https?://\S+|\bwww\.\S+", re.IGNORECASE)


def shingles(text: str, n: int = 5) -> set[str]:
    """Character ``n``-grams of ``text`` after case-folding, URL removal and whitespace collapse (the whole text
    when shorter than ``n``; empty for an empty text)."""
    t = " ".join(_URL.sub(" ", text).casefold().split())
    if len(t) <= n:
        return {t} if t else set()
    return {t[i : i + n] for i in range(len(t) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


@dataclass
class GuardHit:
    """``copy``: the candidate is a near-copy; ``jaccard``: its highest 5-gram Jaccard with a training post
    found by LSH (0 when none); ``index``/``text``: that post (``None`` when none)."""

    copy: bool
    jaccard: float
    index: int | None = None
    text: str | None = None


class MemorizationGuard:
    """MinHash LSH over training posts; see the module docstring.

    Args:
        threshold: Jaccard of character 5-gram sets at or above which a candidate is a near-copy.
        num_perm: MinHash permutations.
        lsh_threshold: the LSH band threshold (candidate retrieval), below ``threshold``.
        seed: MinHash seed.
    """

    def __init__(self, threshold: float = 0.5, num_perm: int = 64, lsh_threshold: float = 0.4, seed: int = 1):
        from datasketch import MinHashLSH

        if not 0 < lsh_threshold <= threshold <= 1:
            raise ValueError(f"need 0 < lsh_threshold <= threshold <= 1, got {lsh_threshold} and {threshold}")
        self.threshold, self.num_perm, self.seed = threshold, num_perm, seed
        self.lsh = MinHashLSH(threshold=lsh_threshold, num_perm=num_perm)
        self.texts: list[str] = []

    def _minhashes(self, sets: list[set[str]]):
        from datasketch import MinHash

        return MinHash.bulk([[s.encode("utf-8", "surrogatepass") for s in x] for x in sets], num_perm=self.num_perm,
                            seed=self.seed)  # fmt: skip

    def add(self, texts: Iterable[str], batch: int = 4096) -> int:
        """Index ``texts`` (empty ones are skipped); returns how many were indexed."""
        from datasketch import LeanMinHash

        added, buf = 0, []

        def flush() -> None:
            for (i, _), m in zip(buf, self._minhashes([s for _, s in buf])):
                self.lsh.insert(i, LeanMinHash(m), check_duplication=False)

        for t in texts:
            s = shingles(t)
            if not s:
                continue
            buf.append((len(self.texts), s))
            self.texts.append(t)
            added += 1
            if len(buf) >= batch:
                flush()
                buf = []
        if buf:
            flush()
        return added

    def __len__(self) -> int:
        return len(self.texts)

    def forget(self, texts: Iterable[str]) -> int:
        """Erase every indexed text equal to one of ``texts`` (a deletion request): its MinHash leaves the LSH
        and its text is blanked, so a saved guard no longer holds it. Returns how many were erased."""
        gone = set(texts)
        n = 0
        for i, t in enumerate(self.texts):
            if t and t in gone:
                self.lsh.remove(i)
                self.texts[i] = ""
                n += 1
        return n

    def check(self, text: str) -> GuardHit:
        """Whether ``text`` is a near-copy of an indexed post, and the closest such post."""
        s = shingles(text)
        if not s:
            return GuardHit(False, 0.0)
        best = GuardHit(False, 0.0)
        for i in self.lsh.query(self._minhashes([s])[0]):
            j = jaccard(s, shingles(self.texts[i]))
            if j > best.jaccard:
                best = GuardHit(j >= self.threshold, j, i, self.texts[i])
        return best

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)
        return path

    @staticmethod
    def load(path: str | Path) -> MemorizationGuard:
        """The guard saved at ``path``; ``FileNotFoundError`` when there is none."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(
                f"no memorization guard at {path} (made by 'tweetlm sft', or 'tweetlm ads guard --corpus ...')"
            )
        with open(path, "rb") as f:
            g = pickle.load(f)
        if not isinstance(g, MemorizationGuard):
            raise ValueError(f"{path} does not hold a memorization guard")
        return g


def build_guard(corpus: str, out: str | Path, progress: bool = True) -> tuple[Path, int]:
    """A memorization guard over the training posts of the clean corpus ``corpus`` (a run folder, its
    ``data/`` or a ``train.parquet``), saved at ``out``."""
    import pyarrow.parquet as pq

    p = Path(corpus)
    for cand in (p, p / "train.parquet", p / "data" / "train.parquet"):
        if cand.is_file():
            p = cand
            break
    else:
        raise FileNotFoundError(f"no train.parquet in {corpus} (pass a run folder or its data/)")
    texts = pq.read_table(p, columns=["text"]).column("text").to_pylist()
    g = MemorizationGuard()
    from tqdm import tqdm

    n = 0
    with tqdm(total=len(texts), desc="guard", unit="post", disable=not progress) as bar:
        for i in range(0, len(texts), 8192):
            n += g.add(texts[i : i + 8192])
            bar.update(len(texts[i : i + 8192]))
    return g.save(out), n


def scrub_guards(
    paths: Iterable[str | Path], changed: dict[str, str | None], digests: Iterable[str] = ()
) -> list[dict]:
    """Erase the texts of deletion requests from the guards at ``paths``: each text in ``changed``, or whose
    ``data.pipeline.forget.text_digest`` is in ``digests`` (earlier requests, kept as digests only), is forgotten
    (``MemorizationGuard.forget``); when ``changed`` maps it to a new text (a thread rebuilt without the removed
    post), the new text is indexed in its place; a changed guard is saved. Returns ``{"path", "erased",
    "error"}`` per guard; a file that cannot be loaded is reported with its error, never skipped silently."""
    from tweetlm.data.pipeline.forget import text_digest

    digests = set(digests)

    def gone(t: str) -> bool:
        return t in changed or (bool(digests) and text_digest(t) in digests)

    out = []
    for path in paths:
        entry = {"path": str(path), "erased": 0, "error": None}
        if changed or digests:
            try:
                guard = MemorizationGuard.load(path)
            except Exception as e:  # noqa: BLE001 (any unreadable file is reported)
                entry["error"] = f"{type(e).__name__}: {e}"
            else:
                held = {t for t in guard.texts if t and gone(t)}
                entry["erased"] = guard.forget(held)
                if entry["erased"]:
                    guard.add(changed[t] for t in held if changed.get(t))
                    guard.save(path)
        out.append(entry)
    return out
