"""Whether a file is an archive (or a mail message) to expand, from its name and first bytes."""

from __future__ import annotations

import bz2
import lzma
import re
import zlib
from typing import Final, Literal

SNIFF_BYTES: Final = 4096  # enough for the ustar magic at 257 and a gzip'd tar header
_ARCHIVE_SUFFIXES: Final = (
    ".zip",
    ".tar",
    ".tgz",
    ".tar.gz",
    ".tbz",
    ".tbz2",
    ".tar.bz2",
    ".txz",
    ".tar.xz",
)
_ZIP_MAGICS: Final = (b"PK\x03\x04", b"PK\x05\x06")
_GZIP_MAGIC: Final = b"\x1f\x8b"
_BZ2_MAGIC: Final = b"BZh"
_XZ_MAGIC: Final = b"\xfd7zXZ\x00"
OLE_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# an RFC 822 header line ("Received: ...", "From: ...") or an mbox "From " line
_RFC822_START: Final = re.compile(rb"^(?:From |[!-9;-~]{1,76}:[ \t]?)")

Compression = Literal["gz", "bz2", "xz"]
Kind = Literal["zip", "tar", "mail"]

# --------------------------------------------------------------------------- detection


def compression(head: bytes) -> Compression | None:
    if head.startswith(_GZIP_MAGIC):
        return "gz"
    if head.startswith(_BZ2_MAGIC):
        return "bz2"
    if head.startswith(_XZ_MAGIC):
        return "xz"
    return None


def _is_ustar(head: bytes) -> bool:
    return head[257:262] == b"ustar"


def _tar_checksum_ok(block: bytes) -> bool:
    """True for a valid (possibly pre-POSIX) tar header or an all-zero end block."""
    if len(block) < 512:
        return False
    block = block[:512]
    if block == bytes(512):
        return True
    field_ = block[148:156].split(b"\0", 1)[0].strip()
    try:
        stored = int(field_ or b"x", 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    return stored == unsigned


def _decompress_head(head: bytes, comp: Compression) -> bytes:
    try:
        if comp == "gz":
            return zlib.decompressobj(wbits=31).decompress(head, 1024)
        if comp == "xz":
            return lzma.LZMADecompressor().decompress(head, max_length=1024)
        return bz2.BZ2Decompressor().decompress(head, max_length=1024)
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError):
        return b""


def _has_archive_suffix(name: str) -> bool:
    return name.lower().endswith(_ARCHIVE_SUFFIXES)


def _is_mail(name: str, head: bytes) -> bool:
    lower = name.lower()
    if lower.endswith(".msg"):
        return head.startswith(OLE_MAGIC)
    return lower.endswith(".eml") and _RFC822_START.match(head.lstrip(b"\r\n")) is not None


def detect(name: str, head: bytes) -> Kind | None:
    lower = name.lower()
    if _is_mail(name, head):
        return "mail"
    has_suffix = lower.endswith(_ARCHIVE_SUFFIXES)
    if _is_ustar(head):
        return "tar"
    if head.startswith(_ZIP_MAGICS):
        # docx/xlsx/pptx/odt/epub/jar are zips too: only a zip *named* as an archive is one.
        return "zip" if has_suffix else None
    comp = compression(head)
    if comp is not None:
        inner = _decompress_head(head, comp)
        if _is_ustar(inner) or (len(inner) >= 512 and _tar_checksum_ok(inner)):
            return "tar"
        # Head too short to look inside (or bz2): trust a tar-ish name; a plain .gz is no archive.
        return "tar" if has_suffix and not lower.endswith(".zip") else None
    if lower.endswith(".tar") and _tar_checksum_ok(head):
        return "tar"  # pre-POSIX tar or an empty tar (zero blocks)
    return None


def is_archive(name: str, head: bytes) -> bool:
    """Whether a file is an archive to expand, from its name and first bytes.

    ``head`` should hold at least the first 512 bytes (4 KiB is better, so a
    gzip'd tar can be recognised by content).  Zip magic alone is not enough:
    Office/OpenDocument/EPUB files are zips, so a zip must also be named
    ``.zip`` (or another archive suffix). A mail message (``.eml`` starting with RFC 822
    headers, ``.msg`` with the OLE signature) is one too: body and attachments.  A raw tar
    is recognised by content whatever its name; gzip/bz2/xz content is an archive when it
    decompresses to a tar header or when the name says ``.tar.gz``/``.tgz``/...; a plain
    ``.gz`` of a single file is not an archive.
    """
    return detect(name, head) is not None


def top_kind(name: str, head: bytes) -> Kind | None:
    """The caller says this is an archive: trust magic first, then the name."""
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    if _is_ustar(head) or compression(head) is not None:
        return "tar"
    kind = detect(name, head)
    if kind is not None:
        return kind
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith(_ARCHIVE_SUFFIXES):
        return "tar"
    return None
