"""Retention by partition drop against the row DELETE, and a 10,000-event replay.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/retention_bench.py [N] [--db NAME]

(without DATABASE_URL or --url: an embedded PostgreSQL; the bench needs a superuser)

Two days of N finished tasks each (default 1,000,000; in the archive, durable.finished_tasks,
each with one attempt and two events, as a durable task of two steps) are loaded into day
partitions ahead (days +2 and +3: plpgsql/retention.sql, "History partitions"), in two
queues, then VACUUM ANALYZE:

1. ``row DELETE`` (the old way, what durable.purge still does): the first day's archived
   tasks with their attempts and events, deleted row by row (durable._purge_finished with
   history), then VACUUM of the day's partitions.
2. ``partition``: the second day, of a queue with a retention, once the retention has passed
   (the test clock a month on): no DELETE at all; the maintenance drops the day's archived
   tasks, attempts and events partitions in one DROP (durable._history_partitions, as if run
   the day after).

Then a durable task with 10,000 recorded events: the claim that hands them to the worker
(the replay path) and durable.history, each timed; target < 1 s. Runs on a database of its
own (``--db``, default durable_retention_<random>), created and dropped here.

Then the worker's path (claim, checkpoint, complete of a durable task) with the partitions
of a fresh week and with 100 more; and why durable.tasks is not partitioned too: the
claim's pick on one table against 30 day partitions.

One run (PostgreSQL 15, 2 cores shared with another engineer's jobs, N = 1,000,000):

    loaded 2 x 1,000,000 finished tasks (1 attempt, 2 events each) in 34 s; history
      partitions 1747 MB
    10,000-event replay: the claim handing the history 161 ms; durable.history 5 ms (target < 1 s)
    the maintenance a week later, 7 days made and 4 empty ones dropped: 155.6 ms
    removing a day of 1,000,000 finished tasks       row DELETE (old)    partition DROP (new)
      DELETE (tasks, attempts, events)               25.54 s          -
      VACUUM of the day's archived tasks              1.08 s          -
      VACUUM of the day's attempts and events         1.73 s          -
      DROP of the day's partitions (maintenance)         -        0.720 s
      in all: 28.3 s against 0.72 s (39x)
    claim + checkpoint + complete of a durable task: 1.62 ms with 11 partitions of events,
      2.41 ms with 111 (1.49x)
    the claim's pick, tasks on one table 0.542 ms, on 30 day partitions 1.490 ms (2.8x):
      durable.tasks stays one table

Another run of the final code: 22.80 s of DELETE, 1.47 s and 1.57 s of VACUUM (25.8 s)
against a 0.385 s DROP (67x); the replay 87 ms. The DROP's 0.72 s (0.39 s) is the
maintenance pass: the emptied first day's partitions, the second day's and the empty day
between. The worker's path grows with the partitions of events
(complete's history check reads events with a generic plan, which locks them all: main's
too, bench/archive_bench.py's base+30); the archive adds nothing to it there.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from durable import migrate
from queue_bench import server

LOAD = """
with ids as (
    select encode(substring(int8send(%(ms)s::bigint + i * (86399000 / %(n)s)::bigint) from 3)
                  || substring(uuid_send(gen_random_uuid()) from 7), 'hex')::uuid as task_id,
           to_timestamp((%(ms)s::bigint + i * (86399000 / %(n)s)::bigint) / 1000.0) as at
    from generate_series(0, %(n)s - 1) as i
)
insert into durable.finished_tasks (
    task_id, seq, queue, task_name, input, status, run_at, attempt, max_attempts,
    max_lost_leases, backoff, created_at, started_at, finished_at, durable, output
)
select task_id, 0, %(queue)s, 'job', '{}', 'completed', at, 1, 5, 10, '{"kind": "none"}', at, at,
       at + interval '1 second', true, '{}'
from ids
"""

HISTORY = """
insert into durable.attempts (task_id, attempt, queue, worker, started_at, ended_at, outcome)
select task_id, 1, queue, 'w', started_at, finished_at, 'completed'
from durable.finished_tasks where queue = %(queue)s;
insert into durable.events (task_id, generation, seq, kind, name, result, attempt, recorded_at)
select t.task_id, 1, s.seq, 'step', 'step ' || s.seq, '{"v": 1}', 1, t.started_at
from durable.finished_tasks t cross join generate_series(1, 2) as s (seq) where t.queue = %(queue)s;
"""


def _timed(conn: psycopg.Connection[Any], query: str, params: Any = None) -> tuple[float, Any]:
    start = time.perf_counter()
    row = conn.execute(query, params).fetchone()
    return time.perf_counter() - start, row[0] if row else None


def _load_day(
    conn: psycopg.Connection[Any], queue: str, day_offset: int, n: int, options: str = "{}"
) -> None:
    ms = conn.execute(
        "select (extract(epoch from date_trunc('day', now() at time zone 'UTC') at time zone 'UTC'"
        " + make_interval(days => %s)) * 1000)::bigint",
        (day_offset,),
    ).fetchone()
    assert ms is not None
    conn.execute(f"select durable.create_queue('{queue}', '{options}')".encode())
    conn.execute(LOAD, {"ms": ms[0], "n": n, "queue": queue})
    conn.execute(HISTORY.encode().replace(b"%(queue)s", f"'{queue}'".encode()))


def _sizes(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(
        "select pg_size_pretty(sum(pg_total_relation_size(i.inhrelid))) from pg_inherits i"
        " where i.inhparent in ('durable.attempts'::regclass, 'durable.events'::regclass,"
        " 'durable.finished_tasks'::regclass)"
    ).fetchone()
    assert row is not None
    return str(row[0])


def _vacuum(conn: psycopg.Connection[Any], tables: str) -> float:
    start = time.perf_counter()
    conn.execute(f"vacuum {tables}".encode())
    return time.perf_counter() - start


def _partitions(conn: psycopg.Connection[Any]) -> int:
    """How many partitions durable.events has (archive_bench.py counts them too)."""
    row = conn.execute(
        "select count(*) from pg_inherits where inhparent = 'durable.events'::regclass"
    ).fetchone()
    assert row is not None
    return int(row[0])


# 100 more (empty) day partitions of both tables, in the year 2100
MORE_PARTITIONS = """
do $$
begin
    for i in 0..99 loop
        execute format('create table durable.attempts_x%s partition of durable.attempts'
                       ' for values from (%L) to (%L)',
                       i, durable._uuid_floor(timestamptz '2100-01-01' + make_interval(days => i)),
                       durable._uuid_floor(timestamptz '2100-01-01' + make_interval(days => i + 1)));
        execute format('create table durable.events_x%s partition of durable.events'
                       ' for values from (%L) to (%L)',
                       i, durable._uuid_floor(timestamptz '2100-01-01' + make_interval(days => i)),
                       durable._uuid_floor(timestamptz '2100-01-01' + make_interval(days => i + 1)));
        execute format('create table durable.finished_tasks_x%s partition of durable.finished_tasks'
                       ' for values from (%L) to (%L)',
                       i, durable._uuid_floor(timestamptz '2100-01-01' + make_interval(days => i)),
                       durable._uuid_floor(timestamptz '2100-01-01' + make_interval(days => i + 1)));
    end loop;
end;
$$
"""


def _cycles(conn: psycopg.Connection[Any], queue: str, k: int) -> float:
    """Seconds per claim, checkpoint and complete of one durable task (the median of k)."""
    conn.execute("select durable.create_queue(%s)", (queue,))
    conn.execute(
        "select durable.enqueue(%s, 'job', '{}', '{\"durable\": true}') from generate_series(1, %s)",
        (queue, k),
    )
    times: list[float] = []
    for _ in range(k):
        start = time.perf_counter()
        row = conn.execute(
            "select task_id, lease_token from durable.claim(%s, 'w', 1, 60)", (queue,)
        ).fetchone()
        assert row is not None
        conn.execute("select durable.checkpoint(%s, %s, 1, 'step', 'one', '{}')", row)
        conn.execute("select durable.complete(%s, %s, '{}')", row)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# Why durable.tasks is not partitioned the same way: the claim's pick on a copy of its
# claim index, on one table and on 30 day partitions (300,000 tasks, 10% pending).
PICK_TABLES = """
create table pick_plain (task_id uuid primary key, seq bigint, queue text, status text, priority int,
                         fair_tag bigint, run_at timestamptz, pad text) with (fillfactor = 80);
create table pick_parted (like pick_plain including defaults, primary key (task_id))
partition by range (task_id);
do $$
begin
    for i in 0..29 loop
        execute format('create table pick_parted_%s partition of pick_parted for values from (%L) to (%L)', i,
                       durable._uuid_floor(now() - make_interval(days => 30 - i)),
                       durable._uuid_floor(now() - make_interval(days => 29 - i)));
    end loop;
end;
$$;
insert into pick_plain
select durable._uuid_floor(now() - interval '30 days' + make_interval(secs => i * 8.6)), i, 'q' || (i % 3),
       case when i % 10 = 0 then 'pending' else 'completed' end, 0, 0, now() - interval '1 hour',
       repeat('x', 200)
from generate_series(0, 299999) as i;
insert into pick_parted select * from pick_plain;
create index on pick_plain (queue, priority desc, fair_tag, run_at, seq) where status = 'pending';
create index on pick_parted (queue, priority desc, fair_tag, run_at, seq) where status = 'pending';
"""

PICK = (
    "select task_id from {} where queue = 'q1' and status = 'pending' and run_at <= now()"
    " order by priority desc, fair_tag, run_at, seq limit 1 for update skip locked"
)


def _pick(conn: psycopg.Connection[Any], table: str, k: int) -> float:
    """Seconds per pick (one transaction each, rolled back), the median of k."""
    times: list[float] = []
    for _ in range(k):
        start = time.perf_counter()
        with conn.transaction(force_rollback=True):
            conn.execute(PICK.format(table).encode(), prepare=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description="retention: partition drop against row DELETE")
    parser.add_argument("n", nargs="?", type=int, default=1_000_000, help="finished tasks a day")
    parser.add_argument(
        "--db", default=f"durable_retention_{uuid.uuid4().hex[:8]}", help="database to create"
    )
    parser.add_argument(
        "--url", help="server (default $DURABLE_DATABASE_URL or $DATABASE_URL, else an embedded one)"
    )
    options = parser.parse_args()
    with server(options.url) as server_url:
        run(server_url, options.n, options.db)


def run(server: str, n: int, dbname: str) -> None:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'create database "{dbname}"'.encode())
    url = make_conninfo(server, dbname=dbname)
    try:
        migrate(url, test_clock=True)
        with psycopg.connect(url, autocommit=True) as conn:
            start = time.perf_counter()
            _load_day(conn, "rowwise", 2, n)
            _load_day(conn, "bydrop", 3, n, '{"retention": 60}')
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

            # the maintenance's DDL, as the week after: 7 days made ahead, and the empty
            # days before dropped (today and the loaded days have tasks: they stay)
            made, _ = _timed(
                conn,
                "select durable._history_ddl(now() + interval '7 days',"
                " (select made_until from durable.history_state))",
            )
            print(f"the maintenance a week later, 7 days made and 4 empty ones dropped: {made * 1000:.1f} ms")

            cutoff = "now() + interval '30 days'"
            day2 = conn.execute("select to_char((now() at time zone 'UTC')::date + 2, 'YYYYMMDD')").fetchone()
            assert day2 is not None
            old, count = _timed(conn, f"select durable._purge_finished('rowwise', {cutoff}, %s, true)", (n,))
            assert count == n, count
            old_vacuum_tasks = _vacuum(conn, f"durable.finished_tasks_p{day2[0]}")
            old_vacuum_history = _vacuum(conn, f"durable.attempts_p{day2[0]}, durable.events_p{day2[0]}")

            # the second day: no DELETE at all; the maintenance, once the queue's retention has
            # passed (the clock a month on), drops the day's archived tasks, attempts and events
            conn.execute(f"select set_config('durable.fake_now', ({cutoff})::text, false)".encode())
            conn.execute("update durable.history_state set checked_at = null")
            days = conn.execute("select count(*) from durable.history_partitions").fetchone()
            drop, _ = _timed(conn, "select durable._history_partitions(now() + interval '4 days 2 hours')")
            after = conn.execute("select count(*) from durable.history_partitions").fetchone()
            assert days is not None and after is not None and after[0] < days[0]
            left = conn.execute("select count(*) from durable.events").fetchone()
            assert left is not None and left[0] == 10000, "only the replayed task's events are left"
            left = conn.execute("select count(*) from durable.finished_tasks").fetchone()
            assert left is not None and left[0] == 0, "the archived tasks went with their day"
            conn.execute("select set_config('durable.fake_now', '', false)")
            print(f"removing a day of {n:,} finished tasks       row DELETE (old)    partition DROP (new)")
            print(f"  DELETE (tasks, attempts, events)            {old:8.2f} s          -")
            print(f"  VACUUM of the day's archived tasks          {old_vacuum_tasks:8.2f} s          -")
            print(f"  VACUUM of the day's attempts and events     {old_vacuum_history:8.2f} s          -")
            print(f"  DROP of the day's partitions (maintenance)         -     {drop:8.3f} s")
            total_old = old + old_vacuum_tasks + old_vacuum_history
            print(f"  in all: {total_old:.1f} s against {drop:.2f} s ({total_old / drop:.0f}x)")

            # the worker's path (claim, checkpoint, complete of a durable task) with few and
            # with 100 more partitions (a deployment that keeps its tasks for months)
            few = _partitions(conn)
            per_few = _cycles(conn, "few", 300)
            conn.execute(MORE_PARTITIONS)
            many = _partitions(conn)
            per_many = _cycles(conn, "many", 300)
            print(
                f"claim + checkpoint + complete of a durable task: {per_few * 1000:.2f} ms with {few}"
                f" partitions of events, {per_many * 1000:.2f} ms with {many} ({per_many / per_few:.2f}x)"
            )

            conn.execute(PICK_TABLES.encode())
            conn.execute("vacuum analyze pick_plain, pick_parted")
            conn.execute("set plan_cache_mode = force_generic_plan")
            plain, parted = _pick(conn, "pick_plain", 2000), _pick(conn, "pick_parted", 2000)
            print(
                f"the claim's pick, tasks on one table {plain * 1000:.3f} ms, on 30 day partitions"
                f" {parted * 1000:.3f} ms ({parted / plain:.1f}x): durable.tasks stays one table"
            )
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (dbname,)
            )
            admin.execute(f'drop database if exists "{dbname}"'.encode())


if __name__ == "__main__":
    main()
