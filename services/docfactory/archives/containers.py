"""Zip-based document containers (OOXML .docx/.xlsx/.pptx, OpenDocument .odt/.ods/.odp, EPUB,
and any other file that is a zip by content) checked like archives before they are parsed.

A 362 KB .docx can hold a ``word/document.xml`` of 100 MB: the parser would inflate it and
build its XML tree (gigabytes, minutes of CPU) before anything else looks at it. The archive
limits (:class:`~docfactory.archives.model.ArchiveLimits`) apply here to the one container:

* the central directory first (no inflation): member count, each member's declared size, the
  total of the declared sizes, the compression ratio of each member (past 1 MiB, as for
  archives) and of the whole file (declared total / file size: also catches members that share
  their compressed data);
* then every compressed member is inflated as a stream, in 64 KiB steps, with a budget of its
  declared size: a member that produces more than its central directory says is refused at the
  first byte past it (readers that do not bound their output by the declared size, pandoc's
  zip reader for ODT and EPUB, would otherwise inflate whatever the data holds). Nothing is
  kept: memory stays flat, and the bytes inflated never exceed the declared total already
  checked.

Only the methods the container formats allow (OPC, ODF and OCF: stored and deflate) are
accepted; bzip2/LZMA members are refused (zipfile inflates a bzip2 or LZMA chunk without an
output bound). A file that is not a readable zip is not a container: :func:`check_container`
returns ``None`` and the parser reports what it makes of it.
"""

from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass
from typing import Final

from docfactory.archives.model import ArchiveLimitError, ArchiveLimits
from docfactory.archives.streams import CHUNK, CORRUPT_ERRORS, RATIO_MIN_BYTES

CONTAINER_TOO_MANY_MEMBERS: Final = "CONTAINER_TOO_MANY_MEMBERS"
CONTAINER_TOO_LARGE: Final = "CONTAINER_TOO_LARGE"
CONTAINER_RATIO: Final = "CONTAINER_RATIO"
CONTAINER_UNSUPPORTED_METHOD: Final = "CONTAINER_UNSUPPORTED_METHOD"
CONTAINER_REASONS: Final = frozenset(
    {CONTAINER_TOO_MANY_MEMBERS, CONTAINER_TOO_LARGE, CONTAINER_RATIO, CONTAINER_UNSUPPORTED_METHOD}
)

_METHODS: Final = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_EOCD: Final = b"PK\x05\x06"
_EOCD_SIZE: Final = 22
_EOCD_SEARCH: Final = _EOCD_SIZE + 65535  # the record plus the longest comment


@dataclass(frozen=True)
class ContainerReport:
    """What a container that passed holds (for logs and the parser's routing)."""

    members: int
    declared_bytes: int  # sum of the declared (inflated) sizes
    inflated_bytes: int  # bytes really inflated while checking (compressed members)


def _declared_entries(path: str | os.PathLike[str], file_size: int) -> int | None:
    """Entry count of the end-of-central-directory record, read before zipfile builds a
    ZipInfo per entry (a forged directory of millions of entries would cost gigabytes).
    None when there is no classic record (zip64 or no zip): zipfile decides."""
    with open(path, "rb") as f:
        f.seek(max(0, file_size - _EOCD_SEARCH))
        tail = f.read()
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < _EOCD_SIZE:
        return None
    (total,) = struct.unpack("<H", tail[at + 10 : at + 12])
    return None if total == 0xFFFF else int(total)


def declared_size(path: str | os.PathLike[str]) -> int | None:
    """Sum of the declared member sizes of a zip (central directory only, no inflation), or
    None when the file is no readable zip."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as zf:
            return sum(info.file_size for info in zf.infolist())
    except CORRUPT_ERRORS:
        return None


def _refuse(reason: str, member: str, message: str) -> ArchiveLimitError:
    return ArchiveLimitError(reason, message, path=member)


def check_container(
    path: str | os.PathLike[str], limits: ArchiveLimits = ArchiveLimits()
) -> ContainerReport | None:
    """Check a file that may be a zip-based container against ``limits``.

    Returns ``None`` when the file is not a readable zip (nothing to check), a
    :class:`ContainerReport` when it passes; raises :class:`ArchiveLimitError` with one of
    :data:`CONTAINER_REASONS`, ``path`` the member at fault (``""``: the whole file) and a
    message naming the member and the limit. ``max_depth`` is not used (a container's members
    are not expanded).
    """
    try:
        if not zipfile.is_zipfile(path):
            return None
        file_size = os.stat(path).st_size
        declared_entries = _declared_entries(path, file_size)
    except CORRUPT_ERRORS:
        return None
    if declared_entries is not None and declared_entries > limits.max_members:
        raise _refuse(
            CONTAINER_TOO_MANY_MEMBERS,
            "",
            f"{declared_entries} members, more than the limit of {limits.max_members}",
        )
    try:
        zf = zipfile.ZipFile(path)
    except CORRUPT_ERRORS:
        return None
    with zf:
        infos = [info for info in zf.infolist() if not info.is_dir()]
        if len(infos) > limits.max_members:
            raise _refuse(
                CONTAINER_TOO_MANY_MEMBERS,
                "",
                f"{len(infos)} members, more than the limit of {limits.max_members}",
            )
        total = 0
        for info in infos:
            name = info.filename
            if info.compress_type not in _METHODS:
                raise _refuse(
                    CONTAINER_UNSUPPORTED_METHOD,
                    name,
                    f"{name}: zip compression method {info.compress_type} is not allowed in "
                    "a document container (stored or deflate only)",
                )
            # A stored member is read for its compressed size: count the larger of the two.
            size = info.file_size
            if info.compress_type == zipfile.ZIP_STORED:
                size = max(size, info.compress_size)
            if size > limits.max_member_bytes:
                raise _refuse(
                    CONTAINER_TOO_LARGE,
                    name,
                    f"{name}: declared {size} bytes inflated, over the limit of "
                    f"{limits.max_member_bytes} bytes per member",
                )
            compressed = max(info.compress_size, 1)
            if size >= RATIO_MIN_BYTES and size > limits.max_compression_ratio * compressed:
                raise _refuse(
                    CONTAINER_RATIO,
                    name,
                    f"{name}: declared {size} bytes from {info.compress_size} compressed bytes "
                    f"(ratio {size / compressed:.0f}, over the limit of "
                    f"{limits.max_compression_ratio:g})",
                )
            total += size
            if total > limits.max_total_uncompressed_bytes:
                raise _refuse(
                    CONTAINER_TOO_LARGE,
                    name,
                    f"{name}: the members inflate to more than the limit of "
                    f"{limits.max_total_uncompressed_bytes} bytes in all",
                )
        if total >= RATIO_MIN_BYTES and total > limits.max_compression_ratio * max(file_size, 1):
            raise _refuse(
                CONTAINER_RATIO,
                "",
                f"the members declare {total} bytes from a {file_size}-byte file (ratio "
                f"{total / max(file_size, 1):.0f}, over the limit of "
                f"{limits.max_compression_ratio:g})",
            )
        inflated = 0
        for info in infos:
            if info.compress_type == zipfile.ZIP_STORED:
                continue
            inflated += _inflate_within(zf, info)
    return ContainerReport(members=len(infos), declared_bytes=total, inflated_bytes=inflated)


def _inflate_within(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """Inflate one deflated member, keeping nothing, and refuse it as soon as it produces
    more than its declared size. Returns the bytes inflated. Corrupt data (bad CRC, truncated
    stream) stops the check of that member quietly: the parser reports the file as unreadable.
    """
    declared = info.file_size
    probe = _copy(info)
    probe.file_size = declared + 1  # ZipExtFile stops at file_size: let one byte more through
    # ... and without the CRC, which it checks when it stops (a liar fails it before the extra
    # byte is seen); a corrupt member is the parser's to report.
    del probe.CRC
    produced = 0
    try:
        with zf.open(probe) as stream:
            while chunk := stream.read(CHUNK):
                produced += len(chunk)
                if produced > declared:
                    raise _refuse(
                        CONTAINER_TOO_LARGE,
                        info.filename,
                        f"{info.filename}: inflates past its declared size of {declared} bytes",
                    )
    except ArchiveLimitError:
        raise
    except (*CORRUPT_ERRORS, RuntimeError):  # RuntimeError: an encrypted member
        return produced
    return produced


def _copy(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
    """A ZipInfo with the same fields (ZipInfo uses __slots__, no copy protocol of its own)."""
    clone = zipfile.ZipInfo(info.filename, info.date_time)
    for slot in zipfile.ZipInfo.__slots__:
        if hasattr(info, slot):
            setattr(clone, slot, getattr(info, slot))
    return clone
