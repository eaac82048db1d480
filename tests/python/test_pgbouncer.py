"""Behind PgBouncer in transaction mode (Debian's 1.18: no prepared-statement support).

A PgBouncer of the test's own (tests/python/pgbouncer.py) with two server connections
per user and database, so that every client's transactions land on server connections
that other clients used before:

* a worker process and clients with named prepared statements off
  (``DURABLE_PREPARED_STATEMENTS=off``, ``prepared_statements=False``) run plain tasks and
  durable ones (steps, a sleep, an event, children) to completion, many calls of each
  statement (psycopg would prepare from the fifth);
* two migrates at once through the pooler, then one directly: none waits on a lock left
  behind (migrate's lock is transaction-scoped);
* a client that moves the test clock in its transaction does not move another client's,
  though both run on the one same server connection;
* the worker's LISTEN through the pooler is found deaf by its probe (it then polls), and
  heard on a direct connection (``listen_url``).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from bouncer_support import start_pgbouncer, through
from procs import create_side_effects, worker_processes
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pyclient_support import role_of, wait_until

from durable import Client, migrate
from durable.commands import Command
from durable.connections import async_pool
from durable.testing import databases as testdb
from durable.wakeups import listen_loop

WORKER_ROLE = "durable_test_worker"
CLIENT_ROLE = "durable_test_client"


def _users(server_url: str) -> list[str]:
    return [str(conninfo_to_dict(server_url).get("user") or "postgres"), WORKER_ROLE, CLIENT_ROLE]


@pytest.fixture
def bouncer(server_url: str, login_roles: None) -> Iterator[int]:
    """A PgBouncer in transaction mode, two server connections per user and database."""
    with start_pgbouncer(server_url, _users(server_url), pool_size=2) as port:
        yield port


def _wait_all(client: Client, ids: list[uuid.UUID], timeout: float) -> dict[str, str]:
    for task_id in ids:
        client.wait(task_id, timeout=timeout)
    return {str(task_id): client.get_task(task_id).status for task_id in ids}


def test_worker_and_clients_run_every_kind_of_task(
    bouncer: int, admin_url: str, worker_url: str, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DURABLE_PREPARED_STATEMENTS", "off")
    create_side_effects(admin_url, role_of(worker_url), role_of(db_url))
    pooled_worker = through(worker_url, bouncer)
    with (
        worker_processes(pooled_worker) as procs,
        Client(through(db_url, bouncer), prepared_statements=False, max_size=3) as client,
    ):
        client.create_queue("pooled")
        procs.start("pooled", "--lease", "10", env={"DURABLE_PREPARED_STATEMENTS": "off"})
        plain = [client.enqueue("pooled", "child", {"n": n}) for n in range(40)]
        steps = [client.enqueue("pooled", "five_steps", {}, durable=True) for _ in range(5)]
        nap = client.enqueue("pooled", "nap", {"seconds": 0.5}, durable=True)
        fan = client.enqueue("pooled", "fan_out", {"children": 6}, durable=True)
        waiting = client.enqueue("pooled", "wait_for", {"key": "go", "timeout": 60}, durable=True)
        # many reads of one statement on the pooled connections (psycopg prepares from the 5th)
        for _ in range(12):
            client.get_task(waiting)
        wait_until(lambda: client.get_task(waiting).status == "waiting", 60, "the task waits for its event")
        assert client.emit_event("pooled", "go", {"ok": 1}) == 1
        ended = _wait_all(client, [*plain, *steps, nap, fan, waiting], timeout=120)
        assert set(ended.values()) == {"completed"}, ended
        assert [client.get_task(t).output for t in plain] == [n * 10 for n in range(40)]
        assert client.get_task(fan).output == sum(n * 10 for n in range(6))
        assert client.get_task(waiting).output == {"payload": {"ok": 1}}
        assert client.get_task(steps[0]).output == {"steps": ["one", "two", "three", "four", "five"]}


def test_concurrent_migrates_leave_no_lock_behind(
    bouncer: int, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DURABLE_PREPARED_STATEMENTS", "off")
    dbname = testdb.new_name("pgb")
    testdb.create(server_url, dbname)
    try:
        direct = make_conninfo(server_url, dbname=dbname)
        pooled = through(direct, bouncer)
        results: list[Any] = []
        errors: list[BaseException] = []

        def run() -> None:
            try:
                results.append(migrate(pooled))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == [] and len(results) == 2
        assert sorted(bool(r.applied) for r in results) == [False, True], "one of them applied the migrations"
        # a migrate directly to the server afterwards does not wait for a lock held by an
        # idle server connection of the pooler
        with psycopg.connect(direct, autocommit=True) as conn:
            conn.execute("set lock_timeout = '5s'")
            assert migrate(conn).applied == []
            held = conn.execute(
                "select count(*) from pg_locks l join pg_database d on d.oid = l.database"
                " where l.locktype = 'advisory' and d.datname = %s",
                (dbname,),
            ).fetchone()
            assert held == (0,)
    finally:
        testdb.drop(server_url, [dbname])


def test_one_clients_test_clock_does_not_move_anothers(
    server_url: str, login_roles: None, db_url: str
) -> None:
    fake = datetime(2031, 5, 17, 12, 0, tzinfo=UTC)
    # one server connection per user and database: both clients run on it, in turn
    with start_pgbouncer(server_url, _users(server_url), pool_size=1) as port:
        pooled = through(db_url, port)
        with (
            psycopg.connect(pooled, autocommit=True, prepare_threshold=None) as a,
            psycopg.connect(pooled, autocommit=True, prepare_threshold=None) as b,
        ):
            # the test clock as docs/protocol.md says to move it: in the transaction of the calls
            with a.transaction():
                a.execute("select set_config('durable.fake_now', %s, true)", (fake.isoformat(),))
                row_a = a.execute("select durable.current_time(), pg_backend_pid()").fetchone()
            assert row_a is not None and row_a[0] == fake
            for conn in (b, a):
                row = conn.execute("select durable.current_time(), pg_backend_pid()").fetchone()
                assert row is not None
                assert row[1] == row_a[1], "the same server connection"
                assert abs(row[0] - datetime.now(UTC)) < timedelta(minutes=5), "the real clock"


def test_listen_through_the_pooler_is_found_deaf_and_a_direct_one_heard(
    bouncer: int, worker_url: str
) -> None:
    pooled = through(worker_url, bouncer)

    async def run() -> tuple[bool, bool]:
        pool = await async_pool(pooled, prepared_statements=False)

        async def call(command: Command[Any]) -> Any:
            async with pool.connection() as conn:
                await conn.execute(command.sql, command.params)

        try:
            # through the pooler: the probe never comes back, and the loop gives up (polls)
            deaf = asyncio.Event()
            await asyncio.wait_for(listen_loop(pooled, "q", deaf, call, 1.0), timeout=30)
            # directly: the probe comes back, and a NOTIFY for the queue wakes the worker
            heard = asyncio.Event()
            loop = asyncio.create_task(listen_loop(worker_url, "q", heard, call, 1.0))
            await asyncio.wait_for(heard.wait(), timeout=30)  # set once LISTEN is checked
            heard.clear()
            await call(Command("select pg_notify('durable', 'q')", (), lambda rows: None))
            await asyncio.wait_for(heard.wait(), timeout=30)
            loop.cancel()
            return not deaf.is_set(), heard.is_set()
        finally:
            await pool.close()

    never_woken, woken = asyncio.run(run())
    assert never_woken and woken
