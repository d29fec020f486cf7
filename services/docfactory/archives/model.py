"""Public types of archive expansion: limits, per-member errors and their reasons, members."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Final, Protocol

if TYPE_CHECKING:
    from docfactory.core.config import JobsConfig

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


class _Opens(Protocol):
    """What a member hands out its bytes through (bound to the iterator position)."""

    def open(self) -> BinaryIO: ...


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class ArchiveLimits:
    """Resource limits applied to one :func:`iter_archive` call (whole tree)."""

    max_total_uncompressed_bytes: int = 4 * 1024**3
    max_member_bytes: int = 512 * 1024**2
    max_members: int = 50_000
    max_compression_ratio: float = 200.0
    max_depth: int = 2

    @classmethod
    def from_config(cls, jobs: JobsConfig) -> ArchiveLimits:
        """The limits of the settings (``jobs.max_archive_*``): bulk archives and zip-based
        documents are checked against the same ones."""
        return cls(
            max_total_uncompressed_bytes=jobs.max_archive_bytes,
            max_member_bytes=jobs.max_member_bytes,
            max_members=jobs.max_archive_members,
            max_compression_ratio=jobs.max_compression_ratio,
            max_depth=jobs.max_archive_depth,
        )

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
    _slot: _Opens = field(repr=False, compare=False)

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
