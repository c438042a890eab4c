"""The ingestion pipeline on datatrove (layer L1, data): Post records -> normalize -> language id -> filters ->
PII scrub -> retweet collapse -> threads -> exact and MinHash dedup -> corpus shards, manifest and data report.

``build_corpus`` runs it (``build.py``); the steps are in ``steps.py`` (per task) and ``decide.py`` (global);
``forget.py`` removes posts from a built corpus; ``inprocess.py`` runs the per-task steps in this process for
callers that need cleaned posts, not a corpus. Reading files is ``data.formats``' job (``dispatch.read_shard``);
what one text becomes is ``text.py``; this package composes them into datatrove ``PipelineStep``s and executors,
and is the one way posts are cleaned.
"""
