#!/usr/bin/env python3
"""Durable tasks benchmark (not a test): checkpoint cost per step, and the replay of a long history.

Prints, on one server:

* the raw SQL cost of a checkpoint: one durable task is claimed, then
  ``durable.checkpoint(task, token, seq, 'step', 'sN', '{}')`` is called for seq 1..M,
  one autocommit call each, on one connection: ms per checkpoint (mean, p50, p99, and the
  first tenth against the last, to see whether the cost grows with the log);
* the reference: pgbench, one-row INSERT per transaction, ONE client; its latency average
  (for one client pgbench's "latency average" is 1000 / tps, which is what is used here).
  Target: a checkpoint at most 1.5 x that latency. Also the same INSERT sent from this
  process (the client path the checkpoints take), and through an async pool like the
  Worker's (asyncio and psycopg's async connection: the floor of a step's round trip);
* the SQL verb alone, without this Python client: ONE pgbench run of P seconds (default
  the same seconds as above) that interleaves, transaction by transaction, the one-row
  INSERT and ``durable.checkpoint`` on a claimed durable task (its seq counted by a
  pgbench variable); pgbench's latency average of each script, and their ratio;
* the per-step cost through the package: N durable tasks of each kind, S no-op
  ``ctx.step`` calls each: an ``async def`` task with ``async def`` steps, a plain ``def``
  task with ``def`` steps (called in the task's thread, its commands on a sync
  connection), an ``async def`` task with ``def`` steps (each run in a thread), and tasks
  of no step (the claim and the completion alone), run
  interleaved by ONE ``durable.worker.Worker`` process with one slot. The per-step figure
  is the time between the recording of consecutive events of a task (a whole step: the
  code's turn, the checkpoint's round trip and commit); the per-task difference with the
  0-step tasks, over S, is shown as a check. Database clock, so the worker's start-up is
  not in it. Then steps/s with K slots;
* the replay of an H-event history (default 10,000): a durable task whose history is
  recorded first (in one statement of H ``durable.checkpoint`` calls), then handed back
  (``durable.release``) and run again by code making the same H ``ctx.step`` calls.
  Measured in this process along the worker's own path (``durable.claim`` with the
  history, the code replaying through ``durable.workflow.DurableContext``, the one
  ``durable.replay_check``, ``durable.complete``), after a warm-up task, with the
  breakdown; and end to end through a Worker process (claim to completion, database
  clock). Target: under 1 s.

The first three run in R rounds (default 10: pgbench, INSERTs, checkpoints, worker tasks,
again), so that a change of the machine's load moves the figures and their reference
alike. Each ratio is given pooled (means over all rounds) and as the median of the
per-round ratios, which one disturbed round does not move.

Ratios matter more than absolute times (the machine is shared). The server is
$DURABLE_DATABASE_URL or $DATABASE_URL (or --url), else an embedded PostgreSQL started
for this run; everything happens in a scratch database of its own, dropped at the end
(helpers of bench/queue_bench.py).

    python bench/durable_bench.py                    # N=200, S=10, M=2000, H=10000
    python bench/durable_bench.py -n 50 --checkpoints 500 --history 2000 --pgbench-seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, LiteralString, TypeVar

import psycopg

from durable import commands
from durable.commands import ClaimedTask, Command
from durable.connections import async_pool, execute_async
from durable.workflow import DurableContext, SyncDurableContext
from queue_bench import (
    Phases,
    bench_database,
    bench_pgbench,
    fmt,
    libpq_env,
    log,
    pgbench_path,
    ratio,
    settle,
)

T = TypeVar("T")

#: the durable task of every phase: input {"steps": n, "kind": "async" | "sync"}
STEPS_TASK = "steps"
#: the same as a plain def (its context a SyncDurableContext): input {"steps": n}
SYNC_STEPS_TASK = "steps_sync"


# ------------------------------------------------------------------ shared helpers
# (suspend_bench.py imports these)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of values, nearest rank."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ms(seconds: float | None, digits: int = 2) -> str:
    return "n/a" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:,.{digits}f} ms"


def verdict(value: float | None, limit: float, target: str) -> str:
    """'  (target <= 1.5: met)': whether value <= limit; ``target`` says it in words."""
    if value is None or math.isnan(value):
        return ""
    return f"  (target {target}: {'met' if value <= limit else 'NOT met'})"


@contextlib.contextmanager
def worker_process(script: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``python script --worker-child args...`` running until the block ends (then SIGTERM)."""
    child = subprocess.Popen([sys.executable, script, "--worker-child", *args], stdin=subprocess.DEVNULL)
    try:
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def wait_for_status(
    conn: psycopg.Connection[Any],
    queue: str,
    status: str,
    count: int,
    *,
    child: subprocess.Popen[bytes] | None,
    timeout: float,
    poll: float = 0.05,
) -> None:
    """Until ``count`` tasks of the queue have ``status``.

    Raises if a task failed, the worker process died, or time ran out.
    """
    started = time.perf_counter()
    while True:
        row = conn.execute(
            "select count(*) filter (where status = %s),"
            " count(*) filter (where status in ('failed', 'cancelled')),"
            " (array_agg(error::text) filter (where status = 'failed'))[1]"
            " from durable.all_tasks where queue = %s",
            (status, queue),
        ).fetchone()
        assert row is not None
        done, failed, error = row
        if failed:
            raise RuntimeError(f"{failed} task(s) of {queue} failed, e.g.: {str(error)[:500]}")
        if done >= count:
            return
        if child is not None and child.poll() is not None:
            raise RuntimeError(
                f"the worker process ended (exit {child.returncode}) with {done} tasks {status}"
            )
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"only {done} of {count} tasks of {queue} are {status} after {timeout:.0f} s")
        time.sleep(poll)


def enqueue_durable(
    conn: psycopg.Connection[Any], queue: str, task_name: str, inputs: Sequence[dict[str, Any]]
) -> list[uuid.UUID]:
    """Durable tasks with these inputs, in one durable.enqueue_many."""
    conn.execute("select durable.create_queue(%s)", (queue,))
    specs = [
        {"task_name": i.get("task", task_name), "input": i, "options": {"durable": True}} for i in inputs
    ]
    rows = conn.execute(
        "select task_id from durable.enqueue_many(%s, %s::jsonb)", (queue, json.dumps(specs))
    ).fetchall()
    return [row[0] for row in rows]


def claim_one(
    conn: psycopg.Connection[Any], queue: str, lease_seconds: int = 3600
) -> tuple[uuid.UUID, uuid.UUID]:
    row = conn.execute(
        "select task_id, lease_token from durable.claim(%s, 'bench-driver', 1, %s)", (queue, lease_seconds)
    ).fetchone()
    if row is None:
        raise RuntimeError(f"nothing to claim in {queue}")
    return row[0], row[1]


# ------------------------------------------------------------------ the task code


async def noop_async() -> None:
    return None


def noop_sync() -> None:
    return None


async def steps_task(input: dict[str, Any], ctx: DurableContext) -> int:
    """``steps`` no-op steps named s1, s2, ...; an async or a sync step function."""
    fn: Any = noop_sync if input.get("kind") == "sync" else noop_async
    steps = int(input["steps"])
    for i in range(1, steps + 1):
        await ctx.step(f"s{i}", fn)
    return steps


def sync_steps_task(input: dict[str, Any], ctx: SyncDurableContext) -> int:
    """``steps`` no-op def steps named s1, s2, ..., called in the task's thread."""
    steps = int(input["steps"])
    for i in range(1, steps + 1):
        ctx.step(f"s{i}", noop_sync)
    return steps


def worker_child(url: str, queue: str, slots: int) -> None:
    """Runs in the worker process: one Worker with the durable tasks, until SIGTERM (graceful)."""
    from durable.worker import Worker

    worker = Worker(url, queue=queue, concurrency=slots)
    worker.durable_task(name=STEPS_TASK)(steps_task)
    worker.durable_task(name=SYNC_STEPS_TASK)(sync_steps_task)
    with contextlib.suppress(KeyboardInterrupt):
        worker.run()


# ------------------------------------------------------------------ checkpoint cost, in rounds

#: the kinds of task of the one-slot worker runs: (label, steps (None: S), task, step function)
STEP_KINDS = (
    ("0 steps", 0, STEPS_TASK, "async"),
    ("async def", None, STEPS_TASK, "async"),
    ("def", None, SYNC_STEPS_TASK, "sync"),
    ("async def, def steps", None, STEPS_TASK, "sync"),
)


@dataclass
class Rounds:
    """Raw checkpoints, their references and the one-slot worker, interleaved round by round."""

    #: seconds of each durable.checkpoint call, in seq order
    checkpoints: list[float] = field(default_factory=list)
    #: seconds of each one-row INSERT from this process (same connection, same client path)
    inserts: list[float] = field(default_factory=list)
    #: the same INSERT from an async pool like the Worker's (asyncio, psycopg's async connection)
    async_inserts: list[float] = field(default_factory=list)
    #: pgbench's tps of each round (one client)
    pgbench_tps: list[float] = field(default_factory=list)
    #: mean checkpoint / pgbench latency, per round
    checkpoint_ratios: list[float] = field(default_factory=list)
    #: by kind of task: claim to completion of each task, and step-to-step times
    task_seconds: dict[str, list[float]] = field(default_factory=dict)
    step_seconds: dict[str, list[float]] = field(default_factory=dict)
    #: by kind of task: p50 step-to-step / pgbench latency, per round
    step_ratios: dict[str, list[float]] = field(default_factory=dict)

    @property
    def pgbench_latency(self) -> float | None:
        """Pooled over the rounds: for one client, pgbench's latency average is 1 / tps."""
        return 1 / statistics.fmean(self.pgbench_tps) if self.pgbench_tps else None

    def tenth(self, last: bool) -> float:
        k = max(1, len(self.checkpoints) // 10)
        return statistics.fmean(self.checkpoints[-k:] if last else self.checkpoints[:k])


def worker_round(
    conn: psycopg.Connection[Any],
    queue: str,
    n: int,
    steps: int,
    kinds: Sequence[str],
    child: subprocess.Popen[bytes],
    timeout: float,
) -> dict[str, tuple[list[float], list[float]]]:
    """n tasks of each kind, interleaved in enqueue order, through the running one-slot worker.

    Returns by kind the claim-to-completion time of each task and the step-to-step times
    (the recorded_at of events k-1 and k: a whole step, the code's turn, the
    checkpoint's round trip and its commit), database clock.
    """
    specs = []
    for i in range(n):
        for label, count, task, fn in STEP_KINDS:
            if label in kinds:
                specs.append(
                    {
                        "steps": steps if count is None else count,
                        "kind": fn,
                        "label": label,
                        "i": i,
                        "task": task,
                    }
                )
    ids = enqueue_durable(conn, queue, STEPS_TASK, specs)
    started = time.perf_counter()
    while True:
        row = conn.execute(
            "select count(*) filter (where status = 'completed'), count(*) filter (where status = 'failed')"
            " from durable.all_tasks where task_id = any(%s)",
            (ids,),
        ).fetchone()
        assert row is not None
        if row[1]:
            raise RuntimeError(f"{row[1]} task(s) failed")
        if row[0] == len(ids):
            break
        if child.poll() is not None:
            raise RuntimeError(f"the worker process ended (exit {child.returncode})")
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"only {row[0]} of {len(ids)} tasks completed after {timeout:.0f} s")
        time.sleep(0.02)
    out: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in kinds}
    for label, seconds in conn.execute(
        "select input ->> 'label', extract(epoch from finished_at - started_at)::float8"
        " from durable.all_tasks where task_id = any(%s)",
        (ids,),
    ).fetchall():
        out[label][0].append(seconds)
    for label, seconds in conn.execute(
        """
        select label, d from (
            select t.input ->> 'label' as label,
                   extract(epoch from e.recorded_at - lag(e.recorded_at)
                           over (partition by e.task_id order by e.seq))::float8 as d
            from durable.events e join durable.all_tasks t using (task_id)
            where t.task_id = any(%s)
        ) as intervals
        where d is not null
        """,
        (ids,),
    ).fetchall():
        out[label][1].append(seconds)
    return out


async def pool_inserts(url: str, insert: LiteralString, count: int) -> list[float]:
    """Seconds of each of ``count`` one-row INSERTs, each through a pool like the Worker's."""
    pool = await async_pool(url, min_size=2, max_size=4)
    try:
        for _ in range(10):  # warm up: connections open, statement prepared
            async with pool.connection() as conn:
                await conn.execute(insert, prepare=True)
        seconds = []
        for _ in range(count):
            started = time.perf_counter()
            async with pool.connection() as conn:
                await conn.execute(insert, prepare=True)
            seconds.append(time.perf_counter() - started)
        return seconds
    finally:
        await pool.close()


def bench_rounds(url: str, args: argparse.Namespace, kinds: Sequence[str]) -> Rounds:
    """R rounds of: pgbench, M/R one-row INSERTs, the next M/R checkpoints, N/R tasks of each kind.

    The checkpoints are ``durable.checkpoint(task, token, seq, 'step', 'sN', '{}')`` for
    seq 1..M of one claimed durable task, one autocommit call each, on one connection.
    The tasks run in one Worker process with one slot, up through the rounds. Everything
    is interleaved so that a change of the machine's load moves every figure alike.
    """
    out = Rounds()
    rounds, m, n = args.rounds, args.checkpoints, args.tasks
    per_round = max(1, round(args.pgbench_seconds / rounds)) if args.pgbench_seconds > 0 else 0
    queue = "bench_steps"
    with psycopg.connect(url, autocommit=True) as conn:
        enqueue_durable(conn, "bench_checkpoint", STEPS_TASK, [{"steps": m}])
        task, token = claim_one(conn, "bench_checkpoint")
        conn.execute(
            "create table bench_insert ("
            " id bigint generated always as identity primary key,"
            " payload jsonb not null,"
            " created_at timestamptz not null default now())"
        )
        checkpoint = "select durable.checkpoint(%s, %s, %s::integer, 'step', %s, '{}'::jsonb)"
        insert = "insert into bench_insert (payload) values ('{}')"
        conn.execute("select durable.create_queue(%s)", (queue,))
        seq = tasks = 0
        with worker_process(__file__, url, queue, "1") as child:
            for r in range(rounds):
                if per_round:
                    tps = bench_pgbench(url, 1, per_round)
                    conn.execute("drop table bench_pgbench_insert")  # bench_pgbench creates it each time
                    out.pgbench_tps.append(tps)
                count = m * (r + 1) // rounds - seq
                for _ in range(count):
                    started = time.perf_counter()
                    conn.execute(insert, prepare=True)
                    out.inserts.append(time.perf_counter() - started)
                out.async_inserts += asyncio.run(pool_inserts(url, insert, count))
                first = len(out.checkpoints)
                for _ in range(count):
                    seq += 1
                    started = time.perf_counter()
                    conn.execute(checkpoint, (task, token, seq, f"s{seq}"), prepare=True)
                    out.checkpoints.append(time.perf_counter() - started)
                if per_round and count:
                    out.checkpoint_ratios.append(
                        statistics.fmean(out.checkpoints[first:]) * out.pgbench_tps[-1]
                    )
                count = n * (r + 1) // rounds - tasks
                tasks += count
                if not count:
                    continue
                measured = worker_round(conn, queue, count, args.steps, kinds, child, args.worker_timeout)
                for label, (task_seconds, step_seconds) in measured.items():
                    out.task_seconds.setdefault(label, []).extend(task_seconds)
                    out.step_seconds.setdefault(label, []).extend(step_seconds)
                    if per_round and step_seconds:
                        out.step_ratios.setdefault(label, []).append(
                            percentile(step_seconds, 50) * out.pgbench_tps[-1]
                        )
        conn.execute("select durable.release(%s, %s, 0)", (task, token))
    return out


# ------------------------------------------------------------------ the SQL verb through pgbench


def pgbench_checkpoint(url: str, seconds: int) -> tuple[float, float]:
    """pgbench latency averages (s) of a one-row INSERT and of durable.checkpoint, interleaved.

    One pgbench run, one client, two scripts of equal weight: pgbench picks one of them for
    every transaction, so both see the same machine at the same moments.
    """
    binary = pgbench_path()
    if binary is None:
        raise RuntimeError("no pgbench on PATH nor in the embedded server's bin dir")
    with psycopg.connect(url, autocommit=True) as conn:
        enqueue_durable(conn, "bench_pgbench_checkpoint", STEPS_TASK, [{"steps": 0}])
        task, token = claim_one(conn, "bench_pgbench_checkpoint")
        conn.execute(
            "create table bench_pgbench_interleaved ("
            " id bigint generated always as identity primary key,"
            " payload jsonb not null,"
            " created_at timestamptz not null default now())"
        )
    with tempfile.TemporaryDirectory() as folder:
        insert, checkpoint = Path(folder, "insert.sql"), Path(folder, "checkpoint.sql")
        insert.write_text("insert into bench_pgbench_interleaved (payload) values ('{}');\n")
        checkpoint.write_text(
            "\\set seq :seq + 1\n"
            f"select durable.checkpoint('{task}', '{token}', :seq, 'step', 's', '{{}}'::jsonb);\n"
        )
        command = [binary, "-n", "-c", "1", "-T", str(seconds), "-M", "prepared", "-D", "seq=0"]
        command += ["-f", f"{insert}@1", "-f", f"{checkpoint}@1"]
        done = subprocess.run(command, env=libpq_env(url), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stderr.strip()}")
    latencies = [float(x) for x in re.findall(r"^ - latency average = ([0-9.]+) ms", done.stdout, re.M)]
    failed = re.findall(r"^ - number of failed transactions: ([0-9]+)", done.stdout, re.M)
    if len(latencies) != 2 or any(int(f) for f in failed):
        raise RuntimeError(f"unexpected pgbench output:\n{done.stdout}")
    return latencies[0] / 1000, latencies[1] / 1000


# ------------------------------------------------------------------ throughput with K slots


def bench_throughput(url: str, queue: str, n: int, steps: int, slots: int, timeout: float) -> float:
    """steps/s of N durable tasks of ``steps`` async no-op steps, one worker process with K slots.

    From the first claim to the last completion, on the database clock.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        enqueue_durable(
            conn, queue, STEPS_TASK, [{"steps": steps, "kind": "async", "i": i} for i in range(n)]
        )
        conn.execute("vacuum analyze durable.tasks")
        with worker_process(__file__, url, queue, str(slots)) as child:
            wait_for_status(conn, queue, "completed", n, child=child, timeout=timeout)
        row = conn.execute(
            "select extract(epoch from max(finished_at) - min(started_at))::float8"
            " from durable.all_tasks where queue = %s",
            (queue,),
        ).fetchone()
        assert row is not None
        return n * steps / float(row[0])


# ------------------------------------------------------------------ replay of a long history


def build_histories(url: str, queue: str, events: int, count: int = 1) -> tuple[list[uuid.UUID], float]:
    """``count`` durable tasks with ``events`` recorded steps each (s1..sH, results {"i": n}), pending.

    The tasks are enqueued together; each is claimed, its events are recorded by one
    statement of ``events`` durable.checkpoint calls, and it is released (no attempt
    spent) so that the next claim gets its history. A released task's run_at is later
    than the others', so the next claim takes one not yet recorded. Returns the tasks
    and the seconds the last recording took.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        tasks = enqueue_durable(conn, queue, STEPS_TASK, [{"steps": events, "kind": "async"}] * count)
        seconds = math.nan
        for _ in range(count):
            task, token = claim_one(conn, queue)
            row = conn.execute("select attempt from durable.all_tasks where task_id = %s", (task,)).fetchone()
            if task not in tasks or row is None or row[0] != 1:
                raise RuntimeError(f"claimed {task}, which is not a new task of this batch")
            started = time.perf_counter()
            conn.execute(
                "select count(*) from ("
                " select durable.checkpoint(%s, %s, g, 'step', 's' || g, jsonb_build_object('i', g))"
                " from generate_series(1, %s::integer) as g"
                ") as recorded",
                (task, token, events),
            )
            seconds = time.perf_counter() - started
            conn.execute("select durable.release(%s, %s, 0, 'bench: history recorded')", (task, token))
        conn.execute("vacuum analyze durable.events")
        conn.execute("vacuum analyze durable.tasks")
    return tasks, seconds


@dataclass
class ReplayBreakdown:
    events: int = 0
    history_bytes: int = 0
    claim: float = 0.0
    replay: float = 0.0
    replay_check: float = 0.0
    complete: float = 0.0
    # parts of the claim, measured apart
    history_sql: float = 0.0
    history_parse: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.claim + self.replay + self.replay_check + self.complete


async def replay_in_process(url: str, queue: str, task: uuid.UUID) -> ReplayBreakdown:
    """The worker's path for one durable task, timed: claim, code replay, replay_check, complete.

    Mirrors ``Worker._run_durable``: the code runs against the claimed history; every
    step is recorded, so no database call happens until the code returns; then
    ``ctx.verify()`` presents the whole replayed prefix in one ``durable.replay_check``
    and the task is completed (``durable.complete``, its whole history now checked).
    """
    out = ReplayBreakdown()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:

        async def call(command: Command[T]) -> T:
            name = command.sql.split("durable.", 1)[1].split("(", 1)[0]
            out.calls[name] = out.calls.get(name, 0) + 1
            return await execute_async(conn, command)

        started = time.perf_counter()
        claimed: list[ClaimedTask] = await call(commands.claim(queue, "bench-replay", 1, 300, [STEPS_TASK]))
        out.claim = time.perf_counter() - started
        if len(claimed) != 1 or claimed[0].task_id != task:
            raise RuntimeError(f"claimed {[c.task_id for c in claimed]}, expected {task}")
        got = claimed[0]
        out.events = len(got.history or [])
        ctx = DurableContext(
            call=call,
            task_id=got.task_id,
            lease_token=got.lease_token,
            queue=queue,
            task_name=got.task_name,
            attempt=got.attempt,
            history=got.history,
        )
        started = time.perf_counter()
        result = await steps_task(got.input, ctx)
        out.replay = time.perf_counter() - started
        if out.calls.keys() != {"claim"}:
            raise RuntimeError(f"the replay made database calls: {out.calls}")
        started = time.perf_counter()
        await ctx.verify()
        out.replay_check = time.perf_counter() - started
        started = time.perf_counter()
        await ctx.complete(json.dumps(result))  # nothing left to present: durable.complete alone
        out.complete = time.perf_counter() - started

        # the claim's parts, apart: the history as the server builds it, and its parsing here
        cursor = await conn.execute(
            "select durable._history(task_id, generation)::text from durable.all_tasks where task_id = %s",
            (task,),
        )
        started = time.perf_counter()
        cursor = await conn.execute(
            "select durable._history(task_id, generation)::text from durable.all_tasks where task_id = %s",
            (task,),
        )
        row = await cursor.fetchone()
        out.history_sql = time.perf_counter() - started
        assert row is not None
        text = str(row[0])
        out.history_bytes = len(text.encode())
        started = time.perf_counter()
        json.loads(text)
        out.history_parse = time.perf_counter() - started
    return out


def bench_replay(url: str, queue: str, events: int, runs: int) -> tuple[list[ReplayBreakdown], float]:
    """A warm-up replay of 100 events, then ``runs`` replays of ``events``; and a recording time."""
    warm, _ = build_histories(url, queue, 100)
    asyncio.run(replay_in_process(url, queue, warm[0]))
    out: list[ReplayBreakdown] = []
    recording = math.nan
    for _ in range(runs):
        tasks, recording = build_histories(url, queue, events)
        settle(url)
        out.append(asyncio.run(replay_in_process(url, queue, tasks[0])))
    return out, recording


def bench_replay_worker(url: str, queue: str, events: int, runs: int, timeout: float) -> list[float]:
    """The same replays through a Worker process (one slot): claim to completion, database clock."""
    tasks, _ = build_histories(url, queue, events, runs)
    settle(url)
    with psycopg.connect(url, autocommit=True) as conn:
        with worker_process(__file__, url, queue, "1") as child:
            wait_for_status(conn, queue, "completed", runs, child=child, timeout=timeout)
        rows = conn.execute(
            "select extract(epoch from finished_at - started_at)::float8, output"
            " from durable.all_tasks where task_id = any(%s)",
            (tasks,),
        ).fetchall()
        if any(row[1] != events for row in rows):
            raise RuntimeError(f"the tasks returned {[row[1] for row in rows]}, expected {events}")
        return [float(row[0]) for row in rows]


# ------------------------------------------------------------------ main


@dataclass
class Results:
    server: str = ""
    rounds: Rounds | None = None
    #: pgbench latency averages (s): the one-row INSERT and durable.checkpoint, interleaved
    verb: tuple[float, float] | None = None
    throughput: float | None = None
    replays: list[ReplayBreakdown] = field(default_factory=list)
    recording: float | None = None
    replay_worker: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def median_run(runs: list[ReplayBreakdown]) -> ReplayBreakdown:
    return sorted(runs, key=lambda r: r.total)[(len(runs) - 1) // 2]


def by_round(ratios: list[float]) -> list[tuple[str, str]]:
    if not ratios:
        return []
    median = statistics.median(ratios)
    return [
        ("  round by round", ", ".join(f"{x:.2f}" for x in ratios)),
        ("  median of the rounds", f"{median:.2f}{verdict(median, 1.5, '<= 1.5')}"),
    ]


def summary(args: argparse.Namespace, results: Results, kinds: Sequence[str]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = [
        ("server", results.server),
        (
            "sizes",
            f"M={args.checkpoints} checkpoints, N={args.tasks} tasks x S={args.steps} steps,"
            f" {args.rounds} rounds; H={args.history:,} events x {args.replay_runs} replays",
        ),
    ]
    cost = results.rounds
    latency = cost.pgbench_latency if cost else None
    if cost:
        tps = ", ".join(f"{t:,.0f}" for t in cost.pgbench_tps)
        rows += [
            ("pgbench 1-row INSERT, 1 client: latency", f"{ms(latency, 3)} (tps by round: {tps})"),
            ("one-row INSERT from Python: mean", ms(statistics.fmean(cost.inserts), 3)),
            (
                "  the same through an async pool (as the Worker): mean",
                f"{ms(statistics.fmean(cost.async_inserts), 3)}"
                f" ({ratio(statistics.fmean(cost.async_inserts), latency)} x pgbench)",
            ),
            (
                "raw durable.checkpoint: mean / p50 / p99",
                f"{ms(statistics.fmean(cost.checkpoints), 3)} / {ms(percentile(cost.checkpoints, 50), 3)}"
                f" / {ms(percentile(cost.checkpoints, 99), 3)}",
            ),
            (
                "  first tenth / last tenth of the log",
                f"{ms(cost.tenth(False), 3)} / {ms(cost.tenth(True), 3)}",
            ),
            (
                "ratio raw checkpoint / INSERT from Python",
                ratio(statistics.fmean(cost.checkpoints), statistics.fmean(cost.inserts)),
            ),
        ]
        mean = statistics.fmean(cost.checkpoints)
        rows.append(
            (
                "RATIO raw checkpoint / pgbench latency, pooled",
                ratio(mean, latency) + verdict(mean / latency if latency else None, 1.5, "<= 1.5"),
            )
        )
        rows += by_round(cost.checkpoint_ratios)
        if results.verb:
            insert, checkpoint = results.verb
            rows += [
                (
                    "pgbench, interleaved: 1-row INSERT / durable.checkpoint",
                    f"{ms(insert, 3)} / {ms(checkpoint, 3)}",
                ),
                (
                    "RATIO SQL verb / INSERT, both through pgbench",
                    ratio(checkpoint, insert) + verdict(checkpoint / insert, 1.5, "<= 1.5"),
                ),
            ]
        zero = cost.task_seconds.get("0 steps")
        for label in kinds:
            if label == "0 steps" or label not in cost.step_seconds:
                continue
            steps = cost.step_seconds[label]
            p50 = percentile(steps, 50)
            rows.append(
                (
                    f"worker, step ({label}) to step: p50 / mean",
                    f"{ms(p50, 3)} / {ms(statistics.fmean(steps), 3)} (1 slot)",
                )
            )
            if zero:
                per_task = percentile(cost.task_seconds[label], 50)
                rows.append(
                    (
                        f"  (task p50 - 0-step task p50) / {args.steps}",
                        f"{ms((per_task - percentile(zero, 50)) / args.steps, 3)}"
                        f" (task {ms(per_task, 2)}, 0-step task {ms(percentile(zero, 50), 2)})",
                    )
                )
            rows.append(
                (
                    f"RATIO worker step ({label}, p50) / pgbench, pooled",
                    ratio(p50, latency) + verdict(p50 / latency if latency else None, 1.5, "<= 1.5"),
                )
            )
            rows += by_round(cost.step_ratios.get(label, []))
            per_task = statistics.fmean(cost.task_seconds[label])
            rows.append(
                (
                    f"worker steps/s ({label}, 1 slot)",
                    f"{fmt(args.steps / per_task if per_task else None)} (claim to completion of each task)",
                )
            )
    if results.throughput is not None:
        rows.append(
            (
                f"worker steps/s (async def, {args.slots} slots)",
                f"{fmt(results.throughput)} (first claim to last completion)",
            )
        )
    if results.replays:
        r = median_run(results.replays)
        totals = ", ".join(ms(x.total, 0) for x in results.replays)
        rows += [
            (f"REPLAY {r.events:,} events: total (median run)", ms(r.total) + verdict(r.total, 1.0, "< 1 s")),
            ("  every run", totals),
            ("  claim with its history", f"{ms(r.claim)} ({r.history_bytes / 1e6:.1f} MB of JSON)"),
            ("    of which _history() alone, in SQL", ms(r.history_sql)),
            ("    of which json.loads alone", ms(r.history_parse)),
            ("  replay in Python", f"{ms(r.replay)} ({r.replay / max(r.events, 1) * 1e6:.1f} us/event)"),
            ("  replay_check round trip", ms(r.replay_check)),
            ("  complete", ms(r.complete)),
            ("  (recording them: one statement)", ms(results.recording, 0)),
        ]
    if results.replay_worker:
        p50 = percentile(results.replay_worker, 50)
        every = ", ".join(ms(x, 0) for x in results.replay_worker)
        rows.append(
            (
                f"REPLAY {args.history:,} events, Worker process",
                f"{ms(p50)} median ({every}){verdict(p50, 1.0, '< 1 s')}",
            )
        )
    return rows


def run(args: argparse.Namespace) -> int:
    results = Results()
    kinds = [
        label
        for label, count, _, fn in STEP_KINDS
        if count == 0 or args.step_kind == "both" or fn == args.step_kind
    ]
    with bench_database(args.url) as (url, results.server):
        phase = Phases(url, results.notes)

        results.rounds = phase(
            f"{args.rounds} rounds of: pgbench (1 client, 1-row INSERT, {args.pgbench_seconds} s in all),"
            f" one-row INSERTs and durable.checkpoint calls ({args.checkpoints} of each in all, autocommit,"
            f" one connection), and durable tasks of {', '.join(kinds)} ({args.tasks} of each in all,"
            f" {args.steps} no-op steps) through one Worker process with one slot",
            lambda: bench_rounds(url, args, kinds),
        )
        if args.pgbench_seconds > 0:
            results.verb = phase(
                f"the SQL verb alone: one pgbench run of {args.pgbench_seconds} s, 1 client, interleaving"
                " a one-row INSERT and durable.checkpoint",
                lambda: pgbench_checkpoint(url, args.pgbench_seconds),
            )
        if args.slots > 1:
            results.throughput = phase(
                f"throughput: {args.tasks} durable tasks of {args.steps} steps (async def),"
                f" one Worker process with {args.slots} slots",
                lambda: bench_throughput(
                    url, "bench_throughput", args.tasks, args.steps, args.slots, args.worker_timeout
                ),
            )
        if args.history > 0 and args.replay_runs > 0:
            replayed = phase(
                f"replay in process: {args.replay_runs} x a history of {args.history:,} events"
                " (after a warm-up of 100)",
                lambda: bench_replay(url, "bench_replay", args.history, args.replay_runs),
            )
            if replayed:
                results.replays, results.recording = replayed
                for r in results.replays:
                    log(
                        f"   claim {ms(r.claim)}, replay {ms(r.replay)}, replay_check {ms(r.replay_check)},"
                        f" complete {ms(r.complete)}: total {ms(r.total)}; database calls {r.calls}"
                    )
            results.replay_worker = (
                phase(
                    f"replay through a Worker process: {args.replay_runs} x a history of"
                    f" {args.history:,} events",
                    lambda: bench_replay_worker(
                        url, "bench_replay_worker", args.history, args.replay_runs, args.worker_timeout
                    ),
                )
                or []
            )

    rows = summary(args, results, kinds)
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
        worker_child(argv[1], argv[2], int(argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", help="the server (default: $DATABASE_URL, else an embedded PostgreSQL)")
    parser.add_argument(
        "-n", "--tasks", type=int, default=200, help="N: durable tasks of each kind (default 200)"
    )
    parser.add_argument("-s", "--steps", type=int, default=10, help="S: steps per task (default 10)")
    parser.add_argument(
        "-k", "--slots", type=int, default=10, help="K: slots of the throughput run (default 10; 1 skips it)"
    )
    parser.add_argument(
        "--step-kind",
        choices=["async", "sync", "both"],
        default="both",
        help="the no-op step functions: async def, def (a def task, and an async def task running them"
        " in threads), or both (default)",
    )
    parser.add_argument(
        "-m", "--checkpoints", type=int, default=2000, help="M: raw checkpoint calls (default 2000)"
    )
    parser.add_argument(
        "--history",
        type=int,
        default=10_000,
        help="H: events of the replayed history (default 10000; 0 skips)",
    )
    parser.add_argument(
        "--pgbench-seconds",
        type=int,
        default=10,
        help="pgbench run time in all, split over the rounds (default 10; 0 skips it)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=10,
        help="rounds of pgbench, INSERTs, checkpoints and one-slot worker tasks, interleaved (default 10)",
    )
    parser.add_argument(
        "--replay-runs", type=int, default=3, help="replays of the H-event history, each way (default 3)"
    )
    parser.add_argument(
        "--worker-timeout", type=float, default=600, help="give a worker run at most this many seconds"
    )
    args = parser.parse_args(argv)
    if min(args.tasks, args.steps, args.slots, args.checkpoints, args.rounds) < 1 or args.history < 0:
        parser.error("--tasks, --steps, --slots, --checkpoints and --rounds must be at least 1, --history 0+")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
