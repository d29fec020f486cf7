"""Limit-enforcing streams under one expansion: the shared accounting (:class:`State`), the
member reader that checks sizes and ratios on the bytes really produced, and the wrappers
that count, replay or bound what is read below it."""

from __future__ import annotations

import contextlib
import io
import lzma
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO, BinaryIO, Final, Protocol

from docfactory.archives.model import (
    COMPRESSION_RATIO_EXCEEDED,
    CORRUPT_ARCHIVE,
    MEMBER_TOO_LARGE,
    TOTAL_SIZE_EXCEEDED,
    ArchiveCorruptError,
    ArchiveError,
    ArchiveLimitError,
    ArchiveLimits,
    MemberError,
    MemberExpiredError,
)

MiB: Final = 1024 * 1024
CHUNK: Final = 64 * 1024  # largest single read pulled from a decompressor
RATIO_MIN_BYTES: Final = MiB  # the ratio is only judged past this many output bytes
_RATIO_SLACK: Final = 64 * 1024  # compressed read-ahead that may be charged to a neighbour
TAR_HEADER_ALLOWANCE: Final = MiB  # max bytes of tar headers (pax, GNU longname) per member

# Low-level exceptions that mean "the bytes are not a valid archive".
CORRUPT_ERRORS: Final = (
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


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def read_fully(stream: Readable, size: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def describe(exc: BaseException) -> str:
    text = str(exc) or "no detail"
    return f"{type(exc).__name__}: {text}"


class State:
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


class Counting:
    """Counts the compressed bytes read from a stream (for the tar ratio check)."""

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        return data


class Prefixed:
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


class TarGuard:
    """Decompressed tar stream that refuses to run past the current member + 1 MiB.

    tarfile buffers pax headers and GNU long names wholly in memory; bounding how
    far it may read beyond the end of the current member bounds that buffering.
    """

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self.pos = 0
        self.limit = TAR_HEADER_ALLOWANCE

    def read(self, size: int = -1, /) -> bytes:
        if size < 0 or self.pos + size > self.limit:
            size = max(0, self.limit - self.pos) + 1
        data = self._stream.read(size)
        self.pos += len(data)
        if self.pos > self.limit:
            raise ArchiveCorruptError(
                CORRUPT_ARCHIVE,
                f"tar header data larger than {TAR_HEADER_ALLOWANCE} bytes "
                "(pax or long-name header)",
            )
        return data


class MemberReader(io.RawIOBase):
    """Raw stream over one member that enforces the limits on the bytes produced."""

    def __init__(
        self,
        raw: Readable,
        *,
        path: str,
        charged: int,
        state: State,
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
        if self._compressed is not None and self._out >= RATIO_MIN_BYTES:
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
        size = max(1, min(size, CHUNK, room))
        try:
            data = self._raw.read(size)
        except (ArchiveError, MemberExpiredError):
            raise
        except CORRUPT_ERRORS as exc:
            raise self._fail(
                ArchiveCorruptError(
                    CORRUPT_ARCHIVE, f"{self._path}: corrupt data: {describe(exc)}", self._path
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


class Slot:
    """Ties a yielded member to the iterator position (single open, expires on advance)."""

    def __init__(self, path: str, reader: MemberReader) -> None:
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
