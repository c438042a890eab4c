"""The import layers of ARCHITECTURE.md, enforced with ``ast`` over every module of the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "tweetlm"

LAYER = {
    "common": 0,
    "data": 1,
    "tokenizer": 1,
    "model": 2,
    "training": 3,
    "eval": 3,
    "inference": 3,
    "jobs": 4,
    "search": 4,
    "ads": 4,
    "serve": 5,
    "console": 5,  # the browser console: static files that serve ships (no Python beyond its __init__)
    "cli": 6,
}
# Same-layer packages may not import each other either (e.g. eval must not import training).
TORCH_FREE = {"common", "data", "tokenizer"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


MODULES = sorted(p for p in PKG.rglob("*.py"))


def test_every_package_has_a_layer():
    pkgs = {p.relative_to(PKG).parts[0] for p in MODULES if len(p.relative_to(PKG).parts) > 1}
    assert pkgs <= set(LAYER), f"packages without a layer: {pkgs - set(LAYER)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_respect_layers(path: Path):
    rel = path.relative_to(PKG).parts
    if len(rel) == 1:  # tweetlm/__init__.py
        assert not [m for m in _imports(path) if m.startswith("tweetlm")]
        return
    own = rel[0]
    for mod in _imports(path):
        parts = mod.split(".")
        if parts[0] == "torch":
            assert own not in TORCH_FREE, f"{path.relative_to(PKG)} imports torch (layer {own} must not)"
        if parts[0] != "tweetlm" or len(parts) < 2:
            continue
        other = parts[1]
        assert other in LAYER, f"{path.relative_to(PKG)} imports unknown package tweetlm.{other}"
        if other == own:
            continue
        assert LAYER[other] < LAYER[own], (
            f"{path.relative_to(PKG)} (layer {own}, L{LAYER[own]}) imports tweetlm.{other} (L{LAYER[other]})"
        )


def test_checker_catches_a_violation(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("from tweetlm.training.loop import train\nimport torch\n")
    assert _imports(bad) == ["tweetlm.training.loop", "torch"]


def test_no_import_side_effects():
    """Importing every module prints nothing and does not initialise CUDA or logging handlers."""
    import importlib
    import io
    import logging
    from contextlib import redirect_stderr, redirect_stdout

    before = list(logging.getLogger().handlers)
    buf = io.StringIO()
    with redirect_stdout(buf), redirect_stderr(buf):
        for p in MODULES:
            mod = ".".join(("tweetlm",) + p.relative_to(PKG).with_suffix("").parts).removesuffix(".__init__")
            importlib.import_module(mod)
    assert buf.getvalue() == ""
    assert logging.getLogger().handlers == before
