"""Job bookkeeping tables (SQLite or PostgreSQL, SQLAlchemy Core).

DBOS keeps the durable execution state (workflows, steps, queue) in its system database; these
tables keep what the API shows and what reconciliation needs:

* ``jobs_jobs`` / ``jobs_items``: a job and its objects (one durable workflow each);
* ``jobs_documents``: per-document outcome of a job (indexed / unchanged / failed + reason);
* ``jobs_objects`` / ``jobs_object_docs``: last processed ETag of each source object and the
  documents it produced, so a re-scan enqueues only new/changed objects and removes documents of
  objects (or archive members) that are gone;
* ``jobs_executors``: worker heartbeats, so survivors recover the workflows of a dead worker.

Every write is an idempotent upsert: a step that runs twice (recovery, retry) leaves the same rows.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from docfactory.core.migrate import ensure_schema

metadata = sa.MetaData()

QUEUED, RUNNING, SUCCEEDED, FAILED = "QUEUED", "RUNNING", "SUCCEEDED", "FAILED"
CANCELLED = "CANCELLED"
DONE = "DONE"
# Job kinds.
KIND_PREFIX = "INGEST_PREFIX"
KIND_NOTIFICATION = "NOTIFICATION"
KIND_UPLOAD = "UPLOAD"  # a background UploadDocument: one item, its failure is the job's
UPSERT, DELETE = "UPSERT", "DELETE"
INDEXED, UNCHANGED, DELETED = "INDEXED", "UNCHANGED", "DELETED"

jobs = sa.Table(
    "jobs_jobs",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("bucket", sa.String(255), nullable=False),
    sa.Column("prefix", sa.Text, nullable=False, default=""),
    sa.Column("collection", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("objects_total", sa.Integer, nullable=False, default=0),
    sa.Column("objects_skipped", sa.Integer, nullable=False, default=0),
    sa.Column("scan_complete", sa.Boolean, nullable=False, default=False),
    sa.Column("error_reason", sa.String(64), nullable=False, default=""),
    sa.Column("error_message", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

items = sa.Table(
    "jobs_items",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("etag", sa.String(128), nullable=False, default=""),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("error_reason", sa.String(64), nullable=False, default=""),
    sa.Column("error_message", sa.Text, nullable=False, default=""),
    sa.Column("updated_at", sa.Float, nullable=False),
)

documents = sa.Table(
    "jobs_documents",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("source_uri", sa.Text, primary_key=True),
    sa.Column("object_key", sa.Text, nullable=False),
    sa.Column("document_id", sa.String(64), nullable=False, default=""),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False, default=""),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("chunk_count", sa.Integer, nullable=False, default=0),
)

objects = sa.Table(
    "jobs_objects",
    metadata,
    sa.Column("tenant", sa.String(128), primary_key=True),
    sa.Column("collection", sa.String(128), primary_key=True),
    sa.Column("bucket", sa.String(255), primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("etag", sa.String(128), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

object_docs = sa.Table(
    "jobs_object_docs",
    metadata,
    sa.Column("tenant", sa.String(128), primary_key=True),
    sa.Column("collection", sa.String(128), primary_key=True),
    sa.Column("bucket", sa.String(255), primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("source_uri", sa.Text, primary_key=True),
    sa.Column("document_id", sa.String(64), nullable=False),
)

executors = sa.Table(
    "jobs_executors",
    metadata,
    sa.Column("executor_id", sa.String(128), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False, default=""),
    sa.Column("pid", sa.Integer, nullable=False, default=0),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class JobRow:
    job_id: str
    tenant: str
    kind: str
    bucket: str
    prefix: str
    collection: str
    state: str
    objects_total: int
    objects_done: int
    objects_skipped: int
    scan_complete: bool
    documents: dict[str, int]
    error_reason: str
    error_message: str
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def terminal(self) -> bool:
        return self.state in (SUCCEEDED, FAILED, CANCELLED)


@dataclass(frozen=True)
class DocOutcome:
    source_uri: str
    document_id: str
    outcome: str
    reason: str = ""
    message: str = ""
    chunk_count: int = 0


@dataclass(frozen=True)
class PlanItem:
    key: str
    action: str
    etag: str


def _ts(value: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(value, dt.UTC)


class JobsRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        ensure_schema(engine)

    # ----------------------------------------------------------------- helpers

    def _upsert(
        self, conn: Connection, table: sa.Table, values: dict[str, Any], keys: Sequence[str]
    ) -> None:
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt: Any = pg_insert(table).values(**values)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(table).values(**values)
        update = {k: v for k, v in values.items() if k not in keys}
        if update:
            stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=update)
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
        conn.execute(stmt)

    # ----------------------------------------------------------------- jobs

    def create_job(
        self,
        *,
        tenant: str,
        kind: str,
        bucket: str,
        prefix: str,
        collection: str,
        job_id: str | None = None,
    ) -> str:
        job_id = job_id or uuid.uuid4().hex
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(
                jobs.insert().values(
                    job_id=job_id,
                    tenant=tenant,
                    kind=kind,
                    bucket=bucket,
                    prefix=prefix,
                    collection=collection,
                    state=QUEUED,
                    objects_total=0,
                    objects_skipped=0,
                    scan_complete=False,
                    error_reason="",
                    error_message="",
                    created_at=now,
                    updated_at=now,
                )
            )
        return job_id

    def job_header(self, job_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).mappings().first()
        return dict(row) if row else None

    def get_job(self, job_id: str, tenant: str | None = None) -> JobRow | None:
        with self.engine.connect() as conn:
            q = sa.select(jobs).where(jobs.c.job_id == job_id)
            if tenant is not None:
                q = q.where(jobs.c.tenant == tenant)
            row = conn.execute(q).mappings().first()
            if row is None:
                return None
            return self._job_row(conn, row)

    def _job_row(self, conn: Connection, row: Any) -> JobRow:
        job_id = row["job_id"]
        done = conn.execute(
            sa.select(sa.func.count())
            .select_from(items)
            .where(items.c.job_id == job_id, items.c.state.in_((DONE, FAILED)))
        ).scalar_one()
        counts = {
            outcome: n
            for outcome, n in conn.execute(
                sa.select(documents.c.outcome, sa.func.count())
                .where(documents.c.job_id == job_id)
                .group_by(documents.c.outcome)
            ).all()
        }
        return JobRow(
            job_id=job_id,
            tenant=row["tenant"],
            kind=row["kind"],
            bucket=row["bucket"],
            prefix=row["prefix"],
            collection=row["collection"],
            state=row["state"],
            objects_total=row["objects_total"],
            objects_done=int(done),
            objects_skipped=row["objects_skipped"],
            scan_complete=bool(row["scan_complete"]),
            documents=counts,
            error_reason=row["error_reason"],
            error_message=row["error_message"],
            created_at=_ts(row["created_at"]),
            updated_at=_ts(row["updated_at"]),
        )

    def list_jobs(
        self,
        tenant: str,
        *,
        state: str = "",
        limit: int = 50,
        after: tuple[float, str] | None = None,
    ) -> tuple[list[JobRow], int]:
        """Newest first; ``after``: (created_at, job_id) of the previous page's last job."""
        cond = [jobs.c.tenant == tenant]
        if state:
            cond.append(jobs.c.state == state)
        with self.engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(jobs).where(*cond)
            ).scalar_one()
            page_cond = list(cond)
            if after is not None:
                # The stored float of that job, exactly (the token's copy went through a
                # datetime); the token's value if the job was deleted meanwhile.
                exact = conn.execute(
                    sa.select(jobs.c.created_at).where(jobs.c.job_id == after[1])
                ).scalar_one_or_none()
                ts = float(exact) if exact is not None else after[0]
                page_cond.append(
                    sa.or_(
                        jobs.c.created_at < ts,
                        sa.and_(jobs.c.created_at == ts, jobs.c.job_id > after[1]),
                    )
                )
            rows = (
                conn.execute(
                    sa.select(jobs)
                    .where(*page_cond)
                    .order_by(jobs.c.created_at.desc(), jobs.c.job_id)
                    .limit(limit)
                )
                .mappings()
                .all()
            )
            return [self._job_row(conn, r) for r in rows], int(total)

    def cancel_job(self, job_id: str) -> list[str] | None:
        """Cancel a job that has not finished: the job and its unfinished items become
        CANCELLED (finished items keep their outcome). Returns the keys of the cancelled items,
        or None when the job had already finished (SUCCEEDED/FAILED; CANCELLED again: [])."""
        now = time.time()
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(jobs.c.state).where(jobs.c.job_id == job_id).with_for_update()
            ).first()
            if row is None or row.state in (SUCCEEDED, FAILED):
                return None
            if row.state == CANCELLED:
                return []
            keys = [
                str(k)
                for (k,) in conn.execute(
                    sa.select(items.c.key).where(
                        items.c.job_id == job_id, items.c.state.not_in((DONE, FAILED))
                    )
                ).all()
            ]
            conn.execute(
                items.update()
                .where(items.c.job_id == job_id, items.c.state.not_in((DONE, FAILED)))
                .values(state=CANCELLED, updated_at=now)
            )
            conn.execute(
                jobs.update()
                .where(jobs.c.job_id == job_id)
                .values(state=CANCELLED, scan_complete=True, updated_at=now)
            )
        return keys

    def delete_job(self, job_id: str) -> None:
        """Forget a finished job (its items and per-document outcomes). The documents it
        indexed stay, and so does what the next scan of the prefix compares against."""
        with self.engine.begin() as conn:
            conn.execute(documents.delete().where(documents.c.job_id == job_id))
            conn.execute(items.delete().where(items.c.job_id == job_id))
            conn.execute(jobs.delete().where(jobs.c.job_id == job_id))

    def fail_job(self, job_id: str, reason: str, message: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                jobs.update()
                .where(jobs.c.job_id == job_id, jobs.c.state != CANCELLED)
                .values(
                    state=FAILED,
                    error_reason=reason,
                    error_message=message[:4000],
                    scan_complete=True,
                    updated_at=time.time(),
                )
            )

    def mark_running(self, job_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                jobs.update()
                .where(jobs.c.job_id == job_id, jobs.c.state == QUEUED)
                .values(state=RUNNING, updated_at=time.time())
            )

    # ----------------------------------------------------------------- planning

    def known_objects(
        self, tenant: str, collection: str, bucket: str, prefix: str
    ) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(objects.c.key, objects.c.etag).where(
                    objects.c.tenant == tenant,
                    objects.c.collection == collection,
                    objects.c.bucket == bucket,
                )
            ).all()
        return {k: e for k, e in rows if k.startswith(prefix)}

    def add_items(
        self, job_id: str, plan: Iterable[PlanItem], *, skipped: int, complete: bool = True
    ) -> int:
        now = time.time()
        n = 0
        with self.engine.begin() as conn:
            for item in plan:
                n += 1
                self._upsert(
                    conn,
                    items,
                    {
                        "job_id": job_id,
                        "key": item.key,
                        "action": item.action,
                        "etag": item.etag,
                        "state": QUEUED,
                        "attempts": 0,
                        "error_reason": "",
                        "error_message": "",
                        "updated_at": now,
                    },
                    ("job_id", "key"),
                )
            total = conn.execute(
                sa.select(sa.func.count()).select_from(items).where(items.c.job_id == job_id)
            ).scalar_one()
            conn.execute(
                jobs.update()
                .where(jobs.c.job_id == job_id)
                .values(
                    objects_total=int(total),
                    objects_skipped=skipped,
                    scan_complete=complete,
                    state=sa.case((jobs.c.state == CANCELLED, CANCELLED), else_=RUNNING),
                    updated_at=now,
                )
            )
            self._maybe_finish(conn, job_id)
        return n

    def _maybe_finish(self, conn: Connection, job_id: str) -> None:
        # Lock the job row first: two items finishing at once on PostgreSQL would otherwise
        # each count without the other's uncommitted update, and the job would stay RUNNING.
        # Under READ COMMITTED the count below then sees every item committed before the lock.
        row = conn.execute(
            sa.select(jobs.c.scan_complete, jobs.c.state, jobs.c.objects_total)
            .where(jobs.c.job_id == job_id)
            .with_for_update()
        ).first()
        if row is None or not row.scan_complete or row.state in (SUCCEEDED, FAILED, CANCELLED):
            return
        done = conn.execute(
            sa.select(sa.func.count())
            .select_from(items)
            .where(items.c.job_id == job_id, items.c.state.in_((DONE, FAILED)))
        ).scalar_one()
        if int(done) >= row.objects_total:
            conn.execute(
                jobs.update()
                .where(jobs.c.job_id == job_id)
                .values(state=SUCCEEDED, updated_at=time.time())
            )

    # ----------------------------------------------------------------- items

    def start_attempt(self, job_id: str, key: str, attempt: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                items.update()
                .where(items.c.job_id == job_id, items.c.key == key)
                .values(attempts=attempt, updated_at=time.time())
            )
            conn.execute(
                jobs.update()
                .where(jobs.c.job_id == job_id, jobs.c.state == QUEUED)
                .values(state=RUNNING, updated_at=time.time())
            )

    def object_docs(self, tenant: str, collection: str, bucket: str, key: str) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(object_docs.c.source_uri, object_docs.c.document_id).where(
                    object_docs.c.tenant == tenant,
                    object_docs.c.collection == collection,
                    object_docs.c.bucket == bucket,
                    object_docs.c.key == key,
                )
            ).all()
        return {u: d for u, d in rows}

    def record_documents(self, job_id: str, key: str, outcomes: Sequence[DocOutcome]) -> None:
        if not outcomes:
            return
        with self.engine.begin() as conn:
            for o in outcomes:
                self._upsert(
                    conn,
                    documents,
                    {
                        "job_id": job_id,
                        "source_uri": o.source_uri,
                        "object_key": key,
                        "document_id": o.document_id,
                        "outcome": o.outcome,
                        "reason": o.reason[:64],
                        "message": o.message[:4000],
                        "chunk_count": o.chunk_count,
                    },
                    ("job_id", "source_uri"),
                )

    def finish_item(
        self,
        job_id: str,
        *,
        tenant: str,
        collection: str,
        bucket: str,
        key: str,
        etag: str | None,
        docs: dict[str, str],
        remember_object: bool = True,
    ) -> None:
        """Item done: remember the object's ETag (None = object gone) and its documents (not
        for a staged upload, which is removed once indexed)."""
        now = time.time()
        ident = {"tenant": tenant, "collection": collection, "bucket": bucket, "key": key}
        with self.engine.begin() as conn:
            if remember_object:
                conn.execute(
                    object_docs.delete().where(*(object_docs.c[k] == v for k, v in ident.items()))
                )
                for uri, doc_id in docs.items():
                    conn.execute(
                        object_docs.insert().values(**ident, source_uri=uri, document_id=doc_id)
                    )
                if etag is None:
                    conn.execute(
                        objects.delete().where(*(objects.c[k] == v for k, v in ident.items()))
                    )
                else:
                    self._upsert(
                        conn, objects, {**ident, "etag": etag, "updated_at": now}, tuple(ident)
                    )
            conn.execute(
                items.update()
                .where(items.c.job_id == job_id, items.c.key == key)
                .values(state=DONE, error_reason="", error_message="", updated_at=now)
            )
            self._maybe_finish(conn, job_id)

    def fail_item(self, job_id: str, key: str, reason: str, message: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                items.update()
                .where(items.c.job_id == job_id, items.c.key == key)
                .values(
                    state=FAILED,
                    error_reason=reason[:64],
                    error_message=message[:4000],
                    updated_at=time.time(),
                )
            )
            kind = conn.execute(
                sa.select(jobs.c.kind).where(jobs.c.job_id == job_id)
            ).scalar_one_or_none()
            if kind == KIND_UPLOAD:
                # The upload is the job: its caller must see FAILED and the reason.
                conn.execute(
                    jobs.update()
                    .where(jobs.c.job_id == job_id, jobs.c.state != CANCELLED)
                    .values(
                        state=FAILED,
                        error_reason=reason[:64],
                        error_message=message[:4000],
                        updated_at=time.time(),
                    )
                )
                return
            self._maybe_finish(conn, job_id)

    def item_states(self, job_id: str) -> dict[str, tuple[str, int, str, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    items.c.key,
                    items.c.state,
                    items.c.attempts,
                    items.c.error_reason,
                    items.c.error_message,
                ).where(items.c.job_id == job_id)
            ).all()
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

    def list_documents(
        self, job_id: str, *, outcome: str = "", limit: int = 100, after: str | None = None
    ) -> tuple[list[DocOutcome], int]:
        """By source URI; ``after``: the source URI of the previous page's last document."""
        cond = [documents.c.job_id == job_id]
        if outcome:
            cond.append(documents.c.outcome == outcome)
        with self.engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(documents).where(*cond)
            ).scalar_one()
            if after is not None:
                cond.append(documents.c.source_uri > after)
            rows = conn.execute(
                sa.select(documents).where(*cond).order_by(documents.c.source_uri).limit(limit)
            ).mappings()
            out = [
                DocOutcome(
                    source_uri=r["source_uri"],
                    document_id=r["document_id"],
                    outcome=r["outcome"],
                    reason=r["reason"],
                    message=r["message"],
                    chunk_count=r["chunk_count"],
                )
                for r in rows
            ]
        return out, int(total)

    # ----------------------------------------------------------------- liveness

    def heartbeat(self, executor_id: str, host: str, pid: int) -> None:
        with self.engine.begin() as conn:
            self._upsert(
                conn,
                executors,
                {"executor_id": executor_id, "host": host, "pid": pid, "heartbeat_at": time.time()},
                ("executor_id",),
            )

    def remove_executor(self, executor_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(executors.delete().where(executors.c.executor_id == executor_id))

    def claim_dead_executors(self, me: str, timeout: float) -> list[str]:
        """Executors silent for ``timeout`` seconds; each is claimed (deleted) by one caller."""
        cutoff = time.time() - timeout
        with self.engine.connect() as conn:
            candidates = [
                r[0]
                for r in conn.execute(
                    sa.select(executors.c.executor_id).where(
                        executors.c.heartbeat_at < cutoff, executors.c.executor_id != me
                    )
                ).all()
            ]
        claimed = []
        for eid in candidates:
            with self.engine.begin() as conn:
                res = conn.execute(
                    executors.delete().where(
                        executors.c.executor_id == eid, executors.c.heartbeat_at < cutoff
                    )
                )
                if res.rowcount == 1:
                    claimed.append(eid)
        return claimed
