"""A conversation with a chat model, optionally grounded in searched posts (layer L4, search).

``ChatSession`` holds what ``tweetlm chat`` needs between turns: the messages so far (the user's own words and
the model's replies, never the retrieved posts, so a later turn is not crowded out by an earlier one's posts),
tweet mode, and grounding. A grounded turn retrieves posts for the user's message (``ask.ground_messages``),
lets the model answer over them and keeps only citations of the posts given (``ask.finish``); an ungrounded
turn may cite only posts retrieved earlier in the conversation (others are removed and said). Commands:
``/reset``, ``/tweet``, ``/search on|off``, ``/help``, ``/quit``.
"""

from __future__ import annotations

import re
import sys

HELP_LINES = "/reset: forget the conversation | /tweet: tweet mode on/off | /search on|off | /help | /quit"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` without C0/C1 control characters other than tab and newline (a model can write them; a terminal
    would act on them)."""
    return _CONTROL.sub("", text)


class ChatSession:
    """The state of one terminal conversation: messages, tweet mode, grounding. ``turn(text)`` returns what to
    print after the reply (the reply itself is streamed through ``write``)."""

    def __init__(self, engine, params, index=None, system: str | None = None, write=None) -> None:
        self.engine, self.params, self.index = engine, params, index
        self.system = system
        self.search = False
        self.messages: list[dict] = []
        self.write = write or (lambda s: (sys.stdout.write(printable(s)), sys.stdout.flush()))
        self.retrieved: set[str] = set()  # ids of posts given to the model in this conversation
        self.turns = 0  # replies so far: with a seed, reply i samples with seed + i (reproducible, not repeated)
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []
        self.retrieved = set()

    def command(self, line: str) -> str | None:
        """Handle a ``/command``; returns the line to print, or ``None`` to quit."""
        cmd = line.strip().lower()
        if cmd in ("/quit", "/exit"):
            return None
        if cmd == "/reset":
            self.reset()
            return "(conversation cleared)"
        if cmd == "/tweet":
            self.params.tweet_mode = not self.params.tweet_mode
            on = "on: replies of at most 280 weighted characters"
            return f"(tweet mode {on if self.params.tweet_mode else 'off'})"
        if cmd in ("/search on", "/search off", "/search"):
            if self.index is None:
                return "(no search index: start tweetlm chat with --search-index DIR)"
            self.search = cmd != "/search off"
            on = "on: each message retrieves posts and the answer cites them"
            return f"(grounded answers {on if self.search else 'off'})"
        if cmd == "/help":
            return HELP_LINES
        return f"(unknown command {line.strip()!r}; {HELP_LINES})"

    def turn(self, text: str) -> list[str]:
        from dataclasses import replace

        from tweetlm.search.ask import finish, ground_messages, validate_citations

        notes: list[str] = []
        params = self.params if self.params.seed is None else replace(self.params, seed=self.params.seed + self.turns)
        self.turns += 1
        self.messages.append({"role": "user", "content": text})
        if self.search:
            limit = self.engine.chat_prompt_limit(params.max_tokens)
            fits = lambda m: len(self.engine.chat_format.encode_prompt(m)) <= limit  # noqa: E731
            model_msgs, hits = ground_messages(self.index, self.messages, fits=fits)
            c = self.engine.chat([model_msgs], params)[0]
            ans = finish(text, "", hits, c.text)
            self.write(ans.text or "(no answer)")
            self.write("\n")
            reply = ans.text
            self.retrieved.update(h.id for h in hits)
            for h in hits:
                mark = "*" if h.id in ans.cited else " "
                notes.append(f"{mark} [{h.id}] {' '.join(h.text.split())[:140]}")
            if ans.removed:
                notes.append(f"(removed citations of posts not given: {', '.join(ans.removed)})")
        else:
            c = self.engine.chat([self.messages], params, on_text=lambda _i, d: self.write(d))[0]
            self.write("\n")
            reply, _, removed = validate_citations(c.text, self.retrieved)
            if removed:
                notes.append(f"(not sources: {', '.join(removed)} were not retrieved in this conversation; removed)")
        if c.dropped_turns:
            notes.append(f"(the {c.dropped_turns} oldest message(s) were left out to fit the model's context of "
                         f"{self.engine.max_seq_len} tokens)")  # fmt: skip
        if c.finish_reason == "length":
            notes.append("(reply cut at the length limit)")
        self.messages.append({"role": "assistant", "content": reply})
        return notes
