"""The Normalize step runs ftfy only where ``Normalize.needs_ftfy`` (or an ``&``) says it could change something:
made-up damage of each kind ftfy repairs, and real posts whose text must come out exactly as with ftfy on every
post."""

from __future__ import annotations

from datatrove.data import Document

from tweetlm.data.formats.dispatch import read_corpus
from tweetlm.data.ledger import Ledger
from tweetlm.data.pipeline.config import PipelineConfig
from tweetlm.data.pipeline.steps import Normalize
from tweetlm.data.pipeline.text import normalize_text

DAMAGED = [
    "âœ” No problems",  # mojibake (UTF-8 read as Windows-1252)
    "Ã¢ËœÅ Find out about our mixtape packages",  # double mojibake, from TweetEval irony
    "cafe\u0301 au lait",  # not NFC
    "two\r\nlines",  # CR LF
    "para\u2029graph",
    "bell\x07 and del\x7f",
    "c1 \x85 control",
    "\x1b[31mred\x1b[0m",  # terminal escapes
    "\ufeffbom at the start",
    "lone \ud83d surrogate",
]
CLEAN = [
    "plain ASCII post, nothing to fix",
    "tab\tand\nnewline and form\x0cfeed",
    "café 😂🔥 “curly” ｆｕｌｌ ﬁ ligature",  # kept on purpose by normalize_text's ftfy settings
    "日本語のテキスト、العربية، हिन्दी",
    "emoji with variation selector ❤️ and ZWJ 👩‍💻",
]


# normalize_text's call (its settings keep curly quotes, full-width forms and ligatures)
FTFY_SETTINGS = dict(
    unescape_html=False, uncurl_quotes=False, fix_character_width=False, fix_latin_ligatures=False, normalization="NFC"
)


def test_needs_ftfy_on_each_kind_of_damage():
    import ftfy

    for text in DAMAGED:
        assert Normalize.needs_ftfy(text), repr(text)
        assert ftfy.fix_text(text, **FTFY_SETTINGS) != text, repr(text)
    for text in CLEAN:
        assert not Normalize.needs_ftfy(text), repr(text)
        assert ftfy.fix_text(text, **FTFY_SETTINGS) == text, repr(text)


def _normalized(texts: list[str], tmp_path) -> list[str]:
    docs = [Document(text=t, id=str(i), metadata={"source": "s"}) for i, t in enumerate(texts)]
    return [d.text for d in Normalize(PipelineConfig(), tmp_path).run(iter(docs))]


def test_step_output_equals_ftfy_on_every_post(corpora, tmp_path):
    """Real posts with damage of several kinds (TweetEval hate: orphan variation selectors and other emoji damage;
    irony: double mojibake; the Indonesian hate-speech corpus: literal byte escapes).
    Over all 241k shared posts the same comparison found no difference (benchmarks/results/langid_cpu2_202612.md)."""
    paths = [corpora / "tweeteval" / "hate", corpora / "tweeteval" / "irony", corpora / "id_hatespeech_ibrohim2019"]
    texts = [p.text for p in read_corpus(paths, Ledger())]
    texts = [t for t in texts if not (t.isascii() and t.isprintable())]  # the rest never reached ftfy before either
    texts += DAMAGED + CLEAN
    cfg = PipelineConfig()
    always = [normalize_text(t, cfg) for t in texts]
    kept = [a for a in always if a]
    assert _normalized(texts, tmp_path) == kept
    plain = PipelineConfig(fix_unicode=False)
    fixed = sum(1 for t, a in zip(texts, always) if normalize_text(t, plain) != a)
    gated = sum(1 for t in texts if "&" in t or Normalize.needs_ftfy(t))
    # ftfy ran on 546 of these 5,314 non-ASCII posts (226 of which it changed)
    assert len(texts) > 5000 and fixed > 200 and fixed <= gated < len(texts) // 5
