"""The worker registry with real processes: a worker killed with SIGKILL while it runs a
task is found dead by its missed heartbeats, and another idle worker starts the task's
next attempt long before the task's lease (600 s here) would have run out; the attempt
counts as a lost lease, not a failure. A worker that stops gracefully leaves the registry.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

import psycopg
from procs import create_side_effects, worker_processes
from pyclient_support import role_of, wait_until

from durable import Client


def running_worker(admin: psycopg.Connection[Any], task_id: uuid.UUID) -> str:
    """The name of the worker that runs the task (``durable.tasks.worker``)."""
    row = admin.execute("select worker from durable.all_tasks where task_id = %s", (task_id,)).fetchone()
    assert row is not None and row[0] is not None
    return str(row[0])


def test_a_killed_workers_task_starts_again_on_another_worker_within_seconds(
    admin_url: str, worker_url: str, db_url: str
) -> None:
    create_side_effects(admin_url, role_of(worker_url), role_of(db_url))
    with (
        Client(db_url) as client,
        worker_processes(worker_url) as procs,
        psycopg.connect(admin_url, autocommit=True) as admin,
    ):
        client.create_queue("reg")
        first = procs.start("reg", "--lease", "600")
        wait_until(lambda: len(client.workers("reg")) == 1, 30, "the first worker registers")
        marker = uuid.uuid4()
        task_id = client.enqueue("reg", "block", {"marker": str(marker)})
        wait_until(lambda: client.get_task(task_id).status == "running", 30, "the first worker runs the task")
        second = procs.start("reg", "--lease", "600")
        wait_until(lambda: len(client.workers("reg")) == 2, 30, "the second worker registers")
        holder = running_worker(admin, task_id)
        assert f"-{first.pid}-" in holder

        procs.kill9(first)
        killed_at = time.monotonic()
        wait_until(lambda: client.get_task(task_id).attempt == 2, 60, "the task's second attempt starts")
        recovery = time.monotonic() - killed_at
        print(f"kill -9 -> next attempt: {recovery:.1f} s (lease 600 s, heartbeat 2 s, dead after 6 s)")
        assert recovery < 60, "long before the lease ran out"

        info = client.get_task(task_id)
        assert (info.status, info.failures, info.lost_leases) == ("running", 0, 1)
        successor = running_worker(admin, task_id)
        assert f"-{second.pid}-" in successor
        assert info.attempts[-1].worker == holder
        outcome, error_type = admin.execute(
            "select outcome, error ->> 'type' from durable.attempts where task_id = %s and attempt = 1",
            (task_id,),
        ).fetchone() or (None, None)
        assert (outcome, error_type) == ("lease_expired", "WorkerLost")
        alive = {w.name: w.alive for w in client.workers("reg")}
        assert alive == {holder: False, successor: True}

        # a graceful stop unregisters (the task it runs is released to nobody: it blocks)
        os.kill(second.pid, signal.SIGTERM)
        second.wait(timeout=30)
        assert [w.name for w in client.workers("reg")] == [holder]
