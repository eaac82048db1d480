"""Workers as real processes: SIGTERM lets the running task finish; kill -9 loses only the lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pyclient_support import role_of, wait_until

from durable import Client, Worker

HERE = Path(__file__).parent
StartProcess = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def started_table(conn: psycopg.Connection[Any], worker_url: str) -> psycopg.Connection[Any]:
    """The table worker_app.py's task writes to (made by the superuser, who reads it: conn)."""
    conn.execute("create table started (task_id uuid, attempt int, pid int)")
    conn.execute(sql.SQL("grant insert on started to {}").format(sql.Identifier(role_of(worker_url))))
    return conn


@pytest.fixture
def start_process(worker_url: str, tmp_path: Path) -> Iterator[StartProcess]:
    """Starts worker_app.py workers as the worker role (as a script or through the CLI);
    kills leftovers at the end."""
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(*, via_cli: bool = False, **settings: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ, DURABLE_DATABASE_URL=worker_url, PYTHONUNBUFFERED="1")
        env.pop("DATABASE_URL", None)
        env.update({f"WORKER_{key.upper()}": value for key, value in settings.items()})
        args = ["-m", "durable", "worker", "worker_app:build"] if via_cli else ["worker_app.py"]
        log = tmp_path / f"worker-{len(processes)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, *args], cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        processes.append((process, log))
        return process

    yield start
    for process, log in processes:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        print(f"--- {log.name} (exit {process.returncode})\n{log.read_text()}")


def started_attempts(conn: psycopg.Connection[Any], task_id: uuid.UUID) -> list[tuple[int, int]]:
    rows = conn.execute("select attempt, pid from started where task_id = %s order by attempt", (task_id,))
    return [(attempt, pid) for attempt, pid in rows.fetchall()]


def test_sigterm_lets_the_running_task_finish_and_exits_0(
    client: Client, started_table: psycopg.Connection[Any], start_process: StartProcess
) -> None:
    client.create_queue("term")
    running_id = client.enqueue("term", "hold", {"seconds": 2})
    waiting_id = client.enqueue("term", "hold", {"seconds": 0})
    worker = start_process(queue="term", concurrency="1", name="terminated", shutdown_grace="30")
    wait_until(lambda: started_attempts(started_table, running_id))
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    info = client.get_task(running_id)
    assert (info.status, info.attempt, info.output) == ("completed", 1, {"pid": worker.pid, "slept": 2})
    # it stopped claiming: the second task was never started
    waiting = client.get_task(waiting_id)
    assert (waiting.status, waiting.attempt) == ("pending", 0)


def test_a_killed_worker_loses_only_its_lease_and_another_worker_completes_the_task(
    worker_url: str,
    client: Client,
    started_table: psycopg.Connection[Any],
    start_process: StartProcess,
    start_worker: Callable[[Worker], Any],
) -> None:
    client.create_queue("crash")
    task_id = client.enqueue("crash", "hold", backoff={"kind": "none"})
    doomed = start_process(via_cli=True, queue="crash", name="doomed", lease_seconds="2")
    [(attempt, pid)] = wait_until(lambda: started_attempts(started_table, task_id))
    assert (attempt, pid) == (1, doomed.pid)

    os.kill(doomed.pid, signal.SIGKILL)
    assert doomed.wait(timeout=30) == -signal.SIGKILL
    info = client.get_task(task_id)
    assert (info.status, info.worker) == ("running", "doomed")

    rescuer = Worker(worker_url, "crash", name="rescuer", lease_seconds=2, poll_interval=0.1)

    @rescuer.task
    def hold(input: dict[str, Any]) -> str:
        return "rescued"

    start_worker(rescuer)
    assert client.wait(task_id, timeout=60) == "rescued"
    info = client.get_task(task_id)
    assert [(a.attempt, a.outcome, a.worker) for a in info.attempts] == [
        (1, "lease_expired", "doomed"),
        (2, "completed", "rescuer"),
    ]
    assert (info.lost_leases, info.failures) == (1, 0)
    # the lease ran out before the task was reclaimed, not before
    lost = info.attempts[0]
    assert lost.started_at is not None and (lost.ended_at - lost.started_at).total_seconds() >= 2
