"""Retention by partition drop against the row DELETE, and a 10,000-event replay.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/retention_bench.py [N] [--db NAME]

Two days of N finished tasks each (default 1,000,000; each with one attempt and two
events, as a durable task of two steps) are loaded into day partitions ahead (days +2 and
+3: plpgsql/retention.sql, "History partitions"), in two queues, then VACUUM ANALYZE:

1. ``row DELETE`` (the old way, what durable.purge still does): the first day's tasks with
   their attempts and events, deleted row by row (durable._purge_finished with history).
2. ``partition``: the second day's task rows deleted (what the queue's retention does from
   the claim, 1,000 a pass), then the maintenance drops the day's attempts and events
   partitions (durable._history_partitions, as if run the day after).

Then a durable task with 10,000 recorded events: the claim that hands them to the worker
(the replay path) and durable.history, each timed; target < 1 s. Runs on a database of its
own (``--db``, default durable_retention_<random>), created and dropped here.

One run (PostgreSQL 15, 2 shared cores, N = 1,000,000):
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from durable import migrate

LOAD = """
with ids as (
    select encode(substring(int8send(%(ms)s::bigint + i * (86399000 / %(n)s)::bigint) from 3)
                  || substring(uuid_send(gen_random_uuid()) from 7), 'hex')::uuid as task_id,
           to_timestamp((%(ms)s::bigint + i * (86399000 / %(n)s)::bigint) / 1000.0) as at
    from generate_series(0, %(n)s - 1) as i
)
insert into durable.tasks (task_id, queue, task_name, input, status, run_at, attempt, max_attempts,
                           max_lost_leases, backoff, created_at, started_at, finished_at, durable, output)
select task_id, %(queue)s, 'job', '{}', 'completed', at, 1, 5, 10, '{"kind": "none"}', at, at,
       at + interval '1 second', true, '{}'
from ids
"""

HISTORY = """
insert into durable.attempts (task_id, attempt, queue, worker, started_at, ended_at, outcome)
select task_id, 1, queue, 'w', started_at, finished_at, 'completed'
from durable.tasks where queue = %(queue)s;
insert into durable.events (task_id, generation, seq, kind, name, result, attempt, recorded_at)
select t.task_id, 1, s.seq, 'step', 'step ' || s.seq, '{"v": 1}', 1, t.started_at
from durable.tasks t cross join generate_series(1, 2) as s (seq) where t.queue = %(queue)s;
"""


def _timed(conn: psycopg.Connection[Any], query: str, params: Any = None) -> tuple[float, Any]:
    start = time.perf_counter()
    row = conn.execute(query, params).fetchone()
    return time.perf_counter() - start, row[0] if row else None


def _load_day(conn: psycopg.Connection[Any], queue: str, day_offset: int, n: int) -> None:
    ms = conn.execute(
        "select (extract(epoch from date_trunc('day', now() at time zone 'UTC') at time zone 'UTC'"
        " + make_interval(days => %s)) * 1000)::bigint",
        (day_offset,),
    ).fetchone()
    assert ms is not None
    conn.execute(f"select durable.create_queue('{queue}')".encode())
    conn.execute(LOAD, {"ms": ms[0], "n": n, "queue": queue})
    conn.execute(HISTORY.encode().replace(b"%(queue)s", f"'{queue}'".encode()))


def _sizes(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(
        "select pg_size_pretty(sum(pg_total_relation_size(i.inhrelid))) from pg_inherits i"
        " where i.inhparent in ('durable.attempts'::regclass, 'durable.events'::regclass)"
    ).fetchone()
    assert row is not None
    return str(row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description="retention: partition drop against row DELETE")
    parser.add_argument("n", nargs="?", type=int, default=1_000_000, help="finished tasks a day")
    parser.add_argument(
        "--db", default=f"durable_retention_{uuid.uuid4().hex[:8]}", help="database to create"
    )
    options = parser.parse_args()
    n, dbname = options.n, options.db
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'create database "{dbname}"'.encode())
    url = make_conninfo(server, dbname=dbname)
    try:
        migrate(url, test_clock=True)
        with psycopg.connect(url, autocommit=True) as conn:
            made, _ = _timed(conn, "select durable._history_partitions()")
            print(f"making the day partitions up to 7 days ahead: {made * 1000:.1f} ms")
            start = time.perf_counter()
            _load_day(conn, "rowwise", 2, n)
            _load_day(conn, "bydrop", 3, n)
            conn.execute("vacuum analyze")
            print(
                f"loaded 2 x {n:,} finished tasks (1 attempt, 2 events each)"
                f" in {time.perf_counter() - start:.0f} s;"
                f" history partitions {_sizes(conn)}"
            )

            # the replay of a 10,000-event history
            conn.execute("select durable.create_queue('replay')")
            task = conn.execute(
                "select durable.enqueue('replay', 'long', '{}', '{\"durable\": true}')"
            ).fetchone()
            assert task is not None
            conn.execute(
                "insert into durable.events"
                " (task_id, generation, seq, kind, name, result, attempt, recorded_at)"
                " select %s, 1, s, 'step', 'step ' || s, jsonb_build_object('v', s, 'pad', repeat('x', 100)),"
                " 1, now() from generate_series(1, 10000) s",
                (task[0],),
            )
            conn.execute("vacuum analyze durable.events")
            claim, history = _timed(conn, "select history from durable.claim('replay', 'w', 1, 60)")
            assert history is not None and len(history) == 10000
            read, count = _timed(conn, "select count(*) from durable.history(%s)", (task[0],))
            assert count == 10000
            print(
                f"10,000-event replay: the claim handing the history {claim * 1000:.0f} ms;"
                f" durable.history {read * 1000:.0f} ms (target < 1 s)"
            )

            cutoff = "now() + interval '30 days'"
            old, count = _timed(conn, f"select durable._purge_finished('rowwise', {cutoff}, %s, true)", (n,))
            assert count == n, count
            day2 = conn.execute("select to_char((now() at time zone 'UTC')::date + 2, 'YYYYMMDD')").fetchone()
            assert day2 is not None
            start = time.perf_counter()
            conn.execute(f"vacuum durable.attempts_p{day2[0]}, durable.events_p{day2[0]}".encode())
            vacuum = time.perf_counter() - start
            print(f"row DELETE of a day (tasks, attempts, events):           {old:8.2f} s")
            print(f"  then VACUUM of the day's attempts and events           {vacuum:8.2f} s")

            rows, count = _timed(conn, f"select durable._purge_finished('bydrop', {cutoff}, %s, false)", (n,))
            assert count == n, count
            conn.execute("update durable.settings set history_checked_at = null")
            days = conn.execute("select count(*) from durable.history_partitions").fetchone()
            drop, _ = _timed(conn, "select durable._history_partitions(now() + interval '4 days 2 hours')")
            after = conn.execute("select count(*) from durable.history_partitions").fetchone()
            assert days is not None and after is not None and after[0] < days[0]
            left = conn.execute("select count(*) from durable.events").fetchone()
            assert left is not None and left[0] == 10000, "only the replayed task's events are left"
            print(f"partition: DELETE of the task rows                       {rows:8.2f} s")
            print(f"partition: DROP of the day's attempts and events (maintenance) {drop * 1000:6.1f} ms")
            print(
                f"  ratio, row DELETE (+ VACUUM) / (task rows + drop): {old / (rows + drop):.1f}x"
                f" ({(old + vacuum) / (rows + drop):.1f}x); the history alone, rows (+ VACUUM) / drop:"
                f" {(old - rows) / drop:.0f}x ({(old - rows + vacuum) / drop:.0f}x)"
            )

    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (dbname,)
            )
            admin.execute(f'drop database if exists "{dbname}"'.encode())


if __name__ == "__main__":
    main()
