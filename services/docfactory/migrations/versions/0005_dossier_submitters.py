"""Who submitted a dossier and its runs (four-eyes: the submitter never approves).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 00:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Existing rows get "" (unknown submitter); the server default is dropped afterwards, as
    # every other column's default lives in the code.
    inspector = sa.inspect(op.get_bind())
    columns: tuple[tuple[str, str, sa.types.TypeEngine[str]], ...] = (
        ("workflow_dossiers", "created_by", sa.String(length=128)),
        ("workflow_runs", "submitted_by", sa.Text()),
    )
    for table, column, type_ in columns:
        if column in {c["name"] for c in inspector.get_columns(table)}:
            continue  # a table made by the former create_all of this code: adopted as it is
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column(column, type_, nullable=False, server_default=""))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("workflow_runs", schema=None) as batch_op:
        batch_op.drop_column("submitted_by")
    with op.batch_alter_table("workflow_dossiers", schema=None) as batch_op:
        batch_op.drop_column("created_by")
