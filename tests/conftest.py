"""Shared test fixtures: where ../shared is, and tiny configs."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

with contextlib.suppress(ImportError):  # before any test imports usearch: tweetlm.search.segment says why
    import onnxruntime  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPORA = SHARED / "corpora"


@pytest.fixture
def corpora() -> Path:
    if not CORPORA.is_dir():
        pytest.skip(f"shared corpora not found at {CORPORA} (they sit beside the repo in this project's checkouts)")
    return CORPORA


@pytest.fixture(scope="session")
def safety_examples() -> list:
    """``ads.safety.load_examples`` over the shared corpora, read once per session (test_safety and test_ads
    both train on them; 15 s each time on 2 cores)."""
    if not CORPORA.is_dir():
        pytest.skip(f"shared corpora not found at {CORPORA}")
    from tweetlm.ads.safety import load_examples

    return load_examples(CORPORA)
