"""Test servers and databases: real PostgreSQL only.

The server is, in order: ``DATABASE_URL`` (or ``DURABLE_DATABASE_URL``) when set; else a
PostgreSQL container through testcontainers when a Docker engine answers; else an
embedded PostgreSQL started for this session in a temporary directory.

A template database is migrated once per session (with pgTAP and dblink installed);
every test gets its own copy, so tests run in any order. pgTAP files (``tests/sql``)
run through pytest-pgtap, each in a fresh database of its own, as the superuser.

The Python tests connect as a deployment would: Workers as the login role
``durable_test_worker`` (a member of ``durable_worker`` only), Clients as
``durable_test_client`` (``durable_producer`` and ``durable_operator``, and through them
``durable_reader``); neither is a superuser nor may read a table of the schema. Only what
neither role may do (inspect or alter the tables, migrate) goes through ``admin_url`` /
``conn``, the superuser.

No database is left behind (durable/testing/databases.py): the template and the tests' copies are dropped at
the end of the session, even one that failed or was interrupted (Ctrl-C, SIGTERM), and
again at exit; those of runs that were killed are dropped by a later run. A session whose
tests need pgTAP and that has none (pgtap_setup.py) stops before running any, with one line
saying what to install.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_pgtap.pgtap import Runner

import pgtap_setup
from durable.migrate import migrate
from durable.server import configured_url, start_embedded, stop_embedded
from durable.testing import databases as testdb


def _needs_pgtap(item: pytest.Item) -> bool:
    """A pgTAP file, or a test on a database copied from the template (which has pgTAP)."""
    return item.path.suffix == ".sql" or "template_db" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Stops the session before its first test, in one line, when its tests need pgTAP and
    there is none (instead of an error for every test)."""
    if session.config.option.collectonly or not any(_needs_pgtap(item) for item in session.items):
        return
    problem = pgtap_setup.missing("pytest")
    if problem is not None:
        raise pytest.UsageError(problem)


_SIGTERM_PID = os.getpid()


def _sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends the session as Ctrl-C does: the fixtures' teardown drops the databases."""
    if os.getpid() != _SIGTERM_PID:  # a forked child: die as it would have
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    if threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _sigterm)


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


@pytest.fixture(scope="session")
def durable_server_url(server_url: str) -> str:
    """The time-skipping harness's databases (durable.testing's fixtures) on the server under test."""
    return server_url


def with_dbname(url: str, dbname: str) -> str:
    return make_conninfo(url, dbname=dbname)


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
    path = pgtap_setup.pgtap_sql_file()
    if path is None:
        raise RuntimeError(pgtap_setup.missing("tests/conftest.py") or "pgTAP is missing")
    text = path.read_text()
    with conn.transaction():
        conn.execute("set local client_min_messages = warning")
        conn.execute(text.encode())


@pytest.fixture(scope="session")
def template_db(server_url: str) -> Iterator[str]:
    """A migrated database with pgTAP and dblink, copied by every test.

    Dropped at the end of the session with every copy still there, whatever happened
    (testdb.drop_created runs again at exit); first, the databases of runs that died."""
    with contextlib.suppress(psycopg.Error):
        testdb.drop_stale(server_url)
    name = testdb.new_name("tmpl")
    try:
        testdb.create(server_url, name)
        with psycopg.connect(with_dbname(server_url, name), autocommit=True) as conn:
            # a test database: durable.fake_now moves the clock here (and nowhere else)
            migrate(conn, test_clock=True)
            conn.execute("create extension if not exists dblink")
            _install_pgtap(conn)
        yield name
    finally:
        # the tests' copies first (a test's teardown that did not run), then the template
        testdb.drop(server_url, [*(n for n in testdb.created(server_url) if n != name), name])


class Databases:
    """Creates throw-away databases copied from the template; drops them at the end."""

    def __init__(self, server_url: str, template: str) -> None:
        self.server_url = server_url
        self.template = template
        self.created: list[str] = []

    def create(self) -> str:
        name = testdb.new_name("t")
        self.created.append(name)
        testdb.create(self.server_url, name, template=self.template)
        return with_dbname(self.server_url, name)

    def drop_all(self) -> None:
        try:
            testdb.drop(self.server_url, self.created)
        finally:
            self.created.clear()


@pytest.fixture
def databases(server_url: str, template_db: str) -> Iterator[Databases]:
    dbs = Databases(server_url, template_db)
    yield dbs
    dbs.drop_all()


#: The login roles the Python tests connect as (names are cluster-wide), and the group
#: roles (made by durable.migrate) each one holds, and nothing else.
WORKER_ROLE = "durable_test_worker"
CLIENT_ROLE = "durable_test_client"
LOGIN_ROLES: dict[str, tuple[str, ...]] = {
    WORKER_ROLE: ("durable_worker",),
    CLIENT_ROLE: ("durable_producer", "durable_operator"),
}

# what a concurrent test run (on the same cluster) creating the same role or membership raises
_RACED = (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation)


def _create_login_roles(admin_url: str) -> tuple[str, str]:
    """Creates the test login roles on the server of ``admin_url`` (a superuser's, on a
    migrated database: the group roles must exist); returns the URLs of that database as
    the worker role and as the client role.

    Idempotent and safe against other test runs creating the same roles at the same
    moment. No passwords: the test servers trust their local connections.
    """
    with psycopg.connect(admin_url, autocommit=True) as admin:
        for role, groups in LOGIN_ROLES.items():
            if admin.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone() is None:
                with contextlib.suppress(*_RACED):
                    admin.execute(
                        sql.SQL("create role {} login nosuperuser nocreatedb nocreaterole").format(
                            sql.Identifier(role)
                        )
                    )
            for group in groups:
                granted = admin.execute(
                    "select 1 from pg_auth_members where roleid = %s::regrole and member = %s::regrole",
                    (group, role),
                ).fetchone()
                if granted is None:
                    with contextlib.suppress(*_RACED):
                        admin.execute(
                            sql.SQL("grant {} to {}").format(sql.Identifier(group), sql.Identifier(role))
                        )
    return make_conninfo(admin_url, user=WORKER_ROLE), make_conninfo(admin_url, user=CLIENT_ROLE)


@pytest.fixture(scope="session")
def create_login_roles() -> Callable[[str], tuple[str, str]]:
    """For a test with a server of its own: creates the login roles there (after migrating),
    returns the (worker, client) URLs of the given superuser URL's database."""
    return _create_login_roles


@pytest.fixture(scope="session")
def login_roles(server_url: str, template_db: str) -> None:
    """The login roles on the server under test (once the template has made the group roles)."""
    _create_login_roles(server_url)


@pytest.fixture
def admin_url(databases: Databases) -> str:
    """URL of a fresh, migrated database of this test's own, as the superuser (for what
    neither login role may do: read or write the tables, migrate)."""
    return databases.create()


@pytest.fixture
def db_url(admin_url: str, login_roles: None) -> str:
    """The same database as the client role ``durable_test_client``: what Clients use."""
    return make_conninfo(admin_url, user=CLIENT_ROLE)


@pytest.fixture
def worker_url(admin_url: str, login_roles: None) -> str:
    """The same database as the worker role ``durable_test_worker``: what Workers use."""
    return make_conninfo(admin_url, user=WORKER_ROLE)


@pytest.fixture
def conn(admin_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to this test's database as the superuser, to inspect (or
    alter) the tables directly, which neither login role may."""
    with psycopg.connect(admin_url, autocommit=True) as c:
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
def _pgtap_runner(admin_url: str) -> Iterator[Runner]:
    """pytest-pgtap's runner, on a fresh database for each SQL test file.

    Files may COMMIT (to let other sessions, opened through dblink, see their rows):
    the database is thrown away afterwards. dblink sessions reach the same database
    through the connection string in the setting ``durable_test.conninfo``.
    """
    db_url = admin_url  # pgTAP files run as the superuser
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
