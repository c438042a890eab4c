"""Readers for the post formats users actually bring (layer L1, data).

One module per source format, each turning one parsed JSON value (or row) into record outcomes through a
``base.Emitter``: ``x_v1`` (X API v1.1 and Gnip activity streams), ``x_v2`` (X API v2 pages, flattened twarc
tweets, compliance events), ``x_archive`` (the X account archive), ``bluesky`` (``app.bsky.feed.post`` records,
post views, Jetstream events), ``mastodon`` (statuses), ``tabular`` (Parquet, and the column mapping shared by
CSV/JSONL/Parquet). ``compressed`` opens ``.gz``/``.zst``/``.bz2``/``.xz`` files and ``.zip`` members for every
reader; ``entities`` builds a post's final text and entity offsets; ``base`` holds the emitter and the file-level
rules (duplicate ids, edits, deletions) that turn outcomes into ``Post`` records and ledger entries.

File discovery, format detection and the shared research corpora stay in ``data.readers``, which dispatches here.
Nothing here cleans text for training (that is ``data.clean`` and the pipeline steps).
"""
