"""Tokenizer layer (L1): byte-level BPE training, encode/decode, special tokens, and the encode step that writes
token shards. Never imports torch."""
