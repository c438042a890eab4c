"""Common layer (L0): config helpers, run-folder layout and file formats shared by two layers. Imports nothing
of tweetlm."""
