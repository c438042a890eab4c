"""The X account archive (layer L1, data): ``data/tweets.js`` and its parts, joined to ``data/note-tweet.js``.

The archive (downloaded as a ``.zip``; its ``data/`` folder or the loose files work too) stores each list as
JavaScript: ``window.YTD.tweets.part0 = [ {"tweet": {...}}, ... ]``, split into ``tweets-part1.js``... for large
accounts (older archives: ``tweet.js``). The prefix is cut at the first ``=`` of that assignment and the rest
parsed as JSON, element by element; it is never evaluated. Numbers are strings there (ids, indices, counts),
and a tweet is a v1.1 tweet in extended mode (``full_text``, ``display_text_range``), so ``x_v1`` reads it.

Long posts: ``full_text`` stops near 280 characters; the whole text is in ``note-tweet.js``, whose
``noteTweetId`` differs from the tweet id and which holds no tweet id at all. ``join_notes`` matches each note
to the tweet posted within ``MAX_NOTE_TO_TWEET_MS`` after it (both ids are snowflakes; in the real archive in
``../shared/formats`` the tweet id follows the note id by 13-41 ms) whose text starts as the note's does (after
HTML-unescaping, dropping links, which the two shorten differently, the reply mentions the note omits and the
closing ellipsis), the nearest in time first. A joined note's text replaces the tweet's; the note record is
dropped as ``note_joined_to_tweet``. A note no tweet matches is dropped as ``note_without_tweet``: its tweet
is not in the archive (deleted), so its text is not published.

Retweets in the archive are cut (``RT @user: ...``) and carry no original: they become ``kind="retweet"`` with
``retweeted_id`` unknown. ``deleted-tweets.js``, likes and direct messages are not the account's posts and are
not read. The account id (``account.js``) becomes every post's ``author_id`` when that file is present.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from tweetlm.data.formats.base import (
    MALFORMED,
    BadValue,
    Emitter,
    FieldError,
    id_or_none,
    iso_utc,
    iter_json_values,
    parse_or_quarantine,
    snowflake_ms,
)
from tweetlm.data.formats.x_v1 import parse_tweet

READER = "x_archive"
MAX_NOTE_TO_TWEET_MS = 60_000
_YTD = re.compile(r"\A\ufeff?\s*window\.YTD\.(\w+)\.part(\d+)\s*=\s*")
_TWEET_FILE = re.compile(r"^tweets?(?:-part(\d+))?\.js$", re.IGNORECASE)
_NOTE_FILE = re.compile(r"^note-tweet(?:-part(\d+))?\.js$", re.IGNORECASE)
_LINK = re.compile(r"https?://\S+")
_LEADING_MENTIONS = re.compile(r"^(?:\.?@\w+\s*)+")


def tweet_part_index(name: str) -> int | None:
    """``tweets.js`` -> 0, ``tweets-part2.js`` -> 2, anything else ``None``."""
    m = _TWEET_FILE.match(name)
    return None if m is None else int(m.group(1) or 0)


def is_note_file(name: str) -> bool:
    return _NOTE_FILE.match(name) is not None


def ytd_body(text: str, where: str) -> int:
    """Offset of the JSON after ``window.YTD.<name>.partN = ``.

    Raises:
        ValueError: the file does not start with that assignment (not an archive data file).
    """
    m = _YTD.match(text)
    if m is None:
        raise ValueError(
            f"{where} does not start with 'window.YTD.<name>.partN = ': not an X archive data file; "
            "pass the archive .zip, its data/ folder or its tweets.js"
        )
    return m.end()


def account_id(text: str) -> str | None:
    """The ``accountId`` of an archive's ``account.js``, or ``None``."""
    try:
        start = ytd_body(text, "account.js")
    except ValueError:
        return None
    for value in iter_json_values(text, start):
        if isinstance(value, dict) and isinstance(value.get("account"), dict):
            return id_or_none(value["account"].get("accountId"))
    return None


def _norm(text: str) -> str:
    s = html.unescape(text)
    s = _LINK.sub(" ", s)
    s = _LEADING_MENTIONS.sub("", s.lstrip())
    s = s.rstrip().removesuffix("\u2026")
    return " ".join(s.split())


@dataclass
class _Note:
    record: int
    file: str
    note_id: str
    text: str
    urls: list[dict]
    ms: int | None


def _iso_or_none(value: object) -> str | None:
    """``iso_utc``, with a date out of range as no date (joining notes only; the tweet itself is quarantined)."""
    try:
        return iso_utc(value)
    except FieldError:
        return None


def _note_ms(note: dict) -> int | None:
    ms = snowflake_ms(str(note.get("noteTweetId", "")))
    if ms is None:
        created = _iso_or_none(note.get("createdAt"))
        if created:
            from datetime import datetime, timezone

            ms = int(datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp() * 1000)
    return ms


def _tweet_ms(tw: dict) -> int | None:
    ms = snowflake_ms(str(tw.get("id_str") or tw.get("id") or ""))
    if ms is None:
        created = _iso_or_none(tw.get("created_at"))
        if created:
            from datetime import datetime, timezone

            ms = int(datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp() * 1000)
    return ms


def _tweet_key(tw: dict) -> tuple[int | None, str]:
    """``(ms, normalized text)`` of a tweet for joining notes; ``(None, "")`` for one whose fields do not read
    (it is quarantined when parsed)."""
    text = tw.get("full_text") or tw.get("text") or ""
    try:
        return _tweet_ms(tw), _norm(text) if isinstance(text, str) else ""
    except MALFORMED:
        return None, ""


def join_notes(tweets: list[dict], notes: list[_Note]) -> dict[int, _Note]:
    """Match notes to tweets (see module docstring); returns ``{index in tweets: note}``, one-to-one."""
    pairs = []
    tweet_info = [_tweet_key(t) for t in tweets]
    for n in notes:
        if n.ms is None:
            continue
        n_norm = _norm(n.text)
        for i, (t_ms, t_norm) in enumerate(tweet_info):
            if t_ms is None or not 0 <= t_ms - n.ms <= MAX_NOTE_TO_TWEET_MS or not t_norm:
                continue
            k = min(len(t_norm), 40)
            if n_norm[:k] == t_norm[:k]:
                pairs.append((t_ms - n.ms, i, n))
    out: dict[int, _Note] = {}
    used: set[str] = set()
    for _, i, n in sorted(pairs, key=lambda p: (p[0], p[1])):
        if i not in out and n.note_id not in used:
            out[i] = n
            used.add(n.note_id)
    return out


def read_notes(text: str, where: str, em: Emitter) -> list[_Note]:
    """Parse ``note-tweet.js``; unreadable entries are quarantined into ``em`` right away."""
    notes = []
    em.file = where
    for record, value in enumerate(iter_json_values(text, ytd_body(text, where))):
        if isinstance(value, BadValue):
            em.quarantine(record, value.reason, value.text)
            continue
        note = value.get("noteTweet") if isinstance(value, dict) else None
        core = note.get("core") if isinstance(note, dict) else None
        if not isinstance(core, dict) or not isinstance(core.get("text"), str):
            em.quarantine(record, "missing_text", value)
            continue
        note_id = id_or_none(note.get("noteTweetId"))
        if note_id is None:
            em.quarantine(record, "missing_id", value)
            continue
        urls = [u for u in core.get("urls") or [] if isinstance(u, dict)]
        notes.append(_Note(record, where, note_id, core["text"], urls, _note_ms(note)))
    return notes


def _edit_ids(tw: dict) -> list[str]:
    info = tw.get("edit_info") if isinstance(tw.get("edit_info"), dict) else {}
    block = info.get("edit", {}).get("editControlInitial") if isinstance(info.get("edit"), dict) else None
    block = block or info.get("initial")
    ids = block.get("editTweetIds") if isinstance(block, dict) else None
    return [str(i) for i in ids] if isinstance(ids, list) and len(ids) > 1 else []


def read_archive(
    parts: list[tuple[str, str]], notes_files: list[tuple[str, str]], account: str | None, em: Emitter
) -> None:
    """Emit every tweet of the archive's tweet ``parts`` (``(shown path, text)`` each, in part order) with
    notes from ``notes_files`` joined in; ``account`` is the account id for ``author_id``.

    Raises:
        ValueError: a part does not start with the ``window.YTD`` assignment.
    """
    notes: list[_Note] = []
    for where, text in notes_files:
        notes += read_notes(text, where, em)
    entries: list[tuple[str, int, dict]] = []
    for where, text in parts:
        em.file = where
        for record, value in enumerate(iter_json_values(text, ytd_body(text, where))):
            tw = value.get("tweet") if isinstance(value, dict) else None
            if isinstance(value, BadValue):
                em.quarantine(record, value.reason, value.text)
            elif not isinstance(tw, dict):
                em.quarantine(record, "not_a_tweet", value)
            else:
                entries.append((where, record, tw))
    joined = join_notes([tw for _, _, tw in entries], notes)
    for i, (where, record, tw) in enumerate(entries):
        em.file = where
        note = joined.get(i)
        if note is not None:
            tw = {
                **tw,
                "full_text": html.escape(note.text, quote=False),  # x_v1 unescapes: the note text is raw
                "display_text_range": None,
                "entities": {
                    "urls": [{"url": u.get("shortUrl"), "expanded_url": u.get("expandedUrl")} for u in note.urls]
                },
            }
        if account and "user" not in tw:
            tw = {**tw, "user": {"id_str": account}}
        before = len(em.outcomes)
        parse_or_quarantine(parse_tweet, tw, em, record, READER)
        if len(em.outcomes) > before and em.outcomes[-1].post is not None:
            p = em.outcomes[-1].post
            p.edit_history_ids = _edit_ids(tw)
            if p.kind == "post" and p.text.startswith("RT @"):
                p.kind = "retweet"
    used = {n.note_id for n in joined.values()}
    for n in notes:
        em.file = n.file
        em.drop(n.record, "note_joined_to_tweet" if n.note_id in used else "note_without_tweet")
