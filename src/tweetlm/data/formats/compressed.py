"""Transparent decompression for every reader (layer L1, data).

A corpus file may be stored compressed (``posts.jsonl.gz``, ``tweets.js.zst``) or inside a ``.zip`` (the X
account archive is downloaded as one). Readers ask for a file's bytes through ``read_bytes`` and see the same
bytes either way; format detection looks at ``logical_name`` (the name without the compression suffix).

Codecs: ``gzip``, ``bz2`` and ``lzma`` from the standard library, ``zstandard`` (the ``data`` extra) for
``.zst``, ``zipfile`` for ``.zip``; the incremental decompressor objects are used (not the file wrappers) because they
hand back what decoded before an early end. A file cut off mid-stream (a partial download) yields the bytes that did
decompress and ``truncated=True``: the reader then quarantines the broken last record like any other, instead of
losing the whole file. This module does not parse anything.
"""

from __future__ import annotations

import bz2
import io
import lzma
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

COMPRESSED_SUFFIXES = (".gz", ".zst", ".bz2", ".xz")


def compression_of(name: str) -> str | None:
    """The codec suffix of a file name (``".gz"``...), or ``None`` for an uncompressed file."""
    low = name.lower()
    return next((s for s in COMPRESSED_SUFFIXES if low.endswith(s)), None)


def logical_name(name: str) -> str:
    """``posts.jsonl.gz`` -> ``posts.jsonl``: the name a reader's detection should look at."""
    suffix = compression_of(name)
    return name[: -len(suffix)] if suffix else name


@dataclass
class Decoded:
    """Decompressed bytes and whether the compressed stream ended early (``truncated``)."""

    data: bytes
    truncated: bool = False


def _decompressor(suffix: str):
    if suffix == ".gz":
        return zlib.decompressobj(16 + zlib.MAX_WBITS), zlib.error
    if suffix == ".bz2":
        return bz2.BZ2Decompressor(), OSError
    if suffix == ".xz":
        return lzma.LZMADecompressor(), lzma.LZMAError
    if suffix == ".zst":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj(), zstandard.ZstdError
    raise ValueError(f"unknown compression {suffix!r}")


def decompress(raw: bytes, suffix: str | None, where: str) -> Decoded:
    """Decompress ``raw`` stored with codec ``suffix``, frame after frame (concatenated ``.gz`` members and
    ``.zst`` frames included). A stream that stops before its end marker keeps what decoded (``truncated``).

    Raises:
        ValueError: the bytes are not in that codec at all (``where`` names the file in the message).
    """
    if suffix is None:
        return Decoded(raw)
    out: list[bytes] = []
    data = raw
    while data:
        dec, error = _decompressor(suffix)
        try:
            out.append(dec.decompress(data))
        except (error, OSError, EOFError) as e:
            if not out:
                raise ValueError(
                    f"{where} is not a valid {suffix} file ({e}); re-download or decompress it first"
                ) from e
            return Decoded(b"".join(out), truncated=True)
        if not dec.eof:
            return Decoded(b"".join(out), truncated=True)
        data = dec.unused_data
    return Decoded(b"".join(out))


_ZIP_ERRORS = (OSError, zipfile.BadZipFile, KeyError, EOFError, NotImplementedError, RuntimeError, zlib.error)
"""What reading a damaged zip member raises: a bad CRC or header (``BadZipFile``), an unsupported version or
method (``NotImplementedError``), an encrypted member (``RuntimeError``), a cut-off or corrupt deflate stream
(``EOFError``, ``zlib.error``)."""


def read_bytes(path: Path, member: str | None = None, where: str | None = None) -> Decoded:
    """The decompressed bytes of ``path`` (or of zip ``member`` inside it), decompressing by name suffix.

    Raises:
        ValueError: the file (or member) cannot be read or decompressed at all.
    """
    where = where or str(path)
    try:
        if member is None:
            raw = path.read_bytes()
            name = path.name
        else:
            with zipfile.ZipFile(path) as zf:
                raw = zf.read(member)
            name = member
    except _ZIP_ERRORS as e:
        raise ValueError(f"cannot read {where}: {type(e).__name__}: {e}") from e
    return decompress(raw, compression_of(name), where)


def read_head(path: Path, member: str | None, n: int) -> bytes:
    """The first ``n`` decompressed bytes (for format detection); an undecodable file gives its raw head."""
    name = member or path.name
    suffix = compression_of(name)
    try:
        if member is not None:
            with zipfile.ZipFile(path) as zf, zf.open(member) as fh:
                raw_stream = io.BytesIO(fh.read(n if suffix is None else 8 * n))
        else:
            with open(path, "rb") as fh:
                raw_stream = io.BytesIO(fh.read(n if suffix is None else 8 * n))
        if suffix is None:
            return raw_stream.read(n)
        try:
            return decompress(raw_stream.getvalue(), suffix, str(path)).data[:n]
        except ValueError:
            return raw_stream.getvalue()[:n]
    except _ZIP_ERRORS:
        return b""


def unsafe_member(name: str) -> bool:
    """A zip member name that points outside the archive's folder if extracted (``../x``, ``/etc/x``,
    ``C:/x``, ``..\\x``): a zip-slip name (CWE-22). Such members are never read; readers count them."""
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":")


def zip_members(path: Path) -> list[str]:
    """File members of a zip, in archive order (folders, hidden files and macOS ``__MACOSX`` metadata left
    out; members with an ``unsafe_member`` name are listed, for the caller to refuse and count).

    Raises:
        ValueError: the file is not a readable zip.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            return [
                i.filename
                for i in zf.infolist()
                if not i.is_dir()
                and not i.filename.startswith("__MACOSX/")
                and ("/." not in "/" + i.filename or unsafe_member(i.filename))
            ]
    except _ZIP_ERRORS as e:
        raise ValueError(f"{path} is not a readable zip file ({type(e).__name__}: {e})") from e
