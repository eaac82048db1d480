"""Apply the schema: versioned migrations, then the PL/pgSQL functions.

``migrations/NNNN_name.sql`` run once each, in order, each in its own transaction, and are
recorded with a checksum in ``durable.schema_migrations``; editing one that already ran
is an error. ``plpgsql/*.sql`` (functions and triggers, all ``CREATE OR REPLACE``) are
re-applied in one transaction whenever their combined checksum changes. A session-level
advisory lock makes concurrent migrations wait for each other; running twice changes
nothing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

from .errors import MigrationError

# pg_advisory_lock key: the bytes "durable!" as a big-endian int64
_LOCK_KEY = int.from_bytes(b"durable!", "big", signed=True)
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_PLPGSQL_VERSION = "plpgsql"


@dataclass(frozen=True)
class SqlFile:
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass
class MigrationResult:
    applied: list[str] = field(default_factory=list)
    functions_reloaded: bool = False


def sql_root() -> Path:
    """Where ``migrations/`` and ``plpgsql/`` are: inside the wheel, or the source tree."""
    packaged = Path(str(resources.files("durable"))) / "_sql"
    if (packaged / "migrations").is_dir():
        return packaged
    source = Path(__file__).resolve().parents[2]
    if (source / "migrations").is_dir():
        return source
    raise MigrationError("cannot find the migrations/ and plpgsql/ folders of the durable package")


def _read(folder: Path) -> list[SqlFile]:
    return [SqlFile(p.name, p.read_text()) for p in sorted(folder.glob("*.sql"))]


def migration_files(root: Path | None = None) -> list[SqlFile]:
    files = _read((root or sql_root()) / "migrations")
    for f in files:
        if not _MIGRATION_NAME.match(f.name):
            raise MigrationError(f"migration file name {f.name!r} is not NNNN_name.sql")
    return files


def function_files(root: Path | None = None) -> list[SqlFile]:
    return _read((root or sql_root()) / "plpgsql")


def functions_checksum(files: list[SqlFile]) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.text.encode() + b"\0")
    return digest.hexdigest()


def migrate(conninfo: str | psycopg.Connection[Any], root: Path | None = None) -> MigrationResult:
    """Bring the database up to date. Safe to call from several processes at once."""
    if isinstance(conninfo, str):
        with psycopg.connect(conninfo, autocommit=True) as conn:
            return _migrate(conn, root)
    if not conninfo.autocommit:
        raise MigrationError("migrate() needs a connection in autocommit mode")
    return _migrate(conninfo, root)


def _migrate(conn: psycopg.Connection[Any], root: Path | None) -> MigrationResult:
    result = MigrationResult()
    migrations = migration_files(root)
    functions = function_files(root)
    conn.execute("select pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        with conn.transaction():
            conn.execute("set local client_min_messages = warning")
            conn.execute("create schema if not exists durable")
            conn.execute(
                """
                create table if not exists durable.schema_migrations (
                    version text primary key,
                    name text not null,
                    checksum text not null,
                    applied_at timestamptz not null default now()
                )
                """
            )
        rows = conn.execute("select version, name, checksum from durable.schema_migrations").fetchall()
        recorded = {version: (name, checksum) for version, name, checksum in rows}
        for f in migrations:
            version = f.name[:4]
            if version in recorded:
                name, checksum = recorded[version]
                if checksum != f.checksum:
                    raise MigrationError(
                        f"migration {f.name} was edited after it was applied as {name} "
                        f"(checksum {checksum[:12]} in the database, {f.checksum[:12]} on disk); "
                        "add a new migration instead"
                    )
                continue
            with conn.transaction():
                conn.execute(f.text.encode())
                conn.execute(
                    "insert into durable.schema_migrations (version, name, checksum) values (%s, %s, %s)",
                    (version, f.name, f.checksum),
                )
            result.applied.append(f.name)

        bundle = functions_checksum(functions)
        if result.applied or recorded.get(_PLPGSQL_VERSION, ("", ""))[1] != bundle:
            with conn.transaction():
                # bodies refer to each other; check them once all exist (as pg_dump does)
                conn.execute("set local check_function_bodies = off")
                conn.execute("set local client_min_messages = warning")
                for f in functions:
                    conn.execute(f.text.encode())
                conn.execute(
                    """
                    insert into durable.schema_migrations (version, name, checksum) values (%s, %s, %s)
                    on conflict (version) do update set checksum = excluded.checksum, applied_at = now()
                    """,
                    (_PLPGSQL_VERSION, "plpgsql/*.sql", bundle),
                )
            result.functions_reloaded = True
    finally:
        conn.execute("select pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return result
