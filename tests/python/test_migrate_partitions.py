"""Migration 0018 (the history partitions, plpgsql/retention.sql) on a populated database.

The database is first brought to the schema of the commit before 0018 (its migrations and
its plpgsql/, from git), filled through that version's verbs with tasks in every status and
durable histories; then migrated to this tree. Every attempt and event is kept, in the
legacy partitions, and the verbs go on with the tasks that were in flight."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from migrate_support import REPO, database_before

from durable.migrate import migrate

MIGRATION = "migrations/0018_history_partitions.sql"


@pytest.fixture
def old_db(server_url: str, tmp_path: Path) -> Iterator[psycopg.Connection[Any]]:
    with (
        database_before(server_url, MIGRATION, tmp_path) as url,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        yield conn


# (after the migration: live and finished tasks)
STATUS = "select status from durable.all_tasks where task_id = %s"


def _one(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _claim(conn: psycopg.Connection[Any], name: str) -> tuple[Any, Any]:
    row = conn.execute(
        "select task_id, lease_token from durable.claim('m', 'w', 1, 3600, array[%s])", (name,)
    ).fetchone()
    assert row is not None, name
    return row[0], row[1]


def _enqueue(conn: psycopg.Connection[Any], name: str, options: str = '{"durable": true}') -> Any:
    return _one(conn, "select durable.enqueue('m', %s, '{}', %s::jsonb)", name, options)


def _populate(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    conn.execute('select durable.create_queue(\'m\', \'{"backoff": {"kind": "none"}}\')')
    ids = {"pending": _enqueue(conn, "pending", '{"delay": 3600}')}
    _enqueue(conn, "running")
    ids["running"], tok = _claim(conn, "running")
    conn.execute("select durable.checkpoint(%s, %s, 1, 'step', 'one', '{\"v\": 1}')", (ids["running"], tok))
    running_token = tok
    _enqueue(conn, "done")
    ids["done"], tok = _claim(conn, "done")
    conn.execute("select durable.checkpoint(%s, %s, 1, 'step', 'one', '{\"v\": 1}')", (ids["done"], tok))
    conn.execute("select durable.checkpoint(%s, %s, 2, 'step', 'two', '{\"v\": 2}')", (ids["done"], tok))
    conn.execute("select durable.complete(%s, %s, '{\"ok\": true}')", (ids["done"], tok))
    _enqueue(conn, "failed", '{"max_attempts": 2}')
    for _ in range(2):
        ids["failed"], tok = _claim(conn, "failed")
        conn.execute('select durable.fail(%s, %s, \'{"message": "no"}\')', (ids["failed"], tok))
    _enqueue(conn, "cancelled")
    ids["cancelled"], _tok = _claim(conn, "cancelled")
    conn.execute("select durable.cancel(%s)", (ids["cancelled"],))
    _enqueue(conn, "sleeping")
    ids["sleeping"], tok = _claim(conn, "sleeping")
    conn.execute("select durable.sleep(%s, %s, 1, 'nap', 3600)", (ids["sleeping"], tok))
    _enqueue(conn, "waiting")
    ids["waiting"], tok = _claim(conn, "waiting")
    conn.execute("select durable.wait_event(%s, %s, 1, 'key1')", (ids["waiting"], tok))
    _enqueue(conn, "parent")
    ids["parent"], tok = _claim(conn, "parent")
    spawned = _one(conn, "select durable.spawn(%s, %s, 1, 'm', 'child')", ids["parent"], tok)
    ids["child"] = spawned["result"]["task_id"]
    conn.execute(
        "select durable.wait_children(%s, %s, 2, array[%s::uuid])", (ids["parent"], tok, ids["child"])
    )
    ids["running_token"] = running_token
    return ids


SNAPSHOT = """
select jsonb_build_object(
    'tasks', (select jsonb_agg(jsonb_build_object('id', t.task_id, 'name', t.task_name, 'status', t.status,
                                                  'attempt', t.attempt, 'output', t.output, 'error', t.error,
                                                  'generation', t.generation, 'wait_key', t.wait_key)
                               order by t.task_id) from durable.{tasks} t),
    'attempts', (select jsonb_agg(to_jsonb(a) order by a.task_id, a.attempt) from durable.attempts a),
    'events', (select jsonb_agg(to_jsonb(e) order by e.task_id, e.generation, e.seq) from durable.events e),
    'event_values', (select coalesce(jsonb_agg(to_jsonb(v) order by v.queue, v.key), '[]')
                     from durable.event_values v),
    'child_waits', (select jsonb_agg(to_jsonb(c) order by c.child_id) from durable.child_waits c),
    'wait_counts', (select jsonb_agg(to_jsonb(w) order by w.parent_id) from durable.wait_counts w))
"""


def test_migration_keeps_every_row_and_the_verbs_go_on(old_db: psycopg.Connection[Any]) -> None:
    conn = old_db
    assert _one(conn, "select relkind from pg_class where oid = 'durable.events'::regclass") == "r"
    ids = _populate(conn)
    statuses = {r[0] for r in conn.execute("select status from durable.tasks").fetchall()}
    assert statuses == {"pending", "running", "completed", "failed", "cancelled", "sleeping", "waiting"}
    # (the tasks: all in durable.tasks before; live and finished ones, migration 0020, after)
    before = _one(conn, SNAPSHOT.format(tasks="tasks"))
    assert len(before["attempts"]) == 7 and len(before["events"]) == 5

    result = migrate(conn, REPO)
    assert "0018_history_partitions.sql" in result.applied

    assert _one(conn, SNAPSHOT.format(tasks="all_tasks")) == before, "every row is kept as it was"
    for table in ("attempts", "events"):
        assert _one(conn, f"select relkind from pg_class where oid = 'durable.{table}'::regclass") == "p"
        elsewhere = (
            f"select count(*) from durable.{table} where tableoid <> 'durable.{table}_legacy'::regclass"
        )
        assert _one(conn, elsewhere) == 0, f"every {table} row of today's schema is in the legacy partition"
    assert _one(conn, "select count(*) from durable.history(%s)", ids["done"]) == 2

    # the verbs go on with the tasks that were in flight
    done = _one(conn, "select durable.complete(%s, %s, '{}')", ids["running"], ids["running_token"])
    assert done is not None
    assert _one(conn, STATUS, ids["running"]) == "completed"
    assert (
        _one(conn, "select tableoid::regclass::text from durable.attempts where task_id = %s", ids["running"])
        == "durable.attempts_legacy"
    ), "a task created before the migration keeps its history in the legacy partition"
    conn.execute("select durable.emit_event('m', 'key1', '{\"p\": 1}')")
    assert _one(conn, STATUS, ids["waiting"]) == "pending"
    child, tok = _claim(conn, "child")
    assert str(child) == str(ids["child"])
    conn.execute("select durable.complete(%s, %s, '{}')", (child, tok))
    assert _one(conn, STATUS, ids["parent"]) == "pending"

    # a task created now: its history goes to today's partition, which the migration made
    new_id = _enqueue(conn, "new")
    _new, tok = _claim(conn, "new")
    conn.execute("select durable.checkpoint(%s, %s, 1, 'step', 'one', '{}')", (new_id, tok))
    conn.execute("select durable.complete(%s, %s, '{}')", (new_id, tok))
    where = _one(conn, "select tableoid::regclass::text from durable.events where task_id = %s", new_id)
    assert where.startswith("durable.events_p")

    # the queue's retention, from a claim: the finished tasks go; the history rows of the
    # legacy partition with them, those of a day partition wait for the day's DROP
    conn.execute("select set_config('durable.fake_now', (now() + interval '1 day')::text, false)")
    conn.execute("""select durable.create_queue('m', '{"retention": 0}')""")
    conn.execute("select * from durable.claim('m', 'w', 1, 60, array['nothing'])")
    finished = ("done", "failed", "cancelled", "running", "child")
    gone = _one(
        conn,
        "select count(*) from durable.all_tasks where task_id = any(%s::uuid[])",
        [str(ids[k]) for k in finished],
    )
    assert gone == 0 and _one(conn, "select count(*) from durable.all_tasks where task_id = %s", new_id) == 0
    orphans = """
        select count(*) from durable.{table} x
        where not exists (select 1 from durable.all_tasks t where t.task_id = x.task_id)
          and x.tableoid {where}
    """
    for table in ("attempts", "events"):
        legacy = orphans.format(table=table, where=f"= 'durable.{table}_legacy'::regclass")
        assert _one(conn, legacy) == 0, f"the {table} of purged tasks of the legacy partition are deleted"
    day = orphans.format(table="events", where="<> 'durable.events_legacy'::regclass")
    assert _one(conn, day) == 1, "the event of the new task waits for its day's DROP"
