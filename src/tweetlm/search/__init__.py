"""Search over posts (layer L4): hybrid lexical + dense retrieval, fusion, time-partitioned index, and ask.

Modules: ``analyze`` (the post tokenizer for BM25), ``embed`` (sentence embeddings with an on-disk cache),
``segment`` (one time window: a tantivy BM25 index, a usearch HNSW index and the post metadata), ``index``
(``SearchIndex``: segments, add, delete, drop, query with filters, RRF fusion, recency and duplicate
collapse), ``posts`` (posts from a corpus folder or any reader input), ``ask`` (retrieve, then generate an
answer that cites only the posts it was given).

Nothing here serves HTTP (``serve/search_routes.py``) or parses arguments (``cli/search.py``).
"""
