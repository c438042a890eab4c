"""The files of an X account archive (layer L1, data): which ``data/*.js`` file starts the archive's posts and
which are read with it. The first ``tweets*.js`` part reads the whole archive (``formats.x_archive``: every
part in order, note tweets joined in, ``account.js`` for the author id); the other parts, notes and the account
file are read with it, and archive data without posts of the account (likes, DMs...) is skipped."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from tweetlm.data.formats import compressed, x_archive
from tweetlm.data.formats.base import finish
from tweetlm.data.formats.files import FileInfo, FileReader, emitter
from tweetlm.data.ledger import Ledger
from tweetlm.data.post import Post


def archive_role(info: FileInfo) -> str | None:
    """``"primary"`` for the first tweet part of an X archive (it reads the whole archive), ``"side"`` for its
    other parts, notes and account file, ``"other"`` for archive data that holds no posts of the account (likes,
    DMs, deleted tweets...), ``None`` for a file that is not archive data."""
    if not info.name.lower().endswith(".js") or not re.match(rb"\A(\xef\xbb\xbf)?\s*window\.YTD\.", info.head):
        return None
    part = x_archive.tweet_part_index(info.name)
    if part is not None:
        parts = [x_archive.tweet_part_index(n) for n in _sibling_names(info)]
        return "primary" if part == min(p for p in parts if p is not None) else "side"
    if x_archive.is_note_file(info.name) or info.name.lower() == "account.js":
        return "side"
    return "other"


def _sibling_names(info: FileInfo) -> list[str]:
    if info.member is None:
        return sorted(p.name for p in info.path.parent.iterdir() if p.is_file())
    folder = str(PurePosixPath(info.member).parent)
    return sorted(
        PurePosixPath(m).name for m in compressed.zip_members(info.path) if str(PurePosixPath(m).parent) == folder
    )


def _sibling_text(info: FileInfo, name: str) -> tuple[str, str]:
    """(shown path, text) of a file beside ``info`` (same folder, or same folder of the same zip)."""
    if info.member is None:
        path = info.path.parent / name
        shown = str(Path(info.display).parent / name)
        data = compressed.read_bytes(path, None, shown).data
    else:
        member = str(PurePosixPath(info.member).parent / name).removeprefix("./")
        shown = f"{info.path}/{member}"
        data = compressed.read_bytes(info.path, member, shown).data
    return shown, data.decode("utf-8", errors="surrogateescape")


def _detect_x_archive(info: FileInfo) -> bool:
    return archive_role(info) == "primary"


def _read_x_archive(info: FileInfo, ledger: Ledger) -> Iterator[Post]:
    """The whole X archive around this tweet file: every ``tweets*.js`` part in part order, ``note-tweet*.js``
    joined in, ``account.js`` for the author id (``formats.x_archive``)."""
    names = _sibling_names(info)
    parts = sorted((x_archive.tweet_part_index(n), n) for n in names if x_archive.tweet_part_index(n) is not None)
    rel = info.rel[:-2] if len(info.rel) > 2 and info.rel[-2] == "data" else info.rel[:-1]
    source = "/".join(rel) or info.stem
    em = emitter(info, source, "x_archive")
    account = None
    if "account.js" in names:
        account = x_archive.account_id(_sibling_text(info, "account.js")[1])
    part_texts = [_sibling_text(info, n) for _, n in parts]
    notes = [_sibling_text(info, n) for n in names if x_archive.is_note_file(n)]
    x_archive.read_archive(part_texts, notes, account, em)
    return finish(em, ledger)


READERS = (FileReader("x_archive", _detect_x_archive, _read_x_archive),)
