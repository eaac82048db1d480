"""Wake latency: enqueue → the task function starts, on an idle worker, three ways.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/wake_bench.py [N]

1. ``direct``: the worker and the client connect to PostgreSQL; LISTEN works.
2. ``pooled``: both go through a PgBouncer in transaction mode (prepared statements off);
   the worker's probe finds LISTEN deaf and it polls (``poll_interval`` 1 s, the default).
3. ``pooled+listen_url``: the same, with the worker's LISTEN on a direct connection.

Each enqueues N tasks one at a time, a random 0.2-0.5 s apart (so a poll's phase does not
line up), and reports the median and the 95th percentile of the latency. Needs Debian's
pgbouncer (tests/python/bouncer_support.py starts one of its own). Runs on a database of
its own, created and dropped here.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "python"))
from bouncer_support import start_pgbouncer, through  # type: ignore[import-not-found]

from durable import Client, Worker, migrate


def measure(worker_dsn: str, client_dsn: str, listen_url: str | None, pooled: bool, n: int) -> list[float]:
    started: dict[str, float] = {}
    queue = f"wake_{uuid.uuid4().hex[:8]}"
    worker = Worker(
        worker_dsn,
        queue,
        concurrency=4,
        listen_url=listen_url,
        prepared_statements=not pooled,
        poll_interval=1.0,
    )

    @worker.task
    def mark(input: dict[str, Any]) -> None:
        started[input["id"]] = time.monotonic()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(worker.run_async(),), daemon=True)
    latencies: list[float] = []
    with Client(client_dsn, prepared_statements=not pooled) as client:
        client.create_queue(queue)
        thread.start()
        time.sleep(7)  # registered, and the LISTEN probe has decided
        for i in range(n):
            time.sleep(random.uniform(0.2, 0.5))
            key = str(i)
            sent = time.monotonic()
            client.enqueue(queue, "mark", {"id": key})
            while key not in started:
                time.sleep(0.001)
            latencies.append(started[key] - sent)
    worker.stop()
    thread.join(timeout=60)
    return latencies


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    dbname = f"durable_wake_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'create database "{dbname}"'.encode())
    url = make_conninfo(server, dbname=dbname)
    try:
        migrate(url)
        user = str(conninfo_to_dict(server).get("user") or "postgres")
        with start_pgbouncer(server, [user], pool_size=4) as port:
            pooled = through(url, port)
            runs = {
                "direct": measure(url, url, None, False, n),
                "pooled (polls)": measure(pooled, pooled, None, True, n),
                "pooled + listen_url": measure(pooled, pooled, url, True, n),
            }
        print(f"wake latency, enqueue -> task starts, {n} tasks each (ms)")
        for name, values in runs.items():
            ordered = sorted(values)
            p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
            print(f"  {name:22s} median {statistics.median(values) * 1000:8.1f}   p95 {p95 * 1000:8.1f}")
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (dbname,)
            )
            admin.execute(f'drop database if exists "{dbname}"'.encode())


if __name__ == "__main__":
    main()
