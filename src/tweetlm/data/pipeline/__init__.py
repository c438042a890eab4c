"""The ingestion pipeline on datatrove (layer L1, data): Post records -> normalize -> language id -> filters ->
PII scrub -> retweet collapse -> threads -> exact and MinHash dedup -> corpus shards, manifest and data report.

``build_corpus`` runs it (``build.py``); the steps are in ``steps.py`` (per task) and ``decide.py`` (global);
``forget.py`` removes posts from a built corpus. Reading files is ``data.readers``' job, cleaning one text is
``data.clean``'s; this package composes them into datatrove ``PipelineStep``s and executors.
"""
