"""The floors' raise (plpgsql/ready.sql) on a queue that writers keep busy: each writer
holds the queue's ready lock (shared) from its insert to its commit, so at any instant one
is in flight. The raise waits (at most 20 ms) for those in flight rather than only trying
the lock, so it still happens: three threads enqueue in tight loops (20 tasks a
transaction, a few ms each) while a claimer takes the queue's turn again and again; the
floor must move. (With a mere try of the lock it moved 0 to 2 times in 60 s.)"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from durable import Client


def test_the_floor_is_raised_while_writers_keep_the_queue_busy(
    worker_url: str, db_url: str, client: Client, conn: psycopg.Connection[Any]
) -> None:
    client.create_queue("busy")
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as w:
                while not stop.is_set():
                    w.execute(
                        "do $$ begin for i in 1..20 loop"
                        " perform durable.enqueue('busy', 'job', '{}'); end loop; end $$"
                    )
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    writers = [threading.Thread(target=write) for _ in range(3)]
    for t in writers:
        t.start()
    raised = 0
    try:
        with psycopg.connect(worker_url, autocommit=True) as claimer:
            deadline = time.monotonic() + 60
            seen: set[Any] = set()
            while raised < 3 and time.monotonic() < deadline:
                # the queue's turn, due now (else it comes once a second)
                conn.execute("update durable.queues set swept_at = '-infinity' where queue = 'busy'")
                claimer.execute("select count(*) from durable.claim('busy', 'w', 5)")
                row = conn.execute(
                    "select run_at, seq from durable.ready_floors where queue = 'busy' and task_name = ''"
                    " and slot = 0"
                ).fetchone()
                if row is not None and row not in seen:
                    seen.add(row)
                    raised += 1
    finally:
        stop.set()
        for t in writers:
            t.join(30)
    assert not errors, errors
    assert raised >= 3, f"the floor moved {raised} times in 60 s with three writers busy"
