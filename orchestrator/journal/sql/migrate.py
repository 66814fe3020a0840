"""Applies the journal's migrations (``continuum db upgrade``), from a checkout or a wheel.

The migrations are installed as the package ``orchestrator.migrations`` (the repository's
``db/`` folder), so their location is found through the import system, not the working
directory.
"""

from __future__ import annotations

import re
from importlib import resources

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from orchestrator.journal.sql import engines


def alembic_config(url: str) -> Config:
    """An Alembic configuration for ``url`` pointing at the installed migrations."""
    location = resources.files("orchestrator.migrations")
    config = Config()
    config.set_main_option("script_location", str(location))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (default: the newest)."""
    engine = engines.create(url)
    try:
        with engine.begin() as conn:
            config = alembic_config(url)
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def current(url: str) -> str | None:
    """The database's current revision (``None`` before the first migration)."""
    engine = engines.create(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def head() -> str:
    """The newest revision the installed migrations know."""
    from alembic.script import ScriptDirectory

    revision = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert revision is not None
    return revision


#: What workers, dispatchers and clients need, table by table: history is append-only.
RUNTIME_GRANTS: dict[str, tuple[str, ...]] = {
    "runs": ("SELECT", "INSERT", "UPDATE"),
    "events": ("SELECT", "INSERT"),
    "inbox": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "tasks": ("SELECT", "INSERT", "UPDATE"),
    "timers": ("SELECT", "INSERT", "DELETE"),
    "nodes": ("SELECT", "INSERT", "DELETE"),
    "schedules": ("SELECT", "INSERT", "UPDATE", "DELETE"),
}


def grant_statements(role: str) -> list[str]:
    """The SQL that gives ``role`` exactly what the runtime needs on Postgres (no DDL, no
    deletes from history). Run it as the schema's owner after ``upgrade``."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", role):
        raise ValueError(f"invalid role name {role!r}")
    statements = [
        f'GRANT {", ".join(privileges)} ON TABLE {table} TO "{role}"'
        for table, privileges in RUNTIME_GRANTS.items()
    ]
    statements.append(f'GRANT USAGE ON SEQUENCE inbox_id_seq TO "{role}"')
    return statements


def grant(url: str, role: str) -> None:
    """Apply :func:`grant_statements` to the database at ``url`` (Postgres only)."""
    engine = engines.create(url)
    try:
        if engine.dialect.name != "postgresql":
            raise ValueError("roles and grants are a Postgres feature; SQLite has none")
        with engine.begin() as conn:
            for statement in grant_statements(role):
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()
