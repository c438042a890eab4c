"""Byte-level BPE tokenizer for posts (layer L1), trained and run by Hugging Face ``tokenizers``.

Byte-level means every UTF-8 byte has a token, so any post round-trips losslessly (no normalizer, no prefix
space). Special tokens mark post boundaries: ``<|bos|>`` before and ``<|eos|>`` after every document, and
``<|pad|>`` for batching. The file written is a standard ``tokenizer.json`` that ``transformers`` loads too.

An imported base keeps its own tokenizer: its ``tokenizer.json`` comes with a ``tokenizer_config.json`` beside
it (the Hugging Face file) naming which of its tokens play ``bos_token``/``eos_token``/``pad_token`` for posts
(SmolLM2: ``<|endoftext|>`` for all three; Llama 3: ``<|begin_of_text|>``/``<|end_of_text|>``) and its
``chat_template``. Without that file the tokenizer is tweetlm's own with the three tokens above.
This module does not know about Post records or token shards: ``tokenizer.encode`` does.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SPECIAL_TOKENS = [PAD, BOS, EOS]
SIDECAR = "tokenizer_config.json"  # beside tokenizer.json: the roles of a base's special tokens, chat template


@dataclass
class TokenizerConfig:
    """Attributes:
    vocab_size: total ids including the 256 byte tokens and the special tokens.
    min_frequency: merges seen fewer times than this are not learned.
    """

    vocab_size: int = 8192
    min_frequency: int = 2


class PostTokenizer:
    """Thin wrapper over ``tokenizers.Tokenizer`` with the post boundary tokens.

    ``specials`` maps ``bos_token``/``eos_token``/``pad_token`` (and, for a chat base, ``eot_token``) to tokens of
    the vocabulary (default: tweetlm's ``<|bos|>``/``<|eos|>``/``<|pad|>``); ``chat_template`` is the base's
    Jinja template, if any. Raises ``ValueError`` naming a special token the vocabulary lacks.
    """

    def __init__(self, tok, specials: dict | None = None, chat_template: str | None = None) -> None:
        self.tok = tok
        self.specials = dict(specials or {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD})
        self.chat_template = chat_template
        ids = {k: tok.token_to_id(v) for k, v in self.specials.items()}
        missing = [f"{k}={self.specials[k]!r}" for k, v in ids.items() if v is None]
        if missing or not {"bos_token", "eos_token", "pad_token"} <= set(ids):
            raise ValueError(f"tokenizer lacks the special tokens {missing or SPECIAL_TOKENS}")
        self.bos_id, self.eos_id, self.pad_id = ids["bos_token"], ids["eos_token"], ids["pad_token"]
        self.eot_id = ids.get("eot_token")  # a chat base's end-of-turn token (<|im_end|>), when it has one

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
        """Write ``tokenizer.json`` at ``path`` and, for a tokenizer with other special tokens or a chat template,
        ``tokenizer_config.json`` beside it."""
        path = Path(path)
        self.tok.save(str(path))
        sidecar = path.with_name(SIDECAR)
        own = self.specials == {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD} and not self.chat_template
        if not own:
            cfg = {**self.specials, "chat_template": self.chat_template, "add_bos_token": False}
            sidecar.write_text(json.dumps(cfg, indent=1, ensure_ascii=False))
        elif sidecar.exists():
            sidecar.unlink()

    @classmethod
    def load(cls, path: str | Path) -> PostTokenizer:
        """Read ``tokenizer.json`` at ``path`` (and ``tokenizer_config.json`` beside it when present).
        ``FileNotFoundError`` when ``path`` does not exist."""
        from tokenizers import Tokenizer

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"tokenizer file {path} not found")
        specials, template = None, None
        sidecar = path.with_name(SIDECAR)
        if sidecar.exists():
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
            specials = {k: _token_text(meta.get(k)) for k in ("bos_token", "eos_token", "pad_token", "eot_token")}
            specials = {k: v for k, v in specials.items() if v}
            template = meta.get("chat_template")
        return cls(Tokenizer.from_file(str(path)), specials or None, template)


def _token_text(v) -> str | None:
    """A special token as ``tokenizer_config.json`` writes it: a string or ``{"content": ...}``."""
    return v.get("content") if isinstance(v, dict) else v


def copy_tokenizer(src: str | Path, dst_dir: str | Path) -> None:
    """Copy ``tokenizer.json`` at ``src`` (and its ``tokenizer_config.json`` when present) into ``dst_dir``."""
    src, dst_dir = Path(src), Path(dst_dir)
    shutil.copyfile(src, dst_dir / "tokenizer.json")
    if src.with_name(SIDECAR).exists():
        shutil.copyfile(src.with_name(SIDECAR), dst_dir / SIDECAR)


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
