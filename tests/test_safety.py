"""Brand safety on the real labelled corpora: examples, heads, thresholds for a stated precision, language routing,
save/load. TF-IDF features and a seeded sample per head keep it fast; the embedding features are measured by
benchmarks/bench_safety.py."""

from __future__ import annotations

import random

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="brand safety needs the ads extra (scikit-learn)")

from tweetlm.ads.safety import (  # noqa: E402
    SafetyClassifier,
    SafetyExample,
    evaluate,
    metrics,
    threshold_for_precision,
)


@pytest.fixture(scope="module")
def examples(safety_examples):
    return safety_examples


@pytest.fixture(scope="module")
def small(examples):
    """800 training posts per head (seeded) and 200 held-out posts per head."""
    rng = random.Random(0)
    out = []
    for source in ("tweeteval/offensive", "davidson_hate_offensive", "tweeteval/hate", "id_hatespeech_ibrohim2019"):
        tr = [e for e in examples if e.source == source and e.split == "train"]
        va = [e for e in examples if e.source == source and e.split == "val"]
        out += rng.sample(tr, 800) + rng.sample(va, 200)
    return out


@pytest.fixture(scope="module")
def clf(small):
    c = SafetyClassifier("tfidf", target_precision=0.85)
    c.fit(small)
    return c


def test_examples_come_from_the_four_labelled_corpora(examples):
    def count(source, split):
        return sum(e.source == source and e.split == split for e in examples)

    # TweetEval ships its own splits: every line of the train and val files is an example
    assert count("tweeteval/offensive", "train") == 11916 and count("tweeteval/offensive", "val") == 1324
    # TweetEval hate has 7 empty train lines and 1 empty val line: no text, no example
    assert count("tweeteval/hate", "train") == 8993 and count("tweeteval/hate", "val") == 999
    # the others are split 80/20 by a hash of the text
    for source in ("davidson_hate_offensive", "id_hatespeech_ibrohim2019"):
        share = count(source, "val") / (count(source, "val") + count(source, "train"))
        assert 0.17 < share < 0.23, (source, share)
    assert {e.head for e in examples if e.source == "davidson_hate_offensive"} == {"offensive"}
    assert {e.lang for e in examples if e.head == "id_abusive"} == {"id"}
    pos = np.mean([e.label for e in examples if e.source == "tweeteval/offensive"])
    assert 0.3 < pos < 0.35  # OffensEval 2019: a third of the posts are offensive


def test_heads_learn_and_thresholds_reach_the_stated_precision(clf, small):
    for head, cal in clf.calibration.items():
        assert 0 < cal["threshold"] < 1 and cal["calibration"] > 80, (head, cal)
    # reachable on ~240 calibration posts for these two heads (measured there, not assumed)
    for head in ("offensive", "id_abusive"):
        assert clf.calibration[head]["precision"] >= 0.85, clf.calibration[head]
    res = evaluate(clf, small)
    assert len(res["heads"]) == 4
    for key, m in res["heads"].items():
        assert m["roc_auc"] > 0.6, (key, m)  # chance is 0.5
    assert res["heads"]["id_abusive:id_hatespeech_ibrohim2019"]["precision_at_threshold"] > 0.75  # held out
    assert set(res["langs"]) == {"en", "id"}


def test_language_routing_and_verdicts(clf):
    en = "you are a stupid bitch and everyone hates you"
    res = clf.classify([en, "have a lovely flight to boston", en], ["en", "en", "id"])
    assert set(res[0].scores) == {"offensive", "hate"}
    assert set(res[2].scores) == {"id_abusive"}  # an Indonesian post is scored by the Indonesian head only
    assert res[0].unsafe and res[0].flagged_by and res[0].score >= 1
    assert not res[1].unsafe and res[1].score < 1
    assert set(clf.classify([en], [None])[0].scores) == {"offensive", "hate", "id_abusive"}
    with pytest.raises(ValueError, match="langs"):
        clf.classify(["a", "b"], ["en"])


def test_save_and_load_give_the_same_probabilities(clf, tmp_path):
    texts = ["what a great day", "shut up you idiot", "dasar bodoh kau"]
    clf.save(tmp_path / "s")
    back = SafetyClassifier.load(tmp_path / "s")
    for head in clf.heads:
        np.testing.assert_allclose(back.predict_proba(texts, head), clf.predict_proba(texts, head))
    assert back.meta["thresholds"] == {h: v["threshold"] for h, v in clf.heads.items()}
    with pytest.raises(FileNotFoundError):
        SafetyClassifier.load(tmp_path / "none")


def test_threshold_for_precision_and_metrics():
    y = np.array([0, 0, 1, 0, 1, 1, 1, 0])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    thr, prec, rec = threshold_for_precision(y, p, 0.75)
    assert (thr, prec, rec) == (0.6, 0.75, 0.75)  # {0.6, 0.7, 0.8, 0.9}: 3 of 4 unsafe
    assert threshold_for_precision(y, p, 0.6) == (0.3, 4 / 6, 1.0)  # the lowest threshold reaching 0.6
    assert threshold_for_precision(y, p, 0.99) == (0.6, 0.75, 0.75)  # unreachable: the most precise threshold
    m = metrics(y, p, 0.6)
    assert m["precision_at_threshold"] == 0.75 and m["recall_at_threshold"] == 0.75
    assert m["roc_auc"] == pytest.approx(11 / 16)  # 11 of the 16 (unsafe, safe) pairs are ordered right
    assert m["precision_at_recall_0.85"] == pytest.approx(4 / 6)  # recall 1 first reached at p >= 0.3


def test_bad_settings_are_value_errors():
    with pytest.raises(ValueError, match="features"):
        SafetyClassifier("bert")
    with pytest.raises(ValueError, match="embed function"):
        SafetyClassifier("both")
    with pytest.raises(ValueError, match="target_precision"):
        SafetyClassifier("tfidf", target_precision=1.5)
    one_class = [SafetyExample(f"post {i}", "hate", 0, "en", "train") for i in range(50)]
    with pytest.raises(ValueError, match="safe and unsafe"):
        SafetyClassifier("tfidf").fit(one_class)


def test_train_table_prints_each_heads_held_out_numbers_per_corpus(clf, small):
    from tweetlm.cli.ads import held_out_table

    res = evaluate(clf, small)
    cal = {h: {"threshold": v["threshold"], "precision": 0.9, "recall": 0.5} for h, v in clf.heads.items()}
    lines = held_out_table(cal, res)
    assert len(lines) == 1 + len(res["heads"]) and "nan" not in "\n".join(lines)
    for key, m in res["heads"].items():
        head, corpus = key.split(":", 1)
        row = next(ln for ln in lines[1:] if ln.startswith(head + " ") and f"| {corpus} " in ln)
        assert f"{m['n']:,}" in row and f"{m['roc_auc']:.3f}" in row and f"{m['recall_at_threshold']:.3f}" in row
