"""The pipeline's per-task steps in this process (layer L1, data), for callers that need cleaned posts, not a
corpus: the brand-safety training set (``ads.safety``) and anything else that reads raw files one-off.

``clean_posts(paths, cfg)`` chains the same ``PipelineStep`` objects a one-task build runs in its prepare stage
(``PostReader -> Normalize -> LanguageID -> QualityFilter -> PIIScrub``, ``steps.py``) and returns the posts that
come out, with the ledger of what was read, dropped and quarantined. The corpus-wide steps (retweets, threads,
de-duplication: ``decide.py``) need every post at once and a place to write; for them build a corpus with
``build.build_corpus`` (``search build`` on raw files does).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import fields
from pathlib import Path

from tweetlm.data.ledger import Ledger
from tweetlm.data.pipeline.config import PipelineConfig
from tweetlm.data.post import Post, Provenance

_POST_FIELDS = {f.name for f in fields(Post)} - {"id", "text", "source", "provenance"}


def clean_posts(paths: list[str | Path], cfg: PipelineConfig | None = None) -> tuple[list[Post], Ledger]:
    """Posts under ``paths`` after the prepare-stage steps of the pipeline, in input order, each with its split
    (the corpus's own, else ``text.hash_split`` at ``cfg.val_fraction``), and the ``Ledger`` of the run
    (``records in = kept + dropped + quarantined`` per source, holding for the returned posts).

    Raises ``ValueError`` for bad settings or paths (``PipelineConfig.validate``, ``read_shard``)."""
    from tweetlm.data.pipeline.build import merged_ledger
    from tweetlm.data.pipeline.steps import LanguageID, Normalize, PIIScrub, PostReader, QualityFilter

    cfg = cfg or PipelineConfig()
    cfg.validate()
    with tempfile.TemporaryDirectory(prefix="tweetlm_clean_") as work:
        steps = [PostReader([str(p) for p in paths], cfg, work, quiet=True)]
        steps += [step(cfg, work) for step in (Normalize, LanguageID, QualityFilter, PIIScrub)]
        docs = None
        for step in steps:
            docs = step(docs, rank=0, world_size=1)
        posts = []
        for doc in docs:
            m = doc.metadata
            prov = Provenance(m["prov_file"], m["prov_record"], m["prov_reader"])
            kept = {k: m[k] for k in _POST_FIELDS if k in m}
            posts.append(Post(id=doc.id, text=doc.text, source=m["source"], provenance=prov, **kept))
        ledger, _ = merged_ledger(work)
    ledger.check(dict(Counter(p.source for p in posts)))
    return posts, ledger
