from __future__ import annotations

from pathlib import Path

import pytest

from tweetlm.common.config import apply_override, from_dict, to_dict
from tweetlm.jobs.recipes import RunConfig, get_recipe


def test_override_types():
    cfg = get_recipe("tiny_cpu")
    apply_override(cfg, "train.max_steps=7")
    apply_override(cfg, "train.lr=0.01")
    apply_override(cfg, "model.tie_embeddings=false")
    apply_override(cfg, "data.mention_placeholder=yes")
    apply_override(cfg, "train.schedule=wsd")
    assert (cfg.train.max_steps, cfg.train.lr, cfg.model.tie_embeddings) == (7, 0.01, False)
    assert cfg.data.mention_placeholder is True and cfg.train.schedule == "wsd"


@pytest.mark.parametrize(
    "assignment, match",
    [
        ("train.max_step=3", "unknown key 'max_step'.*train.max_steps"),
        ("train.max_steps=three", r"expected a value of type int, a whole number \(e.g. 4\)"),
        ("train.lr=fast", r"expected a value of type float, a number"),
        ("model.tie_embeddings=maybe", "expected a value of type bool, one of .*true.* or .*false"),
        ("train=3", "is a section"),
        ("nope", "key=value"),
        ("bogus.x=1", "unknown key 'bogus'"),
    ],
)
def test_override_errors(assignment, match):
    with pytest.raises(ValueError, match=match):
        apply_override(get_recipe("tiny_cpu"), assignment)


def test_roundtrip_dict():
    cfg = get_recipe("demo_cpu")
    again = from_dict(RunConfig, to_dict(cfg))
    assert to_dict(again) == to_dict(cfg)
    with pytest.raises(ValueError, match="unknown RunConfig keys"):
        from_dict(RunConfig, {"nonsense": 1})


def test_unknown_recipe():
    with pytest.raises(ValueError, match="tiny_cpu"):
        get_recipe("huge_tpu")


def test_demo_recipe_uses_bf16_only_where_the_cpu_has_it(monkeypatch):
    """bf16 autocast without native bf16 (AVX2 only) made one demo step 249 s instead of ~3 s: the recipe asks."""
    from tweetlm.model import precision

    for native, want in ((True, ("bf16", 64, 1000, 450)), (False, ("fp32", 24, 500, 300))):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda native=native: native)
        cfg = get_recipe("demo_cpu")
        assert (cfg.train.precision, cfg.train.max_steps, cfg.eval.sample_docs, cfg.scratch_steps) == want
        assert cfg.eval.precision == want[0]
    monkeypatch.undo()
    real = precision.cpu_has_native_bf16()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():  # the flag as Linux reports it
        assert real == any(f in cpuinfo.read_text().split() for f in ("avx512_bf16", "amx_bf16"))
