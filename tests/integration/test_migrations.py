"""Alembic migrations: up, down, up again on fresh databases; the schema matches the models."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.db import make_engine
from app.models import Base
from app.search import is_search_object
from tests.conftest import ROOT, create_database, drop_database, migrate


def _config():
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logger"] = False
    return config


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        names = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
        return {name for name in names if not is_search_object(name, "table")}
    finally:
        engine.dispose()


def _not_search(name: str | None, type_: str, parent_names: object) -> bool:
    return not is_search_object(name, type_)


def _differences(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            # The full-text search objects exist on one database each and are not mapped.
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "include_name": _not_search}
            )
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def _round_trip(url: str) -> None:
    config = _config()
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")
    assert _tables(url) == set(Base.metadata.tables)
    command.downgrade(config, "base")
    assert _tables(url) == set()
    command.upgrade(config, "head")
    assert _differences(url) == []


def test_upgrade_downgrade_upgrade_on_postgres() -> None:
    name = f"issueflow_migrate_{uuid.uuid4().hex[:8]}"
    url = create_database(name)
    try:
        _round_trip(url)
    finally:
        drop_database(name)


def test_upgrade_downgrade_upgrade_on_sqlite(tmp_path: Path) -> None:
    _round_trip(f"sqlite:///{tmp_path / 'migrate.db'}")


def test_tag_filter_uses_an_index_on_postgres(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SET enable_seqscan = off")
            plan = "\n".join(
                row[0]
                for row in connection.exec_driver_sql(
                    "EXPLAIN SELECT issue_id FROM issue_tags WHERE tag = 'bug'"
                )
            )
    finally:
        engine.dispose()
    assert "ix_issue_tags_tag_issue_id" in plan


@pytest.mark.parametrize("pragma", ["journal_mode", "foreign_keys", "busy_timeout"])
def test_sqlite_is_configured_for_several_writers(tmp_path: Path, pragma: str) -> None:
    url = f"sqlite:///{tmp_path / 'pragmas.db'}"
    migrate(url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            value = connection.exec_driver_sql(f"PRAGMA {pragma}").scalar()
    finally:
        engine.dispose()
    assert value == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000}[pragma]
