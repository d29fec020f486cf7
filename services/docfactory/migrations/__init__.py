"""Alembic migrations of docfactory's own tables (run through :mod:`docfactory.core.migrate`)."""
