"""Run-folder layout (layer L0): where every stage of a run writes, in one place.

``runs/<name>/`` holds ``config.json``, ``data/`` (clean corpus, accounting), ``tokenizer.json``,
``tokens/`` (token shards), ``checkpoints/step_<N>/`` and ``checkpoints/latest`` (a text file naming the newest
complete checkpoint), ``metrics.jsonl``, ``eval.json``, ``samples.json``, ``loss.png`` and ``report.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @classmethod
    def create(cls, root: str | Path) -> RunFolder:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        return cls(root)

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer.json"

    @property
    def tokens(self) -> Path:
        return self.root / "tokens"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def eval(self) -> Path:
        return self.root / "eval.json"

    @property
    def samples(self) -> Path:
        return self.root / "samples.json"

    @property
    def loss_plot(self) -> Path:
        return self.root / "loss.png"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def stages(self) -> Path:
        return self.root / "stages.json"
