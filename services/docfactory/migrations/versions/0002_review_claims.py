"""Review claims: a reviewer's lock on a pending draft (``claimed_by`` until ``claimed_until``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A database adopted from ``create_all`` of this code already has the columns.
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("review_drafts")}
    if "claimed_by" not in present:
        op.add_column("review_drafts", sa.Column("claimed_by", sa.String(128), nullable=True))
    if "claimed_until" not in present:
        op.add_column(
            "review_drafts", sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("review_drafts") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("claimed_by")
