"""Model layer (L2): one single-device Llama-style decoder, its config and FLOP count. Knows nothing of data,
training or distribution."""
