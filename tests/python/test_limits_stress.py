"""Concurrency limits under contention, with real worker processes and kill -9.

8 worker processes (``durable.Worker``, concurrency 4 each: 32 slots) run 2,000 short
tasks spread over 20 concurrency keys on a queue with ``concurrency_limit`` 5 and
``concurrency_key_limit`` 2, while the test kills a random worker with SIGKILL every
second or so and starts a new one (a killed worker's tasks keep their slot until their
lease runs out and a claim reclaims them).

A monitor thread, on a connection of its own, samples what is running all the time,
from the tables (one statement: the queue's running count and the largest running
count of a key, in one snapshot), not from the code under test; any sample over a
limit fails the test. Afterwards the attempts table is swept as well: every attempt
is an interval [started_at, ended_at] on the database clock, and at no instant may
more than 5 overlap, or more than 2 of one key. (A claim takes its start time after it
has seen the end it relies on committed, so intervals that followed each other cannot
overlap by clock skew.) Every task must end completed.

The test runs twice: under the queue strategy and under round_robin.

The workers connect as the worker role, the queue is made and filled as the client role;
the monitor and the checks read the tables as the superuser (no role may read them).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

TASKS = 2000
KEYS = 20
QUEUE_LIMIT = 5
KEY_LIMIT = 2
WORKERS = 8
SLOTS = 4
LEASE_SECONDS = 2
DEADLINE_SECONDS = 120

WORKER_SCRIPT = """
import os, sys, time
from durable import Worker

worker = Worker(
    os.environ["DURABLE_DATABASE_URL"], queue=sys.argv[1], concurrency=int(sys.argv[2]),
    lease_seconds=int(sys.argv[3]), poll_interval=0.02, listen=False, pool_size=3, shutdown_grace=0,
)

@worker.task
def short(input):
    time.sleep(input["ms"] / 1000)
    return {"ok": True}

worker.run()
"""

SAMPLE = """
select (select count(*) from durable.tasks where queue = %(q)s and status = 'running'),
       (select coalesce(max(n), 0) from (
            select count(*) as n from durable.tasks
            where queue = %(q)s and status = 'running' and concurrency_key is not null
            group by concurrency_key) m)
"""


class Monitor(threading.Thread):
    """Samples the running counts of the queue until stopped; records every violation."""

    def __init__(self, url: str, queue: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.queue = queue
        self.stopping = threading.Event()
        self.samples = 0
        self.max_running = 0
        self.max_per_key = 0
        self.violations: list[tuple[int, int]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self.stopping.is_set():
                    row = conn.execute(SAMPLE, {"q": self.queue}).fetchone()
                    assert row is not None
                    running, per_key = int(row[0]), int(row[1])
                    self.samples += 1
                    self.max_running = max(self.max_running, running)
                    self.max_per_key = max(self.max_per_key, per_key)
                    if running > QUEUE_LIMIT or per_key > KEY_LIMIT:
                        self.violations.append((running, per_key))
        except BaseException as exc:  # reported by the test
            self.error = exc


def start_worker(worker_url: str, queue: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DURABLE_DATABASE_URL=worker_url, PYTHONUNBUFFERED="1")
    env.pop("DATABASE_URL", None)
    client = str(Path(__file__).resolve().parents[2] / "python_client")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (client, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, queue, str(SLOTS), str(LEASE_SECONDS)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def max_overlap(intervals: list[tuple[Any, Any]]) -> int:
    """The largest number of [start, end] intervals holding at one instant (ends first on ties)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


@pytest.mark.parametrize("strategy", ["queue", "round_robin"])
def test_limits_hold_under_contention_and_kill_9(
    db_url: str, worker_url: str, admin_url: str, strategy: str
) -> None:
    queue = f"stress_{strategy}"
    rng = random.Random(20300101)
    with psycopg.connect(db_url, autocommit=True) as conn:  # the client role
        conn.execute(
            "select durable.create_queue(%s, %s)",
            (
                queue,
                Jsonb(
                    {
                        "concurrency_limit": QUEUE_LIMIT,
                        "concurrency_key_limit": KEY_LIMIT,
                        "concurrency_strategy": strategy,
                    }
                ),
            ),
        )
        specs = [
            {
                "task_name": "short",
                "input": {"ms": rng.randint(2, 12)},
                "options": {"concurrency_key": f"key-{rng.randrange(KEYS)}"},
            }
            for _ in range(TASKS)
        ]
        conn.execute("select count(*) from durable.enqueue_many(%s, %s)", (queue, Jsonb(specs)))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("analyze durable.tasks")  # the owner's (the superuser's), not a role's

    monitor = Monitor(admin_url, queue)
    monitor.start()
    workers = [start_worker(worker_url, queue) for _ in range(WORKERS)]
    kills = 0
    started = time.monotonic()
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:  # reads the tables
            next_kill = time.monotonic() + rng.uniform(0.5, 1.5)
            while True:
                row = conn.execute(
                    "select count(*) filter (where status = 'completed'), count(*) from durable.all_tasks"
                    " where queue = %s",
                    (queue,),
                ).fetchone()
                assert row is not None
                if row[0] == TASKS:
                    break
                assert time.monotonic() - started < DEADLINE_SECONDS, (
                    f"only {row[0]} of {TASKS} tasks completed after {DEADLINE_SECONDS} s"
                )
                assert monitor.error is None, f"the monitor failed: {monitor.error!r}"
                if time.monotonic() >= next_kill and row[0] < TASKS * 0.95:
                    # mostly a worker that holds a running task (its name ends in -<pid>-<hex>)
                    holders = {
                        int(name.rsplit("-", 2)[1])
                        for (name,) in conn.execute(
                            "select distinct worker from durable.all_tasks"
                            " where queue = %s and status = 'running'",
                            (queue,),
                        ).fetchall()
                    }
                    busy = [i for i, p in enumerate(workers) if p.pid in holders and p.poll() is None]
                    victim = rng.choice(busy) if busy and rng.random() < 0.8 else rng.randrange(len(workers))
                    os.kill(workers[victim].pid, signal.SIGKILL)
                    workers[victim].wait(timeout=10)
                    kills += 1
                    workers[victim] = start_worker(worker_url, queue)
                    next_kill = time.monotonic() + rng.uniform(0.5, 1.5)
                for i, proc in enumerate(workers):  # a worker that died on its own is replaced too
                    if proc.poll() is not None:
                        workers[i] = start_worker(worker_url, queue)
                time.sleep(0.05)
    finally:
        monitor.stopping.set()
        monitor.join(timeout=30)
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)

    elapsed = time.monotonic() - started
    assert monitor.error is None, f"the monitor failed: {monitor.error!r}"
    assert monitor.violations == [], f"samples over the limits (running, per key): {monitor.violations[:10]}"
    assert monitor.samples > 100, f"the monitor took only {monitor.samples} samples"
    assert kills >= 3, f"only {kills} workers were killed"

    with psycopg.connect(admin_url, autocommit=True) as conn:  # reads the tables
        statuses: dict[str, int] = dict(
            conn.execute(
                "select status, count(*) from durable.all_tasks where queue = %s group by status", (queue,)
            ).fetchall()
        )
        attempts = conn.execute(
            """
            select t.concurrency_key, a.started_at, a.ended_at, a.outcome
            from durable.attempts a join durable.all_tasks t using (task_id)
            where a.queue = %s
            """,
            (queue,),
        ).fetchall()
    assert statuses == {"completed": TASKS}, statuses
    outcomes: dict[str, int] = {}
    for _, _, _, outcome in attempts:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("completed") == TASKS, outcomes
    assert outcomes.get("lease_expired", 0) >= 3, f"the kills cost too few leases: {outcomes}"

    # the sweep over every attempt, on the database clock
    overall = max_overlap([(s, e) for _, s, e, _ in attempts])
    by_key: dict[str, list[tuple[Any, Any]]] = {}
    for key, s, e, _ in attempts:
        by_key.setdefault(key, []).append((s, e))
    per_key = max(max_overlap(v) for v in by_key.values())
    assert overall <= QUEUE_LIMIT, f"{overall} attempts overlapped (queue limit {QUEUE_LIMIT})"
    assert per_key <= KEY_LIMIT, f"{per_key} attempts of one key overlapped (key limit {KEY_LIMIT})"
    # the limits were reached, not just respected
    assert monitor.max_running == QUEUE_LIMIT and overall == QUEUE_LIMIT, (monitor.max_running, overall)
    assert per_key == KEY_LIMIT, per_key
    print(
        f"\n{strategy}: {TASKS} tasks in {elapsed:.1f} s, {kills} workers killed, attempts {outcomes}, "
        f"{monitor.samples} samples (max running {monitor.max_running}, max per key {monitor.max_per_key}), "
        f"sweep max {overall} / {per_key} per key"
    )
