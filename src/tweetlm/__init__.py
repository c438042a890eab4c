"""tweetlm: turn a corpus of social-media posts into a generative language model and put it to work.

Layers (see ../shared/docs/ARCHITECTURE.md; enforced by tests/test_layers.py):
common (L0) < data, tokenizer (L1) < model (L2) < training, eval, inference (L3)
< jobs, search, ads (L4) < serve (L5) < cli (L6).
"""

__version__ = "0.1.0"
