"""Streaming expansion of bulk archives (zip, tar, tar.gz/tgz, tar.bz2, tar.xz).

Each regular file inside an archive becomes its own :class:`ArchiveMember`;
everything that cannot or must not be ingested becomes a :class:`MemberError`
with an UPPER_SNAKE machine code.  Nothing is ever extracted to disk except a
nested zip, which is spooled (bounded by ``max_member_bytes``) because zip
needs random access.

Consumer contract (the important part)
--------------------------------------
``iter_archive`` is a *sequential* iterator, because tar archives are read in
stream mode (``tarfile`` ``r|``) and cannot rewind:

* Process each :class:`ArchiveMember` **before asking for the next item**.
  A member (and any stream opened from it) is valid only until the iterator is
  advanced or closed; afterwards ``member.open()`` and reads on an already
  opened stream raise :class:`MemberExpiredError`.  This is enforced for zip
  members too, so code written against zip behaves the same on tar.
* ``member.open()`` may be called **once** per member (a tar member stream
  cannot be re-read).  The returned binary stream is a context manager.
* Reading the stream enforces the limits even if the archive headers lie: it
  raises :class:`ArchiveLimitError` (``MEMBER_TOO_LARGE``,
  ``COMPRESSION_RATIO_EXCEEDED``, ``TOTAL_SIZE_EXCEEDED``) or
  :class:`ArchiveCorruptError` (``CORRUPT_ARCHIVE``: bad CRC, truncated data).
  Both subclass :class:`ArchiveError` and carry ``reason``/``message``/``path``;
  treat them as a failure of that one member and keep iterating.  The iterator
  does not re-report such a member, except for ``TOTAL_SIZE_EXCEEDED``, which is
  terminal and is also yielded as a :class:`MemberError` before iteration stops.
* The iterator itself never raises for bad archive content: corrupt or
  truncated data becomes a ``CORRUPT_ARCHIVE`` :class:`MemberError` (for the
  member, or for the archive with ``path`` = the archive's own path, ``""`` for
  the top-level archive) and members yielded before stay valid.  Only caller
  errors (e.g. a path that cannot be opened) propagate.

Limits
------
* ``max_members`` counts non-directory entries over the whole tree (nested
  archives included); after that many, one ``TOO_MANY_MEMBERS`` is yielded and
  iteration stops.
* ``max_total_uncompressed_bytes`` counts declared sizes up front and actual
  bytes while reading (whichever is larger), over the whole tree.  A nested
  archive's own bytes count as well as its members' bytes (both get
  decompressed).  In tar streams, the data of a rejected member still has to be
  decompressed to skip it, so its declared size counts too.  Exceeding it is
  terminal (``TOTAL_SIZE_EXCEEDED``, then stop).
* ``max_compression_ratio`` is checked on declared zip sizes and, for every
  format, while streaming (uncompressed bytes produced / compressed bytes
  consumed).  It is only applied once a member has produced at least 1 MiB,
  so small, very compressible files are not rejected.
* ``max_depth``: the top-level archive is depth 0, an archive inside it is
  depth 1; a nested archive deeper than ``max_depth`` is a
  ``NESTING_TOO_DEEP`` error (not expanded, not yielded as a document).
* tar headers (pax / GNU long names) larger than 1 MiB are refused as
  ``CORRUPT_ARCHIVE`` so a forged header cannot make ``tarfile`` buffer
  gigabytes in memory.

Nested member paths are joined with ``"!/"``: ``"outer.zip!/inner.tgz!/a/b.pdf"``;
:func:`member_source_uri` builds the matching source URI.

Mail (``.eml``, ``.msg``)
-------------------------
A message is expanded like an archive: first its body, as a member at the message's own path
(``""`` for a top-level message, so its source URI is the message's; an RFC 822 message with the
headers and text/HTML body, attachments left out), then each attachment at
``<message>!/<attachment name>``, parsed by its own type; an attachment that is itself an
archive or a message (``message/rfc822``, an attached ``.eml``/``.msg``) is expanded in turn,
within the same limits (depth, members, sizes). A message beyond ``max_depth`` is yielded whole
(the parser then reads its attachments inline). ``.msg`` files are read with python-oxmsg (MIT).
"""

from __future__ import annotations

import bz2
import contextlib
import email
import email.policy
import gzip
import io
import lzma
import os
import re
import shutil
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from pathlib import PurePosixPath
from typing import IO, BinaryIO, Final, Literal, Protocol, cast

__all__ = [
    "ABSOLUTE_PATH",
    "COMPRESSION_RATIO_EXCEEDED",
    "CORRUPT_ARCHIVE",
    "EMPTY_ARCHIVE",
    "ENCRYPTED_MEMBER",
    "LINK_MEMBER",
    "MEMBER_TOO_LARGE",
    "NESTING_TOO_DEEP",
    "PATH_TRAVERSAL",
    "REASONS",
    "TOO_MANY_MEMBERS",
    "TOTAL_SIZE_EXCEEDED",
    "UNSUPPORTED_MEMBER",
    "ArchiveCorruptError",
    "ArchiveError",
    "ArchiveItem",
    "ArchiveLimitError",
    "ArchiveLimits",
    "ArchiveMember",
    "MemberError",
    "MemberExpiredError",
    "is_archive",
    "iter_archive",
    "member_source_uri",
]

# --------------------------------------------------------------------------- reasons

PATH_TRAVERSAL: Final = "PATH_TRAVERSAL"
ABSOLUTE_PATH: Final = "ABSOLUTE_PATH"
LINK_MEMBER: Final = "LINK_MEMBER"
ENCRYPTED_MEMBER: Final = "ENCRYPTED_MEMBER"
MEMBER_TOO_LARGE: Final = "MEMBER_TOO_LARGE"
COMPRESSION_RATIO_EXCEEDED: Final = "COMPRESSION_RATIO_EXCEEDED"
TOTAL_SIZE_EXCEEDED: Final = "TOTAL_SIZE_EXCEEDED"
TOO_MANY_MEMBERS: Final = "TOO_MANY_MEMBERS"
CORRUPT_ARCHIVE: Final = "CORRUPT_ARCHIVE"
NESTING_TOO_DEEP: Final = "NESTING_TOO_DEEP"
EMPTY_ARCHIVE: Final = "EMPTY_ARCHIVE"
UNSUPPORTED_MEMBER: Final = "UNSUPPORTED_MEMBER"

REASONS: Final = frozenset(
    {
        PATH_TRAVERSAL,
        ABSOLUTE_PATH,
        LINK_MEMBER,
        ENCRYPTED_MEMBER,
        MEMBER_TOO_LARGE,
        COMPRESSION_RATIO_EXCEEDED,
        TOTAL_SIZE_EXCEEDED,
        TOO_MANY_MEMBERS,
        CORRUPT_ARCHIVE,
        NESTING_TOO_DEEP,
        EMPTY_ARCHIVE,
        UNSUPPORTED_MEMBER,
    }
)

# --------------------------------------------------------------------------- tuning

_MiB: Final = 1024 * 1024
_SNIFF_BYTES: Final = 4096  # enough for the ustar magic at 257 and a gzip'd tar header
_CHUNK: Final = 64 * 1024  # largest single read pulled from a decompressor
_RATIO_MIN_BYTES: Final = _MiB  # the ratio is only judged past this many output bytes
_RATIO_SLACK: Final = 64 * 1024  # compressed read-ahead that may be charged to a neighbour
_TAR_HEADER_ALLOWANCE: Final = _MiB  # max bytes of tar headers (pax, GNU longname) per member
_SPOOL_IN_MEMORY: Final = 8 * _MiB  # nested zips above this spill to a temp file
_ZIP_METHODS: Final = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
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
_DRIVE_RE: Final = re.compile(r"^[A-Za-z]:")
_OLE_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# an RFC 822 header line ("Received: ...", "From: ...") or an mbox "From " line
_RFC822_START: Final = re.compile(rb"^(?:From |[!-9;-~]{1,76}:[ \t]?)")

# Low-level exceptions that mean "the bytes are not a valid archive".
_CORRUPT_ERRORS: Final = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    tarfile.TarError,
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    ValueError,
    struct.error,
    OverflowError,
    NotImplementedError,
)

_Compression = Literal["gz", "bz2", "xz"]
_Kind = Literal["zip", "tar", "mail"]

# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class ArchiveLimits:
    """Resource limits applied to one :func:`iter_archive` call (whole tree)."""

    max_total_uncompressed_bytes: int = 4 * 1024**3
    max_member_bytes: int = 512 * 1024**2
    max_members: int = 50_000
    max_compression_ratio: float = 200.0
    max_depth: int = 2

    def __post_init__(self) -> None:
        if self.max_total_uncompressed_bytes < 0 or self.max_member_bytes < 0:
            raise ValueError("byte limits must be >= 0")
        if self.max_members < 0 or self.max_depth < 0:
            raise ValueError("max_members and max_depth must be >= 0")
        if self.max_compression_ratio <= 0:
            raise ValueError("max_compression_ratio must be > 0")


class ArchiveError(Exception):
    """Raised by member streams; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str, path: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class ArchiveLimitError(ArchiveError):
    """A member stream went over a size, ratio or total limit while being read."""


class ArchiveCorruptError(ArchiveError):
    """A member stream hit corrupt data (bad CRC, truncated, undecodable)."""


class MemberExpiredError(RuntimeError):
    """A member was used after the iterator advanced, or opened twice (a usage bug)."""


@dataclass(frozen=True)
class MemberError:
    """A member (or archive) that is not ingested, and why."""

    path: str
    reason: str
    message: str


@dataclass(frozen=True)
class ArchiveMember:
    """One regular file inside the archive; valid until the iterator advances."""

    path: str
    size: int | None
    _slot: _Slot = field(repr=False, compare=False)

    def open(self) -> BinaryIO:
        """Return the member's bytes as a limit-enforcing stream (call once)."""
        return self._slot.open()


ArchiveItem = ArchiveMember | MemberError


def member_source_uri(archive_uri: str, member_path: str) -> str:
    """``("s3://b/k.zip", "d/f.pdf")`` -> ``"s3://b/k.zip!/d/f.pdf"``; ``""`` -> the archive."""
    member_path = member_path.lstrip("/")
    if not member_path:
        return archive_uri
    return f"{archive_uri}!/{member_path}"


# --------------------------------------------------------------------------- detection


def _compression(head: bytes) -> _Compression | None:
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


def _decompress_head(head: bytes, comp: _Compression) -> bytes:
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
        return head.startswith(_OLE_MAGIC)
    return lower.endswith(".eml") and _RFC822_START.match(head.lstrip(b"\r\n")) is not None


def _detect(name: str, head: bytes) -> _Kind | None:
    lower = name.lower()
    if _is_mail(name, head):
        return "mail"
    has_suffix = lower.endswith(_ARCHIVE_SUFFIXES)
    if _is_ustar(head):
        return "tar"
    if head.startswith(_ZIP_MAGICS):
        # docx/xlsx/pptx/odt/epub/jar are zips too: only a zip *named* as an archive is one.
        return "zip" if has_suffix else None
    comp = _compression(head)
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
    return _detect(name, head) is not None


def _top_kind(name: str, head: bytes) -> _Kind | None:
    """The caller says this is an archive: trust magic first, then the name."""
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    if _is_ustar(head) or _compression(head) is not None:
        return "tar"
    kind = _detect(name, head)
    if kind is not None:
        return kind
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith(_ARCHIVE_SUFFIXES):
        return "tar"
    return None


# --------------------------------------------------------------------------- helpers


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def _join(base: str, name: str) -> str:
    return f"{base}!/{name}" if base else name


def _normalize(name: str) -> tuple[str, str | None]:
    """Return (clean relative path, None) or (displayable name, error reason)."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or _DRIVE_RE.match(posix):
        return posix, ABSOLUTE_PATH
    parts = [part for part in posix.split("/") if part not in ("", ".")]
    if ".." in parts:
        return posix, PATH_TRAVERSAL
    return "/".join(parts), None


def _read_fully(stream: _Readable, size: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _describe(exc: BaseException) -> str:
    text = str(exc) or "no detail"
    return f"{type(exc).__name__}: {text}"


def _tar_block(size: int) -> int:
    blocks, rest = divmod(size, tarfile.BLOCKSIZE)
    return (blocks + (1 if rest else 0)) * tarfile.BLOCKSIZE


class _State:
    """Shared accounting for one iter_archive call (all nesting levels)."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.members = 0
        self.total = 0
        self.stopped = False
        self.stop_error: MemberError | None = None

    def charge(self, nbytes: int) -> bool:
        self.total += nbytes
        return self.total <= self.limits.max_total_uncompressed_bytes

    def stop(self, error: MemberError) -> None:
        if not self.stopped:
            self.stopped = True
            self.stop_error = error

    def flush(self) -> Iterator[MemberError]:
        if self.stop_error is not None:
            error, self.stop_error = self.stop_error, None
            yield error

    def total_error(self, path: str) -> MemberError:
        return MemberError(
            path,
            TOTAL_SIZE_EXCEEDED,
            f"{path or 'archive'}: total uncompressed size would exceed "
            f"{self.limits.max_total_uncompressed_bytes} bytes; iteration stopped",
        )


class _Counting:
    """Counts the compressed bytes read from a stream (for the tar ratio check)."""

    def __init__(self, stream: _Readable) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        return data


class _Prefixed:
    """A non-seekable stream with already-read head bytes put back in front."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1, /) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._rest.read(size)


class _TarGuard:
    """Decompressed tar stream that refuses to run past the current member + 1 MiB.

    tarfile buffers pax headers and GNU long names wholly in memory; bounding how
    far it may read beyond the end of the current member bounds that buffering.
    """

    def __init__(self, stream: _Readable) -> None:
        self._stream = stream
        self.pos = 0
        self.limit = _TAR_HEADER_ALLOWANCE

    def read(self, size: int = -1, /) -> bytes:
        if size < 0 or self.pos + size > self.limit:
            size = max(0, self.limit - self.pos) + 1
        data = self._stream.read(size)
        self.pos += len(data)
        if self.pos > self.limit:
            raise ArchiveCorruptError(
                CORRUPT_ARCHIVE,
                f"tar header data larger than {_TAR_HEADER_ALLOWANCE} bytes "
                "(pax or long-name header)",
            )
        return data


class _MemberReader(io.RawIOBase):
    """Raw stream over one member that enforces the limits on the bytes produced."""

    def __init__(
        self,
        raw: _Readable,
        *,
        path: str,
        charged: int,
        state: _State,
        compressed: Callable[[], int] | None,
    ) -> None:
        super().__init__()
        self._raw = raw
        self._path = path
        self._charged = charged
        self._state = state
        self._compressed = compressed
        self._c0 = compressed() if compressed is not None else 0
        self._out = 0
        self._pending = b""
        self._failed: ArchiveError | None = None
        self._expired = False
        self._raw_closed = False

    # -- limits ---------------------------------------------------------------

    def _fail(self, error: ArchiveError) -> ArchiveError:
        self._failed = error
        return error

    def _account(self, nbytes: int) -> None:
        limits = self._state.limits
        self._out += nbytes
        if self._out > limits.max_member_bytes:
            raise self._fail(
                ArchiveLimitError(
                    MEMBER_TOO_LARGE,
                    f"{self._path}: more than {limits.max_member_bytes} bytes when read "
                    "(the declared size was smaller or unknown)",
                    self._path,
                )
            )
        if self._out > self._charged:
            delta = self._out - self._charged
            self._charged = self._out
            if not self._state.charge(delta):
                error = self._state.total_error(self._path)
                self._state.stop(error)
                raise self._fail(ArchiveLimitError(TOTAL_SIZE_EXCEEDED, error.message, self._path))
        if self._compressed is not None and self._out >= _RATIO_MIN_BYTES:
            consumed = self._compressed() - self._c0
            if self._out > limits.max_compression_ratio * (consumed + _RATIO_SLACK):
                raise self._fail(
                    ArchiveLimitError(
                        COMPRESSION_RATIO_EXCEEDED,
                        f"{self._path}: {self._out} bytes produced from about {consumed} "
                        f"compressed bytes, over the ratio limit {limits.max_compression_ratio:g}",
                        self._path,
                    )
                )

    def _pull(self, size: int) -> bytes:
        if self._expired:
            raise MemberExpiredError(
                f"{self._path}: member used after the archive iterator advanced "
                "(consume each member before requesting the next one)"
            )
        if self._failed is not None:
            raise self._failed
        room = self._state.limits.max_member_bytes - self._out + 1
        size = max(1, min(size, _CHUNK, room))
        try:
            data = self._raw.read(size)
        except (ArchiveError, MemberExpiredError):
            raise
        except _CORRUPT_ERRORS as exc:
            raise self._fail(
                ArchiveCorruptError(
                    CORRUPT_ARCHIVE, f"{self._path}: corrupt data: {_describe(exc)}", self._path
                )
            ) from exc
        self._account(len(data))
        return data

    def head(self, size: int) -> bytes:
        """Read up to ``size`` bytes ahead; they are replayed by later reads."""
        chunks = [self._pending]
        got = len(self._pending)
        while got < size:
            data = self._pull(size - got)
            if not data:
                break
            chunks.append(data)
            got += len(data)
        self._pending = b"".join(chunks)
        return self._pending

    # -- RawIOBase ------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if self._pending:
            if self._expired:
                self._pull(0)  # raises MemberExpiredError
            n = min(len(view), len(self._pending))
            view[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            return n
        data = self._pull(len(view))
        view[: len(data)] = data
        return len(data)

    def expire(self) -> None:
        self._expired = True
        self._pending = b""
        self._close_raw()

    def _close_raw(self) -> None:
        if self._raw_closed:
            return
        self._raw_closed = True
        close = getattr(self._raw, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()

    def close(self) -> None:
        self._close_raw()
        super().close()


class _Slot:
    """Ties a yielded member to the iterator position (single open, expires on advance)."""

    def __init__(self, path: str, reader: _MemberReader) -> None:
        self._path = path
        self._reader = reader
        self._valid = True
        self._opened = False

    def open(self) -> BinaryIO:
        if not self._valid:
            raise MemberExpiredError(
                f"{self._path}: open() called after the archive iterator advanced "
                "(consume each member before requesting the next one)"
            )
        if self._opened:
            raise MemberExpiredError(f"{self._path}: open() may only be called once per member")
        self._opened = True
        return io.BufferedReader(self._reader)

    def expire(self) -> None:
        self._valid = False
        self._reader.expire()


# --------------------------------------------------------------------------- entries


@dataclass
class _Entry:
    name: str
    kind: Literal["file", "dir", "link", "special"]
    size: int | None
    compressed_size: int | None = None
    encrypted: bool = False
    unsupported: str | None = None


# Opens a member's raw stream; also returns a probe giving the compressed bytes
# consumed so far (for the streaming ratio check), or None when not measurable.
_Opener = Callable[[], tuple[_Readable, Callable[[], int] | None]]


def _process_entry(
    entry: _Entry,
    *,
    base: str,
    depth: int,
    state: _State,
    opener: _Opener,
    skip_costs: bool,
) -> Iterator[ArchiveItem]:
    """Checks, nesting and yielding for one archive entry (shared by zip and tar)."""
    limits = state.limits
    if entry.kind == "dir":
        return
    if state.members >= limits.max_members:
        error = MemberError(
            base,
            TOO_MANY_MEMBERS,
            f"{base or 'archive'}: more than {limits.max_members} members; "
            f"stopped after {limits.max_members}",
        )
        state.stop(error)
        yield from state.flush()
        return
    state.members += 1

    clean, bad_path = _normalize(entry.name)
    path = _join(base, clean if clean else entry.name)
    reject: tuple[str, str] | None = None
    size = entry.size
    if bad_path == ABSOLUTE_PATH:
        reject = (ABSOLUTE_PATH, f"{path}: absolute member path refused")
    elif bad_path == PATH_TRAVERSAL:
        reject = (PATH_TRAVERSAL, f"{path}: '..' in member path refused")
    elif not clean:
        reject = (UNSUPPORTED_MEMBER, f"{path!r}: member without a usable name")
    elif entry.kind == "link":
        reject = (LINK_MEMBER, f"{path}: symbolic/hard link members are not followed")
    elif entry.kind == "special":
        reject = (UNSUPPORTED_MEMBER, f"{path}: {entry.unsupported or 'special file'} refused")
    elif entry.encrypted:
        reject = (ENCRYPTED_MEMBER, f"{path}: member is encrypted")
    elif entry.unsupported is not None:
        reject = (UNSUPPORTED_MEMBER, f"{path}: {entry.unsupported}")
    elif size is not None and size > limits.max_member_bytes:
        reject = (
            MEMBER_TOO_LARGE,
            f"{path}: declared size {size} bytes exceeds {limits.max_member_bytes}",
        )
    elif (
        size is not None
        and entry.compressed_size is not None
        and size >= _RATIO_MIN_BYTES
        and size > limits.max_compression_ratio * max(entry.compressed_size, 1)
    ):
        reject = (
            COMPRESSION_RATIO_EXCEEDED,
            f"{path}: declared {size} bytes from {entry.compressed_size} compressed bytes "
            f"(ratio {size / max(entry.compressed_size, 1):.0f} > "
            f"{limits.max_compression_ratio:g})",
        )

    if reject is not None:
        yield MemberError(path, reject[0], reject[1])
        # A tar stream must decompress a rejected member's data to skip it.
        if skip_costs and size and not state.charge(size):
            state.stop(state.total_error(path))
            yield from state.flush()
        return

    charged = size or 0
    if not state.charge(charged):
        state.stop(state.total_error(path))
        yield from state.flush()
        return

    try:
        raw, compressed = opener()
    except NotImplementedError as exc:
        yield MemberError(path, UNSUPPORTED_MEMBER, f"{path}: {_describe(exc)}")
        return
    except _CORRUPT_ERRORS as exc:
        yield MemberError(path, CORRUPT_ARCHIVE, f"{path}: cannot open member: {_describe(exc)}")
        return

    reader = _MemberReader(raw, path=path, charged=charged, state=state, compressed=compressed)
    try:
        try:
            head = reader.head(_SNIFF_BYTES)
        except ArchiveError as exc:
            if state.stopped:
                yield from state.flush()
            else:
                yield MemberError(path, exc.reason, exc.message)
            return

        kind = _detect(clean, head)
        if kind == "mail" and depth + 1 > limits.max_depth:
            kind = None  # too deep to expand: the message is one document, attachments inline
        if kind is not None:
            if depth + 1 > limits.max_depth:
                yield MemberError(
                    path,
                    NESTING_TOO_DEEP,
                    f"{path}: nested archive at depth {depth + 1} exceeds max_depth "
                    f"{limits.max_depth}; not expanded",
                )
                return
            if kind == "mail":
                yield from _expand_nested_mail(reader, path, depth + 1, state)
            elif kind == "zip":
                yield from _expand_nested_zip(reader, path, depth + 1, state)
            else:
                with io.BufferedReader(reader) as buffered:
                    yield from _iter_tar(buffered, head, path, depth + 1, state)
            return

        slot = _Slot(path, reader)
        try:
            yield ArchiveMember(path=path, size=size, _slot=slot)
        finally:
            slot.expire()
        if state.stopped:  # the consumer's read went over the total limit
            yield from state.flush()
    finally:
        reader.expire()


def _expand_nested_zip(
    reader: _MemberReader, path: str, depth: int, state: _State
) -> Iterator[ArchiveItem]:
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        try:
            with io.BufferedReader(reader) as buffered:
                shutil.copyfileobj(buffered, spool, _CHUNK)
        except ArchiveError as exc:
            if state.stopped:
                yield from state.flush()
            else:
                yield MemberError(path, exc.reason, exc.message)
            return
        spool.seek(0)
        yield from _iter_zip(spool, path, depth, state)


def _expand_nested_mail(
    reader: _MemberReader, path: str, depth: int, state: _State
) -> Iterator[ArchiveItem]:
    try:
        with io.BufferedReader(reader) as buffered:
            data = buffered.read()
    except ArchiveError as exc:
        if state.stopped:
            yield from state.flush()
        else:
            yield MemberError(path, exc.reason, exc.message)
        return
    yield from _iter_mail(data, path, PurePosixPath(path.split("!/")[-1]).name, depth, state)


# --------------------------------------------------------------------------- mail


def _safe_name(text: str, fallback: str) -> str:
    name = re.sub(r"[\x00-\x1f\x7f]", "", text or "").strip()
    return name[:200] or fallback


def _rfc822_body(headers: list[tuple[str, str]], plain: str, html: str) -> bytes:
    """A message with the headers and the text (or HTML) body only."""
    out = EmailMessage(policy=email.policy.default)
    for key, value in headers:
        if value:
            with contextlib.suppress(Exception):
                out[key] = value
    if plain.strip() or not html.strip():
        out.set_content(plain or "")
        if html.strip():
            out.add_alternative(html, subtype="html")
    else:
        out.set_content(html, subtype="html")
    return out.as_bytes()


def _eml_parts(data: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    headers = [(k, str(msg.get(k, ""))) for k in ("From", "To", "Cc", "Date", "Subject")]
    body = msg.get_body(preferencelist=("plain", "html"))
    plain = html = ""
    for kind in ("plain", "html"):
        part = msg.get_body(preferencelist=(kind,))
        if part is not None and part.get_content_type() == f"text/{kind}":
            with contextlib.suppress(Exception):
                text = str(part.get_content())
                plain, html = (text, html) if kind == "plain" else (plain, text)
    bodies = {id(p) for p in (msg.get_body(("plain",)), msg.get_body(("html",)), body) if p}
    attachments: list[tuple[str, bytes]] = []

    def walk(part: Message) -> None:
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            inner_msg = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner_msg, Message):
                subject = str(inner_msg.get("Subject", "") or "message")
                name = part.get_filename() or f"{_safe_name(subject, 'message')}.eml"
                attachments.append((_safe_name(name, "message.eml"), inner_msg.as_bytes()))
            return
        if part.is_multipart():
            for sub in part.get_payload():
                if isinstance(sub, Message):
                    walk(sub)
            return
        if id(part) in bodies:
            return
        if (
            ctype.startswith("image/")
            and part.get("Content-ID")
            and part.get_content_disposition() != "attachment"
        ):
            return  # an image shown inside the HTML body (logo, signature), not an attachment
        filename = part.get_filename()
        if part.get_content_disposition() == "attachment" or filename:
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                attachments.append((_safe_name(filename or "", "attachment"), payload))

    walk(msg)
    return _rfc822_body(headers, plain, html), attachments


def _msg_parts(data: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    from oxmsg import Message as OutlookMessage

    msg = OutlookMessage.load(io.BytesIO(data))
    recipients = ", ".join(
        f'"{r.name}" <{r.email_address}>' if r.name else str(r.email_address)
        for r in msg.recipients
    )
    headers = [
        ("From", str(msg.sender or "")),
        ("To", recipients),
        ("Date", msg.sent_date.strftime("%a, %d %b %Y %H:%M:%S %z") if msg.sent_date else ""),
        ("Subject", str(msg.subject or "")),
    ]
    html = msg.html_body or ""
    attachments = [
        (_safe_name(a.file_name or "", "attachment"), a.file_bytes)
        for a in msg.attachments
        if a.file_bytes
    ]
    return _rfc822_body(headers, msg.body or "", html if isinstance(html, str) else ""), attachments


def _iter_mail(
    data: bytes, base: str, name: str, depth: int, state: _State
) -> Iterator[ArchiveItem]:
    """Body (at ``base``, the message's own path) then each attachment, through the same
    checks, nesting and limits as archive entries."""
    try:
        body, attachments = _msg_parts(data) if data.startswith(_OLE_MAGIC) else _eml_parts(data)
    except Exception as exc:
        yield MemberError(
            base, CORRUPT_ARCHIVE, f"{base or name}: unreadable mail message: {_describe(exc)}"
        )
        return
    if state.members >= state.limits.max_members:
        state.stop(
            MemberError(
                base,
                TOO_MANY_MEMBERS,
                f"{base or name}: more than {state.limits.max_members} members",
            )
        )
        yield from state.flush()
        return
    state.members += 1
    if not state.charge(len(body)):
        state.stop(state.total_error(base))
        yield from state.flush()
        return
    reader = _MemberReader(
        io.BytesIO(body), path=base or name, charged=len(body), state=state, compressed=None
    )
    slot = _Slot(base or name, reader)
    try:
        yield ArchiveMember(path=base, size=len(body), _slot=slot)
    finally:
        slot.expire()
        reader.expire()
    used: set[str] = set()
    for filename, payload in attachments:
        if state.stopped:
            yield from state.flush()
            return
        unique, n = filename, 1
        while unique.lower() in used:
            n += 1
            stem, dot, ext = filename.rpartition(".")
            unique = f"{stem} ({n}).{ext}" if dot and stem else f"{filename} ({n})"
        used.add(unique.lower())

        def opener(payload: bytes = payload) -> tuple[_Readable, Callable[[], int] | None]:
            return io.BytesIO(payload), None

        yield from _process_entry(
            _Entry(unique, "file", len(payload)),
            base=base,
            depth=depth,
            state=state,
            opener=opener,
            skip_costs=False,
        )
    if state.stopped:
        yield from state.flush()


# --------------------------------------------------------------------------- formats


def _zip_consumed(stream: IO[bytes]) -> Callable[[], int] | None:
    """Compressed bytes a ZipExtFile has really fed to its decompressor.

    ZipExtFile reads compressed data ahead of what it decompresses (it keeps an
    ``unconsumed_tail``), so bytes read from the file say little about the
    ratio.  This uses CPython internals; where they are absent the streaming
    ratio check is skipped for zip (output stays bounded by the declared,
    already-checked ``file_size``: ZipExtFile never returns more than that).
    """
    if not hasattr(stream, "_compress_left"):  # pragma: no cover - other Pythons
        return None
    start = int(getattr(stream, "_compress_left", 0))

    def consumed() -> int:
        left = int(getattr(stream, "_compress_left", 0))
        decompressor = getattr(stream, "_decompressor", None)
        tail = getattr(decompressor, "unconsumed_tail", b"")
        return start - left - len(tail)

    return consumed


def _zip_entry(info: zipfile.ZipInfo) -> _Entry:
    fmt = stat.S_IFMT(info.external_attr >> 16)
    size, csize = info.file_size, info.compress_size
    if info.is_dir() or fmt == stat.S_IFDIR:
        return _Entry(info.filename, "dir", None)
    if fmt == stat.S_IFLNK:
        return _Entry(info.filename, "link", size)
    if fmt in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
        return _Entry(info.filename, "special", size, unsupported="device, fifo or socket member")
    unsupported = None
    if info.compress_type not in _ZIP_METHODS:
        unsupported = f"zip compression method {info.compress_type} is not supported"
    return _Entry(
        info.filename,
        "file",
        size,
        compressed_size=csize,
        encrypted=bool(info.flag_bits & 0x1),
        unsupported=unsupported,
    )


def _iter_zip(fileobj: IO[bytes], base: str, depth: int, state: _State) -> Iterator[ArchiveItem]:
    try:
        archive = zipfile.ZipFile(fileobj)
    except _CORRUPT_ERRORS as exc:
        yield MemberError(
            base, CORRUPT_ARCHIVE, f"{base or 'archive'}: not a readable zip: {_describe(exc)}"
        )
        return
    with archive:
        seen = 0
        for info in archive.infolist():
            if state.stopped:
                yield from state.flush()
                return
            entry = _zip_entry(info)
            if entry.kind == "dir":
                continue
            seen += 1

            def opener(
                info: zipfile.ZipInfo = info,
            ) -> tuple[_Readable, Callable[[], int] | None]:
                stream = archive.open(info)
                return stream, _zip_consumed(stream)

            yield from _process_entry(
                entry,
                base=base,
                depth=depth,
                state=state,
                opener=opener,
                skip_costs=False,
            )
        if state.stopped:
            yield from state.flush()
            return
        if seen == 0:
            yield MemberError(base, EMPTY_ARCHIVE, f"{base or 'archive'}: zip has no file members")


def _tar_entry(info: tarfile.TarInfo) -> _Entry:
    if info.isdir():
        return _Entry(info.name, "dir", None)
    if info.issym() or info.islnk():
        return _Entry(info.name, "link", 0)
    if info.isreg():
        return _Entry(info.name, "file", info.size)
    if info.ischr() or info.isblk() or info.isfifo():
        return _Entry(info.name, "special", info.size, unsupported="device or fifo member")
    return _Entry(info.name, "special", info.size, unsupported=f"tar member type {info.type!r}")


def _iter_tar(
    src: _Readable, head: bytes, base: str, depth: int, state: _State
) -> Iterator[ArchiveItem]:
    counting = _Counting(src)
    comp = _compression(head)
    seen = 0
    try:
        with contextlib.ExitStack() as stack:
            decompressed: _Readable = counting
            if comp == "gz":
                decompressed = stack.enter_context(
                    gzip.GzipFile(fileobj=cast(IO[bytes], counting), mode="rb")
                )
            elif comp == "bz2":
                decompressed = stack.enter_context(bz2.BZ2File(cast(IO[bytes], counting)))
            elif comp == "xz":
                decompressed = stack.enter_context(lzma.LZMAFile(cast(IO[bytes], counting)))
            guard = _TarGuard(decompressed)
            # Compressed bytes read below the decompressor (its read-ahead is small).
            probe: Callable[[], int] | None = (lambda: counting.count) if comp is not None else None
            archive: tarfile.TarFile = stack.enter_context(
                tarfile.open(fileobj=cast(IO[bytes], guard), mode="r|")
            )
            while True:
                if state.stopped:
                    yield from state.flush()
                    return
                info = archive.next()
                # Stream mode appends every TarInfo to TarFile.members: drop them so
                # memory stays flat however many members the archive has.
                kept = getattr(archive, "members", None)
                if isinstance(kept, list):
                    kept.clear()
                if info is None:
                    break
                guard.limit = info.offset_data + _tar_block(info.size) + _TAR_HEADER_ALLOWANCE
                entry = _tar_entry(info)
                if entry.kind == "dir":
                    continue
                seen += 1

                def opener(
                    info: tarfile.TarInfo = info,
                ) -> tuple[_Readable, Callable[[], int] | None]:
                    stream = archive.extractfile(info)
                    if stream is None:  # pragma: no cover - only for non-regular members
                        raise tarfile.ReadError("member has no data")
                    return stream, probe

                yield from _process_entry(
                    entry,
                    base=base,
                    depth=depth,
                    state=state,
                    opener=opener,
                    skip_costs=True,
                )
    except ArchiveError as exc:
        if state.stopped:
            yield from state.flush()
        else:
            yield MemberError(base, exc.reason, f"{base or 'archive'}: {exc.message}")
        return
    except _CORRUPT_ERRORS as exc:
        yield MemberError(
            base, CORRUPT_ARCHIVE, f"{base or 'archive'}: corrupt tar stream: {_describe(exc)}"
        )
        return
    if state.stopped:
        yield from state.flush()
        return
    if seen == 0:
        yield MemberError(base, EMPTY_ARCHIVE, f"{base or 'archive'}: tar has no file members")


# --------------------------------------------------------------------------- entry point


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def iter_archive(
    source: BinaryIO | IO[bytes] | str | os.PathLike[str],
    name: str,
    limits: ArchiveLimits = ArchiveLimits(),
) -> Iterator[ArchiveItem]:
    """Expand an archive as a stream of members and per-member errors.

    ``source`` is a path or a binary file object (read from its current
    position; zip needs a seekable one, a non-seekable zip is spooled to a
    temporary file bounded by ``max_total_uncompressed_bytes``).  ``name`` is
    used for format hints and messages.  See the module docstring for the
    sequential consumption contract: consume each member before advancing.
    """
    state = _State(limits)
    with contextlib.ExitStack() as stack:
        stream: IO[bytes]
        if isinstance(source, (str, os.PathLike)):
            stream = stack.enter_context(open(source, "rb"))
        else:
            stream = source
        try:
            seekable = _seekable(stream)
            if seekable:
                start = stream.tell()
                head = _read_fully(stream, _SNIFF_BYTES)
                stream.seek(start)
                src: IO[bytes] | _Prefixed = stream
            else:
                head = _read_fully(stream, _SNIFF_BYTES)
                src = _Prefixed(head, stream)
        except _CORRUPT_ERRORS as exc:
            yield MemberError("", CORRUPT_ARCHIVE, f"{name}: cannot read archive: {_describe(exc)}")
            return
        if not head:
            yield MemberError("", EMPTY_ARCHIVE, f"{name}: archive is empty (0 bytes)")
            return
        kind = _top_kind(name, head)
        if kind is None:
            yield MemberError("", CORRUPT_ARCHIVE, f"{name}: not a recognised zip or tar archive")
            return
        if kind == "mail":
            try:
                data = _read_fully(src, limits.max_member_bytes + 1)
            except _CORRUPT_ERRORS as exc:
                yield MemberError("", CORRUPT_ARCHIVE, f"{name}: cannot read: {_describe(exc)}")
                return
            if len(data) > limits.max_member_bytes:
                yield MemberError(
                    "", MEMBER_TOO_LARGE, f"{name}: message over {limits.max_member_bytes} bytes"
                )
                return
            yield from _iter_mail(data, "", name, 0, state)
            return
        if kind == "tar":
            yield from _iter_tar(src, head, "", 0, state)
            return
        if seekable:
            yield from _iter_zip(stream, "", 0, state)
            return
        spool = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY))
        copied = 0
        try:
            while chunk := src.read(_CHUNK):
                copied += len(chunk)
                if copied > limits.max_total_uncompressed_bytes:
                    yield state.total_error("")
                    return
                spool.write(chunk)
        except _CORRUPT_ERRORS as exc:
            yield MemberError("", CORRUPT_ARCHIVE, f"{name}: cannot read archive: {_describe(exc)}")
            return
        spool.seek(0)
        yield from _iter_zip(spool, "", 0, state)
