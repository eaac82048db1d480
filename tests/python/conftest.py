"""Fixtures of the Python client tests (the database fixtures are in tests/conftest.py).

Clients connect as the client role (``db_url``), Workers as the worker role
(``worker_url``); ``conn`` is the superuser, for reading the tables directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from procs import WorkerProcesses, create_side_effects, worker_processes
from pyclient_support import ThreadedWorker, role_of

from durable import Client, Worker


@pytest.fixture
def client(db_url: str) -> Iterator[Client]:
    with Client(db_url) as c:
        yield c


@pytest.fixture
def start_worker(worker_url: str) -> Iterator[Callable[[Worker], ThreadedWorker]]:
    """Starts workers (as the worker role) in threads; stops whichever are still running at
    the end of the test."""
    started: list[ThreadedWorker] = []

    def start(worker: Worker) -> ThreadedWorker:
        assert worker.dsn == worker_url, "a Worker of the tests connects as the worker role"
        running = ThreadedWorker(worker).start()
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()


@pytest.fixture
def procs(admin_url: str, worker_url: str, db_url: str) -> Iterator[WorkerProcesses]:
    """Worker processes of workflow_apps.py as the worker role (killed at the end), with the
    side_effects table."""
    create_side_effects(admin_url, role_of(worker_url), role_of(db_url))
    with worker_processes(worker_url) as p:
        yield p


@pytest.fixture
def wf_client(db_url: str) -> Iterator[Client]:
    """A client, with the queue wf of workflow_apps.py (no backoff between retries)."""
    with Client(db_url) as c:
        c.create_queue("wf", backoff={"kind": "none"})
        yield c
