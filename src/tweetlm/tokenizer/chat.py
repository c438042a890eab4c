"""Chat templates (layer L1, tokenizer): a conversation -> the text and token ids a chat model reads.

A checkpoint carries its template in ``tokenizer_config.json`` (``PostTokenizer.chat_template``): an imported
chat base keeps its own Jinja template (SmolLM2-Instruct: ChatML, ``<|im_start|>role\\n...<|im_end|>``); a model
of tweetlm's own tokenizer gets ``TWEETLM_CHAT_TEMPLATE``, built from its three special tokens (a turn is
``<|bos|>role\\ncontent<|eos|>``, so ``<|eos|>`` ends a turn). Templates are rendered the way ``transformers``
renders them (``apply_chat_template``: a sandboxed Jinja environment with ``trim_blocks`` and ``lstrip_blocks``,
``raise_exception`` and ``strftime_now``), so the prompt is the one the base was trained with; a test compares
the two on the bundled SmolLM2.

``encode_chat`` also returns the loss mask of supervised fine-tuning: 1 on the tokens of assistant turns (their
content and the end-of-turn token), 0 elsewhere. The assistant spans are found by rendering growing prefixes of
the conversation (``messages[:i]`` with the generation prompt, then ``messages[:i+1]``), which needs a template
whose render of a prefix is a prefix of the render of the whole (ChatML, Llama 3 and tweetlm's own are); any
other is refused with ``ValueError``. ``fit_messages`` cuts a conversation from its oldest turns to fit a context.
This module knows nothing of models or torch.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

ROLES = ("system", "user", "assistant")

TWEETLM_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ bos_token }}{{ message['role'] }}\n{{ message['content'] }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}{{ bos_token }}assistant\n{% endif %}"
)
"""The template of a model with tweetlm's own tokenizer (from scratch): ``<|bos|>role\\ncontent<|eos|>`` per turn."""


def validate_messages(messages: list[dict]) -> list[dict]:
    """``[{"role", "content"}]`` as plain dicts. ``ValueError`` naming the message for a role outside ``ROLES``
    or content that is not a string or not valid Unicode; an empty list is refused too."""
    if not messages:
        raise ValueError("messages is empty: send at least one message")
    out = []
    for i, m in enumerate(messages):
        role, content = (m.get("role"), m.get("content")) if isinstance(m, dict) else (None, None)
        if role not in ROLES:
            raise ValueError(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be a string")
        try:
            content.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"messages[{i}].content is not valid Unicode (a lone surrogate at {e.start})") from None
        out.append({"role": role, "content": content})
    return out


@lru_cache(maxsize=16)
def _compile(template: str):
    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


class ChatFormat:
    """The chat template of one tokenizer (``tokenizer.bpe.PostTokenizer``): rendering, encoding, end of turn.

    Attributes:
        template: the Jinja source (the base's, or ``TWEETLM_CHAT_TEMPLATE``).
        eot_id: the token that ends an assistant turn (``<|im_end|>`` for ChatML; ``<|eos|>`` for tweetlm's own).
    """

    def __init__(self, tok) -> None:
        self.tok = tok
        self.template = tok.chat_template or TWEETLM_CHAT_TEMPLATE
        self.eot_id = tok.eot_id if tok.eot_id is not None else tok.eos_id
        inv = {v: k for k, v in tok.tok.get_vocab().items()}
        self._special_text = {"bos_token": inv[tok.bos_id], "eos_token": inv[self.eot_id]}

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        """The conversation as text, exactly as ``transformers``' ``apply_chat_template(..., tokenize=False)``.
        ``ValueError`` for bad messages or an error the template raises."""
        return self._render(validate_messages(messages), add_generation_prompt)

    def _render(self, msgs: list[dict], add_generation_prompt: bool) -> str:
        from jinja2.exceptions import TemplateError

        try:
            return _compile(self.template).render(
                messages=msgs, add_generation_prompt=add_generation_prompt, **self._special_text
            )
        except TemplateError as e:
            raise ValueError(f"chat template: {e}") from None

    def encode_prompt(self, messages: list[dict]) -> list[int]:
        """Token ids of the conversation followed by the generation prompt (the assistant's turn opens)."""
        return self.tok.encode(self.render(messages, add_generation_prompt=True))

    def encode_chat(self, messages: list[dict]) -> tuple[list[int], list[int]]:
        """``(ids, loss_mask)`` of a whole conversation: ``loss_mask[t]`` is 1 when token ``t`` belongs to an
        assistant turn (its content and closing end-of-turn token), else 0; same length as ``ids``.
        ``ValueError`` when the template is not prefix-stable (see the module docstring) or no turn is the
        assistant's."""
        msgs = validate_messages(messages)
        text = self._render(msgs, False)
        spans = []
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            head = self._render(msgs[:i], True)
            upto = self._render(msgs[: i + 1], False)
            if not (text.startswith(upto) and upto.startswith(head)):
                raise ValueError("chat template is not prefix-stable: assistant turns cannot be located for the loss")
            spans.append((len(head), len(upto)))
        if not spans:
            raise ValueError("conversation has no assistant turn: nothing to learn from")
        enc = self.tok.tok.encode(text, add_special_tokens=False)
        mask = []
        k = 0
        for start, _end in enc.offsets:
            while k < len(spans) and start >= spans[k][1]:
                k += 1
            mask.append(int(k < len(spans) and spans[k][0] <= start < spans[k][1]))
        return list(enc.ids), mask

    def fit_messages(self, messages: list[dict], max_prompt_tokens: int) -> tuple[list[dict], int]:
        """Drop the oldest non-system turns until the prompt (with the generation prompt) has at most
        ``max_prompt_tokens`` tokens; system messages and the last message are always kept. Returns the kept
        messages and how many were dropped. ``ValueError`` when even the last message alone does not fit."""
        msgs = validate_messages(messages)
        dropped = 0
        while len(self.encode_prompt(msgs)) > max_prompt_tokens:
            k = next((i for i, m in enumerate(msgs[:-1]) if m["role"] != "system"), None)
            if k is None:
                n = len(self.encode_prompt(msgs))
                raise ValueError(
                    f"the last message alone takes {n} prompt tokens; the limit is {max_prompt_tokens}: shorten it"
                )
            del msgs[k]
            dropped += 1
        return msgs, dropped
