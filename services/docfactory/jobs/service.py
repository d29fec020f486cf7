"""Jobs domain: create jobs (IngestPrefix, bucket notifications), read and watch them."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from docfactory.core.errors import InvalidArgument, NotFound
from docfactory.ingestion.service import validate_collection
from docfactory.jobs.repo import DELETE, UPSERT, JobRow, JobsRepository, PlanItem
from docfactory.jobs.runtime import JobQueue

KIND_PREFIX = "INGEST_PREFIX"
KIND_NOTIFICATION = "NOTIFICATION"


def validate_bucket(bucket: str) -> str:
    if not bucket or len(bucket) > 255 or "/" in bucket or bucket in (".", ".."):
        raise InvalidArgument(f"invalid bucket name {bucket!r}", reason="INVALID_BUCKET")
    return bucket


class JobsService:
    def __init__(self, repo: JobsRepository, queue: JobQueue) -> None:
        self.repo = repo
        self.queue = queue

    async def ingest_prefix(self, tenant: str, bucket: str, prefix: str, collection: str) -> JobRow:
        bucket = validate_bucket(bucket)
        collection = validate_collection(collection)
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
            by_bucket.setdefault(validate_bucket(bucket), []).append(item)
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

    async def get(self, tenant: str, job_id: str) -> JobRow:
        row = await asyncio.to_thread(self.repo.get_job, job_id, tenant)
        if row is None:
            raise NotFound(f"job {job_id!r} not found", reason="JOB_NOT_FOUND")
        return row

    async def list(
        self, tenant: str, state: str, offset: int, limit: int
    ) -> tuple[Sequence[JobRow], int]:
        return await asyncio.to_thread(
            self.repo.list_jobs, tenant, state=state, offset=offset, limit=limit
        )

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
