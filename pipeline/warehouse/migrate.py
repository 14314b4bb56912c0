"""Numbered SQL migrations (schemas/migrations/NNNN_name.sql) and ``intentflow migrate``.

Pending files are applied in version order and recorded in ``schema_migrations``
with their SHA-256; a file changed after it was applied is refused, since the
databases that ran it would differ from new ones. Statements in the files name
tables without a database: they apply to the client's database, so every test
database and the local stack run the very same files.

A file is recorded after all its statements ran; a crash in between re-runs the
file, so statements must be idempotent (CREATE ... IF NOT EXISTS, ADD COLUMN IF
NOT EXISTS).
"""

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import click
from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client

import schemas
from pipeline.progress import Progress
from schemas.settings import CommonSettings
from schemas.warehouse import BATCH_TIMEOUT_S, warehouse_client

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(schemas.__file__).resolve().parent / "migrations"
_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY version
"""


class MigrationError(Exception):
    """The migrations on disk do not agree with the database, or a file is malformed."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every ``NNNN_name.sql`` in ``directory``, in version order; refuses duplicate versions."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version} is also {found[version].name}")
        data = path.read_bytes()
        found[version] = Migration(
            version, path.name, data.decode(), hashlib.sha256(data).hexdigest()
        )
    return [found[v] for v in sorted(found)]


def split_statements(sql: str) -> list[str]:
    """Statements separated by ``;``, ignoring those inside quotes and comments."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            current.append("\n")
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            current.append(" ")
            continue
        if ch in "'`\"":
            j = i + 1
            while j < n and sql[j] != ch:
                j += 2 if sql[j] == "\\" else 1
            current.append(sql[i : j + 1])
            i = j + 1
            continue
        if ch == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def applied_versions(client: Client) -> dict[int, tuple[str, str]]:
    """version → (file name, checksum) of what this database has applied."""
    client.command(_LEDGER_DDL)
    result = client.query(
        "SELECT version, any(name), any(checksum) FROM schema_migrations GROUP BY version"
    )
    return {int(version): (name, checksum) for version, name, checksum in result.result_rows}


def apply_migrations(
    client: Client, directory: Path = MIGRATIONS_DIR, progress: Progress | None = None
) -> list[str]:
    """Apply pending migrations to the client's database; returns the files applied.

    Refuses (``MigrationError``, nothing applied) when an applied file changed or vanished.
    """
    migrations = load_migrations(directory)
    applied = applied_versions(client)
    on_disk = {m.version: m for m in migrations}
    for version, (name, checksum) in sorted(applied.items()):
        migration = on_disk.get(version)
        if migration is None:
            raise MigrationError(f"{name} was applied but is no longer in {directory}")
        if migration.checksum != checksum:
            raise MigrationError(
                f"{migration.name} changed after it was applied (sha256 {checksum[:12]}… → "
                f"{migration.checksum[:12]}…); add a new migration instead"
            )
    pending = [m for m in migrations if m.version not in applied]
    if progress is not None:
        progress.set_total(len(pending))
    done: list[str] = []
    for migration in pending:
        for statement in split_statements(migration.sql):
            client.command(statement)
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        log.info("applied migration %s", migration.name)
        done.append(migration.name)
        if progress is not None:
            progress.advance()
    return done


def create_database(url: str, database: str) -> None:
    """Create ``database`` if needed: clients that name it cannot connect before."""
    admin = warehouse_client(url, None, timeout_s=BATCH_TIMEOUT_S)
    try:
        admin.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
    finally:
        admin.close()


def migrate_database(
    url: str, database: str, directory: Path = MIGRATIONS_DIR, progress: Progress | None = None
) -> list[str]:
    """Create ``database`` if needed and apply its pending migrations."""
    create_database(url, database)
    client = warehouse_client(url, database, timeout_s=BATCH_TIMEOUT_S)
    try:
        return apply_migrations(client, directory, progress)
    finally:
        client.close()


@click.command("migrate")
@click.option("--clickhouse-url", default=None, help="Default: INTENTFLOW_CLICKHOUSE_URL.")
@click.option("--database", default=None, help="Default: INTENTFLOW_CLICKHOUSE_DATABASE.")
def migrate_command(clickhouse_url: str | None, database: str | None) -> None:
    """Apply pending warehouse migrations (schemas/migrations), in order, once each."""
    overrides = {
        key: value
        for key, value in (("clickhouse_url", clickhouse_url), ("clickhouse_database", database))
        if value
    }
    settings = CommonSettings(**overrides)
    progress = Progress("migrate", unit="migrations")
    try:
        done = migrate_database(
            settings.clickhouse_url, settings.clickhouse_database, progress=progress
        )
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        progress.close()
    target = f"{settings.clickhouse_database} at {settings.clickhouse_url}"
    if done:
        click.echo(f"applied {len(done)} migration(s) to {target}: {', '.join(done)}")
    else:
        click.echo(f"{target} is up to date")
