"""Brand safety (layer L4, ads): is a post safe to show an ad beside, or to publish as an ad?

Trained on the labelled posts of the shared corpora, one logistic-regression head per label definition (they
differ, so one pooled label would blur them):

| head | corpora | unsafe when | language |
|---|---|---|---|
| ``offensive`` | TweetEval offensive (OffensEval 2019) | ``offensive`` | en |
| | + Davidson et al. 2017 | ``hate_speech`` or ``offensive_language`` | en |
| ``hate`` | TweetEval hate (HatEval 2019) | ``hate`` | en |
| ``id_abusive`` | Ibrohim and Budi 2019 | ``HS`` or ``Abusive`` | id |

Davidson's posts were sampled by a hate-speech lexicon (83% are labelled hate or offensive, and its "neither"
posts share the lexicon's topics), so a head of its own learns the topic and flags ordinary posts; it joins the
offensive head instead, whose OffensEval definition (profanity included) matches its two unsafe classes and
whose TweetEval posts supply ordinary ones.

Features (``features``): ``tfidf`` (word 1-2-grams and character 2-5-grams, sublinear TF, scikit-learn),
``embed`` (sentence embeddings, all-MiniLM-L6-v2 by default, given as an ``embed`` function so this module does
not depend on ``search``), or ``both`` (the two side by side). A post is unsafe when any head that covers its
language scores at or above that head's threshold (a post of another or unknown language is scored by every
head). Each threshold is the lowest one reaching ``target_precision`` on a calibration split held out of that
head's training data (15% by a hash of the text), so the stated precision is measured, not assumed; the
TweetEval validation files and a 20% hash split of Davidson and Ibrohim are never used for fitting or
thresholds (``bench_safety.py`` reports on them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

EmbedFn = Callable[[list[str]], np.ndarray]
"""Texts -> ``(N, dim)`` unit vectors (e.g. ``search.embed.Embedder.encode``)."""

HEADS = {
    "offensive": {"sources": ["tweeteval/offensive", "davidson_hate_offensive"], "langs": ["en"]},
    "hate": {"sources": ["tweeteval/hate"], "langs": ["en"]},
    "id_abusive": {"sources": ["id_hatespeech_ibrohim2019"], "langs": ["id"]},
}
FEATURES = ("tfidf", "embed", "both")


@dataclass
class SafetyExample:
    """One labelled post of ``source`` (a corpus folder): ``label`` 1 = unsafe by ``head``'s definition;
    ``split`` ``train`` (fit + calibration) or ``val`` (held out)."""

    text: str
    head: str
    label: int
    lang: str
    split: str
    source: str = ""


def _unsafe_label(source: str, labels: dict) -> int | None:
    if source == "tweeteval/offensive":
        v = labels.get("offensive")
        return None if v is None else int(v == "offensive")
    if source == "tweeteval/hate":
        v = labels.get("hate")
        return None if v is None else int(v == "hate")
    if source == "davidson_hate_offensive":
        v = labels.get("class")
        return None if v is None else int(v in ("hate_speech", "offensive_language"))
    hs, ab = labels.get("HS"), labels.get("Abusive")
    return None if hs is None and ab is None else int(hs == "1" or ab == "1")


def _hash_frac(text: str, salt: str) -> float:
    h = hashlib.blake2b(f"{salt}:{text}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def load_examples(
    corpora: str | Path, heads: Sequence[str] = tuple(HEADS), holdout: float = 0.2
) -> list[SafetyExample]:
    """Labelled posts of ``heads`` from the shared corpora folder ``corpora``, read and cleaned by the pipeline's
    per-task steps (``data.pipeline.inprocess.clean_posts``: normalized, filtered, PII scrubbed, as a corpus
    build does), so the classifier sees texts as the model's corpus holds them. A corpus that ships a validation
    split (TweetEval) keeps it; the others put ``holdout`` of their posts in ``val`` by a hash of the text, so
    copies of one text (Davidson repeats spam) stay on one side. Raises ``ValueError`` for an unknown head or a
    missing corpus folder."""
    from tweetlm.data.pipeline.config import PipelineConfig
    from tweetlm.data.pipeline.inprocess import clean_posts

    root = Path(corpora)
    out: list[SafetyExample] = []
    # every corpus here names its language: no detection. The spam filters are off: ads are placed next to spam
    # too. val_fraction 0: a post is "val" only where its corpus says so.
    off = {"max_hashtag_ratio": 1.0, "max_mention_ratio": 1.0, "max_url_ratio": 1.0}
    cfg = PipelineConfig(val_fraction=0.0, lang_detect="missing", **off)
    for head in heads:
        if head not in HEADS:
            raise ValueError(f"unknown safety head {head!r}; heads: {', '.join(HEADS)}")
        for source in HEADS[head]["sources"]:
            folder = root / source
            if not folder.exists():
                raise ValueError(f"{folder} not found: pass the shared corpora folder (../shared/corpora)")
            paths = [folder / "re_dataset.csv"] if head == "id_abusive" else [folder]
            posts, _ = clean_posts(paths, cfg)
            own_split = any(p.split == "val" for p in posts)
            for p in posts:
                y = _unsafe_label(source, p.labels)
                if y is None:
                    continue
                split = p.split if own_split else ("val" if _hash_frac(p.text, source) < holdout else "train")
                out.append(SafetyExample(p.text, head, y, p.lang or HEADS[head]["langs"][0], split, source))
    return out


@dataclass
class SafetyResult:
    """The verdict on one text: ``unsafe``; ``scores`` the probability of each head that covered it;
    ``flagged_by`` the heads at or above their threshold; ``score`` the largest ``probability / threshold``
    (>= 1 means unsafe)."""

    unsafe: bool
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    flagged_by: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class SafetyClassifier:
    """Brand-safety heads over TF-IDF and/or sentence-embedding features; see the module docstring.

    Args:
        features: ``tfidf``, ``embed`` or ``both``.
        embed: the embedding function (needed for ``embed`` and ``both``).
        C: inverse L2 strength of every logistic regression.
        target_precision: the precision each head's threshold is chosen for on its calibration split.
        embed_weight: scale of the embedding block next to TF-IDF (``both``).
    """

    def __init__(
        self,
        features: str = "both",
        embed: EmbedFn | None = None,
        C: float = 4.0,
        target_precision: float = 0.9,
        embed_weight: float = 1.0,
    ) -> None:
        if features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
        if features != "tfidf" and embed is None:
            raise ValueError(f"features={features!r} needs an embed function")
        if not 0 < target_precision < 1:
            raise ValueError(f"target_precision must be in (0, 1), got {target_precision}")
        self.features, self.embed, self.C = features, embed, C
        self.target_precision, self.embed_weight = target_precision, embed_weight
        self.vectorizers: list | None = None
        self.heads: dict[str, dict] = {}
        self.calibration: dict[str, dict] = {}
        self.meta: dict = {}

    # --- features ------------------------------------------------------------------------------------------

    def _fit_vectorizers(self, texts: list[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizers = [
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=100_000, sublinear_tf=True, lowercase=True),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, max_features=150_000, sublinear_tf=True),
        ]
        for v in self.vectorizers:
            v.fit(texts)

    def transform(self, texts: list[str]):
        """The feature matrix of ``texts``: ``(N, F)`` scipy CSR (TF-IDF, or both) or a dense array (embed)."""
        import scipy.sparse as sp

        blocks = []
        if self.features != "embed":
            blocks += [v.transform(texts) for v in self.vectorizers]
        if self.features != "tfidf":
            e = np.asarray(self.embed(list(texts)), dtype=np.float32) * self.embed_weight
            if self.features == "embed":
                return e
            blocks.append(sp.csr_matrix(e))
        return sp.hstack(blocks, format="csr")

    # --- training ------------------------------------------------------------------------------------------

    def fit(self, examples: Sequence[SafetyExample], calibration: float = 0.15) -> dict:
        """Fit every head with training examples (``split == "train"``); ``calibration`` of each head's examples
        (by a hash of the text) choose its threshold instead. Returns the per-head calibration report (size,
        threshold, precision and recall reached there). Raises ``ValueError`` when a head has no examples of
        one class."""
        from sklearn.linear_model import LogisticRegression

        train = [e for e in examples if e.split == "train"]
        by_head: dict[str, list[SafetyExample]] = {}
        for e in train:
            by_head.setdefault(e.head, []).append(e)
        if not by_head:
            raise ValueError("no training examples (split == 'train')")
        if self.features != "embed":
            self._fit_vectorizers([e.text for e in train])
        for head, exs in by_head.items():
            cal = [e for e in exs if _hash_frac(e.text, "cal:" + head) < calibration]
            fit = [e for e in exs if _hash_frac(e.text, "cal:" + head) >= calibration]
            y_fit = np.array([e.label for e in fit])
            y_cal = np.array([e.label for e in cal])
            if len(set(y_fit)) < 2 or len(set(y_cal)) < 2:
                raise ValueError(f"safety head {head!r} needs safe and unsafe posts in both fit and calibration parts")
            clf = LogisticRegression(C=self.C, max_iter=3000, class_weight="balanced", solver="liblinear")
            clf.fit(self.transform([e.text for e in fit]), y_fit)
            p_cal = clf.predict_proba(self.transform([e.text for e in cal]))[:, 1]
            thr, prec, rec = threshold_for_precision(y_cal, p_cal, self.target_precision)
            self.heads[head] = {"model": clf, "threshold": thr, "langs": HEADS[head]["langs"]}
            self.calibration[head] = {
                "fit": len(fit), "calibration": len(cal), "threshold": thr, "precision": prec, "recall": rec,
            }  # fmt: skip
        return self.calibration

    # --- use -----------------------------------------------------------------------------------------------

    def predict_proba(self, texts: list[str], head: str) -> np.ndarray:
        """``(N,)`` probability that each text is unsafe by ``head``'s definition."""
        if head not in self.heads:
            raise ValueError(f"no safety head {head!r}; heads: {', '.join(self.heads)}")
        return self.heads[head]["model"].predict_proba(self.transform(list(texts)))[:, 1]

    def classify(self, texts: Sequence[str], langs: Sequence[str | None] | None = None) -> list[SafetyResult]:
        """A ``SafetyResult`` per text. ``langs``: each text's language code (``None``: unknown, every head)."""
        texts = list(texts)
        if not texts:
            return []
        if not self.heads:
            raise ValueError("the safety classifier is not trained (fit or load it first)")
        langs = list(langs) if langs is not None else [None] * len(texts)
        if len(langs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(langs)} langs")
        X = self.transform(texts)
        covered = {lang for h in self.heads.values() for lang in h["langs"]}
        probs = {name: h["model"].predict_proba(X)[:, 1] for name, h in self.heads.items()}
        out = []
        for i, lang in enumerate(langs):
            use = [n for n, h in self.heads.items() if lang not in covered or lang in h["langs"]]
            scores = {n: float(probs[n][i]) for n in use}
            ratio = {n: scores[n] / self.heads[n]["threshold"] for n in use}
            flagged = [n for n in use if ratio[n] >= 1.0]
            out.append(SafetyResult(bool(flagged), max(ratio.values()), scores, flagged))
        return out

    def is_safe(self, text: str, lang: str | None = None) -> bool:
        return not self.classify([text], [lang])[0].unsafe

    # --- files ---------------------------------------------------------------------------------------------

    def save(self, out: str | Path, extra: dict | None = None) -> Path:
        """Write ``out/safety.joblib`` (vectorizers and heads, scikit-learn objects) and ``out/safety.json``
        (settings, thresholds, calibration report, ``extra``: e.g. the embedding model). Returns ``out``."""
        import joblib

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        joblib.dump({"vectorizers": self.vectorizers, "heads": self.heads}, out / "safety.joblib")
        self.meta = {
            "features": self.features,
            "C": self.C,
            "target_precision": self.target_precision,
            "embed_weight": self.embed_weight,
            "thresholds": {n: h["threshold"] for n, h in self.heads.items()},
            "calibration": self.calibration,
            **(extra or {}),
        }
        (out / "safety.json").write_text(json.dumps(self.meta, indent=1))
        return out

    @classmethod
    def load(cls, path: str | Path, embed: EmbedFn | None = None) -> SafetyClassifier:
        """The classifier saved at ``path`` (a folder from ``save``). Raises ``FileNotFoundError`` when it is not
        one, ``ValueError`` when it needs an ``embed`` function and none is given. Only load folders you
        trust: ``safety.joblib`` is a pickle."""
        import joblib

        path = Path(path)
        if not (path / "safety.json").exists() or not (path / "safety.joblib").exists():
            raise FileNotFoundError(f"no safety classifier at {path} (train one with 'tweetlm safety train')")
        meta = json.loads((path / "safety.json").read_text())
        clf = cls(meta["features"], embed, meta["C"], meta["target_precision"], meta.get("embed_weight", 1.0))
        state = joblib.load(path / "safety.joblib")
        clf.vectorizers, clf.heads = state["vectorizers"], state["heads"]
        clf.calibration, clf.meta = meta.get("calibration", {}), meta
        return clf


def threshold_for_precision(y: np.ndarray, p: np.ndarray, target: float) -> tuple[float, float, float]:
    """``(threshold, precision, recall)``: the lowest threshold whose precision on ``(y, p)`` reaches
    ``target`` (highest recall at that precision); when none does, the threshold of the highest precision."""
    from sklearn.metrics import precision_recall_curve

    prec, rec, thr = precision_recall_curve(y, p)
    prec, rec = prec[:-1], rec[:-1]  # the last point has no threshold
    ok = np.flatnonzero(prec >= target)
    i = int(ok[0]) if len(ok) else int(np.argmax(prec))
    return float(thr[i]), float(prec[i]), float(rec[i])


def metrics(y: np.ndarray, p: np.ndarray, threshold: float | None = None) -> dict:
    """ROC-AUC, PR-AUC (average precision), macro-F1 at probability 0.5, precision at recall 0.85 (the highest
    precision among operating points with recall >= 0.85), and precision/recall at ``threshold`` when given."""
    from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve, roc_auc_score

    y = np.asarray(y)
    prec, rec, _ = precision_recall_curve(y, p)
    out = {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "macro_f1": float(f1_score(y, p >= 0.5, average="macro")),
        "precision_at_recall_0.85": float(prec[rec >= 0.85].max()),
    }
    if threshold is not None:
        pred = p >= threshold
        tp = int((pred & (y == 1)).sum())
        out["threshold"] = float(threshold)
        out["precision_at_threshold"] = tp / max(int(pred.sum()), 1)
        out["recall_at_threshold"] = tp / max(int(y.sum()), 1)
    return out


def evaluate(clf: SafetyClassifier, examples: Sequence[SafetyExample]) -> dict:
    """Held-out results (``split == "val"``): ``heads`` (each head's ``metrics`` on the held-out posts of each
    of its corpora, keyed ``head:source``, at its threshold) and ``langs`` (per language, the combined verdict of
    ``classify`` against each post's own label: ROC-AUC of ``score`` and precision/recall of ``unsafe``)."""
    val = [e for e in examples if e.split == "val"]
    out: dict = {"heads": {}, "langs": {}}
    for head in clf.heads:
        for source in HEADS[head]["sources"]:
            ex = [e for e in val if e.head == head and e.source == source]
            if ex and len({e.label for e in ex}) == 2:
                p = clf.predict_proba([e.text for e in ex], head)
                m = metrics(np.array([e.label for e in ex]), p, clf.heads[head]["threshold"])
                out["heads"][f"{head}:{source}"] = m
    for lang in sorted({e.lang for e in val}):
        ex = [e for e in val if e.lang == lang]
        res = clf.classify([e.text for e in ex], [lang] * len(ex))
        y = np.array([e.label for e in ex])
        flag = np.array([r.unsafe for r in res])
        m = metrics(y, np.array([r.score for r in res])) if len(set(y)) == 2 else {"n": len(ex)}
        m.pop("macro_f1", None)  # at score 0.5, which is not the decision rule here
        tp = int((flag & (y == 1)).sum())
        m.update(flag_precision=tp / max(int(flag.sum()), 1), flag_recall=tp / max(int(y.sum()), 1))
        out["langs"][lang] = m
    return out
