"""Advertising on the model (layer L4): brand safety, audience segments, ad copy and contextual placement.

Modules: ``safety`` (brand-safety heads trained on the labelled shared corpora), ``segments`` (interest
segments: clusters of post embeddings labelled by hashtags and terms; authors assigned to them), ``guard``
(the memorization guard: MinHash LSH over the training posts), ``copy`` (ad briefs -> sampled, filtered, ranked
and diversified variants), ``placement`` (an ad -> matching, brand-safe, recent conversations through any
retriever).

Nothing here imports ``search`` or ``jobs`` (same layer): embeddings and retrieval are passed in as functions
by ``cli`` and ``serve``. Nothing here serves HTTP (``serve/ads_routes.py``) or parses arguments
(``cli/ads.py``).
"""
