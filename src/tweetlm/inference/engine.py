"""The inference engine (layer L3): a checkpoint behind a text-in, text-out API with continuous batching.

Continuous batching (as vLLM, Kwon et al. 2023, and Orca, Yu et al. 2022): requests wait in a queue; each
``step()`` admits waiting requests into free slots, prefills their prompts together in one padded batch (in chunks
of at most ``prefill_chunk`` tokens per step while other requests are decoding, so a long prompt never stalls them
for long), then runs one decode step for every running request together. A request that finishes leaves its slot at
once and the next waiting one takes it at the next step; each row keeps its own sampling settings, stop strings,
tweet mode and seed, so its output does not depend on what it was batched with. Keys and values live in a
preallocated cache per slot (``kv_cache.SlotKVCache``) that is written in place; a prompt that starts like the
tokens of another slot (a chat's earlier turns, ad-copy candidates of one brief) copies that prefix instead of
computing it again. ``generate()`` is thread-safe: callers in several threads (and the server's ``Batcher``) share
the slots, and whichever holds the step lock advances everyone's rows.

Sampling per row: temperature, top-k, top-p, repetition penalty (CTRL, Keskar et al. 2019: logits of
already-seen tokens divided by the penalty when positive, multiplied when negative), stop strings, max tokens.
Tweet mode stops at the end of a post (``<|eos|>``) and never returns a post (prompt + completion) over 280
weighted characters as the platform counts them (twitter-text v3, ``data.twitter_text``): a token that would
cross the limit ends the row instead (``finish_reason="length"``).

Lexically constrained decoding (``SamplingParams.required``, for ad copy's required terms, hashtag and call to
action): the model samples freely, and a required phrase not yet in the text is forced in, token by token, when
the model would end (its end-of-post or end-of-turn token) or when what is left of ``max_tokens``, the context or
the 280 weighted characters only just holds the missing phrases; after a forced phrase the model continues, so the
text goes on from it instead of having it appended after the end (a simple form of the constrained decoding of
Hokamp and Liu 2017, without their grid beam search). A phrase counts as present as whole words, case-insensitive
(``data.briefs.contains_phrase``).

A prompt is either the beginning of a post (a string, encoded after ``<|bos|>``; an empty prompt samples a whole
post) or a conversation (a list of ``{"role", "content"}`` messages), rendered with the checkpoint's chat
template (``tokenizer.chat``) followed by the assistant's turn; a reply ends at the template's end-of-turn token,
tweet mode counts the reply alone, and a conversation longer than the context loses its oldest turns first
(``Completion.dropped_turns`` says how many). Both kinds share one batch.

Weights run in ``float32`` (as trained), ``bfloat16``, or ``int8`` (weight-only, per output channel, bfloat16
activations; CPU only: ``inference.quantize``). Decoding one token reads every weight once, so on a CPU the step
time follows the weights' bytes (measured in ``benchmarks/bench_inference.py``, with the bits-per-byte of each
precision on held-out posts).
The engine knows nothing about HTTP (``serve/``) or training.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tweetlm.data.briefs import contains_phrase
from tweetlm.inference.generate import sample_next
from tweetlm.inference.kv_cache import SlotKVCache, common_prefix

PRECISIONS = ("float32", "bfloat16", "int8")
DEFAULT_MAX_CONTEXT = 2048  # tokens per slot when the model's own context is longer (SmolLM2: 8,192)

MAX_TWEET_WEIGHTED_LENGTH = 280


@dataclass
class SamplingParams:
    """Per-request generation settings. ``temperature=0`` is greedy; ``top_k=0``, ``min_p=0`` and ``top_p=1`` are off;
    ``repetition_penalty=1`` is off; ``seed=None`` draws from the global RNG; ``max_tokens`` counts new tokens;
    ``required``: phrases the text must contain (lexically constrained decoding, see ``Engine``)."""

    max_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0  # keep tokens of probability >= min_p x the best token's (inference.generate.candidates)
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
        if not 0 <= self.min_p < 1:
            raise ValueError(f"min_p must be in [0, 1), got {self.min_p}")
        if not 0.01 <= self.repetition_penalty <= 100:
            raise ValueError(f"repetition_penalty must be in [0.01, 100], got {self.repetition_penalty}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {self.seed}")
        if any(not s for s in self.stop):
            raise ValueError("a stop string must not be empty")


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


class Request:
    """One request inside the engine: its prompt, settings and decoding state.

    ``state``: ``"waiting"`` (queued), ``"prefill"`` (in a slot, prompt being computed), ``"decode"`` (one new
    token per step), ``"done"``. ``completion()`` is its result once done; ``cancel()`` (from any thread) makes it
    leave its slot at the next step with ``finish_reason="cancelled"``; ``error`` is the exception that failed
    this request alone (the others go on). ``on_done(request)`` is called once when it ends, by whichever
    thread ran that step."""

    def __init__(
        self, prompt_text: str, prompt_ids: list[int], params: SamplingParams, stop_ids: set[int],
        dropped_turns: int = 0, on_text: Callable[[str], None] | None = None,
    ) -> None:  # fmt: skip
        self.prompt_text = prompt_text  # counted with the reply in tweet mode ("" for a conversation)
        self.prompt_ids = prompt_ids
        self.params = params
        self.stop_ids = stop_ids
        self.dropped_turns = dropped_turns
        self.on_text = on_text
        self.missing = [m for m in params.required if m.strip() and not contains_phrase(prompt_text, m)]
        self.forced: list[int] = []  # tokens of a required phrase still to feed
        self.just_forced = False
        self.ids: list[int] = []
        self.text = ""
        self.emitted = 0  # characters of ``text`` already streamed
        self.finish_reason: str | None = None
        self.error: BaseException | None = None
        self.gen = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        self.seen = torch.tensor(prompt_ids, dtype=torch.long)
        self.state = "waiting"
        self.slot = -1
        self.cached = 0  # tokens of prompt + reply whose keys and values are in the slot
        self.pending = -1  # the last sampled token, fed at the next decode step
        self.cancelled = False
        self.on_done: Callable[[Request], None] | None = None
        self.order = -1  # admission order (prefill goes first come, first served)

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def cancel(self) -> None:
        self.cancelled = True

    def completion(self) -> Completion:
        return Completion(self.text, self.ids, self.finish_reason or "", len(self.prompt_ids), self.dropped_turns)


class Engine:
    """Generation over one model and tokenizer, with continuous batching over ``max_batch`` slots.

    ``max_context``: tokens per slot (prompt + reply), at most the model's ``max_seq_len``; default the model's
    context up to 2,048. ``prefill_chunk``: most prompt tokens computed per step while others decode.
    ``prefix_caching``: reuse keys and values of a prompt's prefix held by a slot (off: every prompt computed
    whole, for measuring). ``precision``: ``float32``, ``bfloat16`` or ``int8`` weights (see the module; the
    model is converted in place).
    The KV cache takes ``2 * n_layer * max_batch * n_kv_head * max_context * head_dim`` numbers of the cache
    dtype (float32 for float32 weights, else bfloat16), allocated at the first request (SmolLM2-135M, 8 slots
    of 2,048 tokens: 755 MB in float32).

    Example:
        >>> eng = Engine.from_checkpoint("runs/demo", precision="int8")
        >>> eng.generate(["I love"], SamplingParams(max_tokens=20, seed=1))[0].text
    """

    def __init__(
        self, model: torch.nn.Module, tokenizer, model_name: str = "tweetlm", max_batch: int = 8,
        max_context: int | None = None, prefill_chunk: int = 256, precision: str = "float32",
        prefix_caching: bool = True,
    ) -> None:  # fmt: skip
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if prefill_chunk < 1:
            raise ValueError(f"prefill_chunk must be >= 1, got {prefill_chunk}")
        cfg = model.cfg
        self.cfg = cfg
        self.model = _apply_precision(model.eval(), precision)
        self.precision = precision
        self.tok = tokenizer
        self.model_name = model_name
        self.device = next(self.model.parameters()).device
        self.max_seq_len = min(cfg.max_seq_len, max_context or DEFAULT_MAX_CONTEXT)
        if max_context is not None and not 1 < max_context <= cfg.max_seq_len:
            raise ValueError(f"max_context must be in 2..{cfg.max_seq_len} (the model's context), got {max_context}")
        self.max_batch = max_batch
        self.prefill_chunk = prefill_chunk
        self.prefix_caching = prefix_caching
        self.cache_dtype = torch.float32 if precision == "float32" else torch.bfloat16
        self._cache: SlotKVCache | None = None
        self._slots: list[Request | None] = []
        self._waiting: deque[Request] = deque()
        self._inbox: deque[Request] = deque()  # added from any thread, moved to _waiting by the stepping one
        self._step_lock = threading.Lock()
        self._admitted = 0
        self._cond = threading.Condition()
        self._chat = None
        self.prompt_tokens_reused = 0

    @property
    def chat_format(self):
        """The checkpoint's chat template (``tokenizer.chat.ChatFormat``; tweetlm's own when it has none)."""
        if self._chat is None:
            from tweetlm.tokenizer.chat import ChatFormat

            self._chat = ChatFormat(self.tok)
        return self._chat

    @classmethod
    def from_checkpoint(
        cls, ckpt_dir: str | Path, device: str = "cpu", model_name: str | None = None, **kwargs
    ) -> Engine:
        """Load ``model.safetensors``, ``config.json`` and ``tokenizer.json`` from a checkpoint folder, or from a
        run folder (its ``checkpoints/latest``); ``kwargs`` go to ``Engine`` (``max_batch``, ``max_context``,
        ``precision``...). Raises ``FileNotFoundError`` naming what is missing."""
        from tweetlm.model.load import load_model, resolve_checkpoint
        from tweetlm.tokenizer.bpe import PostTokenizer

        path = resolve_checkpoint(ckpt_dir)
        is_run = Path(ckpt_dir).resolve() != path.resolve()
        name = model_name or (Path(ckpt_dir).resolve().name if is_run else path.name)
        return cls(load_model(path, device), PostTokenizer.load(path / "tokenizer.json"), name, **kwargs)

    def encode_prompt(self, prompt: str) -> list[int]:
        """``<|bos|>`` and the ids of ``prompt``; ``ValueError`` for text that is not valid Unicode (a lone
        surrogate such as ``"\\ud800"``, which JSON can carry)."""
        _check_unicode(prompt, "prompt")
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

    def make_request(
        self, prompt: str | list[dict], params: SamplingParams, on_text: Callable[[str], None] | None = None,
        index: int = 0,
    ) -> Request:  # fmt: skip
        """Validate and encode one request (not queued yet). Raises ``ValueError`` for invalid params, a prompt
        that leaves no room in the context, or a conversation whose last message alone does not fit."""
        params.validate()
        eos = {self.tok.eos_id}
        if isinstance(prompt, str):
            ids = self.encode_prompt(prompt)
            if params.tweet_mode and over_tweet_limit(prompt):
                raise ValueError(f"prompt {index} is already over {MAX_TWEET_WEIGHTED_LENGTH} weighted characters")
            if len(ids) >= self.max_seq_len:
                raise ValueError(
                    f"prompt {index} has {len(ids)} tokens; the model's context is {self.max_seq_len} tokens"
                )
            return Request(prompt, ids, params, eos, on_text=on_text)
        try:
            msgs, dropped = self.chat_format.fit_messages(prompt, self.chat_prompt_limit(params.max_tokens))
        except ValueError as e:
            raise ValueError(f"conversation {index}: {e}") from None
        ids = self.chat_format.encode_prompt(msgs)
        return Request("", ids, params, eos | {self.chat_format.eot_id}, dropped, on_text)

    def add(self, req: Request) -> Request:
        """Queue a request made by ``make_request`` (thread-safe); it runs at the next ``step()``."""
        with self._cond:
            self._inbox.append(req)
            self._cond.notify_all()
        return req

    @property
    def num_waiting(self) -> int:
        """Requests queued and not yet in a slot."""
        return len(self._inbox) + len(self._waiting)

    @property
    def num_running(self) -> int:
        return sum(r is not None for r in self._slots)

    def has_work(self) -> bool:
        return bool(self._inbox or self._waiting or any(r is not None for r in self._slots))

    @torch.no_grad()
    def generate(
        self,
        prompts: list[str | list[dict]],
        params: SamplingParams | list[SamplingParams],
        on_text: Callable[[int, str], None] | None = None,
    ) -> list[Completion]:
        """Generate a continuation of each prompt (a post's beginning, or a conversation's next reply); all of
        them are queued at once and run continuously batched, ``max_batch`` at a time.

        ``params`` is one setting for all rows or one per row. ``on_text(row, delta)`` is called with new text as
        it becomes final (streaming; text that could still become part of a stop string or an incomplete UTF-8
        character is held back). Raises ``ValueError`` for invalid params or messages, a prompt that leaves no
        room in the model's context, or a conversation whose last message alone does not fit (before anything
        runs), and ``RuntimeError`` naming the row when a row failed while generating.
        """
        if not prompts:
            return []
        plist = params if isinstance(params, list) else [params] * len(prompts)
        if len(plist) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(plist)} sampling params")

        def sink(i: int):
            return None if on_text is None else (lambda delta: on_text(i, delta))

        reqs = [self.make_request(t, p, sink(i), i) for i, (t, p) in enumerate(zip(prompts, plist))]
        for r in reqs:
            self.add(r)
        try:
            while not all(r.done for r in reqs):
                self.step()
        except BaseException:
            for r in reqs:
                r.cancel()
            raise
        for i, r in enumerate(reqs):
            if r.error is not None:
                raise RuntimeError(f"row {i} failed: {r.error!r}") from r.error
        return [r.completion() for r in reqs]

    def fail_all(self, error: BaseException) -> list[Request]:
        """End every queued and running request with ``error`` (after a step failed as a whole, e.g. the KV
        cache could not be allocated). Returns them."""
        with self._step_lock:
            with self._cond:
                reqs = [*self._inbox, *self._waiting, *(r for r in self._slots if r is not None)]
                self._inbox.clear()
                self._waiting.clear()
            finished: list[Request] = []
            for r in reqs:
                r.error = error
                self._finish(r, "error", finished)
            return finished

    # ---- the scheduler -------------------------------------------------------------------------------------

    def _ensure_cache(self) -> SlotKVCache:
        if self._cache is None or len(self._slots) != self.max_batch:
            if any(r is not None for r in self._slots):
                raise RuntimeError("max_batch changed while requests were running")
            cfg = self.cfg
            self._cache = SlotKVCache(
                cfg.n_layer, self.max_batch, cfg.kv_heads, self.max_seq_len, cfg.head_dim, self.device,
                self.cache_dtype,
            )  # fmt: skip
            self._slots = [None] * self.max_batch
        return self._cache

    @torch.no_grad()
    def step(self) -> list[Request]:
        """One scheduling step (thread-safe): admit waiting requests into free slots, prefill, then decode one
        token for every running request. Returns the requests that finished in this step."""
        with self._step_lock:
            finished: list[Request] = []
            cache = self._ensure_cache()
            with self._cond:
                self._waiting.extend(self._inbox)
                self._inbox.clear()
            for r in list(self._waiting):
                if r.cancelled:
                    self._waiting.remove(r)
                    self._finish(r, "cancelled", finished)
            for r in self._slots:
                if r is not None and r.cancelled and not r.done:
                    self._finish(r, "cancelled", finished)
            self._admit_waiting(cache)
            decoding = any(r is not None and r.state == "decode" for r in self._slots)
            budget = self.prefill_chunk if decoding else 1 << 30
            while budget > 0:
                todo = sorted((r for r in self._slots if r is not None and r.state == "prefill"), key=lambda r: r.order)
                if not todo:
                    break
                budget -= self._prefill(todo, cache, budget, finished)
            self._decode(cache, finished)
            return finished

    def _admit(self, r: Request, cache: SlotKVCache) -> None:
        """Give ``r`` a free slot: the free slot already holding the longest prefix of its prompt (reused in
        place), else the lowest free slot, into which a longer prefix held by any other slot is copied. A
        request left with one prompt token to compute is fed it in the next decode step, with the others."""
        free = [s for s, x in enumerate(self._slots) if x is None]
        if not self.prefix_caching:
            for s in range(len(self._slots)):
                if self._slots[s] is None:
                    cache.ids[s].clear()
        slot, have = cache.longest_prefix(r.prompt_ids, free)
        if slot < 0:
            slot = free[0]
        others = [s for s in range(len(self._slots)) if s != slot]
        src, longer = cache.longest_prefix(r.prompt_ids, others)
        if longer > have:
            cache.copy_prefix(src, slot, longer)
            have = longer
        have = min(have, len(r.prompt_ids) - 1)  # the last prompt token is always computed: it gives the logits
        del cache.ids[slot][have:]
        r.slot, r.cached, r.state = slot, have, "prefill"
        if have == len(r.prompt_ids) - 1:  # all but the last prompt token reused: it joins the decode step
            r.state, r.pending = "decode", r.prompt_ids[-1]
        r.order = self._admitted
        self._admitted += 1
        self.prompt_tokens_reused += have
        self._slots[slot] = r

    def _admit_waiting(self, cache: SlotKVCache) -> None:
        """Admit waiting requests into free slots, first come first served. A request whose prompt shares a
        longer prefix with a request admitted in this step than with any slot's cache waits one step, so the
        candidates of one prompt compute it once and then each feed only its last token."""
        admitted: list[Request] = []
        for r in list(self._waiting):
            if None not in self._slots:
                break
            if self.prefix_caching and admitted:
                pend = max(common_prefix(r.prompt_ids, a.prompt_ids) for a in admitted)
                _, have = cache.longest_prefix(r.prompt_ids, range(len(self._slots)))
                if pend >= have + 8:
                    continue
            self._waiting.remove(r)
            self._admit(r, cache)
            admitted.append(r)

    def _prefill(self, rows: list[Request], cache: SlotKVCache, budget: int, finished: list[Request]) -> int:
        """One batched forward over the next prompt chunk of each of ``rows`` (at most ``prefill_chunk``
        tokens each, ``budget`` in all, first admitted first); a row whose prompt is then complete samples its
        first token. Returns the prompt tokens computed. (Decoding rows do not ride along: padding them to the
        chunk's length made a step slower than a pass of its own, measured on 2 CPU cores.)"""
        chunks: list[tuple[Request, int, int]] = []
        for r in rows:
            if budget <= 0:
                break
            end = min(len(r.prompt_ids), r.cached + self.prefill_chunk, r.cached + budget)
            chunks.append((r, r.cached, end))
            budget -= end - r.cached
        computed = sum(e - b for _, b, e in chunks)
        n, T = len(chunks), max(e - b for _, b, e in chunks)
        dev, last = self.device, cache.max_len - 1
        x = torch.full((n, T), self.tok.pad_id, dtype=torch.long)
        for i, (r, b, e) in enumerate(chunks):
            x[i, : e - b] = torch.tensor(r.prompt_ids[b:e])
        starts = torch.tensor([b for _, b, _ in chunks]).view(n, 1)
        pos = (starts + torch.arange(T).view(1, T)).clamp(max=last)  # padding writes past the prompt: harmless
        span = int(pos.max()) + 1
        visible = torch.arange(span).view(1, 1, span) <= pos.view(n, T, 1)
        mask = torch.zeros(n, 1, T, span).masked_fill(~visible.view(n, 1, T, span), float("-inf"))
        slots = torch.tensor([r.slot for r, _, _ in chunks])
        at = torch.tensor([e - b - 1 for _, b, e in chunks])
        try:
            logits = self.model(
                x.to(dev), pos.to(dev), cache.batch_views(slots.to(dev), pos.to(dev), span), mask.to(dev),
                logits_at=at.to(dev),
            )[:, 0].float()  # fmt: skip
        except Exception as e:  # the model failed on these rows: they fail, the engine goes on
            for r, _, _ in chunks:
                r.error = e
                self._finish(r, "error", finished)
            return computed
        for i, (r, b, e) in enumerate(chunks):
            cache.ids[r.slot].extend(r.prompt_ids[b:e])
            r.cached = e
            if e == len(r.prompt_ids):
                r.state = "decode"
                self._next_token(r, logits[i : i + 1], finished)
        return computed

    def _decode(self, cache: SlotKVCache, finished: list[Request]) -> None:
        """One token for every decoding request: one forward over slots ``0..hi-1`` (slots without a decoding
        request get a masked dummy token written past what they hold)."""
        rows = [r for r in self._slots if r is not None and r.state == "decode" and not r.done]
        if not rows:
            return
        hi = max(r.slot for r in rows) + 1
        tokens = [self.tok.pad_id] * hi
        pos = [0] * hi
        for s in range(hi):
            r = self._slots[s]
            if r is not None and r.state == "decode" and not r.done:
                tokens[s], pos[s] = r.pending, r.cached
            else:  # a free slot or one still in prefill: write where nothing valid is held yet
                held = r.cached if r is not None else len(cache.ids[s])
                if held >= cache.max_len:
                    del cache.ids[s][cache.max_len - 1 :]
                    held = cache.max_len - 1
                pos[s] = held
        span = max(pos) + 1
        pos_t = torch.tensor(pos, device=self.device)
        visible = torch.arange(span, device=self.device).view(1, span) <= pos_t.view(hi, 1)
        mask = torch.zeros(hi, 1, 1, span, device=self.device).masked_fill(~visible.view(hi, 1, 1, span), float("-inf"))
        x = torch.tensor(tokens, device=self.device).view(hi, 1)
        try:
            logits = self.model(x, pos_t.view(hi, 1), cache.decode_views(pos_t, span), mask)[:, -1].float()
        except Exception as e:  # a failed forward fails the rows in it, never the engine
            for r in rows:
                r.error = e
                self._finish(r, "error", finished)
            return
        for r in rows:
            cache.ids[r.slot].append(r.pending)
            r.cached += 1
            self._next_token(r, logits[r.slot : r.slot + 1], finished)

    def _next_token(self, r: Request, logits: torch.Tensor, finished: list[Request]) -> None:
        try:
            token = self._pick(r, logits)
            self._advance(r, token, len(r.prompt_ids) + len(r.ids) + 1, finished)
        except Exception as e:  # a bad row (its settings, its text) fails alone
            r.error = e
            self._finish(r, "error", finished)
            return
        if not r.done:
            r.pending = token

    def _glue_mask(self) -> torch.Tensor:
        """``(V,)`` bool: tokens whose text starts with a word character, or a byte of an unfinished character
        (they would glue onto a word)."""
        if getattr(self, "_glue", None) is None:
            import re

            word = re.compile(r"\w|\ufffd")  # U+FFFD: a byte that may complete into a letter
            vocab = self.tok.vocab_size
            self._glue = torch.tensor([bool(word.match(self.tok.decode([i]))) for i in range(vocab)])
        return self._glue

    def _pick(self, r: Request, logits: torch.Tensor) -> int:
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
        token = int(sample_next(logits, p.temperature, p.top_k, p.top_p, r.gen, p.min_p)[0])
        if not (r.missing and (token in r.stop_ids or self._budget_tight(r))):
            return token
        if r.text.endswith("\ufffd"):  # a character is half written: finish it before forcing (never end here)
            stops = torch.tensor(sorted(r.stop_ids), device=logits.device)
            logits = logits.index_fill(-1, stops, float("-inf"))
            return int(sample_next(logits, p.temperature, p.top_k, p.top_p, r.gen, p.min_p)[0])
        sep = "" if not r.text or r.text[-1].isspace() else " "
        forced = self.tok.encode(sep + r.missing[0])
        r.forced = forced[1:]
        r.just_forced = not r.forced
        return forced[0]

    def _budget_tight(self, r: Request) -> bool:
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

    def _advance(self, r: Request, token: int, used: int, finished: list[Request]) -> None:
        p = r.params
        if token in r.stop_ids and not p.ignore_eos:
            self._finish(r, "stop", finished)
            return
        text = self.tok.decode(r.ids + [token])
        if p.tweet_mode and over_tweet_limit(r.prompt_text + text):
            self._finish(r, "length", finished)  # the token would cross 280: the post ends before it
            return
        r.ids.append(token)
        if p.repetition_penalty != 1.0:
            r.seen = torch.cat([r.seen, torch.tensor([token])])
        r.text = text
        if r.params.required:  # a phrase written earlier can be broken by what follows ("legroom" + "s")
            r.missing = [m for m in r.params.required if m.strip() and not contains_phrase(r.prompt_text + text, m)]
        for s in p.stop:
            cut = r.text.find(s)
            if s and cut >= 0:
                r.text = r.text[:cut]
                self._finish(r, "stop", finished)
                return
        if len(r.ids) >= p.max_tokens or used >= self.max_seq_len:
            self._finish(r, "length", finished)
            return
        if r.on_text:
            hold = max((len(s) for s in p.stop), default=1) - 1
            safe = len(r.text) - hold
            while safe > r.emitted and r.text[safe - 1] == "\ufffd":  # an incomplete UTF-8 character
                safe -= 1
            if safe > r.emitted:
                r.on_text(r.text[r.emitted : safe])
                r.emitted = safe

    def _finish(self, r: Request, reason: str, finished: list[Request]) -> None:
        """End ``r``: flush its held-back text, free its slot (its keys and values stay for prefix reuse). A reply
        cut by ``max_tokens`` or the context may end inside a character whose first bytes were its last tokens:
        those bytes (decoded as U+FFFD) are dropped, never sent."""
        r.finish_reason = reason
        r.state = "done"
        if reason == "length":
            r.text = r.text.rstrip("\ufffd")
        if r.on_text and len(r.text) > r.emitted and reason not in ("error", "cancelled"):
            try:
                r.on_text(r.text[r.emitted :])
            except Exception:  # a failing sink (a gone client) must not fail the engine
                pass
        r.emitted = len(r.text)
        if 0 <= r.slot < len(self._slots) and self._slots[r.slot] is r:
            self._slots[r.slot] = None
        finished.append(r)
        if r.on_done is not None:
            try:
                r.on_done(r)
            except Exception:  # a failing listener must not fail the engine
                pass


def _check_unicode(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what} is not valid Unicode (a lone surrogate at character {e.start})") from None


def _apply_precision(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """``model`` with weights in ``precision`` (``PRECISIONS``); int8 is weight-only and CPU-only
    (``inference.quantize``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bfloat16":
        return model.to(torch.bfloat16)
    if precision == "int8":
        from tweetlm.inference.quantize import quantize_int8_weights

        return quantize_int8_weights(model)
    return model
