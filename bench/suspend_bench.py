#!/usr/bin/env python3
"""Suspension benchmark (not a test): waiting without holding a worker.

Prints, on one server:

* claim latency for ready tasks with many suspended tasks in the table against without
  them. A queue "with" holds --sleeping durable tasks sleeping far into the future and
  --waiting durable tasks waiting for event keys (distinct keys, no timeout), put there
  for real: enqueued, claimed in batches and suspended by ``durable.sleep`` /
  ``durable.wait_event``. A queue "without" holds none. --ready plain tasks are queued in
  each; then ``durable.claim(queue, worker, max_tasks => 1)`` + ``durable.complete`` is
  timed --ready times per queue, in rounds alternating between the two queues, so both
  see the same machine load. Before the suspended tasks exist at all, the same is timed
  on an empty table ("baseline"). The ratio that matters is p50 with / p50 without
  (target: at most 1.2);
* wake-up lag, through ONE ``durable.worker.Worker`` process with the default
  poll_interval (and --slots slots): durable tasks that record ``ctx.now()`` (t0), ``await
  ctx.sleep(1)``, then record ``ctx.now()`` again (t1): lag = t1 - t0 - 1 s; and durable
  tasks waiting for distinct event keys: a driver emits each key, the task records
  ``ctx.now()`` after its wait: lag = that - the emit time (``durable.event_values``).
  All times are the database's. p50/p99 over --lag-tasks tasks each, in two patterns:
  "spread" (tasks started, or keys emitted, evenly over --spread seconds) and "burst"
  (all at once: the lag then includes queueing behind the worker's slots). Also the
  part of the lag until the claim of the attempt that resumed the task.

Ratios matter more than absolute times (the machine is shared). The server is
$DURABLE_DATABASE_URL or $DATABASE_URL (or --url), else an embedded PostgreSQL started
for this run; everything happens in a scratch database of its own, dropped at the end
(helpers of bench/queue_bench.py and bench/durable_bench.py).

    python bench/suspend_bench.py                  # 10,000 + 10,000 suspended, 2,000 claims, 200 lag tasks
    python bench/suspend_bench.py --sleeping 2000 --waiting 2000 --ready 500 --lag-tasks 50
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from durable import commands, workflow_commands
from durable.connections import execute
from durable.workflow import DurableContext
from durable_bench import enqueue_durable, ms, percentile, verdict, worker_process
from queue_bench import Phases, bench_database, log, ratio, settle

PLAIN_TASK = "noop"
SLEEPER = "sleeper"
WAITER = "waiter"
#: the longest durable.sleep accepts is 10 years; the suspended tasks sleep one
FAR_FUTURE = 365 * 86400.0


# ------------------------------------------------------------------ the task code


async def sleeper(input: dict[str, Any], ctx: DurableContext) -> dict[str, str]:
    t0 = await ctx.now()
    await ctx.sleep(float(input.get("seconds", 1.0)))
    t1 = await ctx.now()
    return {"t0": t0.isoformat(), "t1": t1.isoformat()}


async def waiter(input: dict[str, Any], ctx: DurableContext) -> dict[str, str]:
    await ctx.wait_for_event(str(input["key"]))
    t: datetime = await ctx.now()
    return {"t": t.isoformat()}


def worker_child(url: str, queue: str, slots: int) -> None:
    """Runs in the worker process: one Worker with the two durable tasks, default poll_interval."""
    from durable.worker import Worker

    worker = Worker(url, queue=queue, concurrency=slots)
    worker.durable_task(name=SLEEPER)(sleeper)
    worker.durable_task(name=WAITER)(waiter)
    with contextlib.suppress(KeyboardInterrupt):
        worker.run()


# ------------------------------------------------------------------ suspended tasks


def suspend_tasks(url: str, queue: str, sleeping: int, waiting: int, batch: int = 1000) -> dict[str, int]:
    """``sleeping`` durable tasks asleep for a year and ``waiting`` ones waiting for distinct keys.

    Enqueued by enqueue_many, then claimed ``batch`` at a time and suspended in the same
    statement by durable.sleep / durable.wait_event on each claimed task. Returns the
    queue's counts by status.
    """
    enqueue = """
        select count(*) from durable.enqueue_many(
            %s,
            (select jsonb_agg(jsonb_build_object(
                        'task_name', %s::text, 'input', jsonb_build_object('i', g.i),
                        'options', jsonb_build_object('durable', true)))
             from generate_series(1, %s::integer) as g (i))
        )
    """
    suspend = {
        SLEEPER: "select count(*) filter (where (r ->> 'suspended')::boolean) from ("
        " select durable.sleep(c.task_id, c.lease_token, 1, 'sleep', %s::double precision) as r"
        " from durable.claim(%s, 'bench-builder', %s, 600, array[%s]) as c) as s",
        WAITER: "select count(*) filter (where (r ->> 'suspended')::boolean) from ("
        " select durable.wait_event(c.task_id, c.lease_token, 1, 'bench-key-' || c.task_id::text) as r"
        " from durable.claim(%s, 'bench-builder', %s, 600, array[%s]) as c) as s",
    }
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select durable.create_queue(%s)", (queue,))
        for name, total in ((SLEEPER, sleeping), (WAITER, waiting)):
            done = 0
            while done < total:
                size = min(batch, total - done)
                conn.execute(enqueue, (queue, name, size))
                params: tuple[Any, ...] = (queue, size, name)
                if name == SLEEPER:
                    params = (FAR_FUTURE, *params)
                row = conn.execute(suspend[name], params).fetchone()
                if row is None or row[0] != size:
                    raise RuntimeError(f"{name}: {row and row[0]} of {size} tasks suspended")
                done += size
        conn.execute("vacuum analyze durable.tasks")
        conn.execute("vacuum analyze durable.events")
        conn.execute("vacuum analyze durable.event_values")
        rows = conn.execute(
            "select status, count(*) from durable.all_tasks where queue = %s group by status", (queue,)
        ).fetchall()
    return {status: int(count) for status, count in rows}


# ------------------------------------------------------------------ claim latency


def enqueue_ready(conn: psycopg.Connection[Any], queue: str, n: int) -> None:
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
        (queue, PLAIN_TASK, n),
    )


@dataclass
class ClaimTimes:
    claim: list[float] = field(default_factory=list)
    complete: list[float] = field(default_factory=list)


def claim_and_complete(conn: psycopg.Connection[Any], queue: str, n: int, into: ClaimTimes) -> None:
    """n x (durable.claim of one task, timed; durable.complete of it, timed), as a worker would."""
    for _ in range(n):
        started = time.perf_counter()
        claimed = execute(conn, commands.claim(queue, "bench-claimer", 1, 60, [PLAIN_TASK]))
        into.claim.append(time.perf_counter() - started)
        if len(claimed) != 1:
            raise RuntimeError(f"claim on {queue} returned {len(claimed)} tasks")
        task = claimed[0]
        started = time.perf_counter()
        execute(conn, workflow_commands.complete_durable(task.task_id, task.lease_token, None))
        into.complete.append(time.perf_counter() - started)


def bench_claims(
    url: str, queues: dict[str, str], ready: int, rounds: int, warmup: int = 20
) -> dict[str, ClaimTimes]:
    """``ready`` claims per queue (label -> queue), in ``rounds`` rounds alternating the queues."""
    times = {label: ClaimTimes() for label in queues}
    with psycopg.connect(url, autocommit=True) as conn:
        for queue in queues.values():
            enqueue_ready(conn, queue, ready + warmup)
        conn.execute("vacuum analyze durable.tasks")
        for queue in queues.values():  # the session's plans, the caches
            claim_and_complete(conn, queue, warmup, ClaimTimes())
        labels = list(queues)
        done = 0
        for r in range(rounds):
            count = ready * (r + 1) // rounds - done
            order = labels if r % 2 == 0 else labels[::-1]
            for label in order:
                claim_and_complete(conn, queues[label], count, times[label])
            done += count
    return times


# ------------------------------------------------------------------ wake-up lag


@dataclass
class Lag:
    #: the lag as defined (seconds), one per task
    lags: list[float] = field(default_factory=list)
    #: from the end of the wait (the sleep's end, the emit) to the claim that resumed the task
    to_claim: list[float] = field(default_factory=list)


def sleep_lag(
    conn: psycopg.Connection[Any],
    queue: str,
    n: int,
    spread: float,
    child: subprocess.Popen[bytes],
    timeout: float,
) -> Lag:
    """n sleeper tasks started evenly over ``spread`` seconds (0: all at once); their lags."""
    if spread <= 0:
        ids = enqueue_durable(conn, queue, SLEEPER, [{"seconds": 1.0, "i": i} for i in range(n)])
    else:
        ids = []
        started = time.perf_counter()
        for i in range(n):
            pause = started + i * spread / n - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            ids += enqueue_durable(conn, queue, SLEEPER, [{"seconds": 1.0, "i": i}])
    wait_for_status_of(conn, ids, "completed", child, timeout)
    rows = conn.execute(
        """
        select extract(epoch from (t.output ->> 't1')::timestamptz - (t.output ->> 't0')::timestamptz)::float8
                   - (t.input ->> 'seconds')::float8,
               extract(epoch from t.started_at - (e.result ->> 'until')::timestamptz)::float8
        from durable.all_tasks t
        join durable.events e on e.task_id = t.task_id and e.generation = t.generation and e.kind = 'sleep'
        where t.task_id = any(%s)
        """,
        (ids,),
    ).fetchall()
    return Lag([r[0] for r in rows], [r[1] for r in rows])


def event_lag(
    conn: psycopg.Connection[Any],
    queue: str,
    n: int,
    spread: float,
    child: subprocess.Popen[bytes],
    timeout: float,
    prefix: str,
) -> Lag:
    """n waiter tasks on distinct keys; once all wait, each key is emitted (evenly over ``spread`` s)."""
    keys = [f"{prefix}-{i}" for i in range(n)]
    ids = enqueue_durable(conn, queue, WAITER, [{"key": k} for k in keys])
    wait_for_status_of(conn, ids, "waiting", child, timeout)
    started = time.perf_counter()
    for i, key in enumerate(keys):
        pause = started + i * spread / n - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        row = execute(conn, workflow_commands.emit_event(queue, key, {"i": i}))
        if row != 1:
            raise RuntimeError(f"emit {key} woke {row} tasks, not 1")
    wait_for_status_of(conn, ids, "completed", child, timeout)
    rows = conn.execute(
        """
        select extract(epoch from (t.output ->> 't')::timestamptz - v.emitted_at)::float8,
               extract(epoch from t.started_at - v.emitted_at)::float8
        from durable.all_tasks t
        join durable.event_values v on v.key = t.input ->> 'key'
        where t.task_id = any(%s)
        """,
        (ids,),
    ).fetchall()
    return Lag([r[0] for r in rows], [r[1] for r in rows])


def wait_for_status_of(
    conn: psycopg.Connection[Any], ids: list[Any], status: str, child: subprocess.Popen[bytes], timeout: float
) -> None:
    started = time.perf_counter()
    while True:
        row = conn.execute(
            "select count(*) filter (where status = %s), count(*) filter (where status = 'failed')"
            " from durable.all_tasks where task_id = any(%s)",
            (status, ids),
        ).fetchone()
        assert row is not None
        if row[1]:
            raise RuntimeError(f"{row[1]} task(s) failed")
        if row[0] >= len(ids):
            return
        if child.poll() is not None:
            raise RuntimeError(f"the worker process ended (exit {child.returncode})")
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"only {row[0]} of {len(ids)} tasks are {status} after {timeout:.0f} s")
        time.sleep(0.05)


def bench_lag(url: str, queue: str, n: int, spread: float, slots: int, timeout: float) -> dict[str, Lag]:
    """The four lag measures through one worker process: sleep and event, spread and burst."""
    out: dict[str, Lag] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select durable.create_queue(%s)", (queue,))
        with worker_process(__file__, url, queue, str(slots)) as child:
            for pattern, seconds in (("spread", spread), ("burst", 0.0)):
                settle(url)
                log(f"   sleep, {pattern} ...")
                out[f"sleep, {pattern}"] = sleep_lag(conn, queue, n, seconds, child, timeout)
                settle(url)
                log(f"   event, {pattern} ...")
                out[f"event, {pattern}"] = event_lag(
                    conn, queue, n, seconds, child, timeout, f"lag-{pattern}"
                )
    return out


# ------------------------------------------------------------------ main


@dataclass
class Results:
    server: str = ""
    suspended: dict[str, int] = field(default_factory=dict)
    build_seconds: float | None = None
    claims: dict[str, ClaimTimes] = field(default_factory=dict)
    lags: dict[str, Lag] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def p50(values: list[float]) -> float:
    return percentile(values, 50)


def run(args: argparse.Namespace) -> int:
    results = Results()
    with bench_database(args.url) as (url, results.server):
        phase = Phases(url, results.notes)

        baseline = phase(
            f"claim latency, baseline: {args.ready} x claim(max_tasks 1) + complete,"
            " no suspended task at all",
            lambda: bench_claims(url, {"baseline": "bench_baseline"}, args.ready, 1),
        )
        if baseline:
            results.claims.update(baseline)
        started = time.perf_counter()
        results.suspended = (
            phase(
                f"building {args.sleeping:,} sleeping and {args.waiting:,} waiting durable tasks",
                lambda: suspend_tasks(url, "bench_with", args.sleeping, args.waiting),
            )
            or {}
        )
        results.build_seconds = time.perf_counter() - started
        log(f"   {results.suspended}")
        alternated = phase(
            f"claim latency: {args.ready} x claim(max_tasks 1) + complete per queue, with / without"
            f" the suspended tasks in the queue, {args.rounds} alternating rounds",
            lambda: bench_claims(
                url, {"with": "bench_with", "without": "bench_without"}, args.ready, args.rounds
            ),
        )
        if alternated:
            results.claims.update(alternated)
        for label, times in results.claims.items():
            log(
                f"   {label}: claim p50 {ms(p50(times.claim), 3)}, p99 {ms(percentile(times.claim, 99), 3)};"
                f" complete p50 {ms(p50(times.complete), 3)}"
            )

        if args.lag_tasks > 0:
            results.lags = (
                phase(
                    f"wake-up lag: {args.lag_tasks} tasks per measure, one worker process"
                    f" ({args.slots} slots, default poll_interval)",
                    lambda: bench_lag(
                        url, "bench_wake", args.lag_tasks, args.spread, args.slots, args.timeout
                    ),
                )
                or {}
            )

    rows: list[tuple[str, str]] = [
        ("server", results.server),
        (
            "sizes",
            f"{args.sleeping:,} sleeping + {args.waiting:,} waiting, {args.ready:,} claims per setup,"
            f" {args.lag_tasks} lag tasks",
        ),
    ]
    if results.suspended:
        rows.append(("suspended tasks built", f"{results.suspended} in {results.build_seconds:.1f} s"))
    for label in ("baseline", "without", "with"):
        measured = results.claims.get(label)
        if measured:
            rows.append(
                (
                    f"claim latency {label}: p50 / p99",
                    f"{ms(p50(measured.claim), 3)} / {ms(percentile(measured.claim, 99), 3)}"
                    f"  (complete p50 {ms(p50(measured.complete), 3)})",
                )
            )
    with_, without, base = (results.claims.get(k) for k in ("with", "without", "baseline"))
    if with_ and without:
        claim_ratio = p50(with_.claim) / p50(without.claim)
        rows.append(
            (
                "ratio claim p50 with / without",
                ratio(p50(with_.claim), p50(without.claim)) + verdict(claim_ratio, 1.2, "<= 1.2"),
            )
        )
        rows.append(
            (
                "ratio claim p99 with / without",
                ratio(percentile(with_.claim, 99), percentile(without.claim, 99)),
            )
        )
    if with_ and base:
        rows.append(("ratio claim p50 with / baseline", ratio(p50(with_.claim), p50(base.claim))))
    for label, lag in results.lags.items():
        rows.append(
            (
                f"wake-up lag, {label}: p50 / p99 / max",
                f"{ms(p50(lag.lags), 1)} / {ms(percentile(lag.lags, 99), 1)} / {ms(max(lag.lags), 1)}"
                f"  (until the claim: p50 {ms(p50(lag.to_claim), 1)},"
                f" p99 {ms(percentile(lag.to_claim, 99), 1)})",
            )
        )
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
    parser.add_argument("--sleeping", type=int, default=10_000, help="sleeping durable tasks (default 10000)")
    parser.add_argument("--waiting", type=int, default=10_000, help="waiting durable tasks (default 10000)")
    parser.add_argument("--ready", type=int, default=2000, help="claims timed per setup (default 2000)")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds of claims (default 8)")
    parser.add_argument(
        "--lag-tasks", type=int, default=200, help="tasks per lag measure (default 200; 0 skips)"
    )
    parser.add_argument(
        "--spread", type=float, default=5.0, help="seconds the spread pattern lasts (default 5)"
    )
    parser.add_argument(
        "--slots", type=int, default=10, help="the lag worker's slots (default 10, the Worker's)"
    )
    parser.add_argument(
        "--timeout", type=float, default=300, help="give each lag measure this long (default 300 s)"
    )
    args = parser.parse_args(argv)
    if min(args.ready, args.rounds, args.slots) < 1 or min(args.sleeping, args.waiting, args.lag_tasks) < 0:
        parser.error("--ready, --rounds and --slots must be at least 1; the sizes at least 0")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
