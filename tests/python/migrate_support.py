"""A database at the schema of the commit before a migration, for the tests of that migration
on a populated database (test_migrate_*.py): its migrations and its plpgsql/, from git."""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

import testdb
from durable.migrate import migrate

REPO = Path(__file__).resolve().parents[2]


def _git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, check=True).stdout


def schema_before(migration: str, into: Path) -> Path:
    """migrations/ and plpgsql/ of the commit before the one that added ``migration`` (a
    path such as migrations/0019_ready.sql; HEAD when it is not committed yet), in ``into``."""
    added = (_git("log", "--diff-filter=A", "--format=%H", "HEAD", "--", migration).decode().split() or [""])[
        -1
    ]
    base = f"{added}^" if added else "HEAD"
    archive = _git("archive", "--format=tar", base, "migrations", "plpgsql")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / migration).unlink(missing_ok=True)
    return into


@contextmanager
def database_before(server_url: str, migration: str, into: Path) -> Iterator[str]:
    """A new database of the server, migrated (as a test database) to the schema before
    ``migration`` (extracted into ``into``); its URL. Dropped at the end."""
    name = testdb.new_name("mig")
    testdb.create(server_url, name)
    url = make_conninfo(server_url, dbname=name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn, schema_before(migration, into), test_clock=True)
        yield url
    finally:
        testdb.drop(server_url, [name])
