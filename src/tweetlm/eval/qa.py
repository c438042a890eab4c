"""Answer quality of question answering (layer L3, eval): BLEU-1, METEOR and ROUGE-L, the TweetQA metrics.

TweetQA (Xiong et al., ACL 2019) scores a generated answer against the reference answers of its question with
BLEU-1, METEOR and ROUGE-L; each is the best score over the references, averaged over questions, on a 0..100
scale. Here: ROUGE-L F-measure from Google's ``rouge-score``; BLEU-1 and METEOR from ``nltk`` (BLEU-1 with the
brevity penalty and add-epsilon smoothing; METEOR with its exact and Porter-stem matchers only: the WordNet
synonym matcher needs nltk's WordNet data, which installs from the internet, not from PyPI, so scores can sit
slightly below the paper's toolkit on answers that use synonyms). Text is lowercased and split into words and
punctuation before BLEU and METEOR. Citations such as ``[1234]`` are not part of an answer: ``strip_citations``.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_CITATION = re.compile(r"\s*\[[^\[\]\n]{1,200}\]")


def strip_citations(text: str) -> str:
    """``text`` without bracketed citations (``"high [tweetqa:train.json:0]"`` -> ``"high"``)."""
    return " ".join(_CITATION.sub(" ", text).split())


def _words(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class _NoSynonyms:
    """Stands in for nltk's WordNet reader: no synsets, so METEOR matches exact words and Porter stems only."""

    @staticmethod
    def synsets(*_args, **_kwargs) -> list:
        return []


def qa_scores(predictions: list[str], references: list[list[str]]) -> dict:
    """``{"bleu1", "meteor", "rouge_l", "n"}``: mean over questions of the best score against any reference,
    each on 0..100. ``predictions[i]`` is scored against ``references[i]`` (one or more answers).
    ``ValueError`` when the two lists differ in length, are empty, or a question has no reference."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from nltk.translate.meteor_score import meteor_score
    from rouge_score import rouge_scorer

    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"{len(predictions)} predictions for {len(references)} questions: need the same, >= 1")
    if any(not refs for refs in references):
        raise ValueError("every question needs at least one reference answer")
    rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    smooth = SmoothingFunction().method1
    b = m = r = 0.0
    for pred, refs in zip(predictions, references):
        hyp = _words(pred)
        ref_words = [_words(x) for x in refs]
        b += max(sentence_bleu([w], hyp, weights=(1.0,), smoothing_function=smooth) if hyp else 0.0 for w in ref_words)
        m += max(meteor_score([w], hyp, wordnet=_NoSynonyms) if hyp else 0.0 for w in ref_words)
        r += max(rouge.score(x, pred)["rougeL"].fmeasure for x in refs)
    n = len(predictions)
    return {"bleu1": 100 * b / n, "meteor": 100 * m / n, "rouge_l": 100 * r / n, "n": n}
