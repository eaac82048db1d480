#!/usr/bin/env python3
"""durable beside its peers (not a test): PgQueuer and Absurd on the same server, in the same run.

    python3 bench/peers.py            # creates bench/.venv-peers on first use, then runs in it
    python3 bench/peers.py --enqueue-only   # only the two enqueue figures (about a minute)
    python3 bench/peers.py --latency-only   # only enqueue → start with an idle worker
    python3 bench/peers.py --drain-only     # only processed/s (and durable's with prefetch) and the raw drain

The peers live in a virtualenv of the benchmark's own, never in the project's; this script
creates it when missing and re-runs itself with its interpreter, i.e. the one-liner

    python3 -m venv bench/.venv-peers && bench/.venv-peers/bin/pip install \\
        pgqueuer==1.6.0 absurd-sdk==0.5.1 absurdctl==0.5.1 asyncpg -e .

Each system gets a database of its own on the server of $DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/postgres), created and dropped here; VACUUM ANALYZE
and a CHECKPOINT run before each phase (autovacuum may be off). Each peer is used the way
its documentation shows:

* durable: ``Client.enqueue`` / ``Client.enqueue_many``; ``Worker`` with ``async def``
  tasks, ``worker.durable_task`` and ``await ctx.step(...)``, default options; then three
  rows with the options made for these loads: ``Worker(prefetch=10)`` (ten more tasks
  claimed ahead wait for a slot) and a queue with ``{"async_checkpoints": true}`` (step
  records commit without waiting for the disk flush: a server crash may run the last
  steps again). Their peers' cells repeat the peers' rows they compare with.
* PgQueuer: schema by ``Queries.install()``; ``Queries.enqueue`` (scalars, or lists for a
  batch) on asyncpg, its recommended driver; ``PgQueuer.from_asyncpg_connection``, an
  ``async def`` entrypoint, ``run(batch_size=5, max_concurrent_tasks=10)`` (its floor is
  twice the batch). No workflows/steps: those rows are "n/a".
* Absurd: schema by ``absurdctl init`` (the SQL bundled in the absurdctl package, run
  through psql), queue by ``create_queue``; ``AsyncAbsurd.spawn``, ``register_task`` with
  ``async def`` handlers and ``await ctx.step(...)``; ``start_worker(concurrency=10)`` at
  its default poll interval (0.25 s; it does not LISTEN). No batch spawn: "n/a".

Rounds: the figures but the enqueue ones are measured ``--rounds`` times (default 3), every
system in turn within a round, and each is the median of its rounds (a load that comes
and goes on a shared machine then weighs on each system alike).

Figures (one worker process where a worker runs; every job a no-op):

1. enqueue, batches of 500 (jobs/s), median of 3 runs;
2. enqueue one by one (jobs/s), median of 3 runs (in 1. and 2., the runs of the systems
   take turns: a load that comes and goes weighs on each alike);
3. processed/s: a worker process with 10 concurrent jobs draining a backlog of N jobs,
   timed from its first completion to its last (its start-up left out), polled at 20 ms;
4. enqueue → start latency with an idle worker in this process: L sequential enqueues,
   random gaps, after 10 warm-up jobs; p50/p99 ms;
5. ms per step: 10-step no-op workflows run one after another (a one-slot worker in this
   process; the time from the workflow's code starting to its last step returning, / 10),
   median over W workflows; durable and Absurd;
6. steps/s: a worker process with 10 concurrent workflows draining a backlog of 10-step
   workflows (as 3.); durable and Absurd.

And the floors, once a round: the raw drain, ``DELETE … WHERE id IN (SELECT … FOR UPDATE
SKIP LOCKED LIMIT 10) RETURNING`` on a plain table, one connection, autocommit; the raw
latency, one autocommit statement that INSERTs a row into a plain table and NOTIFYs, and a
thread of this process LISTENing that takes the row as the raw drain does (same gaps and
timing as 4.): no queue can start a job sooner after its enqueue on this machine.

One run on 2026-12-07 (15:39 UTC, the machine otherwise quiet; copied from its output,
never read by the script). Figures drift through the day on this 2-CPU machine with fsync
on (the raw latency was 2.60 ms at 15:00, 4.49 ms here), so read the ratios and the floors
of one run, and re-run before drawing a conclusion:

    server: PostgreSQL 15.20 (Debian 15.20-0+deb12u1) on x86_64-pc-linux-gnu; fsync=on,
      synchronous_commit=on, shared_buffers=128MB, autovacuum=off
    machine: 2 CPUs; Python 3.11.7
    packages: durable 0.1.0, pgqueuer 1.6.0, absurd-sdk 0.5.1, absurdctl 0.5.1, asyncpg 0.32.0,
      psycopg 3.3.9
    sizes: enqueue 5000 batched / 1000 single (median of 3); drain 10000 jobs; latency 100 enqueues;
      30 sequential and 300 concurrent 10-step workflows; all but the enqueue figures: median of
      3 rounds
    | figure | durable | PgQueuer | Absurd | durable ÷ best peer |
    |---|---:|---:|---:|---:|
    | enqueue, batches of 500 (jobs/s) | 33,536 | 51,924 | n/a | 0.65 |
    | enqueue, one by one (jobs/s) | 1,170 | 1,869 | 1,573 | 0.63 |
    | processed/s, 1 worker, 10 concurrent | 5,890 | 2,467 | 612 | 2.39 |
    | enqueue → start p50 (ms) | 9.00 | 6.53 | 119.09 | 1.38 |
    | enqueue → start p99 (ms) | 16.99 | 10.71 | 211.56 | 1.59 |
    | per step, sequential 10-step workflows (ms) | 0.82 | n/a | 1.50 | 0.55 |
    | steps/s, 10 concurrent workflows, 1 worker | 4,787 | n/a | 744 | 6.44 |
    | processed/s, durable with prefetch=10 | 9,134 | 2,467 | 612 | 3.70 |
    | per step, durable queue with async_checkpoints (ms) | 0.50 | n/a | 1.50 | 0.34 |
    | steps/s, durable queue with async_checkpoints | 5,270 | n/a | 744 | 7.09 |
    durable ÷ best peer: durable's figure over the best peer's; above 1 is better for a rate (/s),
      below 1 for a time (ms)
    raw drain reference (...): 18,090 rows/s; durable processed/s ÷ raw: 0.33
    raw latency reference (...): p50 4.49 ms, p99 8.78 ms; durable's p50 above it: 4.52 ms
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "bench" / ".venv-peers"
PEER_PACKAGES = ["pgqueuer==1.6.0", "absurd-sdk==0.5.1", "absurdctl==0.5.1", "asyncpg"]
SYSTEMS = ("durable", "PgQueuer", "Absurd")
QUEUE = "bench"
STEPS = 10
NOOP = "noop"
WORKFLOW = "workflow"


def log(message: str) -> None:
    print(message, flush=True)


def ensure_venv() -> None:
    """Runs this script in bench/.venv-peers, creating it first when missing."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    python = VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {VENV} (peers: {', '.join(PEER_PACKAGES)}; durable from {ROOT})")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES, "-e", str(ROOT)]
        subprocess.run(pip, check=True)
    os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


# ------------------------------------------------------------------ databases


def server_url() -> str:
    return os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def database(system: str) -> Iterator[str]:
    import psycopg
    from psycopg import sql

    name = f"peers_{system.lower()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url(), autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(server_url())._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(server_url(), autocommit=True) as admin:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def settle(url: str) -> None:
    """VACUUM ANALYZE (autovacuum may be off) and a CHECKPOINT before each phase."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum analyze")
        conn.execute("checkpoint")


def install(system: str, url: str) -> None:
    import psycopg

    if system == "durable":
        from durable import migrate

        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("select durable.create_queue(%s)", (QUEUE,))
    elif system == "PgQueuer":

        async def go() -> None:
            import asyncpg  # type: ignore[import-not-found]
            from pgqueuer.queries import Queries  # type: ignore[import-not-found]

            conn = await asyncpg.connect(url)
            try:
                await Queries.from_asyncpg_connection(conn).install()
            finally:
                await conn.close()

        asyncio.run(go())
    else:
        absurdctl = str(Path(sys.executable).parent / "absurdctl")
        subprocess.run([absurdctl, "init", "--database", url], check=True, capture_output=True)
        subprocess.run([absurdctl, "create-queue", QUEUE, "--database", url], check=True, capture_output=True)


def reset(system: str, url: str) -> None:
    """Empties the system's queue between phases."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        if system == "durable":
            # the events' guard refuses TRUNCATE: a scratch database, so its triggers are set
            # aside, and the claimable set (which a trigger empties with the tasks) goes too
            conn.execute("set session_replication_role = replica")
            conn.execute(
                "truncate durable.tasks, durable.finished_tasks, durable.events, durable.attempts,"
                " durable.ready, durable.ready_floors cascade"
            )
            conn.execute("reset session_replication_role")
        elif system == "PgQueuer":
            conn.execute("truncate pgqueuer, pgqueuer_log, pgqueuer_statistics")
        else:
            for prefix in "trcew":
                conn.execute(f'truncate absurd."{prefix}_{QUEUE}"'.encode())


def done_count(system: str, conn: Any, total: int) -> int:
    if system == "durable":
        row = conn.execute(
            "select count(*) from durable.all_tasks where queue = %s and status = 'completed'", (QUEUE,)
        ).fetchone()
        return int(row[0])
    if system == "PgQueuer":  # a job's row is deleted when it is done
        row = conn.execute("select count(*) from pgqueuer").fetchone()
        return total - int(row[0])
    row = conn.execute(
        f"select count(*) from absurd.\"t_{QUEUE}\" where state = 'completed'".encode()
    ).fetchone()
    return int(row[0])


# ------------------------------------------------------------------ enqueue


class Enqueuer:
    """One connection of the system's own client; ``one`` and ``batch`` enqueue no-op jobs."""

    def __init__(self, system: str, url: str) -> None:
        self.system = system
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.client: Any = None
        self.conn: Any = None
        if system == "durable":
            from durable import Client

            self.client = Client(url)
        elif system == "PgQueuer":
            import asyncpg
            from pgqueuer.queries import Queries

            self.conn = self.loop.run_until_complete(asyncpg.connect(url))
            self.client = Queries.from_asyncpg_connection(self.conn)
        else:
            from absurd_sdk import AsyncAbsurd  # type: ignore[import-not-found]

            self.client = AsyncAbsurd(url, queue_name=QUEUE)

    def one(self, task: str, payload: dict[str, Any]) -> None:
        if self.system == "durable":
            self.client.enqueue(QUEUE, task, payload, durable=task == WORKFLOW)
        elif self.system == "PgQueuer":
            self.loop.run_until_complete(self.client.enqueue(task, json.dumps(payload).encode()))
        else:
            self.loop.run_until_complete(self.client.spawn(task, payload, queue=QUEUE))

    def batch(self, task: str, payloads: list[dict[str, Any]]) -> bool:
        """False when the system has no batch enqueue."""
        if self.system == "durable":
            from durable import TaskSpec

            durable = task == WORKFLOW
            self.client.enqueue_many(QUEUE, [TaskSpec(task, p, durable=durable) for p in payloads])
        elif self.system == "PgQueuer":
            self.loop.run_until_complete(
                self.client.enqueue(
                    [task] * len(payloads), [json.dumps(p).encode() for p in payloads], [0] * len(payloads)
                )
            )
        else:
            return False
        return True

    def backlog(self, task: str, n: int) -> None:
        for start in range(0, n, 500):
            payloads = [{"i": i} for i in range(start, min(n, start + 500))]
            if not self.batch(task, payloads):
                for p in payloads:
                    self.one(task, p)

    def close(self) -> None:
        if self.system == "durable":
            self.client.close()
        elif self.system == "PgQueuer":
            self.loop.run_until_complete(self.conn.close())
        else:
            self.loop.run_until_complete(self.client.close())
        self.loop.close()


def bench_enqueue(
    urls: dict[str, str], n: int, batch: int, runs: int
) -> dict[str, tuple[float | None, float]]:
    """Every system's enqueue figures (batched, one by one), their runs interleaved: run 1 of
    each system, then run 2 of each... A load that comes and goes on a shared machine then
    weighs on every system alike, not on the one whose turn it was."""
    enqueuers = {system: Enqueuer(system, url) for system, url in urls.items()}
    try:

        def batched(system: str) -> float | None:
            reset(system, urls[system])
            settle(urls[system])
            started = time.perf_counter()
            for start in range(0, n, batch):
                if not enqueuers[system].batch(NOOP, [{"i": i} for i in range(start, min(n, start + batch))]):
                    return None
            return n / (time.perf_counter() - started)

        def single(system: str) -> float:
            reset(system, urls[system])
            settle(urls[system])
            started = time.perf_counter()
            for i in range(n // 5):
                enqueuers[system].one(NOOP, {"i": i})
            return (n // 5) / (time.perf_counter() - started)

        batched_rates: dict[str, list[float]] = {system: [] for system in urls}
        single_rates: dict[str, list[float]] = {system: [] for system in urls}
        for _ in range(runs):
            for system in urls:
                rate = batched(system)
                if rate is not None:
                    batched_rates[system].append(rate)
        for _ in range(runs):
            for system in urls:
                single_rates[system].append(single(system))
        return {
            system: (
                statistics.median(batched_rates[system]) if batched_rates[system] else None,
                statistics.median(single_rates[system]),
            )
            for system in urls
        }
    finally:
        for enqueuer in enqueuers.values():
            enqueuer.close()


# ------------------------------------------------------------------ workers


Marks = dict[str, float]


def worker_app(
    system: str, url: str, concurrency: int, marks: Marks | None, prefetch: int = 0
) -> tuple[Any, Callable[[], None]]:
    """The system's worker with a no-op job and a 10-step no-op workflow: (its coroutine, stop).

    With ``marks``, the no-op job records its start under key "<i>", the workflow its start
    and its end under "<i>" and "<i>.end" (time.perf_counter, this process).
    """

    def mark(payload: Any, suffix: str = "") -> None:
        if marks is not None:
            marks[f"{payload['i']}{suffix}"] = time.perf_counter()

    async def nothing() -> None:
        return None

    if system == "durable":
        from durable import Worker

        worker = Worker(url, QUEUE, concurrency=concurrency, prefetch=prefetch)

        @worker.task(name=NOOP)
        async def noop(input: dict[str, Any]) -> None:
            mark(input)

        @worker.durable_task(name=WORKFLOW)
        async def workflow(input: dict[str, Any], ctx: Any) -> None:
            mark(input)
            for s in range(STEPS):
                await ctx.step(f"s{s}", nothing)
            mark(input, ".end")

        return worker.run_async(), worker.stop

    if system == "PgQueuer":
        import asyncpg
        from pgqueuer import PgQueuer  # type: ignore[import-not-found]

        holder: dict[str, Any] = {}

        async def run_pgq() -> None:
            conn = await asyncpg.connect(url)
            pgq = PgQueuer.from_asyncpg_connection(conn)
            holder["pgq"] = pgq

            async def noop(job: Any) -> None:
                mark(json.loads(job.payload))

            pgq.entrypoint(NOOP)(noop)

            try:
                await pgq.run(batch_size=max(1, concurrency // 2), max_concurrent_tasks=concurrency)
            finally:
                await conn.close()

        def stop_pgq() -> None:
            if "pgq" in holder:
                holder["pgq"].shutdown.set()

        return run_pgq(), stop_pgq

    from absurd_sdk import AsyncAbsurd

    app = AsyncAbsurd(url, queue_name=QUEUE)

    async def absurd_noop(params: dict[str, Any], ctx: Any) -> None:
        mark(params)

    async def absurd_workflow(params: dict[str, Any], ctx: Any) -> None:
        mark(params)
        for s in range(STEPS):
            await ctx.step(f"s{s}", nothing)
        mark(params, ".end")

    app.register_task(NOOP)(absurd_noop)
    app.register_task(WORKFLOW)(absurd_workflow)

    return app.start_worker(concurrency=concurrency), app.stop_worker


def wait_for_mark(marks: Marks, key: str, timeout: float = 30.0) -> float:
    """The time job ``key`` started, once it has (polled every 0.5 ms)."""
    deadline = time.perf_counter() + timeout
    while key not in marks:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"job {key} did not start in {timeout:.0f} s")
        time.sleep(0.0005)
    return marks[key]


class ThreadWorker:
    """A worker in a thread of this process, on an event loop of its own."""

    def __init__(self, system: str, url: str, concurrency: int) -> None:
        self.marks: Marks = {}
        self.loop = asyncio.new_event_loop()
        coroutine, self._stop = worker_app(system, url, concurrency, self.marks)
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(coroutine,), daemon=True)
        self.thread.start()

    def wait(self, key: str, timeout: float = 30.0) -> float:
        return wait_for_mark(self.marks, key, timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop)
        self.thread.join(timeout=30)


def worker_child(system: str, url: str, concurrency: int, prefetch: int) -> None:
    """The worker process of the drains: runs until killed."""
    coroutine, _ = worker_app(system, url, concurrency, None, prefetch)
    asyncio.run(coroutine)


def bench_drain(
    system: str, url: str, task: str, n: int, concurrency: int, timeout: float, prefetch: int = 0
) -> float:
    """Jobs/s of a worker process over a backlog of n, first completion to last (polled at 20 ms)."""
    import psycopg

    reset(system, url)
    enqueuer = Enqueuer(system, url)
    try:
        enqueuer.backlog(task, n)
    finally:
        enqueuer.close()
    settle(url)
    child = subprocess.Popen(
        [sys.executable, __file__, "--worker-child", system, url, str(concurrency), str(prefetch)],
        stdin=subprocess.DEVNULL,
    )
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            first: tuple[float, int] | None = None
            while True:
                done = done_count(system, conn, n)
                now = time.perf_counter()
                if first is None and done > 0:
                    first = (now, done)
                if done >= n:
                    break
                if child.poll() is not None:
                    raise RuntimeError(f"the worker exited ({child.returncode}) after {done} of {n}")
                if now - started > timeout:
                    raise RuntimeError(f"only {done} of {n} done in {timeout:.0f} s")
                time.sleep(0.02)
            assert first is not None
            return (n - first[1]) / (now - first[0])
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def time_starts(enqueue: Callable[[int], None], wait: Callable[[str], float], n: int) -> tuple[float, float]:
    """p50, p99 ms from ``enqueue(i)`` (just before the call) to the start of job ``i``
    (``wait(str(i))``): n jobs one after another at random gaps, after 10 warm-up jobs."""
    latencies: list[float] = []
    for i in range(-10, n):
        time.sleep(random.uniform(0.05, 0.25))
        sent = time.perf_counter()
        enqueue(i)
        started = wait(str(i))
        if i >= 0:
            latencies.append((started - sent) * 1000)
    latencies.sort()
    return statistics.median(latencies), latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]


def bench_latency(system: str, url: str, n: int) -> tuple[float, float]:
    """p50, p99 ms from enqueue (just before the call) to the no-op job's start, idle worker."""
    reset(system, url)
    settle(url)
    worker = ThreadWorker(system, url, 10)
    enqueuer = Enqueuer(system, url)
    try:
        return time_starts(lambda i: enqueuer.one(NOOP, {"i": i}), worker.wait, n)
    finally:
        enqueuer.close()
        worker.stop()


def bench_step_overhead(system: str, url: str, workflows: int) -> float:
    """ms per step: 10-step workflows one after another, a one-slot worker; median over workflows."""
    reset(system, url)
    settle(url)
    worker = ThreadWorker(system, url, 1)
    enqueuer = Enqueuer(system, url)
    per_step: list[float] = []
    try:
        for i in range(-3, workflows):  # 3 warm-up workflows
            enqueuer.one(WORKFLOW, {"i": i})
            begun = worker.wait(str(i))
            ended = worker.wait(f"{i}.end")
            if i >= 0:
                per_step.append((ended - begun) * 1000 / STEPS)
    finally:
        enqueuer.close()
        worker.stop()
    return statistics.median(per_step)


def bench_raw_drain(url: str, n: int, limit: int) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("drop table if exists raw_jobs")
        conn.execute(
            "create table raw_jobs (id bigint generated always as identity primary key, payload jsonb)"
        )
        conn.execute(
            "insert into raw_jobs (payload) select jsonb_build_object('i', g) from generate_series(1, %s) g",
            (n,),
        )
        conn.execute("vacuum analyze raw_jobs")
        conn.execute("checkpoint")
        query = (
            "delete from raw_jobs where id in"
            " (select id from raw_jobs order by id for update skip locked limit %s) returning id, payload"
        )
        started = time.perf_counter()
        done = 0
        while done < n:
            rows = conn.execute(query, (limit,), prepare=True).fetchall()
            if not rows:
                break
            done += len(rows)
        return done / (time.perf_counter() - started)


class RawListener:
    """The floor of the latency figure: a thread of this process that LISTENs on a plain
    connection and, at each notification, takes the waiting rows of a plain table with
    ``DELETE … SKIP LOCKED … RETURNING`` (autocommit: one commit each, as a queue's claim),
    marking each row's start as the workers of bench_latency mark their jobs'."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.marks: Marks = {}
        self._stop = threading.Event()
        self._listen = psycopg.connect(url, autocommit=True)
        self._take = psycopg.connect(url, autocommit=True)
        self._listen.execute("listen raw_latency")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        query = (
            "delete from raw_latency where id in"
            " (select id from raw_latency order by id for update skip locked limit 10) returning payload"
        )
        while not self._stop.is_set():
            for _ in self._listen.notifies(timeout=0.2, stop_after=1):
                for (payload,) in self._take.execute(query, prepare=True).fetchall():
                    self.marks[str(payload["i"])] = time.perf_counter()

    def wait(self, key: str, timeout: float = 30.0) -> float:
        return wait_for_mark(self.marks, key, timeout)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)
        self._listen.close()
        self._take.close()


def bench_raw_latency(url: str, n: int) -> tuple[float, float]:
    """p50, p99 ms of the floor of enqueue → start on this machine: one autocommit statement
    INSERTs a row into a plain table and NOTIFYs (its commit flushed), and RawListener takes
    it, timed as bench_latency (time_starts)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("drop table if exists raw_latency")
        conn.execute(
            "create table raw_latency (id bigint generated always as identity primary key, payload jsonb)"
        )
        conn.execute("checkpoint")
        listener = RawListener(url)

        def enqueue(i: int) -> None:
            conn.execute(
                "with j as (insert into raw_latency (payload) values (%s) returning id)"
                " select pg_notify('raw_latency', '') from j",
                (json.dumps({"i": i}),),
                prepare=True,
            )

        try:
            return time_starts(enqueue, listener.wait, n)
        finally:
            listener.stop()


# ------------------------------------------------------------------ main

#: figure -> (unit, higher is better)
FIGURES: dict[str, tuple[str, bool]] = {
    "enqueue, batches of 500 (jobs/s)": ("/s", True),
    "enqueue, one by one (jobs/s)": ("/s", True),
    "processed/s, 1 worker, 10 concurrent": ("/s", True),
    "enqueue → start p50 (ms)": ("ms", False),
    "enqueue → start p99 (ms)": ("ms", False),
    "per step, sequential 10-step workflows (ms)": ("ms", False),
    "steps/s, 10 concurrent workflows, 1 worker": ("/s", True),
    # durable with its options for these loads; the peers' cells repeat their rows above
    "processed/s, durable with prefetch=10": ("/s", True),
    "per step, durable queue with async_checkpoints (ms)": ("ms", False),
    "steps/s, durable queue with async_checkpoints": ("/s", True),
}
#: the rows of durable's options, and the row whose peers' figures they are compared with
OPTION_ROWS: dict[str, str] = {
    "processed/s, durable with prefetch=10": "processed/s, 1 worker, 10 concurrent",
    "per step, durable queue with async_checkpoints (ms)": "per step, sequential 10-step workflows (ms)",
    "steps/s, durable queue with async_checkpoints": "steps/s, 10 concurrent workflows, 1 worker",
}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if unit == "/s" else f"{value:.2f}"


def ratio(figure: str, values: dict[str, float | None]) -> str:
    """durable ÷ the best peer: over 1 is better for a rate, under 1 for a time."""
    ours = values.get("durable")
    higher = FIGURES[figure][1]
    peers = [v for s, v in values.items() if s != "durable" and v is not None]
    if ours is None or not peers:
        return "n/a"
    best = max(peers) if higher else min(peers)
    return f"{ours / best:.2f}" if best else "n/a"


def describe_machine() -> list[str]:
    import psycopg

    with psycopg.connect(server_url(), autocommit=True) as conn:
        row = conn.execute(
            "select version(), current_setting('fsync'), current_setting('synchronous_commit'),"
            " current_setting('shared_buffers'), current_setting('autovacuum')"
        ).fetchone()
    assert row is not None
    versions = ", ".join(
        f"{p} {importlib.metadata.version(p)}"
        for p in ("durable", "pgqueuer", "absurd-sdk", "absurdctl", "asyncpg", "psycopg")
    )
    return [
        f"server: {row[0].split(',')[0]}; fsync={row[1]}, synchronous_commit={row[2]}, "
        f"shared_buffers={row[3]}, autovacuum={row[4]}",
        f"machine: {os.cpu_count()} CPUs; Python {sys.version.split()[0]}",
        f"packages: {versions}",
    ]


Results = dict[str, dict[str, float | None]]


def bench_system(
    system: str, url: str, args: argparse.Namespace, results: Results, phase: Callable[..., Any]
) -> None:
    """Every figure of one system but the enqueue figures (bench_enqueue), into ``results``."""
    bench_drain_figures(system, url, args, results, phase)
    bench_latency_figures(system, url, args, results, phase)
    if system == "PgQueuer":  # a queue of jobs: no workflows, no steps
        return
    results["per step, sequential 10-step workflows (ms)"][system] = phase(
        system, "per step", lambda: bench_step_overhead(system, url, args.sequential)
    )
    steps = phase(
        system, "steps/s", lambda: bench_drain(system, url, WORKFLOW, args.workflows, 10, args.timeout)
    )
    results["steps/s, 10 concurrent workflows, 1 worker"][system] = None if steps is None else steps * STEPS
    if system == "durable":
        bench_durable_options(url, args, results, phase)


def bench_latency_figures(
    system: str, url: str, args: argparse.Namespace, results: Results, phase: Callable[..., Any]
) -> None:
    """The enqueue → start p50 and p99 of one system (bench_latency), into ``results``."""
    lat = phase(system, "latency", lambda: bench_latency(system, url, args.latency))
    if lat:
        results["enqueue → start p50 (ms)"][system] = lat[0]
        results["enqueue → start p99 (ms)"][system] = lat[1]


def bench_drain_figures(
    system: str, url: str, args: argparse.Namespace, results: Results, phase: Callable[..., Any]
) -> None:
    """processed/s of one system (and durable's with prefetch=10), into ``results``."""
    results["processed/s, 1 worker, 10 concurrent"][system] = phase(
        system, "drain", lambda: bench_drain(system, url, NOOP, args.jobs, 10, args.timeout)
    )
    if system == "durable":
        results["processed/s, durable with prefetch=10"]["durable"] = phase(
            "durable",
            "drain, prefetch=10",
            lambda: bench_drain("durable", url, NOOP, args.jobs, 10, args.timeout, 10),
        )


def async_checkpoints(url: str, on: bool) -> None:
    """Sets (or removes) the option async_checkpoints of durable's queue."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "select durable.create_queue(%s, %s::jsonb)",
            (QUEUE, json.dumps({"async_checkpoints": True if on else None})),
        )


def bench_durable_options(
    url: str, args: argparse.Namespace, results: Results, phase: Callable[..., Any]
) -> None:
    """durable's step figures on a queue with async_checkpoints (step records commit without
    waiting for the disk flush; a server crash may re-run the last steps); the drain with
    prefetch (tasks claimed ahead wait for a slot) is bench_drain_figures'."""
    async_checkpoints(url, True)
    try:
        results["per step, durable queue with async_checkpoints (ms)"]["durable"] = phase(
            "durable",
            "per step, async_checkpoints",
            lambda: bench_step_overhead("durable", url, args.sequential),
        )
        steps = phase(
            "durable",
            "steps/s, async_checkpoints",
            lambda: bench_drain("durable", url, WORKFLOW, args.workflows, 10, args.timeout),
        )
        results["steps/s, durable queue with async_checkpoints"]["durable"] = (
            None if steps is None else steps * STEPS
        )
    finally:
        async_checkpoints(url, False)


def median_results(rounds: list[Results]) -> Results:
    """Each figure of each system: the median of the rounds that measured it."""
    merged: Results = {f: dict.fromkeys(SYSTEMS) for f in FIGURES}
    for figure in FIGURES:
        for system in SYSTEMS:
            values = [v for r in rounds if (v := r[figure][system]) is not None]
            merged[figure][system] = statistics.median(values) if values else None
    return merged


def run(args: argparse.Namespace) -> int:
    enqueued: Results = {f: dict.fromkeys(SYSTEMS) for f in FIGURES}
    rounds: list[Results] = []
    raws: list[float] = []
    raw_latencies: list[tuple[float, float]] = []
    notes: list[str] = []

    def phase(system: str, name: str, action: Callable[[], Any]) -> Any:
        log(f"== {system}: {name}")
        started = time.perf_counter()
        try:
            value = action()
        except Exception as exc:
            notes.append(f"{system}, {name}: {type(exc).__name__}: {exc}")
            log(f"   FAILED: {type(exc).__name__}: {exc}")
            return None
        log(f"   {value!r} ({time.perf_counter() - started:.1f} s)")
        return value

    with contextlib.ExitStack() as stack:
        urls = {system: stack.enter_context(database(system)) for system in SYSTEMS}
        for system, url in urls.items():
            install(system, url)
        if not (args.latency_only or args.drain_only):
            enq = phase("every system", "enqueue", lambda: bench_enqueue(urls, args.enqueue, 500, args.runs))
            for system, (batched, single) in (enq or {}).items():
                enqueued["enqueue, batches of 500 (jobs/s)"][system] = batched
                enqueued["enqueue, one by one (jobs/s)"][system] = single
        if not args.enqueue_only:
            raw_url = stack.enter_context(database("raw"))
            # rounds: every system's figures, then the raw references, once a round; each
            # figure is the median of its rounds (a load that comes and goes weighs on each
            # system alike)
            for n in range(1, args.rounds + 1):
                log(f"=== round {n} of {args.rounds}")
                measured: Results = {f: dict.fromkeys(SYSTEMS) for f in FIGURES}
                for system in SYSTEMS:
                    if args.latency_only:
                        bench_latency_figures(system, urls[system], args, measured, phase)
                    elif args.drain_only:
                        bench_drain_figures(system, urls[system], args, measured, phase)
                    else:
                        bench_system(system, urls[system], args, measured, phase)
                rounds.append(measured)
                if not args.latency_only:
                    # (the drain-only run measures the raw drain too: its ratio is one of the figures)
                    raw = phase("raw", "drain", lambda: bench_raw_drain(raw_url, args.jobs, 10))
                    if raw is not None:
                        raws.append(raw)
                if not args.drain_only:
                    lat = phase("raw", "latency", lambda: bench_raw_latency(raw_url, args.latency))
                    if lat is not None:
                        raw_latencies.append(lat)
    results = median_results([*rounds, enqueued])
    raw = statistics.median(raws) if raws else None
    raw_latency = (
        (statistics.median(p for p, _ in raw_latencies), statistics.median(q for _, q in raw_latencies))
        if raw_latencies
        else None
    )
    for row, like in OPTION_ROWS.items():
        for system in SYSTEMS[1:]:
            results[row][system] = results[like][system]

    lines = describe_machine()
    lines.append(
        f"sizes: enqueue {args.enqueue} batched / {args.enqueue // 5} single (median of {args.runs}); "
        f"drain {args.jobs} jobs; latency {args.latency} enqueues; {args.sequential} sequential and "
        f"{args.workflows} concurrent 10-step workflows; all but the enqueue figures: median of "
        f"{args.rounds} rounds"
    )
    lines += [
        "",
        "| figure | durable | PgQueuer | Absurd | durable ÷ best peer |",
        "|---|---:|---:|---:|---:|",
    ]
    footnote = (
        "durable ÷ best peer: durable's figure over the best peer's; "
        "above 1 is better for a rate (/s), below 1 for a time (ms)"
    )
    for figure, (unit, _) in FIGURES.items():
        values = results[figure]
        cells = " | ".join(fmt(values[s], unit) for s in SYSTEMS)
        lines.append(f"| {figure} | {cells} | {ratio(figure, values)} |")
    lines += ["", footnote]
    processed = results["processed/s, 1 worker, 10 concurrent"]["durable"]
    lines.append(
        "raw drain reference (DELETE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT 10) RETURNING, "
        f"1 connection): {fmt(raw, '/s')} rows/s; durable processed/s ÷ raw: "
        + (f"{processed / raw:.2f}" if raw and processed else "n/a")
    )
    p50 = results["enqueue → start p50 (ms)"]["durable"]
    lines.append(
        "raw latency reference (one autocommit INSERT … + NOTIFY, a LISTEN thread DELETEs the row, "
        "same gaps): "
        + (
            f"p50 {raw_latency[0]:.2f} ms, p99 {raw_latency[1]:.2f} ms; durable's p50 above it: "
            + (f"{p50 - raw_latency[0]:.2f} ms" if p50 else "n/a")
            if raw_latency
            else "n/a"
        )
    )
    lines += [f"note: {n}" for n in notes]
    log("\n" + "\n".join(lines))
    return 1 if notes else 0


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "--worker-child":
        worker_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return 0
    ensure_venv()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "--enqueue", type=int, default=5000, help="jobs per batched enqueue run (single: a fifth)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of the enqueue figures (median)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of the other figures, every system in turn (median)"
    )
    parser.add_argument("--jobs", type=int, default=10000, help="backlog of the drains")
    parser.add_argument("--latency", type=int, default=100, help="sequential enqueues of the latency figure")
    parser.add_argument("--sequential", type=int, default=30, help="sequential 10-step workflows")
    parser.add_argument("--workflows", type=int, default=300, help="10-step workflows of the steps/s drain")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed for a drain")
    parser.add_argument(
        "--enqueue-only", action="store_true", help="only the enqueue figures (batched and one by one)"
    )
    parser.add_argument(
        "--latency-only", action="store_true", help="only the enqueue → start figures (idle worker)"
    )
    parser.add_argument(
        "--drain-only", action="store_true", help="only the processed/s figures and the raw drain"
    )
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
