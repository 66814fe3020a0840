"""Alembic migrations of the journal's schema (installed as ``orchestrator.migrations``)."""
