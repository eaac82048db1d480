"""durable.cron_next and the claim's schedule piece: how long they take.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/cron_bench.py [N]

1. ``cron_next``: N calls per expression (in one statement, over N instants a few
   minutes apart), for a handful of expressions and zones; µs per call.
2. ``idle claim``: the claim of an empty queue, without and with 1,000 schedules on the
   queue none of which is due (the piece is one probe of schedules_due_idx); ms per claim.
3. ``tick``: the claim that enqueues one due tick; ms per claim.

Runs on a database of its own, created and dropped here.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from durable import migrate

EXPRESSIONS = [
    ("*/15 * * * *", "UTC"),
    ("0 9 * * mon-fri", "Europe/Berlin"),
    ("30 2 * * *", "America/New_York"),
    ("0 0 13 * fri", "Australia/Sydney"),
    ("0 * * * *", "Asia/Kolkata"),
    ("0 0 29 2 *", "UTC"),
]


def per_call_us(conn: psycopg.Connection[Any], cron: str, tz: str, n: int) -> float:
    started = time.perf_counter()
    conn.execute(
        "select count(durable.cron_next(%s, %s, timestamptz '2026-01-01 00:00:00+00'"
        " + g * interval '7 minutes')) from generate_series(1, %s) as g",
        (cron, tz, n),
    )
    return (time.perf_counter() - started) / n * 1e6


def claim_ms(conn: psycopg.Connection[Any], queue: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        conn.execute("select count(*) from durable.claim(%s, 'bench', 1)", (queue,))
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    dbname = f"cron_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'create database "{dbname}"'.encode())
    url = make_conninfo(admin, dbname=dbname)
    try:
        migrate(url, test_clock=True)
        with psycopg.connect(url, autocommit=True) as conn:
            print(f"cron_next, {n} calls each:")
            for cron, tz in EXPRESSIONS:
                print(f"  {cron:<18} {tz:<18} {per_call_us(conn, cron, tz, n):6.1f} us/call")
            conn.execute("select durable.create_queue('plain'), durable.create_queue('scheduled')")
            conn.execute(
                "select durable.create_schedule('s' || g, 'scheduled', 'job', '0 0 1 1 *')"
                " from generate_series(1, 1000) as g"
            )
            print(f"idle claim, no schedule:      {claim_ms(conn, 'plain', 500):.3f} ms")
            print(f"idle claim, 1,000 not due:    {claim_ms(conn, 'scheduled', 500):.3f} ms")
            conn.execute("select durable.create_queue('ticking')")
            conn.execute("select durable.create_schedule('every', 'ticking', 'job', '* * * * *')")
            times = []
            for i in range(200):
                conn.execute(
                    "select set_config('durable.fake_now',"
                    " (timestamptz '2030-01-01' + %s * interval '1 minute')::text, false)",
                    (i + 1,),
                )
                if i == 0:
                    conn.execute("update durable.schedules set next_run_at = %s", ("2030-01-01 00:01:00+00",))
                started = time.perf_counter()
                conn.execute("select count(*) from durable.claim('ticking', 'bench', 1)")
                times.append(time.perf_counter() - started)
            ticks = conn.execute("select ticks from durable.schedules where name = 'every'").fetchone()
            median = statistics.median(times) * 1e3
            print(f"claim with one due tick:      {median:.3f} ms ({ticks[0] if ticks else 0} ticks)")
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'drop database if exists "{dbname}" with (force)'.encode())


if __name__ == "__main__":
    main()
