"""Object storage behind one Protocol: MinIO/S3 (``minio`` SDK) or a local folder (embedded).

Objects are read as streams (never whole in memory); listing is an iterator.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, cast

from docfactory.core.config import Settings
from docfactory.core.errors import InvalidArgument, NotFound
from docfactory.core.validation import shorten


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    etag: str
    size: int


class ObjectStore(Protocol):
    def list_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]: ...

    def stat(self, bucket: str, key: str) -> ObjectInfo | None: ...

    def open(self, bucket: str, key: str) -> contextlib.AbstractContextManager[IO[bytes]]: ...

    def put_file(self, bucket: str, key: str, path: Path) -> ObjectInfo:
        """Store a local file as an object (creating the bucket if needed)."""
        ...

    def remove(self, bucket: str, key: str) -> None:
        """Delete an object; a missing object is not an error."""
        ...


class MinioStore:
    """MinIO (or any S3 API) through the ``minio`` SDK."""

    def __init__(
        self, endpoint: str, access_key: str, secret_key: str, secure: bool, region: str = ""
    ) -> None:
        from minio import Minio

        self.client = Minio(
            endpoint,
            access_key=access_key or None,
            secret_key=secret_key or None,
            secure=secure,
            region=region or None,
        )
        self._known_buckets: set[str] = set()

    def list_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        from minio.error import S3Error

        try:
            for obj in self.client.list_objects(bucket, prefix=prefix or None, recursive=True):
                if obj.is_dir or obj.object_name is None:
                    continue
                yield ObjectInfo(obj.object_name, (obj.etag or "").strip('"'), obj.size or 0)
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                raise NotFound(
                    f"bucket {shorten(bucket)} not found", reason="BUCKET_NOT_FOUND"
                ) from exc
            raise

    def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        from minio.error import S3Error

        try:
            st = self.client.stat_object(bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
                return None
            raise
        return ObjectInfo(key, (st.etag or "").strip('"'), st.size or 0)

    def put_file(self, bucket: str, key: str, path: Path) -> ObjectInfo:
        from minio.error import S3Error

        if bucket not in self._known_buckets:
            try:
                if not self.client.bucket_exists(bucket):
                    self.client.make_bucket(bucket)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
            self._known_buckets.add(bucket)
        res = self.client.fput_object(bucket, key, str(path))
        return ObjectInfo(key, (res.etag or "").strip('"'), path.stat().st_size)

    def remove(self, bucket: str, key: str) -> None:
        self.client.remove_object(bucket, key)  # S3 DELETE is idempotent

    @contextlib.contextmanager
    def open(self, bucket: str, key: str) -> Iterator[IO[bytes]]:
        resp: Any = self.client.get_object(bucket, key)
        try:
            yield cast(IO[bytes], _Stream(resp))
        finally:
            resp.close()
            resp.release_conn()


class _Stream:
    """A minimal read-only, non-seekable binary stream over an urllib3 response."""

    def __init__(self, resp: Any) -> None:
        self._resp = resp

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._resp.read() if size is None or size < 0 else self._resp.read(size)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        pass


class LocalStore:
    """A folder as object storage: bucket = sub-folder of ``root``, key = relative path.

    The ETag is derived from size and modification time (no need to read the bytes).
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _bucket(self, bucket: str) -> Path:
        if not bucket or "/" in bucket or bucket in (".", ".."):
            raise InvalidArgument(f"invalid bucket name {shorten(bucket)}", reason="INVALID_BUCKET")
        return self.root / bucket

    def _path(self, bucket: str, key: str) -> Path:
        base = self._bucket(bucket).resolve()
        path = (base / key).resolve()
        if base not in path.parents:
            raise InvalidArgument(f"invalid object key {shorten(key)}", reason="INVALID_KEY")
        return path

    @staticmethod
    def _etag(st: os.stat_result) -> str:
        return hashlib.md5(
            f"{st.st_size}:{st.st_mtime_ns}".encode(), usedforsecurity=False
        ).hexdigest()

    def list_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        base = self._bucket(bucket)
        if not base.is_dir():
            raise NotFound(f"bucket {shorten(bucket)} not found", reason="BUCKET_NOT_FOUND")
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                key = path.relative_to(base).as_posix()
                if not key.startswith(prefix) or path.is_symlink():
                    continue
                st = path.stat()
                yield ObjectInfo(key, self._etag(st), st.st_size)

    def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        path = self._path(bucket, key)
        if not path.is_file():
            return None
        st = path.stat()
        return ObjectInfo(key, self._etag(st), st.st_size)

    @contextlib.contextmanager
    def open(self, bucket: str, key: str) -> Iterator[IO[bytes]]:
        with open(self._path(bucket, key), "rb") as f:
            yield f

    def put_file(self, bucket: str, key: str, path: Path) -> ObjectInfo:
        dest = self._path(bucket, key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)  # readers never see a half-written object
        st = dest.stat()
        return ObjectInfo(key, self._etag(st), st.st_size)

    def remove(self, bucket: str, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(bucket, key).unlink()


def make_object_store(settings: Settings) -> ObjectStore:
    s3 = settings.s3
    if s3.endpoint:
        return MinioStore(s3.endpoint, s3.access_key, s3.secret_key, s3.secure, s3.region)
    root = Path(s3.local_root) if s3.local_root else settings.data_dir / "objects"
    return LocalStore(root)
