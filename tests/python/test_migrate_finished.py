"""Migration 0020 (durable.finished_tasks, the archive of finished tasks) on a populated database.

The database is first brought to the schema of the commit before 0020 (its migrations and
its plpgsql/, from git), filled through that version's verbs with completed, failed and
cancelled tasks (a durable parent with its children, one holding an idempotency key) and
with pending, running and sleeping ones; then migrated to this tree. Every finished task is
then in the archive, whole and in its day's partition, every live one still in
durable.tasks; the verbs read both, and the tasks in flight go on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from migrate_support import REPO, database_before

from durable.migrate import migrate

MIGRATION = "migrations/0020_finished_tasks.sql"
T0 = datetime.fromisoformat("2030-01-01T00:00:00+00:00")


@pytest.fixture
def old_db(server_url: str, tmp_path: Path) -> Iterator[psycopg.Connection[Any]]:
    with (
        database_before(server_url, MIGRATION, tmp_path) as url,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        yield conn


def _one(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _claim(conn: psycopg.Connection[Any], queue: str, name: str) -> tuple[Any, Any]:
    row = conn.execute(
        "select task_id, lease_token from durable.claim(%s, 'w', 1, 86400, array[%s])", (queue, name)
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def _populate(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    ids: dict[str, Any] = {}
    conn.execute(
        "select set_config('durable.fake_now', %s, false)", ((T0 + timedelta(seconds=1)).isoformat(),)
    )
    conn.execute("select durable.create_queue('m', '{\"max_attempts\": 1}')")
    enqueue = "select durable.enqueue('m', %s, '{\"n\": 1}', %s::jsonb)"
    ids["done"] = _one(conn, enqueue, "done", '{"idempotency_key": "once"}')
    task, token = _claim(conn, "m", "done")
    conn.execute("select durable.complete(%s, %s, '{\"out\": 1}')", (task, token))
    ids["failed"] = _one(conn, enqueue, "failed", "{}")
    task, token = _claim(conn, "m", "failed")
    conn.execute('select durable.fail(%s, %s, \'{"type": "E"}\')', (task, token))
    ids["cancelled"] = _one(conn, enqueue, "cancelled", '{"delay": 100}')
    conn.execute("select durable.cancel(%s)", (ids["cancelled"],))
    # a durable parent: one step, a completed child and a pending one; it waits for them
    ids["parent"] = _one(conn, enqueue, "parent", '{"durable": true}')
    task, ids["parent_token"] = _claim(conn, "m", "parent")
    conn.execute(
        "select durable.checkpoint(%s, %s, 1, 'step', 's', '{\"v\": 1}')", (task, ids["parent_token"])
    )
    spawn = "select (durable.spawn(%s, %s, %s, 'm', %s, '{}', '{}') -> 'result' ->> 'task_id')::uuid"
    ids["kid1"] = _one(conn, spawn, task, ids["parent_token"], 2, "kid1")
    ids["kid2"] = _one(conn, spawn, task, ids["parent_token"], 3, "kid2")
    kid, kid_token = _claim(conn, "m", "kid1")
    conn.execute("select durable.complete(%s, %s, '{\"kid\": 1}')", (kid, kid_token))
    conn.execute(
        "select durable.wait_children(%s, %s, 4, array[%s, %s]::uuid[])",
        (task, ids["parent_token"], ids["kid1"], ids["kid2"]),
    )
    ids["running"] = _one(conn, enqueue, "running", "{}")
    ids["running"], ids["running_token"] = _claim(conn, "m", "running")
    return ids


def test_migration_moves_finished_tasks_and_keeps_everything(old_db: psycopg.Connection[Any]) -> None:
    conn = old_db
    assert _one(conn, "select to_regclass('durable.finished_tasks')") is None
    ids = _populate(conn)
    before = {r[0]: r for r in conn.execute("select t.task_id, to_jsonb(t) from durable.tasks t").fetchall()}
    statuses = {r[1]["status"] for r in before.values()}
    assert statuses == {"completed", "failed", "cancelled", "waiting", "pending", "running"}
    history = conn.execute("select count(*), count(distinct task_id) from durable.events").fetchone()
    attempts = _one(conn, "select count(*) from durable.attempts")

    result = migrate(conn, REPO)
    assert "0020_finished_tasks.sql" in result.applied

    archived = {
        r[0]: r[1] for r in conn.execute("select f.task_id, to_jsonb(f) from durable.finished_tasks f")
    }
    live = {r[0]: r[1] for r in conn.execute("select t.task_id, to_jsonb(t) from durable.tasks t")}
    assert set(archived) == {ids["done"], ids["failed"], ids["cancelled"], ids["kid1"]}
    assert set(live) == {ids["parent"], ids["kid2"], ids["running"]}
    for task_id, row in {**archived, **live}.items():
        assert row == before[task_id][1], "every row is kept whole"
    today = _one(
        conn,
        "select 'durable.finished_tasks_p'"
        " || to_char((clock_timestamp() at time zone 'UTC')::date, 'YYYYMMDD')",
    )
    partitions = {
        r[0] for r in conn.execute("select distinct tableoid::regclass::text from durable.finished_tasks")
    }
    assert partitions == {today}, "in the partition of their day"
    assert conn.execute("select count(*), count(distinct task_id) from durable.events").fetchone() == history
    assert _one(conn, "select count(*) from durable.attempts") == attempts

    # the verbs read the archive
    assert _one(conn, "select durable.get_task(%s) ->> 'status'", ids["done"]) == "completed"
    assert _one(conn, "select durable.get_task(%s) -> 'output'", ids["done"]) == {"out": 1}
    assert (
        _one(conn, "select durable.enqueue('m', 'done', '{}', '{\"idempotency_key\": \"once\"}')")
        == ids["done"]
    )
    stats = dict(conn.execute("select status, tasks from durable.queue_stats('m')").fetchall())
    assert stats == {"completed": 2, "failed": 1, "cancelled": 1, "waiting": 1, "pending": 1, "running": 1}
    # the tasks in flight go on: the last child ends, its parent wakes with both outcomes
    kid, kid_token = _claim(conn, "m", "kid2")
    conn.execute("select durable.complete(%s, %s, '{\"kid\": 2}')", (kid, kid_token))
    assert _one(conn, "select status from durable.tasks where task_id = %s", ids["parent"]) == "pending"
    outcome = _one(conn, "select result from durable.events where task_id = %s and seq = 4", ids["parent"])
    assert [o["output"] for o in outcome] == [{"kid": 1}, {"kid": 2}]
    conn.execute("select durable.complete(%s, %s)", (ids["running"], ids["running_token"]))
    assert (
        _one(conn, "select status from durable.finished_tasks where task_id = %s", ids["running"])
        == "completed"
    )
    conn.execute("select durable.retry(%s)", (ids["failed"],))
    assert _one(conn, "select status from durable.tasks where task_id = %s", ids["failed"]) == "pending"
