"""Migrations apply once, in order, on a fresh database, and refuse a changed file."""

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from pipeline.warehouse.migrate import (
    MIGRATIONS_DIR,
    MigrationError,
    apply_migrations,
    load_migrations,
    migrate_database,
    split_statements,
)


@pytest.fixture
def fresh_db(warehouse: str) -> Iterator[tuple[str, Client]]:
    database = f"test_migrations_{uuid.uuid4().hex[:8]}"
    admin = clickhouse_connect.get_client(dsn=warehouse)
    try:
        yield database, admin
    finally:
        admin.command(f"DROP DATABASE IF EXISTS {database}")
        admin.close()


def test_files_are_numbered_and_ours_are_in_range() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    ours = {m.name for m in migrations if m.version < 50}
    assert {"0001_events.sql", "0002_decisions.sql", "0003_receipts.sql"} <= ours


def test_applies_once_and_is_idempotent(warehouse: str, fresh_db) -> None:
    database, admin = fresh_db
    first = migrate_database(warehouse, database)
    assert first == [m.name for m in load_migrations()]
    assert migrate_database(warehouse, database) == []
    tables = {
        row[0]
        for row in admin.query(
            "SELECT name FROM system.tables WHERE database = {db:String}",
            parameters={"db": database},
        ).result_rows
    }
    expected = {"events", "nudges", "nudge_cancellations", "vip_upgrades", "receipts"}
    assert expected | {"dead_letters", "schema_migrations"} <= tables
    recorded = admin.query(f"SELECT count(), uniqExact(version) FROM {database}.schema_migrations")
    assert recorded.result_rows == [(len(first), len(first))]


def test_refuses_a_changed_file_and_applies_new_ones(
    warehouse: str, fresh_db, tmp_path: Path
) -> None:
    database, _ = fresh_db
    directory = tmp_path / "migrations"
    directory.mkdir()
    shutil.copy(MIGRATIONS_DIR / "0001_events.sql", directory)
    assert migrate_database(warehouse, database, directory) == ["0001_events.sql"]

    (directory / "0002_extra.sql").write_text(
        "-- a comment; with a semicolon\nCREATE TABLE IF NOT EXISTS extra (s String DEFAULT ';')"
        " ENGINE = MergeTree ORDER BY s;\n"
    )
    assert migrate_database(warehouse, database, directory) == ["0002_extra.sql"]

    changed = directory / "0001_events.sql"
    changed.write_text(changed.read_text() + "\n-- edited\n")
    (directory / "0003_more.sql").write_text(
        "CREATE TABLE IF NOT EXISTS more (s String) ENGINE = Log"
    )
    with pytest.raises(MigrationError, match=r"0001_events\.sql changed"):
        migrate_database(warehouse, database, directory)
    client = clickhouse_connect.get_client(dsn=warehouse, database=database)
    try:
        # Nothing after the refusal was applied.
        assert not client.command("EXISTS TABLE more")
        changed.unlink()
        with pytest.raises(MigrationError, match="no longer"):
            apply_migrations(client, directory)
    finally:
        client.close()


def test_split_statements_ignores_quotes_and_comments() -> None:
    sql = "SELECT ';' -- x; y\n; /* a; b */ SELECT `a;b`;\n\n"
    assert split_statements(sql) == ["SELECT ';'", "SELECT `a;b`"]


USER_TABLES = ("events", "nudges", "nudge_cancellations", "vip_upgrades", "receipts")


def test_every_user_table_can_be_erased_by_user_key(warehouse: str, fresh_db) -> None:
    database, _ = fresh_db
    migrate_database(warehouse, database)
    client = clickhouse_connect.get_client(dsn=warehouse, database=database)
    try:
        client.command(
            "INSERT INTO events (event_id, name, user_key) VALUES"
            " (generateUUIDv4(), 'page_view', 'u-gone'), (generateUUIDv4(), 'page_view', 'u-kept')"
        )
        for table in (*USER_TABLES, "dead_letters"):
            client.command(
                f"DELETE FROM {table} WHERE user_key IN {{keys:Array(String)}}",
                parameters={"keys": ["u-gone"]},
            )
        assert client.query("SELECT user_key FROM events").result_rows == [("u-kept",)]
    finally:
        client.close()
