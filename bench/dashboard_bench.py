#!/usr/bin/env python3
"""Dashboard benchmark (not a test): page load times of ``durable dashboard`` on 1,000,000 tasks.

It fills a scratch database of its own with --tasks tasks (INSERT ... SELECT from
generate_series as the superuser, no verb): 20 queues of uneven sizes (a few with a
concurrency_limit), 30 days of history with a busy last hour (a tenth of the tasks), a
realistic mix of statuses (mostly completed, 2% failed, 1% cancelled, a few thousand
pending, running, sleeping and waiting), one task in 20 durable with a log of 5 events.
Then VACUUM ANALYZE, and the dashboard (as the superuser) is served by uvicorn in a thread
and each page is fetched --requests times over HTTP: the queues page, the tasks page (first
page, filtered by status, by queue, by queue and status, a page deep into a queue), a task
page (a durable task with its log), the workers page and /metrics. The times are printed
(min, median, max), with durable.queue_metrics() and durable.list_queues() timed in SQL
alongside; the scratch database is dropped at the end.

The server is --url, $DURABLE_DATABASE_URL or $DATABASE_URL, else an embedded PostgreSQL
(helpers of bench/queue_bench.py).

    python bench/dashboard_bench.py                   # 1,000,000 tasks, 5 requests a page
    python bench/dashboard_bench.py --tasks 100000 --requests 3

Measured (PostgreSQL 15.20 on a shared machine, 1,000,000 tasks: 20 queues, 23,000 ended
in the 15-minute window; fill 24.5 s, VACUUM ANALYZE 0.8 s; 5 requests a page after 3
warm-up ones, in ms):

    page                                         min    median    max
    queues (/)                                  38.6      46.5   66.4
    tasks, first page                            4.5       6.7    8.3
    tasks, status=failed                         5.3       7.4   10.0
    tasks, status=pending                        4.4       5.3    7.4
    tasks, queue=q07                             4.0       4.6    9.4
    tasks, queue=q07 status=completed            3.2       5.1    9.6
    tasks, queue=q03, a page deep (before=)      4.9       5.7    7.8
    tasks, task_name=job3                        4.0       4.9    5.4
    a task (durable, 5 events)                   2.2       3.7    5.5
    workers                                      1.9       2.0    5.5
    /metrics                                    36.5      46.0   63.6
    SQL: durable.queue_metrics()                31.3      31.8   44.9
    SQL: durable.list_queues()                 156.4     225.3  260.9

The queues page and /metrics are durable.queue_metrics() (about 30 ms) plus rendering; most
of that is the window's count, which reads the heap row of each task that ended in the
window for its status (EXPLAIN: 5,065 rows of the biggest queue by tasks_finished_idx in
3.7 ms); the unfinished counts are index-only scans (0.2 ms a queue). list_queues, which
counts every finished task, is 5 to 7 times slower. Every other page is a few milliseconds.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import uvicorn

from durable.dashboard.app import create_app
from queue_bench import bench_database, log

QUEUES = 20

# (queue i gets a share of tasks proportional to 1 / (i + 1): q00 the biggest; run twice:
# the live tasks into durable.tasks, the finished ones into the archive, durable.finished_tasks)
FILL = """
insert into durable.{table} (
    {seq_column}task_id, queue, task_name, input, status, priority, run_at, attempt, failures, max_attempts,
    max_lost_leases, backoff, idempotency_key, worker, lease_token, lease_seconds, lease_expires_at,
    started_at, output, error, created_at, finished_at, durable, wake_at, wait_kind, wait_key
)
select
    {seq_value}-- a uuidv7 of created_at: time ordered, as the verbs make them
    encode(substring(int8send((extract(epoch from s.created_at) * 1000)::bigint) from 3)
           || substring(uuid_send(gen_random_uuid()) from 7), 'hex')::uuid,
    s.queue, s.task_name, jsonb_build_object('n', s.n), s.status, 0, s.created_at,
    case when s.status = 'pending' then 0 else 1 end,
    case when s.status = 'failed' then 1 else 0 end,
    5, 5, '{"kind": "exponential", "base": 1, "max": 300}'::jsonb,
    case when s.n % 10 = 0 then 'key-' || s.n end,
    case when s.status = 'running' then 'bench-worker' end,
    case when s.status = 'running' then gen_random_uuid() end,
    case when s.status = 'running' then 30 end,
    case when s.status = 'running' then now() + interval '30 seconds' end,
    case when s.status <> 'pending' then s.created_at + interval '1 second' end,
    case when s.status = 'completed' then jsonb_build_object('ok', s.n) end,
    case when s.status = 'failed' then jsonb_build_object('type', 'ValueError', 'message', 'bad ' || s.n) end,
    s.created_at,
    case when s.status in ('completed', 'failed', 'cancelled')
         then s.created_at + make_interval(secs => 1 + (s.n % 50)) end,
    s.n % 20 = 0,
    case when s.status = 'sleeping' then now() + interval '1 hour' end,
    case when s.status = 'waiting' then 'event' end,
    case when s.status = 'waiting' then 'approve-' || (s.n % 100) end
from (
    select g.n,
           'q' || lpad((floor((%(queues)s) * power(random(), 2)))::int::text, 2, '0') as queue,
           'job' || (g.n % 7) as task_name,
           -- the newest tenth in the last hour, the rest over 30 days before it
           case when g.n > %(tasks)s * 0.9
                then now() - make_interval(secs => 3600.0 * (%(tasks)s - g.n) / (%(tasks)s * 0.1))
                else now() - interval '1 hour' - make_interval(secs => 30 * 86400.0 * (%(tasks)s * 0.9 - g.n)
                                                                  / (%(tasks)s * 0.9))
           end as created_at,
           case
               -- unfinished tasks are recent: the last hour only
               when g.n > %(tasks)s * 0.9 and g.n % 100 < 3 then 'pending'
               when g.n > %(tasks)s * 0.9 and g.n % 100 = 3 then 'running'
               when g.n > %(tasks)s * 0.9 and g.n % 200 = 4 then 'sleeping'
               when g.n > %(tasks)s * 0.9 and g.n % 100 = 5 then 'waiting'
               when g.n % 100 in (6, 7) then 'failed'
               when g.n % 100 = 98 then 'cancelled'
               else 'completed'
           end as status
    from generate_series(1, %(tasks)s) as g (n)
) as s
where (s.status in ('completed', 'failed', 'cancelled')) = {finished}
"""

EVENTS = """
insert into durable.events (task_id, generation, seq, kind, name, outcome, result, attempt, recorded_at)
select t.task_id, 1, e.seq, 'step', 'step-' || e.seq, 'ok', jsonb_build_object('step', e.seq), 1,
       t.created_at + make_interval(secs => e.seq)
from durable.all_tasks t
cross join generate_series(1, 5) as e (seq)
where t.durable and t.status <> 'pending'
"""


def fill(url: str, tasks: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(QUEUES):
            options = '{"concurrency_limit": 50}' if i % 5 == 0 else "{}"
            conn.execute("select durable.create_queue(%s, %s::jsonb)", (f"q{i:02d}", options))
        started = time.perf_counter()
        # (integers of this script: formatted in, and no parameters, so "%" stays modulo)
        fill_sql = FILL.replace("%(queues)s", str(QUEUES)).replace("%(tasks)s", str(int(tasks)))
        for table, seq_column, seq_value, finished in [
            ("tasks", "", "", "false"),
            ("finished_tasks", "seq, ", "s.n, ", "true"),
        ]:
            one = fill_sql.replace("{table}", table).replace("{seq_column}", seq_column)
            conn.execute(one.replace("{seq_value}", seq_value).replace("{finished}", finished).encode())
        conn.execute(EVENTS)
        log(f"filled {tasks:,} tasks (and their events) in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        conn.execute("vacuum analyze durable.tasks")
        conn.execute("vacuum analyze durable.finished_tasks")
        conn.execute("vacuum analyze durable.events")
        log(f"vacuum analyze: {time.perf_counter() - started:.1f} s")


@contextmanager
def serving(url: str) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(url), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fetch(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}")
    return time.perf_counter() - started


def sql_time(url: str, statement: str, requests: int) -> list[float]:
    times = []
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(requests):
            started = time.perf_counter()
            conn.execute(statement).fetchall()
            times.append(time.perf_counter() - started)
    return times


def line(label: str, times: list[float]) -> str:
    ms = [t * 1000 for t in times]
    return f"{label:<42} {min(ms):9.1f} {statistics.median(ms):9.1f} {max(ms):9.1f}"


def run(args: argparse.Namespace) -> int:
    with bench_database(args.url) as (url, described):
        fill(url, args.tasks)
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "select task_id from durable.all_tasks where durable and status = 'completed'"
                " order by task_id desc limit 1"
            ).fetchone()
            middle = conn.execute(
                "select task_id from durable.all_tasks where queue = 'q03'"
                " order by task_id limit 1 offset 5000"
            ).fetchone()
            assert row is not None and middle is not None
        task, deep = row[0], middle[0]
        pages = [
            ("queues (/)", "/"),
            ("tasks, first page", "/tasks"),
            ("tasks, status=failed", "/tasks?status=failed"),
            ("tasks, status=pending", "/tasks?status=pending"),
            ("tasks, queue=q07", "/tasks?queue=q07"),
            ("tasks, queue=q07 status=completed", "/tasks?queue=q07&status=completed"),
            ("tasks, queue=q03, a page deep (before=)", f"/tasks?queue=q03&before={deep}"),
            ("tasks, task_name=job3", "/tasks?task_name=job3"),
            ("a task (durable, 5 events)", f"/tasks/{task}"),
            ("workers", "/workers"),
            ("/metrics", "/metrics"),
        ]
        print(f"\n{described}; {args.tasks:,} tasks; {args.requests} requests a page (ms)")
        print(f"{'page':<42} {'min':>9} {'median':>9} {'max':>9}")
        with serving(url) as base:
            for label, path in pages:
                for _ in range(3):  # warm-up: the pool's connections, their plans, the templates
                    fetch(base + path)
                print(line(label, [fetch(base + path) for _ in range(args.requests)]), flush=True)
        for verb in ("durable.queue_metrics()", "durable.list_queues()"):
            print(line(f"SQL: {verb}", sql_time(url, f"select * from {verb}", args.requests)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", help="the server (default: $DATABASE_URL, else an embedded PostgreSQL)")
    parser.add_argument("--tasks", type=int, default=1_000_000, help="tasks to fill (default 1000000)")
    parser.add_argument("--requests", type=int, default=5, help="timed requests a page (default 5)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
