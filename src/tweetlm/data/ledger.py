"""Record accounting (layer L1, data): every record read is kept, dropped with a reason, or quarantined.

The invariant, per source and overall: ``records_in == kept + sum(dropped.values()) + quarantined``.
Readers call ``seen`` once per raw record and ``quarantine`` for records they cannot turn into a Post;
cleaning calls ``drop`` with a reason. ``kept`` is what is left, so the equation is checked by
``check()`` comparing it with the number of posts actually written (an independent count).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class QuarantinedRecord:
    """A record no reader could turn into a Post: file, 0-based record number, reason, and a short excerpt."""

    source: str
    file: str
    record: int
    reason: str
    excerpt: str = ""


@dataclass
class SourceCounts:
    records_in: int = 0
    dropped: Counter = field(default_factory=Counter)
    quarantined: int = 0

    @property
    def kept(self) -> int:
        return self.records_in - sum(self.dropped.values()) - self.quarantined


class Ledger:
    """Per-source counts of records in, dropped (by reason) and quarantined."""

    def __init__(self) -> None:
        self.sources: dict[str, SourceCounts] = {}
        self.quarantine_log: list[QuarantinedRecord] = []

    def _get(self, source: str) -> SourceCounts:
        if source not in self.sources:
            self.sources[source] = SourceCounts()
        return self.sources[source]

    def seen(self, source: str, n: int = 1) -> None:
        self._get(source).records_in += n

    def drop(self, source: str, reason: str, n: int = 1) -> None:
        self._get(source).dropped[reason] += n

    def quarantine(self, source: str, file: str, record: int, reason: str, excerpt: str = "") -> None:
        self._get(source).quarantined += 1
        self.quarantine_log.append(QuarantinedRecord(source, file, record, reason, excerpt[:200]))

    def check(self, kept_by_source: dict[str, int]) -> None:
        """Raise ``AssertionError`` unless the posts actually kept per source match the ledger's ``kept``."""
        for source, counts in self.sources.items():
            actual = kept_by_source.get(source, 0)
            assert actual == counts.kept, (
                f"record accounting broken for {source}: in={counts.records_in} "
                f"dropped={dict(counts.dropped)} quarantined={counts.quarantined} "
                f"but {actual} posts were kept (expected {counts.kept})"
            )
        extra = set(kept_by_source) - set(self.sources)
        assert not extra, f"posts kept from sources the ledger never saw: {sorted(extra)}"

    def totals(self) -> SourceCounts:
        total = SourceCounts()
        for c in self.sources.values():
            total.records_in += c.records_in
            total.dropped.update(c.dropped)
            total.quarantined += c.quarantined
        return total

    def equation_lines(self) -> list[str]:
        """One line per source and one for the total: ``in = kept + dropped (reasons) + quarantined``."""
        lines = []
        for name, c in sorted(self.sources.items()) + [("TOTAL", self.totals())]:
            reasons = ", ".join(f"{r} {n}" for r, n in sorted(c.dropped.items())) or "none"
            lines.append(
                f"{name}: {c.records_in} in = {c.kept} kept + {sum(c.dropped.values())} dropped "
                f"({reasons}) + {c.quarantined} quarantined"
            )
        return lines

    def to_dict(self) -> dict:
        return {
            "sources": {
                k: {"in": c.records_in, "kept": c.kept, "dropped": dict(c.dropped), "quarantined": c.quarantined}
                for k, c in sorted(self.sources.items())
            },
            "quarantined_records": [q.__dict__ for q in self.quarantine_log],
        }
