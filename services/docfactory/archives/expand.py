"""The expansion engine: zip, tar (plain or gz/bz2/xz, read as a stream) and mail messages,
each entry through the same checks, nesting and limits (see the package docstring)."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, BinaryIO, Final, Literal, cast

from docfactory.archives.detect import SNIFF_BYTES, compression, detect, top_kind
from docfactory.archives.mail import message_parts
from docfactory.archives.model import (
    ABSOLUTE_PATH,
    COMPRESSION_RATIO_EXCEEDED,
    CORRUPT_ARCHIVE,
    EMPTY_ARCHIVE,
    ENCRYPTED_MEMBER,
    LINK_MEMBER,
    MEMBER_TOO_LARGE,
    NESTING_TOO_DEEP,
    PATH_TRAVERSAL,
    TOO_MANY_MEMBERS,
    UNSUPPORTED_MEMBER,
    ArchiveError,
    ArchiveItem,
    ArchiveLimits,
    ArchiveMember,
    MemberError,
)
from docfactory.archives.streams import (
    CHUNK,
    CORRUPT_ERRORS,
    RATIO_MIN_BYTES,
    TAR_HEADER_ALLOWANCE,
    Counting,
    MemberReader,
    Prefixed,
    Readable,
    Slot,
    State,
    TarGuard,
    describe,
    read_fully,
)

_SPOOL_IN_MEMORY: Final = 8 * 1024 * 1024  # nested zips above this spill to a temp file
_ZIP_METHODS: Final = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_DRIVE_RE: Final = re.compile(r"^[A-Za-z]:")


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


def _tar_block(size: int) -> int:
    blocks, rest = divmod(size, tarfile.BLOCKSIZE)
    return (blocks + (1 if rest else 0)) * tarfile.BLOCKSIZE


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
_Opener = Callable[[], tuple[Readable, Callable[[], int] | None]]


def _process_entry(
    entry: _Entry,
    *,
    base: str,
    depth: int,
    state: State,
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
        and size >= RATIO_MIN_BYTES
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
        yield MemberError(path, UNSUPPORTED_MEMBER, f"{path}: {describe(exc)}")
        return
    except CORRUPT_ERRORS as exc:
        yield MemberError(path, CORRUPT_ARCHIVE, f"{path}: cannot open member: {describe(exc)}")
        return

    reader = MemberReader(raw, path=path, charged=charged, state=state, compressed=compressed)
    try:
        try:
            head = reader.head(SNIFF_BYTES)
        except ArchiveError as exc:
            if state.stopped:
                yield from state.flush()
            else:
                yield MemberError(path, exc.reason, exc.message)
            return

        kind = detect(clean, head)
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

        slot = Slot(path, reader)
        try:
            yield ArchiveMember(path=path, size=size, _slot=slot)
        finally:
            slot.expire()
        if state.stopped:  # the consumer's read went over the total limit
            yield from state.flush()
    finally:
        reader.expire()


def _expand_nested_zip(
    reader: MemberReader, path: str, depth: int, state: State
) -> Iterator[ArchiveItem]:
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        try:
            with io.BufferedReader(reader) as buffered:
                shutil.copyfileobj(buffered, spool, CHUNK)
        except ArchiveError as exc:
            if state.stopped:
                yield from state.flush()
            else:
                yield MemberError(path, exc.reason, exc.message)
            return
        spool.seek(0)
        yield from _iter_zip(spool, path, depth, state)


def _expand_nested_mail(
    reader: MemberReader, path: str, depth: int, state: State
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


def _iter_mail(
    data: bytes, base: str, name: str, depth: int, state: State
) -> Iterator[ArchiveItem]:
    """Body (at ``base``, the message's own path) then each attachment, through the same
    checks, nesting and limits as archive entries."""
    try:
        body, attachments = message_parts(data)
    except Exception as exc:
        yield MemberError(
            base, CORRUPT_ARCHIVE, f"{base or name}: unreadable mail message: {describe(exc)}"
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
    reader = MemberReader(
        io.BytesIO(body), path=base or name, charged=len(body), state=state, compressed=None
    )
    slot = Slot(base or name, reader)
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

        def opener(payload: bytes = payload) -> tuple[Readable, Callable[[], int] | None]:
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


def _iter_zip(fileobj: IO[bytes], base: str, depth: int, state: State) -> Iterator[ArchiveItem]:
    try:
        archive = zipfile.ZipFile(fileobj)
    except CORRUPT_ERRORS as exc:
        yield MemberError(
            base, CORRUPT_ARCHIVE, f"{base or 'archive'}: not a readable zip: {describe(exc)}"
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
            ) -> tuple[Readable, Callable[[], int] | None]:
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
    src: Readable, head: bytes, base: str, depth: int, state: State
) -> Iterator[ArchiveItem]:
    counting = Counting(src)
    comp = compression(head)
    seen = 0
    try:
        with contextlib.ExitStack() as stack:
            decompressed: Readable = counting
            if comp == "gz":
                decompressed = stack.enter_context(
                    gzip.GzipFile(fileobj=cast(IO[bytes], counting), mode="rb")
                )
            elif comp == "bz2":
                decompressed = stack.enter_context(bz2.BZ2File(cast(IO[bytes], counting)))
            elif comp == "xz":
                decompressed = stack.enter_context(lzma.LZMAFile(cast(IO[bytes], counting)))
            guard = TarGuard(decompressed)
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
                guard.limit = info.offset_data + _tar_block(info.size) + TAR_HEADER_ALLOWANCE
                entry = _tar_entry(info)
                if entry.kind == "dir":
                    continue
                seen += 1

                def opener(
                    info: tarfile.TarInfo = info,
                ) -> tuple[Readable, Callable[[], int] | None]:
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
    except CORRUPT_ERRORS as exc:
        yield MemberError(
            base, CORRUPT_ARCHIVE, f"{base or 'archive'}: corrupt tar stream: {describe(exc)}"
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
    state = State(limits)
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
                head = read_fully(stream, SNIFF_BYTES)
                stream.seek(start)
                src: IO[bytes] | Prefixed = stream
            else:
                head = read_fully(stream, SNIFF_BYTES)
                src = Prefixed(head, stream)
        except CORRUPT_ERRORS as exc:
            yield MemberError("", CORRUPT_ARCHIVE, f"{name}: cannot read archive: {describe(exc)}")
            return
        if not head:
            yield MemberError("", EMPTY_ARCHIVE, f"{name}: archive is empty (0 bytes)")
            return
        kind = top_kind(name, head)
        if kind is None:
            yield MemberError("", CORRUPT_ARCHIVE, f"{name}: not a recognised zip or tar archive")
            return
        if kind == "mail":
            try:
                data = read_fully(src, limits.max_member_bytes + 1)
            except CORRUPT_ERRORS as exc:
                yield MemberError("", CORRUPT_ARCHIVE, f"{name}: cannot read: {describe(exc)}")
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
            while chunk := src.read(CHUNK):
                copied += len(chunk)
                if copied > limits.max_total_uncompressed_bytes:
                    yield state.total_error("")
                    return
                spool.write(chunk)
        except CORRUPT_ERRORS as exc:
            yield MemberError("", CORRUPT_ARCHIVE, f"{name}: cannot read archive: {describe(exc)}")
            return
        spool.seek(0)
        yield from _iter_zip(spool, "", 0, state)
