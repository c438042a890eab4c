"""Byte-level BPE tokenizer for posts (layer L1), trained and run by Hugging Face ``tokenizers``.

Byte-level means every UTF-8 byte has a token, so any post round-trips losslessly (no normalizer, no prefix
space). Special tokens mark post boundaries: ``<|bos|>`` before and ``<|eos|>`` after every document, and
``<|pad|>`` for batching. The file written is a standard ``tokenizer.json`` that ``transformers`` loads too.
This module does not know about Post records or token shards: ``tokenizer.encode`` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SPECIAL_TOKENS = [PAD, BOS, EOS]


@dataclass
class TokenizerConfig:
    """Attributes:
    vocab_size: total ids including the 256 byte tokens and the special tokens.
    min_frequency: merges seen fewer times than this are not learned.
    """

    vocab_size: int = 8192
    min_frequency: int = 2


class PostTokenizer:
    """Thin wrapper over ``tokenizers.Tokenizer`` with the post boundary tokens."""

    def __init__(self, tok) -> None:
        self.tok = tok
        self.bos_id = tok.token_to_id(BOS)
        self.eos_id = tok.token_to_id(EOS)
        self.pad_id = tok.token_to_id(PAD)
        if None in (self.bos_id, self.eos_id, self.pad_id):
            raise ValueError(f"tokenizer lacks one of the special tokens {SPECIAL_TOKENS}")

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = self.tok.encode(text, add_special_tokens=False).ids
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Ids of each text, without special tokens (parallel in Rust)."""
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; special tokens are skipped."""
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def save(self, path: str | Path) -> None:
        self.tok.save(str(path))

    @classmethod
    def load(cls, path: str | Path) -> PostTokenizer:
        from tokenizers import Tokenizer

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"tokenizer file {path} not found")
        return cls(Tokenizer.from_file(str(path)))


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig, length: int | None = None) -> PostTokenizer:
    """Train byte-level BPE on ``texts`` (the training split only).

    Pre-tokenization is GPT-2's byte-level regex (words, numbers, punctuation runs, whitespace), which keeps
    emoji and hashtags as byte sequences BPE can merge. Raises ``ValueError`` if ``vocab_size`` cannot hold
    the 256 bytes and the special tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if cfg.vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"tokenizer.vocab_size={cfg.vocab_size} is below 256 bytes + {len(SPECIAL_TOKENS)} specials")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=length)
    return PostTokenizer(tok)
