"""Tables of the dossier workflows (docfactory.workflows.repo): dossiers, their documents, runs,
step events and counts, decisions, workflow worker heartbeats.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 01:13:15.627678
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Tables made by the former create_all of docfactory.workflows.repo are adopted as they are.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "workflow_decisions" not in existing:
        op.create_table(
            "workflow_decisions",
            sa.Column("decision_id", sa.String(length=64), nullable=False),
            sa.Column("run_id", sa.String(length=64), nullable=False),
            sa.Column("tenant", sa.String(length=128), nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("reviewer", sa.String(length=128), nullable=False),
            sa.Column("comment", sa.Text(), nullable=False),
            sa.Column("amendments_json", sa.Text(), nullable=False),
            sa.Column("created_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("decision_id"),
        )
        with op.batch_alter_table("workflow_decisions", schema=None) as batch_op:
            batch_op.create_index(
                batch_op.f("ix_workflow_decisions_run_id"), ["run_id"], unique=False
            )
    if "workflow_documents" not in existing:
        op.create_table(
            "workflow_documents",
            sa.Column("dossier_id", sa.String(length=64), nullable=False),
            sa.Column("document_id", sa.String(length=64), nullable=False),
            sa.Column("position", sa.Integer(), nullable=False),
            sa.Column("filename", sa.String(length=512), nullable=False),
            sa.Column("page_count", sa.Integer(), nullable=False),
            sa.Column("pages_json", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("dossier_id", "document_id"),
        )
    if "workflow_dossiers" not in existing:
        op.create_table(
            "workflow_dossiers",
            sa.Column("dossier_id", sa.String(length=64), nullable=False),
            sa.Column("tenant", sa.String(length=128), nullable=False),
            sa.Column("display_name", sa.String(length=255), nullable=False),
            sa.Column("use_case", sa.String(length=128), nullable=False),
            sa.Column("classification", sa.Integer(), nullable=False),
            sa.Column("metadata_json", sa.Text(), nullable=False),
            sa.Column("latest_run_id", sa.String(length=64), nullable=False),
            sa.Column("latest_state", sa.String(length=32), nullable=False),
            sa.Column("latest_flow", sa.String(length=128), nullable=False),
            sa.Column("created_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("dossier_id"),
        )
        with op.batch_alter_table("workflow_dossiers", schema=None) as batch_op:
            batch_op.create_index(
                batch_op.f("ix_workflow_dossiers_tenant"), ["tenant"], unique=False
            )
    if "workflow_events" not in existing:
        op.create_table(
            "workflow_events",
            sa.Column("run_id", sa.String(length=64), nullable=False),
            sa.Column("seq", sa.Integer(), nullable=False),
            sa.Column("step", sa.String(length=64), nullable=False),
            sa.Column("event", sa.String(length=32), nullable=False),
            sa.Column("state", sa.String(length=32), nullable=False),
            sa.Column("detail", sa.Text(), nullable=False),
            sa.Column("at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("run_id", "seq"),
        )
    if "workflow_executors" not in existing:
        op.create_table(
            "workflow_executors",
            sa.Column("executor_id", sa.String(length=128), nullable=False),
            sa.Column("host", sa.String(length=255), nullable=False),
            sa.Column("pid", sa.Integer(), nullable=False),
            sa.Column("heartbeat", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("executor_id"),
        )
    if "workflow_runs" not in existing:
        op.create_table(
            "workflow_runs",
            sa.Column("run_id", sa.String(length=64), nullable=False),
            sa.Column("tenant", sa.String(length=128), nullable=False),
            sa.Column("dossier_id", sa.String(length=64), nullable=False),
            sa.Column("flow_ref", sa.String(length=128), nullable=False),
            sa.Column("flow_json", sa.Text(), nullable=False),
            sa.Column("use_case", sa.String(length=128), nullable=False),
            sa.Column("requester", sa.String(length=128), nullable=False),
            sa.Column("state", sa.String(length=32), nullable=False),
            sa.Column("step", sa.String(length=64), nullable=False),
            sa.Column("missing_json", sa.Text(), nullable=False),
            sa.Column("error_reason", sa.String(length=64), nullable=False),
            sa.Column("error_message", sa.Text(), nullable=False),
            sa.Column("result_json", sa.Text(), nullable=False),
            sa.Column("signoff_role", sa.String(length=32), nullable=False),
            sa.Column("approvals_required", sa.Integer(), nullable=False),
            sa.Column("deadline", sa.Float(), nullable=True),
            sa.Column("created_at", sa.Float(), nullable=False),
            sa.Column("updated_at", sa.Float(), nullable=False),
            sa.Column("finished_at", sa.Float(), nullable=True),
            sa.PrimaryKeyConstraint("run_id"),
        )
        with op.batch_alter_table("workflow_runs", schema=None) as batch_op:
            batch_op.create_index(
                batch_op.f("ix_workflow_runs_dossier_id"), ["dossier_id"], unique=False
            )
            batch_op.create_index(batch_op.f("ix_workflow_runs_state"), ["state"], unique=False)
            batch_op.create_index(batch_op.f("ix_workflow_runs_tenant"), ["tenant"], unique=False)
    if "workflow_step_runs" not in existing:
        op.create_table(
            "workflow_step_runs",
            sa.Column("run_id", sa.String(length=64), nullable=False),
            sa.Column("step", sa.String(length=64), nullable=False),
            sa.Column("starts", sa.Integer(), nullable=False),
            sa.Column("finishes", sa.Integer(), nullable=False),
            sa.Column("duration_ms", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("run_id", "step"),
        )


def downgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_table("workflow_step_runs")
    with op.batch_alter_table("workflow_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workflow_runs_tenant"))
        batch_op.drop_index(batch_op.f("ix_workflow_runs_state"))
        batch_op.drop_index(batch_op.f("ix_workflow_runs_dossier_id"))

    op.drop_table("workflow_runs")
    op.drop_table("workflow_executors")
    op.drop_table("workflow_events")
    with op.batch_alter_table("workflow_dossiers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workflow_dossiers_tenant"))

    op.drop_table("workflow_dossiers")
    op.drop_table("workflow_documents")
    with op.batch_alter_table("workflow_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workflow_decisions_run_id"))

    op.drop_table("workflow_decisions")
    # ### end Alembic commands ###
