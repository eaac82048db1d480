"""Fixtures of the Python client tests (the database fixtures are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from procs import WorkerProcesses, create_side_effects, worker_processes
from pyclient_support import ThreadedWorker

from durable import Client, Worker


@pytest.fixture
def client(db_url: str) -> Iterator[Client]:
    with Client(db_url) as c:
        yield c


@pytest.fixture
def start_worker() -> Iterator[Callable[[Worker], ThreadedWorker]]:
    """Starts workers in threads; stops whichever are still running at the end of the test."""
    started: list[ThreadedWorker] = []

    def start(worker: Worker) -> ThreadedWorker:
        running = ThreadedWorker(worker).start()
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()


@pytest.fixture
def procs(db_url: str) -> Iterator[WorkerProcesses]:
    """Worker processes of workflow_apps.py (killed at the end), with the side_effects table."""
    create_side_effects(db_url)
    with worker_processes(db_url) as p:
        yield p


@pytest.fixture
def wf_client(db_url: str) -> Iterator[Client]:
    """A client, with the queue wf of workflow_apps.py (no backoff between retries)."""
    with Client(db_url) as c:
        c.create_queue("wf", backoff={"kind": "none"})
        yield c
