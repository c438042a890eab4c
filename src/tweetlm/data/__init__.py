"""Data layer (L1): the Post schema, corpus readers, cleaning, de-duplication and splits. Never imports torch."""
