"""Initial schema: the tables docfactory created with ``create_all`` before migrations.

Documents (ingestion), jobs bookkeeping, governance (quotas, reviews, audit) and feedback,
exactly as their SQLAlchemy definitions created them (no server defaults: every default is
applied by the application).

Adoption (``config.attributes["adopt"]``, set by :mod:`docfactory.core.migrate` for a database
that has some of these tables but no version table): only the tables still missing are
created, as ``create_all`` did; existing tables and their rows are left as they are.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _wanted(table: str) -> bool:
    if not context.config.attributes.get("adopt"):
        return True
    return not sa.inspect(op.get_bind()).has_table(table)


def upgrade() -> None:
    # -- ingestion: docfactory.ingestion.adapters.documents.DocumentRow ------------------------
    if _wanted("documents"):
        op.create_table(
            "documents",
            sa.Column("tenant", sa.String(128), nullable=False),
            sa.Column("document_id", sa.String(64), nullable=False),
            sa.Column("collection", sa.String(256), nullable=False),
            sa.Column("filename", sa.String(1024), nullable=False),
            sa.Column("source_uri", sa.Text(), nullable=False),
            sa.Column("sha256", sa.String(64), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("classification", sa.Integer(), nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("mime_type", sa.String(128), nullable=False),
            sa.Column("page_count", sa.Integer(), nullable=False),
            sa.Column("chunk_count", sa.Integer(), nullable=False),
            sa.Column("size_bytes", sa.Integer(), nullable=False),
            sa.Column("error_reason", sa.String(64), nullable=False),
            sa.Column("error_message", sa.Text(), nullable=False),
            sa.Column("metadata", sa.JSON(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("tenant", "document_id"),
        )
        op.create_index("ix_documents_tenant_collection", "documents", ["tenant", "collection"])
        op.create_index("ix_documents_tenant_updated", "documents", ["tenant", "updated_at"])

    # -- jobs: docfactory.jobs.repo ------------------------------------------------------------
    if _wanted("jobs_jobs"):
        op.create_table(
            "jobs_jobs",
            sa.Column("job_id", sa.String(64), nullable=False),
            sa.Column("tenant", sa.String(128), nullable=False),
            sa.Column("kind", sa.String(32), nullable=False),
            sa.Column("bucket", sa.String(255), nullable=False),
            sa.Column("prefix", sa.Text(), nullable=False),
            sa.Column("collection", sa.String(128), nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("objects_total", sa.Integer(), nullable=False),
            sa.Column("objects_skipped", sa.Integer(), nullable=False),
            sa.Column("scan_complete", sa.Boolean(), nullable=False),
            sa.Column("error_reason", sa.String(64), nullable=False),
            sa.Column("error_message", sa.Text(), nullable=False),
            sa.Column("created_at", sa.Float(), nullable=False),
            sa.Column("updated_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("job_id"),
        )
        op.create_index("ix_jobs_jobs_tenant", "jobs_jobs", ["tenant"])

    if _wanted("jobs_items"):
        op.create_table(
            "jobs_items",
            sa.Column("job_id", sa.String(64), nullable=False),
            sa.Column("key", sa.Text(), nullable=False),
            sa.Column("action", sa.String(16), nullable=False),
            sa.Column("etag", sa.String(128), nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("error_reason", sa.String(64), nullable=False),
            sa.Column("error_message", sa.Text(), nullable=False),
            sa.Column("updated_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("job_id", "key"),
        )

    if _wanted("jobs_documents"):
        op.create_table(
            "jobs_documents",
            sa.Column("job_id", sa.String(64), nullable=False),
            sa.Column("source_uri", sa.Text(), nullable=False),
            sa.Column("object_key", sa.Text(), nullable=False),
            sa.Column("document_id", sa.String(64), nullable=False),
            sa.Column("outcome", sa.String(16), nullable=False),
            sa.Column("reason", sa.String(64), nullable=False),
            sa.Column("message", sa.Text(), nullable=False),
            sa.Column("chunk_count", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("job_id", "source_uri"),
        )

    if _wanted("jobs_objects"):
        op.create_table(
            "jobs_objects",
            sa.Column("tenant", sa.String(128), nullable=False),
            sa.Column("collection", sa.String(128), nullable=False),
            sa.Column("bucket", sa.String(255), nullable=False),
            sa.Column("key", sa.Text(), nullable=False),
            sa.Column("etag", sa.String(128), nullable=False),
            sa.Column("updated_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("tenant", "collection", "bucket", "key"),
        )

    if _wanted("jobs_object_docs"):
        op.create_table(
            "jobs_object_docs",
            sa.Column("tenant", sa.String(128), nullable=False),
            sa.Column("collection", sa.String(128), nullable=False),
            sa.Column("bucket", sa.String(255), nullable=False),
            sa.Column("key", sa.Text(), nullable=False),
            sa.Column("source_uri", sa.Text(), nullable=False),
            sa.Column("document_id", sa.String(64), nullable=False),
            sa.PrimaryKeyConstraint("tenant", "collection", "bucket", "key", "source_uri"),
        )

    if _wanted("jobs_executors"):
        op.create_table(
            "jobs_executors",
            sa.Column("executor_id", sa.String(128), nullable=False),
            sa.Column("host", sa.String(255), nullable=False),
            sa.Column("pid", sa.Integer(), nullable=False),
            sa.Column("heartbeat_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("executor_id"),
        )

    # -- governance: quotas, reviews, audit ----------------------------------------------------
    if _wanted("governance_quota_counters"):
        op.create_table(
            "governance_quota_counters",
            sa.Column("counter_key", sa.String(512), nullable=False),
            sa.Column("window_start", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("total", sa.BigInteger(), nullable=False),
            sa.Column("expires_at", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("counter_key", "window_start"),
        )
        op.create_index(
            "ix_governance_quota_counters_expires_at",
            "governance_quota_counters",
            ["expires_at"],
        )

    if _wanted("review_drafts"):
        op.create_table(
            "review_drafts",
            # SERIAL on PostgreSQL, the rowid alias on SQLite (as create_all made it).
            sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("review_id", sa.String(32), nullable=False),
            sa.Column("tenant", sa.String(128), nullable=False),
            sa.Column("use_case", sa.String(128), nullable=False),
            sa.Column("requester_key_id", sa.String(128), nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("answer_text", sa.Text(), nullable=False),
            sa.Column("citations", sa.JSON(), nullable=False),
            sa.Column("model", sa.String(256), nullable=False),
            sa.Column("metadata", sa.JSON(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("reviewer_key_id", sa.String(128), nullable=True),
            sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("amended_text", sa.Text(), nullable=True),
            sa.Column("comment", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("seq"),
            # unnamed, as ``unique=True`` made it (PostgreSQL: review_drafts_review_id_key)
            sa.UniqueConstraint("review_id"),
        )
        op.create_index(
            "ix_review_drafts_tenant_state_seq", "review_drafts", ["tenant", "state", "seq"]
        )

    if _wanted("audit_records"):
        op.create_table(
            "audit_records",
            # plain BIGINT: seq is assigned by the appender (the chain head), not a sequence
            sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("time", sa.DateTime(timezone=True), nullable=False),
            sa.Column("tenant", sa.String(128), nullable=False),
            sa.Column("key_id", sa.String(128), nullable=False),
            sa.Column("use_case", sa.String(128), nullable=False),
            sa.Column("action", sa.String(64), nullable=False),
            sa.Column("document_ids", sa.JSON(), nullable=False),
            sa.Column("model", sa.String(256), nullable=False),
            sa.Column("outcome", sa.String(64), nullable=False),
            sa.Column("latency_ms", sa.Integer(), nullable=False),
            sa.Column("question_hash", sa.String(64), nullable=True),
            sa.Column("question_salt", sa.String(32), nullable=True),
            sa.Column("details", sa.JSON(), nullable=False),
            sa.Column("prev_hash", sa.String(64), nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
            sa.Column("question", sa.Text(), nullable=True),
            sa.Column("question_expires_at", sa.DateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("seq"),
        )
        op.create_index("ix_audit_records_tenant_time", "audit_records", ["tenant", "time"])
        op.create_index("ix_audit_records_time", "audit_records", ["time"])
        op.create_index(
            "ix_audit_records_question_expiry", "audit_records", ["question_expires_at"]
        )

    if _wanted("audit_chain_head"):
        op.create_table(
            "audit_chain_head",
            sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("seq", sa.BigInteger(), nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )

    # -- measurement: docfactory.measurement.feedback.FeedbackRow ------------------------------
    if _wanted("answer_feedback"):
        op.create_table(
            "answer_feedback",
            sa.Column("id", sa.String(32), nullable=False),
            sa.Column("time", sa.DateTime(timezone=True), nullable=False),
            sa.Column("tenant", sa.String(128), nullable=False),
            sa.Column("key_id", sa.String(128), nullable=False),
            sa.Column("use_case", sa.String(128), nullable=False),
            sa.Column("answer_audit_seq", sa.BigInteger(), nullable=False),
            sa.Column("review_id", sa.String(32), nullable=False),
            sa.Column("link_method", sa.String(16), nullable=False),
            sa.Column("useful", sa.Boolean(), nullable=True),
            sa.Column("rating", sa.Integer(), nullable=True),
            sa.Column("comment", sa.Text(), nullable=False),
            sa.Column("time_saved_minutes", sa.Float(), nullable=False),
            sa.Column("usage", sa.String(16), nullable=False),
            sa.Column("feedback_audit_seq", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint(
                "tenant", "key_id", "answer_audit_seq", name="uq_feedback_key_answer"
            ),
        )
        op.create_index("ix_answer_feedback_tenant_time", "answer_feedback", ["tenant", "time"])


def downgrade() -> None:
    for table in (
        "answer_feedback",
        "audit_chain_head",
        "audit_records",
        "review_drafts",
        "governance_quota_counters",
        "jobs_executors",
        "jobs_object_docs",
        "jobs_objects",
        "jobs_documents",
        "jobs_items",
        "jobs_jobs",
        "documents",
    ):
        op.drop_table(table)  # drops its indexes and constraints too
