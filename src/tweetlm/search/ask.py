"""Ask (layer L4, search): retrieve posts, generate an answer from them, keep only citations of those posts.

``ask(index, question, generator)`` retrieves the top posts (``SearchIndex.search``), writes a prompt that lists
each post as ``[<post id>] text`` and asks for inline citations in that form (``data.sft.grounded_prompt``, the
same form grounded chat, ``ground_messages``, puts in the user's turn), calls the generator, then
``validate_citations`` rewrites the answer: a bracketed id that is one of the posts given stays; any other
bracketed token (an invented id, a post not in the prompt, ``[sic]``) is removed. So an answer never cites a
post it was not given, whatever the model writes.

Generators are callables ``prompt -> text``: ``EngineGenerator`` wraps the tweetlm engine
(``Engine.from_checkpoint``); ``OpenAIGenerator`` calls any OpenAI-compatible endpoint (``openai`` client, chat
completions), e.g. ``tweetlm serve`` or vLLM with a larger model. ``prepare``/``finish`` split ``ask`` around the
generation step for callers that generate elsewhere (the HTTP server's batcher).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from tweetlm.data.sft import grounded_prompt
from tweetlm.search.index import Hit, SearchIndex, SearchParams

_BRACKET = re.compile(r"\s?\[([^\[\]\n]{1,200})\]")


@dataclass
class Answer:
    """``text``: the answer with only valid citations; ``cited``: ids cited, in order of first citation (all
    among ``posts``); ``removed``: bracketed tokens stripped; ``raw``: what the generator wrote."""

    question: str
    text: str
    cited: list[str]
    removed: list[str]
    posts: list[Hit]
    raw: str
    prompt: str = field(repr=False, default="")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("prompt")
        return d


def _post_lines(hits: list[Hit]) -> list[tuple[str, str, str]]:
    meta = lambda h: ", ".join(x for x in ((h.created_at or "")[:10], f"@{h.author_id}" if h.author_id else "") if x)  # noqa: E731
    return [(h.id, meta(h), h.text) for h in hits]


def build_prompt(question: str, hits: list[Hit]) -> str:
    """The prompt for ``question`` over ``hits`` for a base model: ``data.sft.grounded_prompt`` (one line per
    post: ``[id] (date, author) text``) then ``Answer:``."""
    return grounded_prompt(question, _post_lines(hits)) + "\nAnswer:"


def ground_messages(
    index: SearchIndex, messages: list[dict], params: SearchParams | None = None,
    fits: Callable[[list[dict]], bool] | None = None,
) -> tuple[list[dict], list[Hit]]:  # fmt: skip
    """Grounded chat: retrieve posts for the conversation's last user message and put them in that message
    (``data.sft.grounded_prompt``, the form the fine-tuned model learnt from TweetQA). While ``fits(messages)``
    is false the lowest-ranked post is left out. Returns the messages for the model and the posts given.
    ``ValueError`` when the last message is not a non-empty user message or no post matches."""
    if not messages or messages[-1].get("role") != "user" or not str(messages[-1].get("content", "")).strip():
        raise ValueError("a grounded turn needs the conversation to end with a non-empty user message")
    question = messages[-1]["content"]
    hits = index.search(question, params or SearchParams(k=5))
    if not hits:
        raise ValueError("no posts match the question and filters; nothing to answer from")
    while True:
        out = [*messages[:-1], {"role": "user", "content": grounded_prompt(question, _post_lines(hits))}]
        if fits is None or fits(out) or len(hits) == 1:
            return out, hits
        hits = hits[:-1]


def validate_citations(text: str, allowed_ids: set[str]) -> tuple[str, list[str], list[str]]:
    """``(clean text, cited ids, removed tokens)``. Inside a bracket, ids may be separated by commas or
    semicolons; the allowed ones are kept as ``[a, b]``, the rest removed (the bracket too when none is left)."""
    cited: list[str] = []
    removed: list[str] = []

    def repl(m: re.Match) -> str:
        parts = [x.strip() for x in re.split(r"[,;]", m.group(1)) if x.strip()]
        keep = [x for x in parts if x in allowed_ids]
        removed.extend(x for x in parts if x not in allowed_ids)
        for x in keep:
            if x not in cited:
                cited.append(x)
        if not keep:
            return ""
        return m.group(0)[: len(m.group(0)) - len(m.group(0).lstrip())] + "[" + ", ".join(keep) + "]"

    clean = _BRACKET.sub(repl, text)
    return clean.strip(), cited, removed


def prepare(
    index: SearchIndex,
    question: str,
    params: SearchParams | None = None,
    fits: Callable[[str], bool] | None = None,
) -> tuple[str, list[Hit]]:
    """Retrieve for ``question`` and build the prompt; while ``fits(prompt)`` is false, the lowest-ranked post
    is left out. Raises ``ValueError`` for an empty question, no posts found, or a question that does not fit
    even with one post."""
    if not question or not question.strip():
        raise ValueError("question is empty")
    hits = index.search(question, params or SearchParams(k=5))
    if not hits:
        raise ValueError("no posts match the question and filters; nothing to answer from")
    while True:
        prompt = build_prompt(question, hits)
        if fits is None or fits(prompt):
            return prompt, hits
        if len(hits) == 1:
            raise ValueError("the question and one post do not fit the generator's context")
        hits = hits[:-1]


def finish(question: str, prompt: str, hits: list[Hit], raw: str) -> Answer:
    """The ``Answer`` from the generator's ``raw`` text (citations validated against ``hits``)."""
    text, cited, removed = validate_citations(raw, {h.id for h in hits})
    return Answer(question, text, cited, removed, hits, raw, prompt)


def ask(index: SearchIndex, question: str, generator, params: SearchParams | None = None) -> Answer:
    """Retrieve, generate with ``generator`` (``prompt -> text``; its optional ``fits(prompt)`` trims posts to
    its context), and validate citations."""
    prompt, hits = prepare(index, question, params, getattr(generator, "fits", None))
    return finish(question, prompt, hits, generator(prompt))


def engine_prompt(engine, prompt: str) -> str | list[dict]:
    """What to send the engine for an ask ``prompt``: a model with a chat template (an imported chat base, or a
    ``tweetlm sft`` model) gets the question and posts as a user turn, without the trailing ``Answer:``; a model
    of posts without one continues the prompt as text."""
    if getattr(engine.tok, "chat_template", None):
        return [{"role": "user", "content": prompt.removesuffix("\nAnswer:")}]
    return prompt


def engine_prompt_tokens(engine, prompt: str) -> int:
    """Prompt tokens of ``engine_prompt(engine, prompt)``."""
    p = engine_prompt(engine, prompt)
    return len(engine.encode_prompt(p) if isinstance(p, str) else engine.chat_format.encode_prompt(p))


class EngineGenerator:
    """The tweetlm engine as a generator: greedy by default, ``max_tokens`` new tokens; a chat model answers in
    its chat template (``engine_prompt``)."""

    def __init__(self, engine, max_tokens: int = 128, temperature: float = 0.0, seed: int | None = 0) -> None:
        from tweetlm.inference.engine import SamplingParams

        self.engine = engine
        self.params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)

    def fits(self, prompt: str) -> bool:
        room = min(self.params.max_tokens, 32)  # leave the answer at least this many tokens
        return engine_prompt_tokens(self.engine, prompt) + room <= self.engine.max_seq_len

    def __call__(self, prompt: str) -> str:
        return self.engine.generate([engine_prompt(self.engine, prompt)], self.params)[0].text


class OpenAIGenerator:
    """Any OpenAI-compatible endpoint (``base_url`` ends in ``/v1``); ``model`` defaults to the first model the
    server lists."""

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout_s: float = 120.0,
    ) -> None:
        from openai import OpenAI

        self.client = OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout_s)
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature

    def __call__(self, prompt: str) -> str:
        """The model's answer to ``prompt``. Raises ``RuntimeError`` naming the endpoint and what it answered when
        it cannot be reached or answers an error (no traceback for the user)."""
        import openai

        base = str(self.client.base_url)
        try:
            if self.model is None:
                models = self.client.models.list().data
                if not models:
                    raise RuntimeError(f"{base} lists no models: pass --llm-model")
                self.model = models[0].id
            r = self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=self.max_tokens,
                temperature=self.temperature,
            )
        except openai.APIStatusError as e:
            raise RuntimeError(f"{base} answered HTTP {e.status_code}: {e.message}") from None
        except openai.APIConnectionError as e:
            raise RuntimeError(f"cannot reach {base}: {e.__cause__ or e}") from None
        except openai.APIError as e:
            raise RuntimeError(f"{base} failed: {e}") from None
        return r.choices[0].message.content or ""
