"""The time-skipping test harness (durable.testing): what a test of a 30-day workflow costs.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/harness_bench.py [N]

Times, in real seconds: migrating the session's template, copying a test's database
from it, starting the environment (the worker in its thread), N runs of a workflow of
30 days of durable time (three steps 10 days apart, then a 10-day event wait that times
out: two sleeps and a timeout skipped) on one environment, stopping it, dropping the
database. Then the cost of ``durable.current_time()`` in three sessions of a test
database: without ``durable.fake_now`` (what every database but a test database runs),
with a fixed ``fake_now``, and on the shared test clock (``fake_now = 'shared'``); the
best of five runs of 200,000 calls each. Uses DATABASE_URL or the embedded server; its
databases are created and dropped here.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import timedelta
from typing import Any

import psycopg

from durable import EventTimeout, Worker
from durable.server import database_url
from durable.testing import TestEnvironment, databases
from durable.workflow import DurableContext

DAY = timedelta(days=1)
CALLS = 200_000


def make_worker() -> Worker:
    worker = Worker(queue="bench", concurrency=4)

    @worker.durable_task
    async def month(input: dict[str, Any], ctx: DurableContext) -> str:
        for n in range(3):
            if n:
                await ctx.sleep(10 * DAY, name=f"sleep{n}")
            await ctx.step(f"step{n}", str, n)
        try:
            await ctx.wait_for_event("never", timeout=10 * DAY)
        except EventTimeout:
            return "timed out"
        return "emitted"

    return worker


def clock_cost(url: str, fake_now: str) -> float:
    """Microseconds per durable.current_time() call, best of five."""
    best = float("inf")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select set_config('durable.fake_now', %s, false)", (fake_now,))
        for _ in range(5):
            started = time.perf_counter()
            conn.execute(f"select count(durable.current_time()) from generate_series(1, {CALLS})")
            best = min(best, time.perf_counter() - started)
    return best / CALLS * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    server = database_url()
    started = time.perf_counter()
    template = databases.create_test_template(server)
    migrated = time.perf_counter()
    url = databases.create_test_database(server, template)
    copied = time.perf_counter()
    runs: list[float] = []
    try:
        with TestEnvironment(make_worker(), url) as env:
            up = time.perf_counter()
            for _ in range(n):
                began = time.perf_counter()
                assert env.run("month") == "timed out"
                runs.append(time.perf_counter() - began)
            ended = time.perf_counter()
        down = time.perf_counter()
        costs = {
            label: clock_cost(url, value)
            for label, value in (
                ("no fake_now", ""),
                ("fake_now fixed", "2030-01-01 00:00:00+00"),
                ("shared", "shared"),
            )
        }
    finally:
        dropping = time.perf_counter()
        databases.drop_test_database(server, url)
        dropped = time.perf_counter()
        databases.drop(server, [template])
    print(f"template migrated        {migrated - started:7.3f} s")
    print(f"test database copied     {copied - migrated:7.3f} s")
    print(f"environment started      {up - copied:7.3f} s")
    print(f"30-day workflow, {n} runs: p50 {statistics.median(runs):.3f} s, max {max(runs):.3f} s")
    print(f"environment stopped      {down - ended:7.3f} s")
    print(f"test database dropped    {dropped - dropping:7.3f} s")
    for label, cost in costs.items():
        print(f"current_time(), {label:15}: {cost:.2f} us per call")


if __name__ == "__main__":
    main()
