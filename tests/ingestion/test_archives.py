"""Tests for docfactory.archives (streaming archive expansion).

Every archive is generated in tmp_path at test time; nothing binary is committed.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import struct
import tarfile
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, cast

import pytest

from docfactory.archives import (
    ArchiveCorruptError,
    ArchiveError,
    ArchiveLimitError,
    ArchiveLimits,
    ArchiveMember,
    MemberError,
    MemberExpiredError,
    is_archive,
    iter_archive,
    member_source_uri,
)

DATA_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
MiB = 1024 * 1024

# --------------------------------------------------------------------------- helpers


class Collected:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.errors: list[tuple[str, str]] = []  # yielded by the iterator
        self.read_errors: list[tuple[str, str]] = []  # raised while reading a member
        self.messages: list[str] = []


def collect(
    source: Path | IO[bytes] | io.RawIOBase,
    name: str | None = None,
    limits: ArchiveLimits | None = None,
) -> Collected:
    """Consume an archive the way the ingestion pipeline must: member by member."""
    out = Collected()
    if name is None:
        assert isinstance(source, Path)
        name = source.name
    src = source if isinstance(source, Path) else cast(IO[bytes], source)
    items = iter_archive(src, name, limits) if limits else iter_archive(src, name)
    for item in items:
        if isinstance(item, MemberError):
            out.errors.append((item.path, item.reason))
            out.messages.append(item.message)
            continue
        assert isinstance(item, ArchiveMember)
        try:
            with item.open() as stream:
                out.files[item.path] = stream.read()
        except ArchiveError as exc:
            out.read_errors.append((item.path, exc.reason))
            out.messages.append(exc.message)
    return out


def write_zip(
    path: Path,
    members: dict[str, bytes],
    compression: int = zipfile.ZIP_DEFLATED,
    dirs: Iterable[str] = (),
) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for directory in dirs:
            archive.writestr(zipfile.ZipInfo(directory.rstrip("/") + "/"), b"")
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return path


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes], mode: str = "w:gz", dirs: Iterable[str] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        for directory in dirs:
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            archive.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def central_directory(data: bytes) -> Iterator[tuple[int, str, int]]:
    """(offset of the central-directory entry, name, local header offset) for each entry."""
    eocd = data.rfind(b"PK\x05\x06")
    (entries,) = struct.unpack_from("<H", data, eocd + 10)
    (offset,) = struct.unpack_from("<I", data, eocd + 16)
    for _ in range(entries):
        assert data[offset : offset + 4] == b"PK\x01\x02"
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, offset + 28)
        (local,) = struct.unpack_from("<I", data, offset + 42)
        name = data[offset + 46 : offset + 46 + name_len].decode()
        yield offset, name, local
        offset += 46 + name_len + extra_len + comment_len


def patch_zip(
    data: bytes,
    name: str,
    *,
    flag_bits: int = 0,
    file_size: int | None = None,
    compress_size: int | None = None,
) -> bytes:
    """Rewrite header fields of one member in both the local header and the central directory."""
    buf = bytearray(data)
    for cd, entry_name, local in list(central_directory(data)):
        if entry_name != name:
            continue
        if flag_bits:
            for at in (cd + 8, local + 6):
                struct.pack_into("<H", buf, at, struct.unpack_from("<H", buf, at)[0] | flag_bits)
        if compress_size is not None:
            struct.pack_into("<I", buf, cd + 20, compress_size)
            struct.pack_into("<I", buf, local + 18, compress_size)
        if file_size is not None:
            struct.pack_into("<I", buf, cd + 24, file_size)
            struct.pack_into("<I", buf, local + 22, file_size)
        return bytes(buf)
    raise AssertionError(f"{name} not in zip")


def member_data_offset(data: bytes, name: str) -> int:
    for _, entry_name, local in central_directory(data):
        if entry_name == name:
            name_len, extra_len = struct.unpack_from("<HH", data, local + 26)
            return int(local + 30 + name_len + extra_len)
    raise AssertionError(f"{name} not in zip")


def stored_zip_with_many_members(count: int) -> bytes:
    """A valid stored zip with ``count`` one-byte members, built directly (fast)."""
    local_parts: list[bytes] = []
    central_parts: list[bytes] = []
    offset = 0
    crc = zlib.crc32(b"x")
    for index in range(count):
        name = f"d/{index}.txt".encode()
        local = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, 1, 1, len(name), 0)
        local_parts.append(local + name + b"x")
        # signature, versions, flags, method, time, date, crc, sizes, name len, extra/comment
        # len, disk, internal/external attributes, local header offset
        fields = (b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, 1, 1, len(name), 0, 0, 0, 0, 0, offset)
        central_parts.append(struct.pack("<4s6H3I5H2I", *fields) + name)
        offset += len(local) + len(name) + 1
    central = b"".join(central_parts)
    if count > 0xFFFF:  # zip64 end records for the entry count
        zip64_eocd = struct.pack(
            "<4sQ2H2I4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(central), offset
        )
        locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, offset + len(central), 1)
        eocd = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, len(central), offset, 0)
        tail = zip64_eocd + locator + eocd
    else:
        tail = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, count, count, len(central), offset, 0)
    return b"".join(local_parts) + central + tail


class NonSeekable(io.RawIOBase):
    """A pipe-like stream (e.g. an HTTP/S3 body)."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class Zeros(io.RawIOBase):
    """``size`` zero bytes, produced lazily (to build huge members without holding them)."""

    def __init__(self, size: int) -> None:
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left)
        buffer[:n] = bytes(n)
        self._left -= n
        return n


NESTED_FILES = {
    "readme.txt": b"top level\n",
    "docs/guide.md": b"# Guide\n" * 50,
    "docs/sub/deep/report.pdf": b"%PDF-1.4 fake " + os.urandom(3000),
}

# --------------------------------------------------------------------------- normal archives


def test_zip_with_nested_folders_yields_every_member(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "bundle.zip", NESTED_FILES, dirs=["docs", "docs/sub"])
    result = collect(path)
    assert result.errors == [] and result.read_errors == []
    assert result.files == NESTED_FILES


def test_targz_with_nested_folders_yields_every_member(tmp_path: Path) -> None:
    path = tmp_path / "bundle.tar.gz"
    path.write_bytes(tar_bytes(NESTED_FILES, dirs=["docs", "docs/sub", "docs/sub/deep"]))
    result = collect(path)
    assert result.errors == [] and result.read_errors == []
    assert result.files == NESTED_FILES
    sizes = {m.path: m.size for m in iter_archive(path, path.name) if isinstance(m, ArchiveMember)}
    assert sizes == {name: len(data) for name, data in NESTED_FILES.items()}


@pytest.mark.parametrize("mode,name", [("w", "b.tar"), ("w:bz2", "b.tar.bz2"), ("w:xz", "b.txz")])
def test_other_tar_compressions(mode: str, name: str) -> None:
    result = collect(io.BytesIO(tar_bytes(NESTED_FILES, mode=mode)), name)
    assert result.errors == [] and result.files == NESTED_FILES


def test_non_seekable_sources_tar_and_zip() -> None:
    tar_result = collect(NonSeekable(tar_bytes(NESTED_FILES)), "stream.tgz")
    assert tar_result.errors == [] and tar_result.files == NESTED_FILES
    zip_result = collect(NonSeekable(zip_bytes(NESTED_FILES)), "stream.zip")  # spooled
    assert zip_result.errors == [] and zip_result.files == NESTED_FILES


def test_real_code_civil_archive() -> None:
    archive = DATA_DIR / "code-civil" / "code-civil-2015.tar.gz"
    if not archive.exists():
        pytest.skip(f"../shared/data absent: {archive} not found")
    result = collect(archive)
    assert result.errors == [] and result.read_errors == []
    md = [p for p in result.files if p.endswith(".md")]
    # 2,802 articles ("Article *.md" in Livre/Titre folders) plus the corpus README.md.
    articles = [p for p in md if p.rsplit("/", 1)[-1].startswith("Article ")]
    assert len(articles) == 2802
    assert sorted(set(md) - set(articles)) == ["code_civil_md/README.md"]
    assert all(p.startswith("code_civil_md/Livre") or "/Titre" in p for p in articles)
    assert all(result.files[p] for p in articles)  # every article has text
    sample = next(p for p in articles if p.endswith("/Article 1609.md"))
    assert sample.count("/") == 3  # code_civil_md/Livre III/Titre VI/Article 1609.md
    assert result.files[sample].decode("utf-8").strip()


# --------------------------------------------------------------------------- bombs and limits


def test_zip_ratio_bomb_is_refused_and_other_members_still_yielded(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "bomb.zip",
        {"a.txt": b"before", "zeros.bin": bytes(50 * MiB), "z.txt": b"after"},
    )
    result = collect(path)
    assert result.errors == [("zeros.bin", "COMPRESSION_RATIO_EXCEEDED")]
    assert result.files == {"a.txt": b"before", "z.txt": b"after"}


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_member_over_max_member_bytes(fmt: str) -> None:
    members = {"small.txt": b"ok", "big.bin": os.urandom(2 * MiB), "tail.txt": b"tail"}
    data = zip_bytes(members) if fmt == "zip" else tar_bytes(members)
    result = collect(io.BytesIO(data), f"x.{fmt}", ArchiveLimits(max_member_bytes=MiB))
    assert result.errors == [("big.bin", "MEMBER_TOO_LARGE")]
    assert result.files == {"small.txt": b"ok", "tail.txt": b"tail"}


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_total_size_exceeded_stops_iteration(fmt: str) -> None:
    members = {f"part{i}.bin": os.urandom(MiB + MiB // 2) for i in range(3)}
    data = zip_bytes(members) if fmt == "zip" else tar_bytes(members)
    limits = ArchiveLimits(max_total_uncompressed_bytes=5 * MiB // 2)
    result = collect(io.BytesIO(data), f"x.{fmt}", limits)
    assert list(result.files) == ["part0.bin"]
    assert result.errors == [("part1.bin", "TOTAL_SIZE_EXCEEDED")]


def test_zip_central_directory_lying_about_file_size_is_stopped_while_reading() -> None:
    big = os.urandom(5 * MiB)
    data = zip_bytes({"big.bin": big, "ok.txt": b"fine"}, zipfile.ZIP_STORED)
    lying = patch_zip(data, "big.bin", file_size=1000)  # "only 1000 bytes": passes the 1 MiB limit
    limits = ArchiveLimits(max_member_bytes=MiB)
    delivered: dict[str, int] = {}
    outcomes: list[tuple[str, str]] = []
    for item in iter_archive(io.BytesIO(lying), "lie.zip", limits):
        if isinstance(item, MemberError):
            outcomes.append((item.path, item.reason))
            continue
        got = 0
        try:
            with item.open() as stream:
                while chunk := stream.read(64 * 1024):
                    got += len(chunk)
        except ArchiveError as exc:
            outcomes.append((item.path, exc.reason))
        delivered[item.path] = got
    # Never more than the declared (and allowed) size comes out; the CRC then betrays the lie.
    assert delivered.get("big.bin", 0) <= 1000
    assert ("big.bin", "CORRUPT_ARCHIVE") in outcomes
    assert delivered["ok.txt"] == 4


def test_zip_lying_compress_size_is_caught_by_the_streaming_ratio_check() -> None:
    size = 64 * MiB
    # (pad.bin keeps the file long enough for zipfile's read-ahead past the real data)
    data = zip_bytes({"bomb.bin": bytes(size), "pad.bin": os.urandom(MiB), "ok.txt": b"fine"})
    # Claim the 64 MiB came from 6.4 MB of compressed data: the declared ratio (10) passes.
    lying = patch_zip(data, "bomb.bin", compress_size=size // 10)
    items = iter_archive(io.BytesIO(lying), "lie.zip")
    first = next(items)
    assert isinstance(first, ArchiveMember) and first.path == "bomb.bin"
    produced = 0
    with pytest.raises(ArchiveLimitError) as caught, first.open() as stream:
        while chunk := stream.read(MiB):
            produced += len(chunk)
    assert caught.value.reason == "COMPRESSION_RATIO_EXCEEDED"
    assert produced < 32 * MiB  # stopped long before the end
    rest = list(items)
    assert [(m.path, isinstance(m, ArchiveMember)) for m in rest] == [
        ("pad.bin", True),
        ("ok.txt", True),
    ]


def test_targz_ratio_bomb_is_caught_while_streaming(tmp_path: Path) -> None:
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as archive:  # zeros at level 6: ratio ~1000
        info = tarfile.TarInfo("zeros.bin")
        info.size = 64 * MiB
        archive.addfile(info, io.BufferedReader(Zeros(info.size), MiB))
        info = tarfile.TarInfo("after.txt")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"after"))
    result = collect(path)
    assert result.read_errors == [("zeros.bin", "COMPRESSION_RATIO_EXCEEDED")]
    assert result.errors == []
    assert result.files == {"after.txt": b"after"}  # the stream skipped the rest of the bomb


def test_too_many_members_zip_stops_after_limit(tmp_path: Path) -> None:
    path = tmp_path / "many.zip"
    path.write_bytes(stored_zip_with_many_members(100_000))
    members = 0
    errors: list[MemberError] = []
    for item in iter_archive(path, path.name):  # default max_members=50_000
        if isinstance(item, MemberError):
            errors.append(item)
        else:
            members += 1
    assert members == 50_000
    assert [(e.path, e.reason) for e in errors] == [("", "TOO_MANY_MEMBERS")]


def test_too_many_members_tar_counts_nested_members_too() -> None:
    inner = zip_bytes({f"in{i}.txt": b"x" for i in range(5)})
    members = {f"top{i}.txt": b"x" for i in range(3)} | {"inner.zip": inner}
    members |= {f"z{i}.txt": b"x" for i in range(5)}
    result = collect(io.BytesIO(tar_bytes(members)), "t.tgz", ArchiveLimits(max_members=10))
    # 3 top files, the nested zip itself, its 5 members = 9 counted, then one more file.
    assert len(result.files) == 9
    assert result.errors == [("", "TOO_MANY_MEMBERS")]


# --------------------------------------------------------------------------- unsafe members


BAD_PATHS = {
    "../evil.txt": "PATH_TRAVERSAL",
    "docs/../../evil2.txt": "PATH_TRAVERSAL",
    "..\\windows-evil.txt": "PATH_TRAVERSAL",
    "/etc/passwd": "ABSOLUTE_PATH",
    "C:/Windows/win.ini": "ABSOLUTE_PATH",
}


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_traversal_and_absolute_paths_are_refused(fmt: str) -> None:
    members = {name: b"pwned" for name in BAD_PATHS} | {"ok/./fine.txt": b"fine"}
    data = zip_bytes(members) if fmt == "zip" else tar_bytes(members)
    result = collect(io.BytesIO(data), f"x.{fmt}")
    reasons = dict(result.errors)
    assert reasons == {name.replace("\\", "/"): reason for name, reason in BAD_PATHS.items()}
    assert result.files == {"ok/fine.txt": b"fine"}


def test_tar_links_and_devices_are_refused() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = b"real content"
        info = tarfile.TarInfo("real.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        for name, kind in [
            ("sym", tarfile.SYMTYPE),
            ("hard", tarfile.LNKTYPE),
            ("fifo", tarfile.FIFOTYPE),
            ("tty", tarfile.CHRTYPE),
            ("disk", tarfile.BLKTYPE),
        ]:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/shadow" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            archive.addfile(info)
    result = collect(io.BytesIO(buffer.getvalue()), "links.tar.gz")
    assert dict(result.errors) == {
        "sym": "LINK_MEMBER",
        "hard": "LINK_MEMBER",
        "fifo": "UNSUPPORTED_MEMBER",
        "tty": "UNSUPPORTED_MEMBER",
        "disk": "UNSUPPORTED_MEMBER",
    }
    assert result.files == {"real.txt": b"real content"}


def test_zip_symlink_member_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("link-to-passwd")
        link.create_system = 3  # Unix
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("normal.txt", b"normal")
    result = collect(io.BytesIO(buffer.getvalue()), "links.zip")
    assert result.errors == [("link-to-passwd", "LINK_MEMBER")]
    assert result.files == {"normal.txt": b"normal"}


def test_encrypted_zip_member_is_refused() -> None:
    data = zip_bytes({"secret.txt": b"x" * 100, "public.txt": b"public"})
    encrypted = patch_zip(data, "secret.txt", flag_bits=0x1)
    assert zipfile.ZipFile(io.BytesIO(encrypted)).getinfo("secret.txt").flag_bits & 0x1
    result = collect(io.BytesIO(encrypted), "enc.zip")
    assert result.errors == [("secret.txt", "ENCRYPTED_MEMBER")]
    assert result.files == {"public.txt": b"public"}


# --------------------------------------------------------------------------- corrupt and empty


def test_truncated_targz_reports_corrupt_archive_without_raising() -> None:
    members = {f"f{i}.bin": os.urandom(200_000) for i in range(6)}
    data = tar_bytes(members)
    truncated = data[: len(data) // 2]
    result = collect(io.BytesIO(truncated), "cut.tar.gz")  # must not raise
    assert 1 <= len(result.files) < 6
    for name, content in result.files.items():
        assert content == members[name]  # what was yielded is intact
    assert ("", "CORRUPT_ARCHIVE") in result.errors
    assert all(reason == "CORRUPT_ARCHIVE" for _, reason in result.read_errors)


@pytest.mark.parametrize(
    "name,data",
    [
        ("random.zip", os.urandom(10_000)),
        ("random.tar.gz", b"\x1f\x8b\x08\x00" + os.urandom(10_000)),
        ("random.tar", os.urandom(10_000)),
        ("notes.txt", b"just some text, not an archive"),
    ],
)
def test_garbage_is_corrupt_archive(name: str, data: bytes) -> None:
    result = collect(io.BytesIO(data), name)
    assert result.files == {}
    assert result.errors == [("", "CORRUPT_ARCHIVE")]


def test_zip_crc_errors_are_reported_and_other_members_continue() -> None:
    small = b"small member " * 10  # read fully while sniffing: the iterator reports it
    large = os.urandom(200_000)  # flipped near the end: the consumer's read raises
    data = bytearray(
        zip_bytes({"small.txt": small, "large.bin": large, "ok.txt": b"ok"}, zipfile.ZIP_STORED)
    )
    data[member_data_offset(bytes(data), "small.txt") + 3] ^= 0xFF
    data[member_data_offset(bytes(data), "large.bin") + 150_000] ^= 0xFF
    result = collect(io.BytesIO(bytes(data)), "crc.zip")
    assert result.errors == [("small.txt", "CORRUPT_ARCHIVE")]
    assert result.read_errors == [("large.bin", "CORRUPT_ARCHIVE")]
    assert result.files == {"ok.txt": b"ok"}
    assert any("CRC" in message for message in result.messages)
    # The raised exception is a specific, catchable class.
    items = iter_archive(io.BytesIO(bytes(data)), "crc.zip")
    for item in items:
        if isinstance(item, ArchiveMember) and item.path == "large.bin":
            with pytest.raises(ArchiveCorruptError), item.open() as stream:
                stream.read()


def test_deflated_zip_with_flipped_byte_never_raises_from_the_iterator() -> None:
    text = ("lorem ipsum dolor sit amet " * 4000).encode()
    data = bytearray(zip_bytes({"a.txt": text, "b.txt": b"b"}))
    data[member_data_offset(bytes(data), "a.txt") + 50] ^= 0x55
    result = collect(io.BytesIO(bytes(data)), "flip.zip")
    assert ("a.txt", "CORRUPT_ARCHIVE") in result.errors + result.read_errors
    assert result.files == {"b.txt": b"b"}


@pytest.mark.parametrize(
    "name,data",
    [
        ("empty.zip", zip_bytes({})),
        ("empty.tar", tar_bytes({}, mode="w")),
        ("empty.tar.gz", tar_bytes({})),
        ("dirs-only.tar.gz", tar_bytes({}, dirs=["a", "a/b"])),
        ("zero-bytes.zip", b""),
    ],
)
def test_empty_archives(name: str, data: bytes) -> None:
    result = collect(io.BytesIO(data), name)
    assert result.files == {}
    assert result.errors == [("", "EMPTY_ARCHIVE")]


def test_empty_zip_with_directories_only(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "dirs.zip", {}, dirs=["a", "a/b"])
    assert collect(path).errors == [("", "EMPTY_ARCHIVE")]


# --------------------------------------------------------------------------- nesting


def nested_chain() -> bytes:
    """top.zip > level1.tar.gz > level2.zip > level3.zip, a file at every level."""
    level3 = zip_bytes({"l3.txt": b"three"})
    level2 = zip_bytes({"l2.txt": b"two", "level3.zip": level3})
    level1 = tar_bytes({"l1/l1.txt": b"one", "l1/level2.zip": level2})
    return zip_bytes({"top.txt": b"zero", "level1.tar.gz": level1})


def test_nested_archives_are_expanded_up_to_max_depth() -> None:
    result = collect(io.BytesIO(nested_chain()), "top.zip")  # default max_depth=2
    assert result.files == {
        "top.txt": b"zero",
        "level1.tar.gz!/l1/l1.txt": b"one",
        "level1.tar.gz!/l1/level2.zip!/l2.txt": b"two",
    }
    assert result.errors == [("level1.tar.gz!/l1/level2.zip!/level3.zip", "NESTING_TOO_DEEP")]


def test_zip_in_targz_in_zip_beyond_max_depth() -> None:
    result = collect(io.BytesIO(nested_chain()), "top.zip", ArchiveLimits(max_depth=1))
    assert result.files == {"top.txt": b"zero", "level1.tar.gz!/l1/l1.txt": b"one"}
    assert result.errors == [("level1.tar.gz!/l1/level2.zip", "NESTING_TOO_DEEP")]
    flat = collect(io.BytesIO(nested_chain()), "top.zip", ArchiveLimits(max_depth=0))
    assert flat.errors == [("level1.tar.gz", "NESTING_TOO_DEEP")]


def test_nested_corrupt_and_empty_archives_are_reported_at_their_path() -> None:
    data = zip_bytes(
        {"bad.zip": b"PK\x03\x04" + os.urandom(500), "void.tar.gz": tar_bytes({}), "f.txt": b"f"}
    )
    result = collect(io.BytesIO(data), "outer.zip")
    assert result.errors == [("bad.zip", "CORRUPT_ARCHIVE"), ("void.tar.gz", "EMPTY_ARCHIVE")]
    assert result.files == {"f.txt": b"f"}


def test_office_documents_are_not_expanded() -> None:
    docx = zip_bytes({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"})
    result = collect(io.BytesIO(zip_bytes({"letter.docx": docx})), "mail.zip")
    assert result.files == {"letter.docx": docx}


# --------------------------------------------------------------------------- streaming contract


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_members_expire_when_the_iterator_advances(fmt: str) -> None:
    members = {"a.txt": b"a" * 10, "b.txt": b"b" * 10}
    data = zip_bytes(members) if fmt == "zip" else tar_bytes(members)
    items = iter_archive(io.BytesIO(data), f"x.{fmt}")
    first = next(items)
    assert isinstance(first, ArchiveMember)
    stream = first.open()
    assert stream.read(2) == b"aa"
    with pytest.raises(MemberExpiredError):
        first.open()  # a member can be opened once
    second = next(items)
    assert isinstance(second, ArchiveMember)
    with pytest.raises(MemberExpiredError):
        first.open()
    with pytest.raises(MemberExpiredError):
        stream.read()
    with second.open() as fresh:
        assert fresh.read() == b"b" * 10


def test_member_source_uri() -> None:
    assert member_source_uri("s3://bucket/key.zip", "dir/file.pdf") == (
        "s3://bucket/key.zip!/dir/file.pdf"
    )
    assert member_source_uri("file:///x/a.tar.gz", "a/b.md") == "file:///x/a.tar.gz!/a/b.md"
    assert member_source_uri("s3://b/o.zip", "inner.tgz!/c.txt") == "s3://b/o.zip!/inner.tgz!/c.txt"
    assert member_source_uri("s3://b/o.zip", "") == "s3://b/o.zip"


def test_is_archive() -> None:
    zipped = zip_bytes({"a.txt": b"a"})
    tarred = tar_bytes({"a.txt": b"a"}, mode="w")
    targz = tar_bytes({"a.txt": b"a"})
    assert is_archive("a.zip", zipped[:4096])
    assert is_archive("a.ZIP", zip_bytes({}))  # empty zip: PK\x05\x06
    assert not is_archive("a.docx", zipped[:4096])  # zip-based document formats stay documents
    assert is_archive("a.tar", tarred[:4096])
    assert is_archive("no-extension", tarred[:4096])  # ustar magic at 257
    assert is_archive("a.tgz", targz[:4])
    assert is_archive("a.tar.gz", targz[:4096])
    assert is_archive("misnamed.gz", targz[:4096])  # gzip'd content is a tar
    assert not is_archive("data.jsonl.gz", gzip.compress(b'{"a": 1}\n' * 100))
    assert not is_archive("a.zip", b"%PDF-1.7 not a zip")
    assert not is_archive("a.pdf", b"%PDF-1.7")
    assert is_archive("empty.tar", tar_bytes({}, mode="w")[:4096])


# --------------------------------------------------------------------------- memory


def test_streaming_a_200mb_member_keeps_memory_flat(tmp_path: Path) -> None:
    size = 200 * MiB
    path = tmp_path / "huge.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        info = tarfile.TarInfo("huge/zeros.bin")
        info.size = size
        archive.addfile(info, io.BufferedReader(Zeros(size), 1024 * 1024))
        info = tarfile.TarInfo("after.txt")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"after"))
    limits = ArchiveLimits(max_compression_ratio=1e9)  # zeros: not testing the ratio here
    tracemalloc.start()
    try:
        total = 0
        seen: list[str] = []
        for item in iter_archive(path, path.name, limits):
            assert isinstance(item, ArchiveMember), item
            seen.append(item.path)
            with item.open() as stream:
                while chunk := stream.read(MiB):
                    total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == ["huge/zeros.bin", "after.txt"]
    assert total == size + 5
    assert peak < 32 * MiB, f"peak {peak / MiB:.1f} MiB"


def test_forged_huge_tar_header_is_refused_without_buffering_it() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as archive:
        info = tarfile.TarInfo("ok.txt")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"ok"))
        info = tarfile.TarInfo("n" * (16 * MiB))  # a 16 MiB GNU long-name header
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    data = buffer.getvalue()
    tracemalloc.start()
    try:
        result = collect(io.BytesIO(data), "forged.tar.gz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.files == {"ok.txt": b"ok"}
    assert result.errors == [("", "CORRUPT_ARCHIVE")]
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"


def test_tar_inside_tar_is_streamed_without_spooling() -> None:
    inner = tar_bytes({"x/inner.md": b"# inner"}, mode="w")
    outer = tar_bytes({"a.md": b"# a", "nested/inner.tar": inner, "z.md": b"# z"})
    result = collect(NonSeekable(outer), "outer.tgz")
    assert result.errors == []
    assert result.files == {
        "a.md": b"# a",
        "nested/inner.tar!/x/inner.md": b"# inner",
        "z.md": b"# z",
    }
