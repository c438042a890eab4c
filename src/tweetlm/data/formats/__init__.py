"""Readers for the post formats users actually bring (layer L1, data).

One module per source format, each turning one parsed JSON value (or row) into record outcomes through a
``base.Emitter``: ``x_v1`` (X API v1.1 and Gnip activity streams), ``x_v2`` (X API v2 pages, flattened twarc
tweets, compliance events), ``x_archive`` (the X account archive), ``bluesky`` (``app.bsky.feed.post`` records,
post views, Jetstream events), ``mastodon`` (statuses), ``tabular`` (Parquet, and the column mapping shared by
CSV/JSONL/Parquet). ``compressed`` opens ``.gz``/``.zst``/``.bz2``/``.xz`` files and ``.zip`` members for every
reader; ``entities`` builds a post's final text and entity offsets; ``base`` holds the emitter and the file-level
rules (duplicate ids, edits, deletions) that turn outcomes into ``Post`` records and ledger entries.

Files: ``dispatch`` finds the files under the given paths and matches each to a reader (``files`` holds what they
share); the research corpora have one module each (``text_labels`` for TweetEval and XLM-T, ``semeval``,
``davidson``, ``airline``, ``fivethirtyeight``, ``ibrohim``, ``indolem``, ``tweetqa``), and the file readers of the
platform formats are ``json_files``, ``tables``, ``text_lines`` and ``x_archive_files``. This is the one way posts
are read. Nothing here cleans text for training (that is the pipeline's steps, ``data.pipeline.steps``).
"""
