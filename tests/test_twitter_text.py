"""tweetlm.data.twitter_text against twitter-text's own conformance suite, plus the conventions the suite leaves open.

The suite (extract.yml, validate.yml, tlds.yml, v3.json; Apache-2.0) is read in place from
../shared/conformance/twitter-text; its tests skip when it is absent. Every case of every extraction section runs,
every weighted-length case runs under the config twitter-text's own ports use for it (v2 for
WeightedTweetsCounterTest, v3 for the others), and the 140-character ``tweets`` cases run under v1.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import yaml

from tweetlm.data import twitter_text as tt

CONFORMANCE = Path(__file__).resolve().parents[1].parent / "shared" / "conformance" / "twitter-text"
ABSENT = f"twitter-text conformance suite not found at {CONFORMANCE} (it sits in ../shared beside the repo)"


@functools.cache
def _suite(name: str) -> dict | None:
    path = CONFORMANCE / name
    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]


def _cases(name: str, *sections: str) -> list:
    """One pytest param ``(section, case)`` per case; a single skipped param when the suite is absent."""
    tests = _suite(name)
    if tests is None:
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=ABSENT), id="absent")]
    return [pytest.param(s, case, id=f"{s}-{i:03d}") for s in sections for i, case in enumerate(tests[s])]


def _require(name: str) -> dict:
    tests = _suite(name)
    if tests is None:
        pytest.skip(ABSENT)
    return tests


# ---------------------------------------------------------------------------------------------------------------
# extract.yml: every section

EXTRACTORS = {
    "mentions": tt.extract_mentions,
    "mentions_with_indices": tt.extract_mentions_with_indices,
    "mentions_or_lists_with_indices": tt.extract_mentions_or_lists_with_indices,
    "replies": tt.extract_reply_screen_name,
    "urls": tt.extract_urls,
    "urls_with_indices": tt.extract_urls_with_indices,
    "urls_with_directional_markers": tt.extract_urls_with_indices,
    "tco_urls_with_params": tt.extract_urls,
    "hashtags": tt.extract_hashtags,
    "hashtags_from_astral": tt.extract_hashtags,
    "hashtags_with_indices": tt.extract_hashtags_with_indices,
    "cashtags": tt.extract_cashtags,
    "cashtags_with_indices": tt.extract_cashtags_with_indices,
}


def test_every_extract_section_is_covered():
    assert set(_require("extract.yml")) == set(EXTRACTORS)


@pytest.mark.parametrize("section, case", _cases("extract.yml", *EXTRACTORS))
def test_extract_conformance(section, case):
    got = EXTRACTORS[section](case["text"])
    assert got == case["expected"], case["description"]


# ---------------------------------------------------------------------------------------------------------------
# validate.yml: weighted length (all of it) and the 140-character tweets

WEIGHTED = {
    "WeightedTweetsCounterTest": tt.CONFIG_V2,
    "WeightedTweetsWithDiscountedEmojiCounterTest": tt.CONFIG_V3,
    "UnicodeDirectionalMarkerCounterTest": tt.CONFIG_V3,
}
FIELDS = {
    "weightedLength": "weighted_length",
    "valid": "valid",
    "permillage": "permillage",
    "displayRangeStart": "display_range_start",
    "displayRangeEnd": "display_range_end",
    "validRangeStart": "valid_range_start",
    "validRangeEnd": "valid_range_end",
}


def test_every_weighted_section_is_covered():
    tests = _require("validate.yml")
    sections = {s for s, cases in tests.items() if any(isinstance(c["expected"], dict) for c in cases)}
    assert sections == set(WEIGHTED)


@pytest.mark.parametrize("section, case", _cases("validate.yml", *WEIGHTED))
def test_parse_tweet_conformance(section, case):
    result = tt.parse_tweet(case["text"], WEIGHTED[section])
    got = {key: getattr(result, attr) for key, attr in FIELDS.items()}
    assert got == case["expected"], case["description"]
    if WEIGHTED[section] is tt.DEFAULT_CONFIG:
        assert tt.weighted_length(case["text"]) == case["expected"]["weightedLength"]
        assert tt.fits_in_tweet(case["text"]) is case["expected"]["valid"]


@pytest.mark.parametrize("section, case", _cases("validate.yml", "tweets"))
def test_v1_tweet_validity_conformance(section, case):
    # The ``tweets`` cases predate weighting: 140 code points, a URL counting 23 (twitter-text's config v1).
    assert tt.parse_tweet(case["text"], tt.CONFIG_V1).valid is case["expected"], case["description"]


def test_v3_json_matches_config_v3():
    path = CONFORMANCE / "v3.json"
    if not path.is_file():
        pytest.skip(ABSENT)
    assert tt.TwitterTextConfig.from_dict(json.loads(path.read_text(encoding="utf-8"))) == tt.CONFIG_V3
    assert tt.MAX_WEIGHTED_LENGTH == tt.CONFIG_V3.max_weighted_tweet_length == 280


# ---------------------------------------------------------------------------------------------------------------
# tlds.yml: every TLD is recognised (one test per section rather than one per TLD)


@pytest.mark.parametrize("section", ["country", "generic"])
def test_tld_conformance(section):
    cases = _require("tlds.yml")[section]
    failed = [c["text"] for c in cases if tt.extract_urls(c["text"]) != c["expected"]]
    assert not failed, f"{len(failed)} of {len(cases)} {section} TLDs not extracted: {failed[:10]}"


# ---------------------------------------------------------------------------------------------------------------
# Conventions the suite leaves open (no ../shared needed)


def test_indices_count_code_points_of_the_text_as_given():
    # An astral emoji is 1 code point (2 UTF-16 units in twitter-text's JavaScript); &amp; is not unescaped.
    assert tt.extract_hashtags_with_indices("\U0001f600 #tag") == [{"hashtag": "tag", "indices": [2, 6]}]
    assert tt.extract_mentions_with_indices("&amp; @jack") == [{"screen_name": "jack", "indices": [6, 11]}]
    assert tt.extract_urls_with_indices("\u65e5\u672c example.com/a") == [{"url": "example.com/a", "indices": [3, 16]}]
    assert tt.extract_cashtags_with_indices("\U0001f4b0 $AAPL") == [{"cashtag": "AAPL", "indices": [2, 7]}]


def test_weighted_length_examples():
    assert tt.weighted_length("hello") == 5
    assert tt.weighted_length("\u65e5\u672c\u8a9e") == 6  # CJK counts 2
    assert tt.weighted_length("see https://example.com/a/very/long/path?q=1") == 4 + 23  # any URL counts 23
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert tt.weighted_length(family) == 2  # one emoji sequence counts 2 under v3 ...
    assert tt.weighted_length(family, tt.CONFIG_V2) == 8  # ... and code point by code point under v2
    assert tt.weighted_length("\U0001f9d1\u200d\U0001f9d1\u200d\U0001f9d2") == 2  # Emoji 15.1, newer than twemoji 13
    assert tt.weighted_length("\u00a9 2024") == 6  # a bare copyright sign is text, not an emoji
    assert tt.weighted_length("") == 0


def test_fits_in_tweet():
    assert tt.fits_in_tweet("a" * tt.MAX_WEIGHTED_LENGTH)
    assert not tt.fits_in_tweet("a" * (tt.MAX_WEIGHTED_LENGTH + 1))
    assert tt.fits_in_tweet("\u65e5" * 140) and not tt.fits_in_tweet("\u65e5" * 141)
    assert not tt.fits_in_tweet("")
    assert not tt.fits_in_tweet("ok\uffff")  # invalid character


def test_parse_tweet_ranges_are_utf16_inclusive():
    r = tt.parse_tweet("\U0001f600")
    assert (r.weighted_length, r.display_range_end, r.valid_range_end, r.permillage) == (2, 1, 1, 7)


def test_extract_entities_removes_overlaps():
    text = "http://x.com/#frag @user #tag $AAPL"
    got = [
        (e.get("url") or e.get("screen_name") or e.get("hashtag") or e.get("cashtag"))
        for e in tt.extract_entities_with_indices(text)
    ]
    assert got == ["http://x.com/#frag", "user", "tag", "AAPL"]
    assert tt.extract_hashtags(text) == ["tag"]  # '#frag' is part of the URL


def test_no_tld_means_no_url_scan():
    # Long dotted runs without a TLD backtrack quadratically in twitter-text's URL regex; they are ruled out first.
    assert tt.extract_urls("a." * 3000) == []
    assert tt.weighted_length("a." * 3000) == 6000


def test_bad_input():
    with pytest.raises(TypeError, match="str"):
        tt.extract_urls(None)
    with pytest.raises(TypeError, match="str"):
        tt.parse_tweet(b"bytes")
    with pytest.raises(ValueError, match="scale"):
        tt.TwitterTextConfig(
            version=9, max_weighted_tweet_length=280, scale=0, default_weight=200, transformed_url_length=23
        )
    with pytest.raises(ValueError, match="start <= end"):
        tt.TwitterTextConfig(
            version=9,
            max_weighted_tweet_length=280,
            scale=100,
            default_weight=200,
            transformed_url_length=23,
            ranges=(tt.WeightRange(10, 5, 100),),
        )
    with pytest.raises(ValueError, match="transformedURLLength"):
        tt.TwitterTextConfig.from_dict(
            {"version": 3, "maxWeightedTweetLength": 280, "scale": 100, "defaultWeight": 200}
        )
