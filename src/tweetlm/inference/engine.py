"""The inference engine (layer L3): a checkpoint behind a text-in, text-out API with batching and streaming.

Requests are batched statically: prompts are left-padded to a common length, each row gets its own RoPE
positions and a key mask so padding is never attended to, and one KV cache serves the whole batch (prefill
once, then one token per step for every unfinished row). Each row has its own sampling settings and seed:
temperature, top-k, top-p, repetition penalty (CTRL, Keskar et al. 2019: logits of already-seen tokens
divided by the penalty when positive, multiplied when negative), stop strings, max tokens. Tweet mode stops at
the end of a post (``<|eos|>``) and never returns a post (prompt + completion) over 280 weighted characters as
the platform counts them (twitter-text v3, ``data.twitter_text``): a token that would cross the limit ends the
row instead (``finish_reason="length"``).

Lexically constrained decoding (``SamplingParams.required``, for ad copy's required terms, hashtag and call to
action): the model samples freely, and a required phrase not yet in the text is forced in, token by token, when
the model would end (its end-of-post or end-of-turn token) or when what is left of ``max_tokens``, the context or
the 280 weighted characters only just holds the missing phrases; after a forced phrase the model continues, so the
text goes on from it instead of having it appended after the end (a simple form of the constrained decoding of
Hokamp and Liu 2017, without their grid beam search). A phrase counts as present as whole words, case-insensitive
(``contains_phrase``).

A prompt is either the beginning of a post (a string, encoded after ``<|bos|>``; an empty prompt samples a whole
post) or a conversation (a list of ``{"role", "content"}`` messages), rendered with the checkpoint's chat
template (``tokenizer.chat``) followed by the assistant's turn; a reply ends at the template's end-of-turn token,
tweet mode counts the reply alone, and a conversation longer than the context loses its oldest turns first
(``Completion.dropped_turns`` says how many). Both kinds share one batch.
The engine knows nothing about HTTP (``serve/``) or training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tweetlm.inference.generate import KVCache, sample_next

MAX_TWEET_WEIGHTED_LENGTH = 280


@dataclass
class SamplingParams:
    """Per-request generation settings. ``temperature=0`` is greedy; ``top_k=0`` and ``top_p=1`` are off;
    ``repetition_penalty=1`` is off; ``seed=None`` draws from the global RNG; ``max_tokens`` counts new tokens;
    ``required``: phrases the text must contain (lexically constrained decoding, see ``Engine``)."""

    max_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    tweet_mode: bool = False
    ignore_eos: bool = False  # keep generating past <|eos|> (benchmarks; as vLLM's ignore_eos)
    required: list[str] = field(default_factory=list)  # lexical constraints: phrases the decoder forces in

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field for an out-of-range value."""
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")


@dataclass
class Completion:
    """One finished request: ``text`` (stop string excluded), new ``token_ids``, ``finish_reason`` (``"stop"``:
    end of post or a stop string; ``"length"``: ``max_tokens``, the context, or the 280 weighted-character limit
    in tweet mode), and ``prompt_tokens`` (including ``<|bos|>``)."""

    text: str
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int
    dropped_turns: int = 0  # a conversation's oldest turns left out to fit the context


def _weighted_length(text: str) -> int:
    from tweetlm.data.twitter_text import weighted_length

    return weighted_length(text)


def over_tweet_limit(text: str) -> bool:
    """True when ``text`` is over 280 weighted characters (twitter-text v3).

    The exact count (URL extraction, ~1 ms) is only run when a cheap upper bound could exceed the limit: a code
    point weighs at most 2 and a URL counts 23 and holds at least one dot, so ``2 * len + 23 * dots`` bounds it.
    """
    if 2 * len(text) + 23 * text.count(".") <= MAX_TWEET_WEIGHTED_LENGTH:
        return False
    return _weighted_length(text) > MAX_TWEET_WEIGHTED_LENGTH


def contains_phrase(text: str, phrase: str) -> bool:
    """``phrase`` occurs in ``text`` as whole words, case-insensitive (``bag`` is not in ``baggage``; runs of
    whitespace match any whitespace). An empty phrase is always present."""
    import re

    words = phrase.split()
    if not words:
        return True
    pat = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)"
    return re.search(pat, text, re.IGNORECASE) is not None


class _Row:
    """Decoding state of one request inside a batch."""

    def __init__(
        self, prompt_text: str, prompt_ids: list[int], params: SamplingParams, device, stop_ids: set[int],
        dropped_turns: int = 0,
    ) -> None:  # fmt: skip
        self.prompt_text = prompt_text  # counted with the reply in tweet mode ("" for a conversation)
        self.prompt_ids = prompt_ids
        self.params = params
        self.stop_ids = stop_ids
        self.dropped_turns = dropped_turns
        self.missing = [m for m in params.required if m.strip() and not contains_phrase(prompt_text, m)]
        self.forced: list[int] = []  # tokens of a required phrase still to feed
        self.just_forced = False
        self.ids: list[int] = []
        self.text = ""
        self.emitted = 0  # characters of ``text`` already streamed
        self.finish_reason: str | None = None
        self.gen = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        self.seen = torch.zeros(0, dtype=torch.long, device=device)

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


class Engine:
    """Generation over one model and tokenizer.

    Example:
        >>> eng = Engine.from_checkpoint("runs/demo/checkpoints/step_0001000")
        >>> eng.generate(["I love"], SamplingParams(max_tokens=20, seed=1))[0].text
    """

    def __init__(self, model: torch.nn.Module, tokenizer, model_name: str = "tweetlm") -> None:
        self.model = model.eval()
        self.tok = tokenizer
        self.model_name = model_name
        self.device = next(model.parameters()).device
        self.max_seq_len = model.cfg.max_seq_len
        self._chat = None

    @property
    def chat_format(self):
        """The checkpoint's chat template (``tokenizer.chat.ChatFormat``; tweetlm's own when it has none)."""
        if self._chat is None:
            from tweetlm.tokenizer.chat import ChatFormat

            self._chat = ChatFormat(self.tok)
        return self._chat

    @classmethod
    def from_checkpoint(cls, ckpt_dir: str | Path, device: str = "cpu", model_name: str | None = None) -> Engine:
        """Load ``model.safetensors``, ``config.json`` and ``tokenizer.json`` from a checkpoint folder, or from a
        run folder (its ``checkpoints/latest``). Raises ``FileNotFoundError`` naming what is missing."""
        from tweetlm.model.load import load_model, resolve_checkpoint
        from tweetlm.tokenizer.bpe import PostTokenizer

        path = resolve_checkpoint(ckpt_dir)
        is_run = Path(ckpt_dir).resolve() != path.resolve()
        name = model_name or (Path(ckpt_dir).resolve().name if is_run else path.name)
        return cls(load_model(path, device), PostTokenizer.load(path / "tokenizer.json"), name)

    def encode_prompt(self, prompt: str) -> list[int]:
        return [self.tok.bos_id, *self.tok.encode(prompt)]

    def chat(
        self,
        conversations: list[list[dict]],
        params: SamplingParams | list[SamplingParams],
        on_text: Callable[[int, str], None] | None = None,
    ) -> list[Completion]:
        """The assistant's next reply in each conversation (``generate`` with conversations as prompts)."""
        return self.generate(conversations, params, on_text)

    def chat_prompt_limit(self, max_tokens: int) -> int:
        """Most prompt tokens a conversation may take so that a reply of ``max_tokens`` (at most half the
        context) still fits the model's context."""
        return self.max_seq_len - min(max_tokens, self.max_seq_len // 2)

    def _make_row(self, i: int, prompt: str | list[dict], p: SamplingParams) -> _Row:
        eos = {self.tok.eos_id}
        if isinstance(prompt, str):
            ids = self.encode_prompt(prompt)
            if p.tweet_mode and over_tweet_limit(prompt):
                raise ValueError(f"prompt {i} is already over {MAX_TWEET_WEIGHTED_LENGTH} weighted characters")
            if len(ids) >= self.max_seq_len:
                raise ValueError(f"prompt {i} has {len(ids)} tokens; the model's context is {self.max_seq_len} tokens")
            return _Row(prompt, ids, p, self.device, eos)
        try:
            msgs, dropped = self.chat_format.fit_messages(prompt, self.chat_prompt_limit(p.max_tokens))
        except ValueError as e:
            raise ValueError(f"conversation {i}: {e}") from None
        ids = self.chat_format.encode_prompt(msgs)
        return _Row("", ids, p, self.device, eos | {self.chat_format.eot_id}, dropped)

    @torch.no_grad()
    def generate(
        self,
        prompts: list[str | list[dict]],
        params: SamplingParams | list[SamplingParams],
        on_text: Callable[[int, str], None] | None = None,
    ) -> list[Completion]:
        """Generate a continuation of each prompt (a post's beginning, or a conversation's next reply), all in
        one batch.

        ``params`` is one setting for all rows or one per row. ``on_text(row, delta)`` is called with new text as
        it becomes final (streaming; text that could still become part of a stop string or an incomplete UTF-8
        character is held back). Raises ``ValueError`` for invalid params or messages, a prompt that leaves no
        room in the model's context (``max_seq_len`` tokens), or a conversation whose last message alone does not.
        """
        if not prompts:
            return []
        plist = params if isinstance(params, list) else [params] * len(prompts)
        if len(plist) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(plist)} sampling params")
        for p in plist:
            p.validate()
        rows = [self._make_row(i, t, p) for i, (t, p) in enumerate(zip(prompts, plist))]
        encoded = [r.prompt_ids for r in rows]
        B = len(rows)
        L = max(len(e) for e in encoded)
        max_new = min(max(p.max_tokens for p in plist), self.max_seq_len - L)
        pad = self.tok.pad_id
        x = torch.full((B, L), pad, dtype=torch.long)
        key_valid = torch.zeros(B, L + max_new, dtype=torch.bool)
        positions = torch.zeros(B, L, dtype=torch.long)
        for i, e in enumerate(encoded):
            off = L - len(e)
            x[i, off:] = torch.tensor(e)
            key_valid[i, off:L] = True
            positions[i, off:] = torch.arange(len(e))
            rows[i].seen = torch.tensor(e, dtype=torch.long)
        x, key_valid, positions = x.to(self.device), key_valid.to(self.device), positions.to(self.device)
        cfg = self.model.cfg
        caches = [KVCache(B, cfg.kv_heads, L + max_new, cfg.head_dim, self.device) for _ in range(cfg.n_layer)]
        logits = self.model(x, 0, caches, positions, key_valid[:, :L])[:, -1]
        next_pos = positions[:, -1] + 1
        for step in range(max_new):
            nxt = torch.full((B,), pad, dtype=torch.long)
            for i, r in enumerate(rows):
                if r.done:
                    continue
                nxt[i] = self._pick(r, logits[i : i + 1])
                self._advance(i, r, int(nxt[i]), L + step + 1, on_text)
            if all(r.done for r in rows) or step == max_new - 1:
                break
            key_valid[:, L + step] = torch.tensor([not r.done for r in rows], device=self.device)
            logits = self.model(
                nxt.view(B, 1).to(self.device), L + step, caches, next_pos.view(B, 1), key_valid[:, : L + step + 1]
            )[:, -1]
            next_pos = next_pos + 1
        out = []
        for i, r in enumerate(rows):
            if not r.done:
                self._finish(i, r, "length", on_text)
            out.append(Completion(r.text, r.ids, r.finish_reason, len(r.prompt_ids), r.dropped_turns))
        return out

    def _glue_mask(self) -> torch.Tensor:
        """``(V,)`` bool: tokens whose text starts with a word character, or a byte of an unfinished character
        (they would glue onto a word)."""
        if getattr(self, "_glue", None) is None:
            import re

            word = re.compile(r"\w|\ufffd")  # U+FFFD: a byte that may complete into a letter
            vocab = self.tok.vocab_size
            self._glue = torch.tensor([bool(word.match(self.tok.decode([i]))) for i in range(vocab)])
        return self._glue

    def _pick(self, r: _Row, logits: torch.Tensor) -> int:
        if r.forced:
            token = r.forced.pop(0)
            r.just_forced = not r.forced
            return token
        p = r.params
        if r.just_forced:  # the forced phrase ends a word: the next token may not glue onto it ("now" + "w")
            r.just_forced = False
            glue = self._glue_mask().to(logits.device)
            logits = logits.masked_fill(glue[: logits.size(-1)], float("-inf"))
        if p.repetition_penalty != 1.0 and r.seen.numel():
            logits = logits.clone()
            seen = r.seen.unique().to(logits.device)
            vals = logits[0, seen]
            logits[0, seen] = torch.where(vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty)
        token = int(sample_next(logits, p.temperature, p.top_k, p.top_p, r.gen)[0])
        if not (r.missing and (token in r.stop_ids or self._budget_tight(r))):
            return token
        if r.text.endswith("\ufffd"):  # a character is half written: finish it before forcing (never end here)
            stops = torch.tensor(sorted(r.stop_ids), device=logits.device)
            logits = logits.index_fill(-1, stops, float("-inf"))
            return int(sample_next(logits, p.temperature, p.top_k, p.top_p, r.gen)[0])
        sep = "" if not r.text or r.text[-1].isspace() else " "
        forced = self.tok.encode(sep + r.missing[0])
        r.forced = forced[1:]
        r.just_forced = not r.forced
        return forced[0]

    def _budget_tight(self, r: _Row) -> bool:
        """Whether what is left (tokens, context, weighted characters in tweet mode) only just holds the missing
        required phrases, so the next one has to be forced now."""
        need = sum(len(self.tok.encode(" " + m)) for m in r.missing)
        left = min(r.params.max_tokens - len(r.ids), self.max_seq_len - len(r.prompt_ids) - len(r.ids))
        if left - 4 <= need:  # 3 tokens of slack: finishing a half-written character first may take some
            return True
        if r.params.tweet_mode:
            need_w = sum(2 * len(m) + 1 for m in r.missing)  # an upper bound of their weighted length
            text = r.prompt_text + r.text
            if 2 * len(text) + 23 * text.count(".") + need_w >= MAX_TWEET_WEIGHTED_LENGTH - 2:
                return _weighted_length(text) + need_w >= MAX_TWEET_WEIGHTED_LENGTH - 2
        return False

    def _advance(self, i: int, r: _Row, token: int, used: int, on_text) -> None:
        p = r.params
        if token in r.stop_ids and not p.ignore_eos:
            self._finish(i, r, "stop", on_text)
            return
        text = self.tok.decode(r.ids + [token])
        if p.tweet_mode and over_tweet_limit(r.prompt_text + text):
            self._finish(i, r, "length", on_text)  # the token would cross 280: the post ends before it
            return
        r.ids.append(token)
        r.seen = torch.cat([r.seen, torch.tensor([token])])
        r.text = text
        if r.params.required:  # a phrase written earlier can be broken by what follows ("legroom" + "s")
            r.missing = [m for m in r.params.required if m.strip() and not contains_phrase(r.prompt_text + text, m)]
        for s in p.stop:
            cut = r.text.find(s)
            if s and cut >= 0:
                r.text = r.text[:cut]
                self._finish(i, r, "stop", on_text)
                return
        if len(r.ids) >= p.max_tokens or used >= self.max_seq_len:
            self._finish(i, r, "length", on_text)
            return
        if on_text:
            hold = max((len(s) for s in p.stop), default=1) - 1
            safe = len(r.text) - hold
            while safe > r.emitted and r.text[safe - 1] == "\ufffd":  # an incomplete UTF-8 character
                safe -= 1
            if safe > r.emitted:
                on_text(i, r.text[r.emitted : safe])
                r.emitted = safe

    def _finish(self, i: int, r: _Row, reason: str, on_text) -> None:
        r.finish_reason = reason
        if on_text and len(r.text) > r.emitted:
            on_text(i, r.text[r.emitted :])
        r.emitted = len(r.text)
