#!/usr/bin/env python3
"""Throughput with concurrency limits set vs none, in the same run.

Each round enqueues ``--tasks`` tasks spread over ``--keys`` concurrency keys on a fresh
queue, starts ``--workers`` worker processes and times them until every task is
completed. A worker process is a tight loop on one connection: ``durable.claim`` up to
``--batch`` tasks, optionally sleep ``--work-ms`` per batch (the "work"), then one
``durable.complete_many``; when a claim comes back empty it sleeps ``--idle-ms``. No
Python worker framework in between, so what is measured is the SQL (and its commits).

Rounds alternate between the two configurations, ``--rounds`` times each, so both see
the same server, cache and machine load; the median processed/s of each is reported and
their ratio (limited / unlimited), and the median of the per-round ratios (each limited
round against the unlimited round just before it, which drifting machine load affects
less).

    unlimited  a queue without concurrency options: the lock-free SKIP LOCKED claim
    limited    concurrency_limit = --queue-limit and concurrency_key_limit = --key-limit:
               every claim goes through durable._claim_admit under the queue's lock

The defaults set the queue limit to the workers' capacity (workers x batch) and a
per-key limit of 4 over 20 keys: the limits are enforced on every claim (that is the
cost measured) without being set below what the workers could run anyway. Set
``--queue-limit 5 --key-limit 2`` to see limits that bind (then throughput is bounded
by the limits themselves, not by their enforcement).

``--sync-claims`` measures the limited claim without its ``synchronous_commit = off``
(see limits.sql): the queue's lock is then held through each claim's WAL flush.

Server: ``DATABASE_URL`` (or ``DURABLE_DATABASE_URL``), else the embedded PostgreSQL.
A scratch database is created and dropped.

    python bench/limits_bench.py                       # defaults
    python bench/limits_bench.py --tasks 20000 --rounds 3 --work-ms 2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python_client"))

from durable.migrate import migrate
from durable.server import database_url


def worker_main(url: str, queue: str, batch: int, work_ms: float, idle_ms: float, stop_at: int) -> None:
    """One worker process: claim, (work), complete_many, until the queue has no unfinished task."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "select task_id, lease_token from durable.claim(%s, %s, %s, 60)", (queue, name, batch)
            ).fetchall()
            if not rows:
                left = conn.execute(
                    "select count(*) from durable.all_tasks"
                    " where queue = %s and status in ('pending', 'running')",
                    (queue,),
                ).fetchone()
                if left is not None and left[0] <= stop_at:
                    return
                time.sleep(idle_ms / 1000)
                continue
            if work_ms:
                time.sleep(work_ms / 1000)
            conn.execute(
                "select count(*) from durable.complete_many(%s, %s)",
                ([r[0] for r in rows], [r[1] for r in rows]),
            )


def run_round(url: str, args: argparse.Namespace, limited: bool, index: int) -> float:
    queue = f"{'limited' if limited else 'unlimited'}_{index}"
    options: dict[str, Any] = {}
    if limited:
        options = {"concurrency_limit": args.queue_limit, "concurrency_key_limit": args.key_limit}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select durable.create_queue(%s, %s)", (queue, Jsonb(options)))
        specs = [
            {"task_name": "t", "input": {"i": i}, "options": {"concurrency_key": f"k{i % args.keys}"}}
            for i in range(args.tasks)
        ]
        for start in range(0, len(specs), 1000):
            conn.execute(
                "select count(*) from durable.enqueue_many(%s, %s)",
                (queue, Jsonb(specs[start : start + 1000])),
            )
        conn.execute("analyze durable.tasks")
    procs = [
        mp.Process(target=worker_main, args=(url, queue, args.batch, args.work_ms, args.idle_ms, 0))
        for _ in range(args.workers)
    ]
    started = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - started
    with psycopg.connect(url, autocommit=True) as conn:
        done = conn.execute(
            "select count(*) from durable.all_tasks where queue = %s and status = 'completed'", (queue,)
        ).fetchone()
        if done is None or done[0] != args.tasks:
            raise SystemExit(f"round {queue}: {done} of {args.tasks} tasks completed")
        # keep the table small between rounds
        conn.execute("delete from durable.attempts where queue = %s", (queue,))
        conn.execute("delete from durable.tasks where queue = %s", (queue,))
        conn.execute("vacuum durable.tasks, durable.attempts, durable.limit_state")
    rate = float(args.tasks) / elapsed
    print(f"  {queue:<14} {args.tasks} tasks in {elapsed:6.2f} s  {rate:8.0f} processed/s", flush=True)
    return rate


def use_sync_claims(url: str) -> None:
    """Re-create durable._claim_admit without its synchronous_commit = off."""
    text = (Path(__file__).resolve().parents[1] / "plpgsql" / "limits.sql").read_text()
    start = text.index("create or replace function durable._claim_admit(")
    end = text.index("comment on function durable._claim_admit")
    body = text[start:end]
    line = "    perform set_config('synchronous_commit', 'off', true);\n"
    if line not in body:
        raise SystemExit("limits.sql changed: cannot find the synchronous_commit line")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(body.replace(line, "").encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4, help="tasks per claim (slots per worker)")
    parser.add_argument("--work-ms", type=float, default=0.0, help="sleep per claimed batch")
    parser.add_argument("--idle-ms", type=float, default=2.0, help="sleep after an empty claim")
    parser.add_argument("--queue-limit", type=int, default=None, help="default: workers x batch")
    parser.add_argument("--key-limit", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each configuration")
    parser.add_argument("--sync-claims", action="store_true")
    args = parser.parse_args()
    if args.queue_limit is None:
        args.queue_limit = args.workers * args.batch

    server = database_url()
    name = f"durable_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'create database "{name}"'.encode())
        version = admin.execute("show server_version").fetchone()
    url = make_conninfo(server, dbname=name)
    try:
        migrate(url)
        if args.sync_claims:
            use_sync_claims(url)
        print(
            f"PostgreSQL {version[0] if version else '?'}; {args.tasks} tasks over {args.keys} keys, "
            f"{args.workers} workers x batch {args.batch}, work {args.work_ms} ms/batch; "
            f"limited: concurrency_limit {args.queue_limit}, concurrency_key_limit {args.key_limit}"
            f"{' (synchronous claims)' if args.sync_claims else ''}",
            flush=True,
        )
        rates: dict[bool, list[float]] = {False: [], True: []}
        for i in range(args.rounds):
            for limited in (False, True):
                rates[limited].append(run_round(url, args, limited, i))
        free = statistics.median(rates[False])
        capped = statistics.median(rates[True])
        print(f"unlimited: median {free:.0f} processed/s  ({', '.join(f'{r:.0f}' for r in rates[False])})")
        print(f"limited:   median {capped:.0f} processed/s  ({', '.join(f'{r:.0f}' for r in rates[True])})")
        print(f"ratio limited/unlimited: {capped / free:.0%}")
        # each limited round against the unlimited round just before it: less exposed to drift
        pairs = [lim / unl for unl, lim in zip(rates[False], rates[True], strict=True)]
        listed = ", ".join(f"{r:.0%}" for r in pairs)
        print(f"median of per-round ratios: {statistics.median(pairs):.0%}  ({listed})")
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{name}" with (force)'.encode())


if __name__ == "__main__":
    main()
