"""The migrations produce exactly the declared schema, on Postgres and on SQLite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from orchestrator.engine.context import NAME_LIMIT
from orchestrator.journal.sql import engines, migrate, schema

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'schema.sqlite3'}"
        return
    name = f"continuum_schema_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrations_match_the_declared_schema(empty_url: str) -> None:
    assert migrate.current(empty_url) is None
    migrate.upgrade(empty_url)
    assert migrate.current(empty_url) == migrate.head()
    engine = engines.create(empty_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
            indexes = {
                table: {
                    ix["name"]
                    for ix in sa.inspect(conn).get_indexes(table)
                    if ix["name"].startswith("ix_")  # Postgres also lists constraint indexes
                }
                for table in schema.metadata.tables
            }
    finally:
        engine.dispose()
    assert diff == []
    declared = {
        name: {ix.name for ix in table.indexes} for name, table in schema.metadata.tables.items()
    }
    assert indexes == declared


def test_upgrade_is_repeatable(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    migrate.upgrade(empty_url)
    assert migrate.current(empty_url) == migrate.head()


def test_the_activity_name_limit_is_the_journal_column_width() -> None:
    assert schema.tasks.c.task_name.type.length == NAME_LIMIT
    assert schema.tasks.c.queue.type.length == NAME_LIMIT
