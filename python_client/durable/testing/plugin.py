"""The pytest plugin of :mod:`durable.testing`: its fixtures.

Installed with durable (the entry point ``durable.testing.plugin`` of ``pytest11``), so a
test only names a fixture; it defines no hook, option or behaviour of its own, and nothing
runs unless a test asks for one of its fixtures (``-p no:durable.testing.plugin`` turns it
off). With ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set, load it with
``pytest_plugins = ["durable.testing.plugin"]`` in a root conftest.py, or ``-p durable.testing.plugin``.

* ``durable_worker``: the Worker under test. Override it (the default fails, saying so).
* ``durable_server_url``: the server (session): ``DURABLE_DATABASE_URL``/``DATABASE_URL``,
  else the embedded PostgreSQL (:func:`durable.server.database_url`). Override it to use
  another.
* ``durable_template``: a database migrated as a test database, once per session (and
  server), which every test copies; dropped at the end of the session.
* ``durable_database``: the URL of a test's own copy, on the shared test clock; dropped
  after the test.
* ``durable_env``: a :class:`~durable.testing.TestEnvironment`: ``durable_worker`` running
  on ``durable_database``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import pytest

from ..server import database_url
from ..worker import Worker
from . import databases
from .environment import TestEnvironment


@pytest.fixture
def durable_worker() -> Worker:
    """The Worker the harness runs: override this fixture to return yours."""
    raise pytest.UsageError(
        "durable.testing: define a fixture durable_worker that returns your Worker, e.g.\n"
        "    @pytest.fixture\n    def durable_worker():\n        from myapp.tasks import worker\n"
        "        return worker"
    )


@pytest.fixture(scope="session")
def durable_server_url() -> str:
    """The PostgreSQL server of the harness's databases (a role that may create databases)."""
    return database_url()


class Templates:
    """The session's template databases, one per server (made on first use), dropped at
    the end of the session: ``durable_server_url`` may be overridden in one folder's
    conftest.py and not in another's."""

    def __init__(self) -> None:
        self._made: dict[str, str] = {}

    def __call__(self, server_url: str) -> str:
        """The template on ``server_url``: a database migrated as a test database; made
        after dropping what killed runs left behind there (durable.testing.databases)."""
        if server_url not in self._made:
            with contextlib.suppress(psycopg.Error):
                databases.drop_stale(server_url)
            self._made[server_url] = databases.create_test_template(server_url)
        return self._made[server_url]

    def drop_all(self) -> None:
        for server_url, name in self._made.items():
            databases.drop(server_url, [name])
        self._made.clear()


@pytest.fixture(scope="session")
def durable_templates() -> Iterator[Templates]:
    """The session's template databases (see :class:`Templates`)."""
    templates = Templates()
    try:
        yield templates
    finally:
        templates.drop_all()


@pytest.fixture
def durable_template(durable_server_url: str, durable_templates: Templates) -> str:
    """The name of the template database on ``durable_server_url``, migrated once per
    session as a test database, which each test copies."""
    return durable_templates(durable_server_url)


@pytest.fixture
def durable_database(durable_server_url: str, durable_template: str) -> Iterator[str]:
    """The URL of this test's own migrated test database, on the shared test clock."""
    url = databases.create_test_database(durable_server_url, durable_template)
    try:
        yield url
    finally:
        databases.drop_test_database(durable_server_url, url)


@pytest.fixture
def durable_env(durable_worker: Worker, durable_database: str) -> Iterator[TestEnvironment]:
    """``durable_worker`` running on this test's database, whose clock skips over durable time."""
    with TestEnvironment(durable_worker, durable_database) as env:
        yield env
