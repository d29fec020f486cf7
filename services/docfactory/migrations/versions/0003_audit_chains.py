"""Audit chains per tenant (no global lock): ``audit_records.chain`` / ``prev_seq``, one head
row per chain in ``audit_chains`` (replacing the single ``audit_chain_head``), anchors of all
chain heads in ``audit_anchors``, and the ``audit_records_seq`` sequence on PostgreSQL.

Existing records stay as they are, in the legacy chain ``""`` (their head moves to
``audit_chains``), so their hashes still verify.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 00:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    # A database adopted from ``create_all`` of this code already has the new schema.
    present = {c["name"] for c in inspector.get_columns("audit_records")}
    if "chain" not in present:
        # Existing records: the legacy chain "".
        op.add_column("audit_records", sa.Column("chain", sa.String(160), nullable=True))
        op.execute(sa.text("UPDATE audit_records SET chain = ''"))
        with op.batch_alter_table("audit_records") as batch:
            batch.alter_column("chain", existing_type=sa.String(160), nullable=False)
    if "prev_seq" not in present:
        op.add_column("audit_records", sa.Column("prev_seq", sa.BigInteger(), nullable=True))
    indexes = {i["name"] for i in inspector.get_indexes("audit_records")}
    if "ix_audit_records_chain_seq" not in indexes:
        op.create_index("ix_audit_records_chain_seq", "audit_records", ["chain", "seq"])
    if not inspector.has_table("audit_chains"):
        op.create_table(
            "audit_chains",
            sa.Column("chain", sa.String(160), nullable=False),
            sa.Column("seq", sa.BigInteger(), nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
            sa.PrimaryKeyConstraint("chain"),
        )
    if not inspector.has_table("audit_anchors"):
        op.create_table(
            "audit_anchors",
            sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("time", sa.DateTime(timezone=True), nullable=False),
            sa.Column("heads", sa.JSON(), nullable=False),
            sa.Column("prev_hash", sa.String(64), nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    if inspector.has_table("audit_chain_head"):
        head = bind.execute(
            sa.text("SELECT seq, hash FROM audit_chain_head WHERE id = 1")
        ).one_or_none()
        if head is not None and int(head.seq) > 0:
            bind.execute(
                sa.text("INSERT INTO audit_chains (chain, seq, hash) VALUES ('', :s, :h)"),
                {"s": int(head.seq), "h": str(head.hash)},
            )
        op.drop_table("audit_chain_head")
    if bind.dialect.name == "postgresql":
        start = bind.execute(sa.text("SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_records"))
        op.execute(sa.schema.CreateSequence(sa.Sequence("audit_records_seq"), if_not_exists=True))
        bind.execute(
            sa.text("SELECT setval('audit_records_seq', :v, false)"), {"v": int(start.scalar_one())}
        )


def downgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    legacy = bind.execute(
        sa.text("SELECT seq, hash FROM audit_chains WHERE chain = ''")
    ).one_or_none()
    bind.execute(
        sa.text("INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, :s, :h)"),
        {"s": int(legacy.seq) if legacy else 0, "h": str(legacy.hash) if legacy else "0" * 64},
    )
    op.drop_table("audit_anchors")
    op.drop_table("audit_chains")
    op.drop_index("ix_audit_records_chain_seq", table_name="audit_records")
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("prev_seq")
        batch.drop_column("chain")
    if bind.dialect.name == "postgresql":
        op.execute(sa.schema.DropSequence(sa.Sequence("audit_records_seq"), if_exists=True))
