"""CLI layer (L6): ``tweetlm <noun> <verb>``; parses arguments and calls library functions. Imported by nothing."""
