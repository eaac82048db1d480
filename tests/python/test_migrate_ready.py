"""Migration 0019 (durable.ready, the claimable set of plpgsql/ready.sql) on a populated database.

The database is first brought to the schema of the commit before 0019 (its migrations and
its plpgsql/, from git), filled through that version's verbs with pending tasks of several
priorities, names and run times (delayed, debounced, with a schedule_timeout, retried after
a failure, in a round_robin queue), and with running, sleeping, completed and cancelled
ones; then migrated to this tree. durable.ready then holds exactly the pending tasks, with
their keys; claims hand them out in the old claim order, and the tasks in flight go on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from migrate_support import REPO, database_before

from durable.migrate import migrate

MIGRATION = "migrations/0019_ready.sql"
T0 = datetime.fromisoformat("2030-01-01T00:00:00+00:00")


@pytest.fixture
def old_db(server_url: str, tmp_path: Path) -> Iterator[tuple[str, psycopg.Connection[Any]]]:
    with (
        database_before(server_url, MIGRATION, tmp_path) as url,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        yield url, conn


# (after the migration: live and finished tasks)
STATUS = "select status from durable.all_tasks where task_id = %s"


def _one(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _clock(conn: psycopg.Connection[Any], seconds: float) -> datetime:
    at = T0 + timedelta(seconds=seconds)
    conn.execute("select set_config('durable.fake_now', %s, false)", (at.isoformat(),))
    return at


def _enqueue(conn: psycopg.Connection[Any], queue: str, name: str, options: str = "{}") -> Any:
    return _one(conn, "select durable.enqueue(%s, %s, '{}', %s::jsonb)", queue, name, options)


def _claim(
    conn: psycopg.Connection[Any], queue: str, names: list[str] | None = None, n: int = 1
) -> list[tuple[Any, Any]]:
    rows = conn.execute(
        "select task_id, lease_token from durable.claim(%s, 'w', %s, 86400, %s)", (queue, n, names)
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _populate(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Tasks in every state, through the old verbs, at the test clock (T0 onwards)."""
    ids: dict[str, Any] = {}
    _clock(conn, 0)
    conn.execute('select durable.create_queue(\'r\', \'{"backoff": {"kind": "none"}}\')')
    # pending, due, of several priorities and names
    for key, name, options in [
        ("a0", "a", "{}"),
        ("b5", "b", '{"priority": 5}'),
        ("a_neg", "a", '{"priority": -2}'),
        ("c5", "c", '{"priority": 5}'),
        ("b0", "b", "{}"),
        ("sched", "c", '{"priority": 1, "schedule_timeout": 600}'),
        ("past", "a", '{"run_at": "2029-12-31T23:00:00+00:00"}'),
    ]:
        ids[key] = _enqueue(conn, "r", name, options)
    # pending, not due yet
    ids["delayed"] = _enqueue(conn, "r", "b", '{"delay": 3600, "priority": 9}')
    # debounced: enqueued at 0 (due at 10), pushed at 2 (due at 12)
    ids["debounced"] = _enqueue(conn, "r", "d", '{"debounce": {"key": "k", "delay": 10}}')
    # retried after a failure: pending with attempt 1, its schedule_timeout no longer applies
    ids["retried"] = _enqueue(conn, "r", "f", '{"schedule_timeout": 5}')
    [(task, token)] = _claim(conn, "r", ["f"])
    conn.execute('select durable.fail(%s, %s, \'{"message": "once"}\')', (task, token))
    # running, sleeping, completed, cancelled (pending, and running)
    ids["running"] = _enqueue(conn, "r", "run", '{"durable": true}')
    [(task, ids["running_token"])] = _claim(conn, "r", ["run"])
    ids["sleeping"] = _enqueue(conn, "r", "nap", '{"durable": true}')
    [(task, token)] = _claim(conn, "r", ["nap"])
    conn.execute("select durable.sleep(%s, %s, 1, 'nap', 60)", (task, token))
    ids["done"] = _enqueue(conn, "r", "done")
    [(task, token)] = _claim(conn, "r", ["done"])
    conn.execute("select durable.complete(%s, %s, '{}')", (task, token))
    ids["cancelled"] = _enqueue(conn, "r", "a", '{"priority": 3}')
    conn.execute("select durable.cancel(%s)", (ids["cancelled"],))
    ids["cancelled_running"] = _enqueue(conn, "r", "gone")
    _claim(conn, "r", ["gone"])
    conn.execute("select durable.cancel(%s)", (ids["cancelled_running"],))
    _clock(conn, 2)
    assert _enqueue(conn, "r", "d", '{"debounce": {"key": "k", "delay": 10}}') == ids["debounced"]
    # overdue by the time the claims come: cancelled by their maintenance, never claimed
    ids["late"] = _enqueue(conn, "r", "a", '{"priority": 4, "schedule_timeout": 20}')

    # a round_robin queue: tags per key
    conn.execute(
        "select durable.create_queue('rr', "
        '\'{"concurrency_limit": 100, "concurrency_strategy": "round_robin"}\')'
    )
    for i, key in enumerate(["x", "x", "x", "y", "z", "y"]):
        ids[f"rr{i}"] = _enqueue(conn, "rr", "job", f'{{"concurrency_key": "{key}"}}')
    return ids


# durable.ready as 0019 makes it: the pending tasks, with their keys
EXPECTED = """
select r.task_id, r.queue, r.task_name, -r.priority, r.fair_tag, r.run_at, r.seq,
       case when r.attempt = 0 then r.schedule_deadline end
from durable.tasks r where r.status = 'pending' order by 1
"""
READY = """
select task_id, queue, task_name, neg_priority, fair_tag, run_at, seq, deadline
from durable.ready order by 1
"""
# the order of the claim before 0019, and what it would start at the session's clock
OLD_ORDER = """
select k.task_id from durable.tasks k
where k.queue = %s and k.status = 'pending' and k.run_at <= durable.current_time()
  and (k.schedule_deadline is null or k.attempt > 0 or k.schedule_deadline > durable.current_time())
  and (%s::text[] is null or k.task_name = any(%s::text[]))
order by k.priority desc, k.fair_tag, k.run_at, k.seq
"""


def _old_order(conn: psycopg.Connection[Any], queue: str, names: list[str] | None = None) -> list[Any]:
    return [r[0] for r in conn.execute(OLD_ORDER, (queue, names, names)).fetchall()]


def test_migration_fills_ready_and_claims_keep_their_order(
    old_db: tuple[str, psycopg.Connection[Any]],
) -> None:
    _url, conn = old_db
    assert _one(conn, "select to_regclass('durable.ready')") is None
    ids = _populate(conn)
    statuses = {r[0] for r in conn.execute("select status from durable.tasks").fetchall()}
    assert statuses == {"pending", "running", "sleeping", "completed", "cancelled"}
    pending = conn.execute(EXPECTED).fetchall()
    assert len(pending) == 11 + 6
    tags = {r[0]: r[4] for r in pending}
    assert len({tags[ids[f"rr{i}"]] for i in range(6)}) > 1, "the round_robin queue has tags"

    result = migrate(conn, REPO)
    assert "0019_ready.sql" in result.applied

    assert conn.execute(READY).fetchall() == pending, "durable.ready holds the pending tasks, with their keys"
    keys = {r[0]: r for r in pending}
    assert keys[ids["b5"]][3] == -5 and keys[ids["a_neg"]][3] == 2
    assert keys[ids["sched"]][7] == T0 + timedelta(seconds=600), "deadline: the schedule's, at attempt 0"
    assert _one(conn, "select attempt from durable.tasks where task_id = %s", ids["retried"]) == 1
    assert _one(conn, "select schedule_deadline from durable.tasks where task_id = %s", ids["retried"])
    assert keys[ids["retried"]][7] is None, "no deadline once the task has started"
    assert keys[ids["debounced"]][5] == T0 + timedelta(seconds=12), "the debounced run time"
    assert _one(conn, "select count(*) from durable.ready_floors") == 0, "no floor yet: scans from the head"

    # claims at 30 s: by names first, then the rest one at a time, in the old order
    _clock(conn, 30)
    expected = _old_order(conn, "r")
    assert ids["late"] not in expected and ids["delayed"] not in expected
    assert ids["debounced"] in expected and ids["retried"] in expected
    assert expected[:4] == [ids["b5"], ids["c5"], ids["sched"], ids["past"]]
    by_names = _old_order(conn, "r", ["a", "c"])
    got = [t for t, _ in _claim(conn, "r", ["a", "c"], 3)]
    assert got == by_names[:3]
    rest = [t for t in expected if t not in got]
    one_by_one = []
    while claimed := _claim(conn, "r"):
        one_by_one += [t for t, _ in claimed]
    assert one_by_one == rest, "the claims start the due tasks in the old claim order"
    assert _one(conn, STATUS, ids["late"]) == "cancelled"
    assert _one(conn, "select count(*) from durable.ready where task_id = %s", ids["late"]) == 0

    # the delayed task, once due
    _clock(conn, 4000)
    assert [t for t, _ in _claim(conn, "r", ["b", "a"], 5)] == [ids["delayed"]]

    # the round_robin queue (its admission reads durable.tasks): by tag, and their rows go
    rr = _old_order(conn, "rr")
    assert [t for t, _ in _claim(conn, "rr", None, 3)] == rr[:3]
    assert _one(conn, "select count(*) from durable.ready where queue = 'rr'") == 3
    # leaving round_robin resets the tags of the rest: their rows move with them
    conn.execute(
        """select durable.create_queue('rr', '{"concurrency_strategy": null, "concurrency_limit": null}')"""
    )
    assert conn.execute(READY).fetchall() == conn.execute(EXPECTED).fetchall()
    assert {r[4] for r in conn.execute(READY).fetchall()} == {0}
    rest = _old_order(conn, "rr")
    assert sorted(rest) == sorted(rr[3:]) and rest != rr[3:], "(now in enqueue order)"
    assert [t for t, _ in _claim(conn, "rr", None, 5)] == rest

    # the tasks in flight go on: the running one completes, the sleeper wakes and is claimed
    done = _one(conn, "select durable.complete(%s, %s, '{}')", ids["running"], ids["running_token"])
    assert done is not None
    assert _one(conn, STATUS, ids["running"]) == "completed"
    [(task, token)] = _claim(conn, "r", ["nap"])
    assert task == ids["sleeping"]
    conn.execute("select durable.sleep(%s, %s, 1, 'nap', 60)", (task, token))  # its replay: slept
    conn.execute("select durable.complete(%s, %s, '{}')", (task, token))
    assert _one(conn, STATUS, ids["sleeping"]) == "completed"
    assert conn.execute(READY).fetchall() == [] == conn.execute(EXPECTED).fetchall()
    # and a task enqueued now is claimed
    new = _enqueue(conn, "r", "a")
    assert [t for t, _ in _claim(conn, "r")] == [new]


def test_a_task_made_pending_while_the_migration_runs_is_in_ready(
    old_db: tuple[str, psycopg.Connection[Any]],
) -> None:
    """A writer of the old code makes a task pending (a release) in a transaction still open
    when the migration starts: the migration waits for it, and its task is in durable.ready."""
    url, conn = old_db
    conn.execute("select durable.create_queue('r')")
    task = _enqueue(conn, "r", "job")
    [(_task, token)] = _claim(conn, "r")
    with psycopg.connect(url, autocommit=True) as writer:
        writer.execute("begin")
        writer.execute("select durable.release(%s, %s, 0)", (task, token))
        done: list[BaseException | None] = []

        def run() -> None:
            try:
                with psycopg.connect(url, autocommit=True) as m:
                    migrate(m, REPO)
                done.append(None)
            except BaseException as exc:  # handed to the test's thread
                done.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        # the migration waits for a lock the writer holds
        writer_pid = writer.info.backend_pid
        for _ in range(6000):
            blocked = conn.execute(
                "select count(*) from pg_stat_activity where %s = any(pg_blocking_pids(pid))", (writer_pid,)
            ).fetchone()
            if blocked and blocked[0]:
                break
            conn.execute("select pg_sleep(0.01)")
        else:
            pytest.fail("the migration never waited for the writer")
        writer.execute("commit")
        thread.join(60)
    assert done == [None]
    assert _one(conn, STATUS, task) == "pending"
    assert _one(conn, "select count(*) from durable.ready where task_id = %s", task) == 1, (
        "the task the writer made pending is in durable.ready"
    )
    assert [t for t, _ in _claim(conn, "r")] == [task]
