"""Revisions (Alembic ignores this file)."""
