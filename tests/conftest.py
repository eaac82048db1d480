"""Test servers and databases: real PostgreSQL only.

The server is, in order: ``DATABASE_URL`` (or ``DURABLE_DATABASE_URL``) when set; else a
PostgreSQL container through testcontainers when a Docker engine answers; else an
embedded PostgreSQL started for this session in a temporary directory.

A template database is migrated once per session (with pgTAP and dblink installed);
every test gets its own copy, so tests run in any order. pgTAP files (``tests/sql``)
run through pytest-pgtap, each in a fresh database of its own.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_pgtap.pgtap import Runner

from durable.migrate import migrate
from durable.server import configured_url, start_embedded, stop_embedded


def _docker_answers() -> bool:
    try:
        from testcontainers.core.docker_client import DockerClient

        DockerClient().client.ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of the server under test, connected to its maintenance database."""
    url = configured_url()
    if url:
        yield url
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:18", driver=None) as container:
            yield container.get_connection_url()
        return
    data = Path(tempfile.mkdtemp(prefix="durable-test-pg-"))
    try:
        embedded = start_embedded(data / "pgdata", keep_running=False)
    except BaseException:
        shutil.rmtree(data, ignore_errors=True)
        raise
    try:
        yield embedded
    finally:
        # stop the server before its folder goes, or it would run on without its files
        stop_embedded(data / "pgdata")
        shutil.rmtree(data, ignore_errors=True)


def with_dbname(url: str, dbname: str) -> str:
    return make_conninfo(url, dbname=dbname)


def _pgtap_sql_file() -> str | None:
    explicit = os.environ.get("DURABLE_PGTAP_SQL")
    if explicit:
        return explicit
    found = sorted(glob.glob("/usr/share/postgresql/*/extension/pgtap.sql"))
    return found[-1] if found else None


def _install_pgtap(conn: psycopg.Connection[Any]) -> None:
    """CREATE EXTENSION where the server has it; else the plain pgtap.sql Debian ships."""
    try:
        with conn.transaction():
            conn.execute("create extension if not exists pgtap")
        return
    except psycopg.errors.FeatureNotSupported:
        pass
    except psycopg.errors.UndefinedFile:
        pass
    path = _pgtap_sql_file()
    if path is None:
        raise RuntimeError(
            "pgTAP is not installed on the server and no pgtap.sql was found "
            "(install postgresql-15-pgtap or set DURABLE_PGTAP_SQL)"
        )
    text = Path(path).read_text()
    with conn.transaction():
        conn.execute("set local client_min_messages = warning")
        conn.execute(text.encode())


@pytest.fixture(scope="session")
def template_db(server_url: str) -> Iterator[str]:
    """A migrated database with pgTAP and dblink, copied by every test."""
    name = f"durable_tmpl_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'create database "{name}"'.encode())
    url = with_dbname(server_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        # a test database: durable.fake_now moves the clock here (and nowhere else)
        migrate(conn, test_clock=True)
        conn.execute("create extension if not exists dblink")
        _install_pgtap(conn)
    yield name
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'drop database if exists "{name}" with (force)'.encode())


class Databases:
    """Creates throw-away databases copied from the template; drops them at the end."""

    def __init__(self, server_url: str, template: str) -> None:
        self.server_url = server_url
        self.template = template
        self.created: list[str] = []

    def create(self) -> str:
        name = f"durable_t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.server_url, autocommit=True) as admin:
            admin.execute(f'create database "{name}" template "{self.template}"'.encode())
        self.created.append(name)
        return with_dbname(self.server_url, name)

    def drop_all(self) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as admin:
            for name in self.created:
                admin.execute(f'drop database if exists "{name}" with (force)'.encode())
        self.created.clear()


@pytest.fixture
def databases(server_url: str, template_db: str) -> Iterator[Databases]:
    dbs = Databases(server_url, template_db)
    yield dbs
    dbs.drop_all()


@pytest.fixture
def db_url(databases: Databases) -> str:
    """URL of a fresh, migrated database of this test's own."""
    return databases.create()


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to this test's database."""
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


SQL_TESTS = Path(__file__).parent / "sql"
_INCLUDE = re.compile(r"^\\ir\s+(\S+)\s*$", re.MULTILINE)


def expand_includes(text: str) -> str:
    """Replace psql's ``\\ir FILE`` lines with the file (relative to tests/sql), as psql would."""
    return _INCLUDE.sub(lambda m: (SQL_TESTS / m.group(1)).read_text(), text)


class _Runner(Runner):
    """pytest-pgtap's runner, for test files that may ``\\ir`` shared helpers.

    Only the text rows (TAP lines) of a file's results are kept: setup statements in
    test files (``select durable.create_queue(...)``) return other values, not TAP.
    """

    def run(self, query: Any) -> list[str]:
        if isinstance(query, str):
            query = expand_includes(query)
        return [row for row in super().run(query) if isinstance(row, str)]


@pytest.fixture
def _pgtap_runner(db_url: str) -> Iterator[Runner]:
    """pytest-pgtap's runner, on a fresh database for each SQL test file.

    Files may COMMIT (to let other sessions, opened through dblink, see their rows):
    the database is thrown away afterwards. dblink sessions reach the same database
    through the connection string in the setting ``durable_test.conninfo``.
    """
    params = conninfo_to_dict(db_url)
    dblink_conninfo = " ".join(f"{k}={v}" for k, v in params.items() if v is not None)
    connection = psycopg.connect(db_url, autocommit=True)
    dbname = params["dbname"]
    connection.execute(
        f"alter database \"{dbname}\" set durable_test.conninfo = '{dblink_conninfo}'".encode()
    )
    connection.close()
    connection = psycopg.connect(db_url, autocommit=True)
    try:
        yield _Runner(connection)
    finally:
        with contextlib.suppress(psycopg.Error):
            connection.close()
