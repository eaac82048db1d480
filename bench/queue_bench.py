#!/usr/bin/env python3
"""Queue benchmark (not a test): enqueue, claim and processing rates against a pgbench reference.

Prints, on one server:

* enqueue/s, single: N calls of ``durable.enqueue``, one task each, one connection;
* enqueue/s, batched: ``durable.enqueue_many`` in batches of B;
* processed/s: N no-op tasks claimed, run and completed by ONE worker process with K
  slots (``durable.worker.Worker``), from the first claim to the last completion;
* the plans of the claim (EXPLAIN ANALYZE, BUFFERS of every statement ``durable.claim``
  runs, through auto_explain) with --explain-rows tasks queued;
* the reference: pgbench, one-row INSERT per transaction, 16 clients, ~10 s;

and the ratios that matter (absolute numbers depend on the machine): processed/s over
pgbench tps (target: at least 0.5) and batched over single enqueue.

The server is $DURABLE_DATABASE_URL or $DATABASE_URL (or --url), else an embedded
PostgreSQL started for this run in a temporary directory. Everything happens in a scratch
database of its own, dropped at the end.

    python bench/queue_bench.py                       # N=20000, B=500, K=64, 1,000,000 rows
    python bench/queue_bench.py -n 2000 --explain-rows 100000 --pgbench-seconds 3
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from durable.migrate import migrate
from durable.server import configured_url, embedded_bin_dir, start_embedded, stop_embedded

T = TypeVar("T")

TASK_NAME = "noop"


@dataclass
class Results:
    server: str = ""
    enqueue_single: float | None = None
    enqueue_batched: float | None = None
    # processed/s by kind of task function: "sync" (def) and "async" (async def)
    processed: dict[str, float] = field(default_factory=dict)
    pgbench_tps: float | None = None
    notes: list[str] = field(default_factory=list)


def log(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------ server and database


@contextlib.contextmanager
def server(url: str | None) -> Iterator[str]:
    """The URL of the server to use: the given one, the configured one, or an embedded one."""
    url = url or configured_url()
    if url:
        yield url
        return
    data = Path(tempfile.mkdtemp(prefix="durable-bench-pg-"))
    log(f"no DATABASE_URL: starting an embedded PostgreSQL in {data}")
    try:
        embedded = start_embedded(data / "pgdata", keep_running=False)
    except BaseException:
        shutil.rmtree(data, ignore_errors=True)
        raise
    try:
        yield embedded
    finally:
        stop_embedded(data / "pgdata")
        shutil.rmtree(data, ignore_errors=True)


@contextlib.contextmanager
def scratch_database(server_url: str, prefix: str = "durable_bench") -> Iterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(server_url, dbname=name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def settle(url: str) -> None:
    """A checkpoint before each phase, so one phase's dirty pages are not flushed during the next."""
    with contextlib.suppress(psycopg.Error), psycopg.connect(url, autocommit=True) as conn:
        conn.execute("checkpoint")


@contextlib.contextmanager
def bench_database(url: str | None) -> Iterator[tuple[str, str]]:
    """A migrated scratch database on the chosen server: yields its URL and a line describing the server."""
    with server(url) as server_url, scratch_database(server_url) as scratch:
        with psycopg.connect(scratch, autocommit=True) as conn:
            row = conn.execute("select version(), current_setting('synchronous_commit')").fetchone()
            assert row is not None
            described = f"{row[0].split(',')[0]} (synchronous_commit={row[1]})"
        log(f"server: {described}; scratch database {conninfo_to_dict(scratch).get('dbname')}")
        migrate(scratch)
        yield scratch, described


class Phases:
    """Runs the phases of a benchmark: each is announced, starts on a settled server, is timed,
    and, when it raises, is noted and skipped (``failed`` turns true) so the others still run."""

    def __init__(self, url: str, notes: list[str]) -> None:
        self.url = url
        self.notes = notes
        self.failed = False

    def __call__(self, name: str, action: Callable[[], T]) -> T | None:
        log(f"\n== {name}")
        settle(self.url)
        started = time.perf_counter()
        try:
            value = action()
        except Exception as exc:
            self.failed = True
            self.notes.append(f"{name}: {type(exc).__name__}: {exc}")
            log(f"   FAILED: {type(exc).__name__}: {exc}")
            return None
        log(f"   ({time.perf_counter() - started:.1f} s)")
        return value


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


# ------------------------------------------------------------------ enqueue


def bench_enqueue_single(url: str, queue: str, n: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select durable.create_queue(%s)", (queue,))
        query = "select durable.enqueue(%s, %s, %s::jsonb)"
        started = time.perf_counter()
        for i in range(n):
            conn.execute(query, (queue, TASK_NAME, json.dumps({"i": i})), prepare=True)
        return rate(n, time.perf_counter() - started)


def bench_enqueue_batched(url: str, queue: str, n: int, batch: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select durable.create_queue(%s)", (queue,))
        query = "select count(*) from durable.enqueue_many(%s, %s::jsonb)"
        batches = [
            json.dumps(
                [{"task_name": TASK_NAME, "input": {"i": i}} for i in range(start, min(start + batch, n))]
            )
            for start in range(0, n, batch)
        ]
        started = time.perf_counter()
        for specs in batches:
            conn.execute(query, (queue, specs), prepare=True)
        return rate(n, time.perf_counter() - started)


# ------------------------------------------------------------------ worker


def worker_child(url: str, queue: str, slots: int, kind: str) -> None:
    """Runs in the worker process: one Worker with a no-op task, until SIGTERM (graceful)."""
    from durable.worker import Worker

    worker = Worker(url, queue=queue, concurrency=slots)
    if kind == "async":

        @worker.task(name=TASK_NAME)
        async def noop_async(input: dict[str, Any]) -> None:
            return None

    else:

        @worker.task(name=TASK_NAME)
        def noop(input: dict[str, Any]) -> None:
            return None

    with contextlib.suppress(KeyboardInterrupt):
        worker.run()


def bench_worker(
    url: str, queue: str, n: int, slots: int, kind: str, timeout: float, poll: float = 0.05
) -> tuple[float, float]:
    """processed/s of one worker process with ``slots`` slots over n queued no-op tasks.

    The tasks are queued first; the rate is n over the time from the first claim to the
    last completion (the database's own timestamps), so the worker's start-up is not in
    it. Also returns the rate over the wall time from the worker's start. The count of
    completed tasks is polled every ``poll`` seconds (a scan of the queue's tasks, on the
    same cores as the worker: a longer poll loads the run less, and only the wall rate
    depends on it).
    """
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select durable.create_queue(%s)", (queue,))
        conn.execute(
            """
            select count(*) from durable.enqueue_many(
                %s,
                (select jsonb_agg(jsonb_build_object(
                            'task_name', %s::text, 'input', jsonb_build_object('i', g.i)))
                 from generate_series(1, %s::integer) as g (i))
            )
            """,
            (queue, TASK_NAME, n),
        )
        conn.execute("vacuum analyze durable.tasks")
        child = subprocess.Popen(
            [sys.executable, __file__, "--worker-child", url, queue, str(slots), kind],
            stdin=subprocess.DEVNULL,
        )
        started = time.perf_counter()
        done = 0
        try:
            while True:
                row = conn.execute(
                    "select count(*) from durable.all_tasks where queue = %s and status = 'completed'",
                    (queue,),
                ).fetchone()
                done = row[0] if row else 0
                if done >= n:
                    break
                if child.poll() is not None:
                    raise RuntimeError(
                        f"the worker process ended (exit {child.returncode}) after {done} tasks"
                    )
                if time.perf_counter() - started > timeout:
                    raise RuntimeError(f"the worker completed only {done} of {n} tasks in {timeout:.0f} s")
                time.sleep(poll)
            wall = time.perf_counter() - started
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        row = conn.execute(
            """
            select extract(epoch from max(finished_at) - min(started_at))::float8,
                   count(*) filter (where status <> 'completed')
            from durable.all_tasks where queue = %s
            """,
            (queue,),
        ).fetchone()
        assert row is not None
        seconds, not_completed = row
        if not_completed:
            raise RuntimeError(f"{not_completed} tasks did not complete")
        return rate(n, float(seconds)), rate(n, wall)


# ------------------------------------------------------------------ claim plans


def load_tasks(url: str, queue: str, rows: int, chunk: int = 10_000) -> float:
    """Queues ``rows`` tasks through enqueue_many, built server-side; returns tasks/s."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select durable.create_queue(%s)", (queue,))
        query = """
            select count(*) from durable.enqueue_many(
                %s,
                (select jsonb_agg(jsonb_build_object(
                            'task_name', %s::text, 'input', jsonb_build_object('i', g.i)))
                 from generate_series(%s::integer, %s::integer) as g (i))
            )
        """
        started = time.perf_counter()
        for first in range(1, rows + 1, chunk):
            conn.execute(query, (queue, TASK_NAME, first, min(first + chunk - 1, rows)), prepare=True)
        seconds = time.perf_counter() - started
        # as autovacuum would have by then (it may be off on a test server)
        conn.execute("vacuum analyze durable.tasks")
        return rate(rows, seconds)


def _trivial(plan: str) -> bool:
    nodes = [line for line in plan.splitlines() if "(cost=" in line]
    return len(nodes) == 1 and nodes[0].lstrip().startswith("Result ") and "Buffers:" not in plan


def claim_plans(
    url: str, queue: str, max_tasks: int, task_names: list[str] | None = None, before: str | None = None
) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement one durable.claim runs, via auto_explain.

    A warm-up claim runs first (caches, the function's cached plans); both are rolled back.
    ``before``: a statement run first in the explained claim's transaction (not explained).
    """
    messages: list[str] = []
    with psycopg.connect(url) as conn:
        conn.add_notice_handler(lambda diag: messages.append(diag.message_primary or ""))
        try:
            conn.execute("load 'auto_explain'")
        except psycopg.Error as exc:
            conn.rollback()
            return [f"(auto_explain is not available: {exc}; no plans)"]
        call = "select count(*) from durable.claim(%s, 'bench-explain', %s, 30, %s)"
        conn.execute(call, (queue, max_tasks, task_names))
        conn.rollback()
        for setting, value in [
            ("auto_explain.log_min_duration", "0"),
            ("auto_explain.log_analyze", "on"),
            ("auto_explain.log_buffers", "on"),
            ("auto_explain.log_timing", "on"),
            ("auto_explain.log_nested_statements", "on"),
            ("auto_explain.log_format", "text"),
            ("client_min_messages", "log"),
        ]:
            conn.execute(
                sql.SQL("set {} = {}").format(sql.Identifier(*setting.split(".")), sql.Literal(value))
            )
        if before:
            conn.execute(before)
        messages.clear()
        started = time.perf_counter()
        row = conn.execute(call, (queue, max_tasks, task_names)).fetchone()
        seconds = time.perf_counter() - started
        conn.rollback()
    # every statement's plan, less the trivial ones (a bare Result: expressions, constants)
    plans = [m for m in messages if m.startswith("duration:") and not _trivial(m)]
    plans.append(f"(claim of {row[0] if row else '?'} tasks: {seconds * 1000:.2f} ms, with auto_explain on)")
    return plans


# ------------------------------------------------------------------ pgbench


def pgbench_path() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    with contextlib.suppress(Exception):
        candidate = embedded_bin_dir() / "pgbench"
        if candidate.exists():
            return str(candidate)
    return None


LIBPQ_ENV = {
    "host": "PGHOST",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "dbname": "PGDATABASE",
}


def libpq_env(url: str) -> dict[str, str]:
    """The connection of ``url`` as libpq environment variables, for pgbench."""
    env = dict(os.environ)
    for key, value in conninfo_to_dict(url).items():
        if key in LIBPQ_ENV and value not in (None, ""):
            env[LIBPQ_ENV[key]] = str(value)
    return env


def bench_pgbench(url: str, clients: int, seconds: int) -> float:
    binary = pgbench_path()
    if binary is None:
        raise RuntimeError("no pgbench on PATH nor in the embedded server's bin dir")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "create table bench_pgbench_insert ("
            " id bigint generated always as identity primary key,"
            " payload jsonb not null,"
            " created_at timestamptz not null default now())"
        )
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write("insert into bench_pgbench_insert (payload) values ('{}');\n")
    try:
        threads = max(1, min(clients, os.cpu_count() or 1))
        command = [binary, "-n", "-c", str(clients), "-j", str(threads), "-T", str(seconds)]
        command += ["-f", script.name]
        done = subprocess.run(command, env=libpq_env(url), capture_output=True, text=True, check=False)
    finally:
        os.unlink(script.name)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stderr.strip()}")
    match = re.search(r"^tps = ([0-9.]+)", done.stdout, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no tps in pgbench's output:\n{done.stdout}")
    return float(match.group(1))


# ------------------------------------------------------------------ main


def fmt(value: float | None, unit: str = "/s") -> str:
    return "n/a" if value is None else f"{value:,.0f}{unit}"


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def run(args: argparse.Namespace) -> int:
    results = Results()
    with bench_database(args.url) as (url, results.server):
        phase = Phases(url, results.notes)

        results.enqueue_single = phase(
            f"enqueue, single: {args.tasks} x durable.enqueue",
            lambda: bench_enqueue_single(url, "bench_enqueue_single", args.tasks),
        )
        log(f"   enqueue/s single: {fmt(results.enqueue_single)}")
        results.enqueue_batched = phase(
            f"enqueue, batched: {args.tasks} tasks by durable.enqueue_many of {args.batch}",
            lambda: bench_enqueue_batched(url, "bench_enqueue_batched", args.tasks, args.batch),
        )
        log(f"   enqueue/s batched: {fmt(results.enqueue_batched)}")

        kinds = ["sync", "async"] if args.task_kind == "both" else [args.task_kind]
        for kind in kinds if not args.skip_worker else []:
            rates = phase(
                f"processed: {args.tasks} no-op tasks ({kind} def) through one worker process "
                f"with {args.slots} slots",
                functools.partial(
                    bench_worker,
                    url,
                    f"bench_worker_{kind}",
                    args.tasks,
                    args.slots,
                    kind,
                    args.worker_timeout,
                ),
            )
            if rates:
                results.processed[kind] = rates[0]
            log(
                f"   processed/s: {fmt(rates and rates[0])} (first claim to last completion); "
                f"{fmt(rates and rates[1])} over wall time with the worker's start-up"
            )

        if args.pgbench_seconds > 0:
            results.pgbench_tps = phase(
                f"reference: pgbench, 1-row INSERT, {args.pgbench_clients} clients, {args.pgbench_seconds} s",
                lambda: bench_pgbench(url, args.pgbench_clients, args.pgbench_seconds),
            )
            log(f"   pgbench tps: {fmt(results.pgbench_tps, '')}")

        # last: a million rows change the table the other phases use
        if args.explain_rows > 0:
            loaded = phase(
                f"claim plans: loading {args.explain_rows:,} queued tasks",
                lambda: load_tasks(url, "bench_claim", args.explain_rows),
            )
            log(f"   loaded at {fmt(loaded)} (enqueue_many of 10,000, built server-side)")
            plans = phase(
                f"claim plans: EXPLAIN (ANALYZE, BUFFERS) of durable.claim(max_tasks => {args.slots}) "
                f"with {args.explain_rows:,} tasks queued",
                lambda: claim_plans(url, "bench_claim", args.slots),
            )
            for plan in plans or []:
                log(plan)
                log("")

    rows: list[tuple[str, str]] = [
        ("server", results.server),
        ("N tasks, B batch, K slots", f"N={args.tasks}, B={args.batch}, K={args.slots}"),
        ("enqueue/s single", fmt(results.enqueue_single)),
        ("enqueue/s batched", fmt(results.enqueue_batched)),
    ]
    rows += [(f"processed/s ({kind} def, 1 worker)", fmt(results.processed.get(kind))) for kind in kinds]
    rows += [
        (f"pgbench insert tps ({args.pgbench_clients} clients)", fmt(results.pgbench_tps, "")),
        ("ratio enqueue batched/single", ratio(results.enqueue_batched, results.enqueue_single)),
    ]
    for kind in kinds:
        processed = results.processed.get(kind)
        verdict = ""
        if processed is not None and results.pgbench_tps:
            met = processed / results.pgbench_tps >= 0.5
            verdict = "  (target >= 0.50: " + ("met" if met else "NOT met") + ")"
        rows.append((f"ratio processed ({kind})/pgbench", ratio(processed, results.pgbench_tps) + verdict))
    log("\n== summary")
    width = max(len(label) for label, _ in rows) + 1
    for label, value in rows:
        log(f"{label + ':':<{width}} {value}")
    for note in results.notes:
        log(f"note: {note}")
    return 1 if phase.failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker-child"]:
        worker_child(argv[1], argv[2], int(argv[3]), argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="the server (default: $DATABASE_URL, else an embedded PostgreSQL)")
    parser.add_argument("-n", "--tasks", type=int, default=20_000, help="N: tasks per phase (default 20000)")
    parser.add_argument(
        "-b", "--batch", type=int, default=500, help="B: enqueue_many batch size (default 500)"
    )
    parser.add_argument("-k", "--slots", type=int, default=64, help="K: the worker's slots (default 64)")
    parser.add_argument(
        "--explain-rows",
        type=int,
        default=1_000_000,
        help="tasks queued for the claim's EXPLAIN (default 1000000; 0 skips it)",
    )
    parser.add_argument(
        "--pgbench-seconds", type=int, default=10, help="pgbench run time (default 10; 0 skips it)"
    )
    parser.add_argument("--pgbench-clients", type=int, default=16, help="pgbench clients (default 16)")
    parser.add_argument("--skip-worker", action="store_true", help="do not measure processed/s")
    parser.add_argument(
        "--task-kind",
        choices=["sync", "async", "both"],
        default="both",
        help="the no-op task function: def (run in the worker's threads), async def, or both (default)",
    )
    parser.add_argument(
        "--worker-timeout",
        type=float,
        default=600,
        help="give the worker at most this many seconds (default 600)",
    )
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.batch < 1 or args.slots < 1:
        parser.error("--tasks, --batch and --slots must be at least 1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
