"""Jobs domain: create jobs (IngestPrefix, bucket notifications), read and watch them."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import PurePosixPath
from typing import Any

from docfactory.core.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from docfactory.core.pagination import next_page, page_request
from docfactory.core.validation import shorten
from docfactory.ingestion.contracts import BackgroundUpload, validate_collection
from docfactory.jobs.repo import (
    DELETE,
    KIND_NOTIFICATION,
    KIND_PREFIX,
    KIND_UPLOAD,
    UPSERT,
    DocOutcome,
    JobRow,
    JobsRepository,
    PlanItem,
)
from docfactory.jobs.runtime import JobQueue
from docfactory.jobs.storage import ObjectStore

__all__ = ["KIND_NOTIFICATION", "KIND_PREFIX", "KIND_UPLOAD", "JobsService"]


def validate_bucket(bucket: str) -> str:
    if not bucket or len(bucket) > 255 or "/" in bucket or bucket in (".", ".."):
        raise InvalidArgument(f"invalid bucket name {shorten(bucket)}", reason="INVALID_BUCKET")
    return bucket


class JobsService:
    def __init__(
        self,
        repo: JobsRepository,
        queue: JobQueue,
        *,
        store: ObjectStore | None = None,
        upload_bucket: str = "docfactory-uploads",
        source_granted: Callable[[str, str, str], bool] | None = None,
    ) -> None:
        self.repo = repo
        self.queue = queue
        self.store = store
        self.upload_bucket = upload_bucket
        # (tenant, bucket, prefix) -> may that tenant's jobs read it (the governance policy);
        # None = no policy (one-owner embedded default): every bucket but the uploads one.
        self.source_granted = source_granted

    def check_source(self, tenant: str, bucket: str, prefix: str) -> None:
        """A bulk job may read only what the policy grants its tenant, and never the bucket
        where background uploads are staged (they carry their own tenant and classification
        and are indexed by their own jobs)."""
        if bucket == self.upload_bucket:
            raise PermissionDenied(
                "the uploads bucket is not a source for bulk jobs", reason="SOURCE_NOT_ALLOWED"
            )
        if self.source_granted is not None and not self.source_granted(tenant, bucket, prefix):
            raise PermissionDenied(
                f"the policy grants tenant {tenant!r} no access to bucket {shorten(bucket, 63)} "
                f"prefix {shorten(prefix, 64)} (tenants[].sources)",
                reason="SOURCE_NOT_GRANTED",
            )

    async def submit_upload(self, upload: BackgroundUpload) -> str:
        """Stage a validated upload in the object store and start a one-document job for it
        (IngestionService.UploadDocument with background=true). Returns the job id."""
        if self.store is None:
            raise FailedPrecondition(
                "no object store to stage background uploads", reason="BACKGROUND_UNAVAILABLE"
            )
        job_id = uuid.uuid4().hex
        name = PurePosixPath(upload.filename).name or "upload"
        key = f"{upload.tenant}/{job_id}/{name}"
        store = self.store
        info = await asyncio.to_thread(store.put_file, self.upload_bucket, key, upload.path)

        def record() -> None:
            self.repo.create_job(
                tenant=upload.tenant,
                kind=KIND_UPLOAD,
                bucket=self.upload_bucket,
                prefix=key,
                collection=upload.collection,
                job_id=job_id,
            )
            self.repo.add_items(job_id, [PlanItem(key, UPSERT, info.etag)], skipped=0)
            self.queue.enqueue_upload(
                job_id,
                key,
                info.etag,
                {
                    "filename": upload.filename,
                    "source_uri": upload.source_uri,
                    "classification": upload.classification,
                    "metadata": dict(upload.metadata),
                },
            )

        try:
            await asyncio.to_thread(record)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(store.remove, self.upload_bucket, key)
            raise
        return job_id

    async def ingest_prefix(self, tenant: str, bucket: str, prefix: str, collection: str) -> JobRow:
        bucket = validate_bucket(bucket)
        collection = validate_collection(collection)
        self.check_source(tenant, bucket, prefix)
        job_id = await asyncio.to_thread(
            self.repo.create_job,
            tenant=tenant,
            kind=KIND_PREFIX,
            bucket=bucket,
            prefix=prefix,
            collection=collection,
        )
        await asyncio.to_thread(self.queue.enqueue_scan, job_id)
        return await self.get(tenant, job_id)

    def notify(self, tenant: str, collection: str, event: Mapping[str, Any]) -> list[str]:
        """Enqueue a MinIO bucket-notification event (JSON); one job per bucket. Sync."""
        by_bucket: dict[str, list[PlanItem]] = {}
        records = event.get("Records") or []
        if not isinstance(records, list):
            raise InvalidArgument("Records must be a list", reason="INVALID_EVENT")
        for rec in records:
            if not isinstance(rec, Mapping):
                continue
            name = str(rec.get("eventName", ""))
            s3 = rec.get("s3") or {}
            bucket = str((s3.get("bucket") or {}).get("name", ""))
            obj = s3.get("object") or {}
            key = urllib.parse.unquote_plus(str(obj.get("key", "")))
            if not bucket or not key:
                continue
            if name.startswith("s3:ObjectCreated:"):
                item = PlanItem(key, UPSERT, str(obj.get("eTag", "")).strip('"'))
            elif name.startswith("s3:ObjectRemoved:"):
                item = PlanItem(key, DELETE, "")
            else:
                continue
            bucket = validate_bucket(bucket)
            self.check_source(tenant, bucket, key)
            by_bucket.setdefault(bucket, []).append(item)
        job_ids = []
        for bucket, plan in by_bucket.items():
            latest = {p.key: p for p in plan}  # the last event of a key wins
            job_id = self.repo.create_job(
                tenant=tenant,
                kind=KIND_NOTIFICATION,
                bucket=bucket,
                prefix="",
                collection=validate_collection(collection),
            )
            self.repo.add_items(job_id, latest.values(), skipped=0)
            for item in latest.values():
                self.queue.enqueue_object(job_id, item)
            job_ids.append(job_id)
        return job_ids

    async def cancel(self, tenant: str, job_id: str) -> JobRow:
        await self.get(tenant, job_id)
        keys = await asyncio.to_thread(self.repo.cancel_job, job_id)
        if keys is None:
            raise FailedPrecondition("the job has already finished", reason="JOB_ALREADY_FINISHED")
        await asyncio.to_thread(self.queue.cancel, job_id, keys)
        return await self.get(tenant, job_id)

    async def delete(self, tenant: str, job_id: str) -> None:
        job = await self.get(tenant, job_id)
        if not job.terminal:
            raise FailedPrecondition(
                "the job is still running: cancel it first", reason="JOB_NOT_FINISHED"
            )
        await asyncio.to_thread(self.repo.delete_job, job_id)

    async def get(self, tenant: str, job_id: str) -> JobRow:
        row = await asyncio.to_thread(self.repo.get_job, job_id, tenant)
        if row is None:
            raise NotFound(f"job {shorten(job_id)} not found", reason="JOB_NOT_FOUND")
        return row

    async def list(
        self, tenant: str, state: str, page_size: int, page_token: str
    ) -> tuple[list[JobRow], str, int]:
        """A page of the tenant's jobs, newest first: (jobs, next_page_token, total).
        Keyset on (created_at, job_id): stable while jobs are being created."""
        req = page_request(
            page_size,
            page_token,
            fingerprint=f"jobs:{state}",
            parse=lambda k: (float(k[0]), k[1]),
        )
        rows, total = await asyncio.to_thread(
            lambda: self.repo.list_jobs(tenant, state=state, limit=req.size + 1, after=req.after)
        )
        page, token = next_page(rows, req, lambda r: [repr(r.created_at.timestamp()), r.job_id])
        return page, token, total

    async def list_documents(
        self, tenant: str, job_id: str, outcome: str, page_size: int, page_token: str
    ) -> tuple[builtins.list[DocOutcome], str, int]:  # `list` is a method here
        """A page of a job's per-document outcomes, by source URI."""
        await self.get(tenant, job_id)  # tenancy check
        req = page_request(
            page_size,
            page_token,
            fingerprint=f"docs:{job_id}:{outcome}",
            parse=lambda k: str(k[0]),
            default=100,
        )
        docs, total = await asyncio.to_thread(
            lambda: self.repo.list_documents(
                job_id, outcome=outcome, limit=req.size + 1, after=req.after
            )
        )
        page, token = next_page(docs, req, lambda d: [d.source_uri])
        return page, token, total

    async def watch(self, tenant: str, job_id: str, interval: float = 0.5) -> AsyncIterator[JobRow]:
        last: tuple[Any, ...] | None = None
        while True:
            row = await self.get(tenant, job_id)
            snap = (
                row.state,
                row.objects_total,
                row.objects_done,
                row.scan_complete,
                tuple(sorted(row.documents.items())),
            )
            if snap != last:
                last = snap
                yield row
            if row.terminal:
                return
            await asyncio.sleep(interval)
