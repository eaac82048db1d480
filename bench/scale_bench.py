#!/usr/bin/env python3
"""Scale benchmark (not a test): is the claim and read side flat in the queue's depth? (issue 16)

Prints, from one run on one server, in a scratch database of its own:

1. processed/s of one worker (``durable.worker.Worker``, K slots) over N no-op tasks, without
   and then with a transaction left open in another session (REPEATABLE READ, a snapshot
   taken: it pins the xmin horizon, so no dead row version can be removed), alternated
   twice; target: pinned ≥ 0.8x unpinned.
2. The latency of one ``durable.claim`` (one task, rolled back, median of C calls) on three
   queues of one database: SMALL ready tasks; SMALL with 20,000 sleeping tasks
   (durable.sleep) and 20,000 delayed ones (run_at a day ahead); DEPTH ready tasks. In each,
   most ready tasks are of another task name ("backlog", with an older run_at, so ahead of
   the others in the claim order). Four claims each: no name filter, the names a worker
   passes (["target", "extra"]: both behind the backlog), one name (["target"]), and no
   filter taking the queue's once-a-second turn. Every claim of every queue takes its turn
   call after call, so the ratios compare the queues under the same load. Targets: DEPTH ≤
   1.5x SMALL, sleepers ≤ 1.2x.
3. ``queue_stats`` and ``limit_usage`` of a queue of 1,000 tasks beside the DEPTH queue, and
   of the same queue in a twin database beside a SMALL one, the two databases taking turns
   call after call.
4. The EXPLAIN (ANALYZE, BUFFERS) of every statement a name-filtered claim runs at DEPTH
   (auto_explain).

Loading: SMALL tasks and the sleepers go through the one way of creating tasks
(``enqueue_many``); the DEPTH backlog is a direct INSERT ... SELECT generate_series into
durable.tasks (enqueue_many makes ~13,000 tasks/s here: 6 minutes for 5,000,000) of rows
shaped as enqueue_many would make them (pending, the queue's defaults). Each load ends with
VACUUM ANALYZE, as autovacuum would have by then (it may be off on the server).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/scale_bench.py
    python bench/scale_bench.py --depth 1000000 --processed 20000      # a quicker run

One run of all of it (--processed 100000 --calls 200, 2026-12-07 12:54 UTC, a 2-core
machine with nothing else running, PostgreSQL 15):

- processed/s: free 6,532 / 6,461, pinned 6,467 / 6,413: 0.99x (0.98x in a run of 400,000
  tasks a phase; 0.89x at 1,000,000, 5,864 / 5,229: three minutes of pin leave every version
  of the tasks' rows, and of the floors' rows, which each raise updates: 4,000 raises under
  a pin add 0.09 ms to a claim, gone at the next vacuum).
- claim latency in ms, 10,000 / +20,000 sleeping and 20,000 delayed / 5,000,000 ready: no
  name filter 0.681 / 0.691 / 0.683, names target+extra 0.738 / 0.750 / 0.738, name target
  0.710 / 0.723 / 0.717, the claim taking the queue's turn 1.040 / 1.124 / 1.041 (deep
  1.00x-1.01x, sleepers 1.02x, 1.08x for the turn, which raises two more names' floors).
- queue_stats 1.242 -> 1.268 ms (1.02x), limit_usage 1.246 -> 1.250 ms (1.00x) beside the
  deep queue against the twin database.
- the pick of a claim for the worker's names at 5,000,000 reads 30 buffers, the whole claim 90.

What changed on the way:
- processed/s, an early run (100,000 tasks a phase): free 1,117 and 1,598, pinned 170 and
  110: 0.10x. At 100,000 tasks into a pin, one claim read 16,634 buffers, 9,455 of them in
  _reclaim's scan of expired leases (the dead entries of every task run since the pin) and
  4,922 in the choice's walk of tasks_claim_name_idx. Claims picking from durable.ready
  from floors raised once a second, and looking for expired leases once a second per queue:
  0.96x (free ~2,000/s). After the claim by task names stopped walking other names' rows and
  the archive of finished tasks, free ran 3x faster and the floors, raised once a second,
  left each claim more dead entries to step over under a pin: 0.76x and 0.75x (raised
  twice a second on every claim: 0.77x). A claim that takes a full batch raising them every
  100 ms: 0.98x-0.99x, free unchanged.
- a worker's names at 5,000,000: 7 s a claim, before durable.ready and its name index.
- the turn with sleepers: 1.24x while the floors were raised a statement per name.
- queue_stats beside the deep queue: 6.0x, when a large archive partition of other queues,
  not yet analyzed, made the planner start two parallel workers for it (12-15 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from durable.migrate import migrate
from queue_bench import bench_worker, claim_plans, log, scratch_database, server, settle

SMALL = "scale_small"
SLEEPY = "scale_sleepy"
DEEP = "scale_deep"
STATS = "scale_stats"
WORKER_NAMES = ["target", "extra"]


# ------------------------------------------------------------------ processed/s, pinned or not


@contextlib.contextmanager
def pinned_horizon(url: str) -> Iterator[None]:
    """A transaction open in another session, holding a snapshot: the xmin horizon stays put."""
    with psycopg.connect(url) as conn:
        conn.execute("set transaction isolation level repeatable read")
        conn.execute("select count(*) from durable.queues")
        conn.execute("select pg_current_xact_id()")
        try:
            yield
        finally:
            conn.rollback()


def processed(url: str, n: int, slots: int, rounds: int) -> list[tuple[str, float]]:
    runs: list[tuple[str, float]] = []
    for i in range(rounds):
        for pinned in (False, True):
            queue = f"scale_work_{i}_{'pinned' if pinned else 'free'}"
            settle(url)
            with pinned_horizon(url) if pinned else contextlib.nullcontext():
                per_second, _ = bench_worker(url, queue, n, slots, "sync", timeout=3600, poll=1.0)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("vacuum durable.tasks")
            label = "pinned" if pinned else "free"
            log(f"   round {i + 1}, {label}: {per_second:,.0f} processed/s")
            runs.append((label, per_second))
    return runs


# ------------------------------------------------------------------ loading


def enqueue(conn: psycopg.Connection[Any], queue: str, name: str, count: int, options: str) -> None:
    for first in range(1, count + 1, 10_000):
        conn.execute(
            """
            select count(*) from durable.enqueue_many(
                %s,
                (select jsonb_agg(jsonb_build_object(
                            'task_name', %s::text, 'input', jsonb_build_object('i', g.i),
                            'options', %s::jsonb))
                 from generate_series(%s::integer, %s::integer) as g (i))
            )
            """,
            (queue, name, options, first, min(first + 9_999, count)),
        )


def bulk_backlog(conn: psycopg.Connection[Any], queue: str, count: int) -> float:
    """``count`` pending 'backlog' tasks, straight into durable.tasks, shaped like enqueue_many's."""
    started = time.perf_counter()
    for first in range(0, count, 500_000):
        conn.execute(
            """
            with model as (
                select r.* from unnest(array[durable._task_row(
                    durable._queue(%(queue)s), 'backlog', '{}'::jsonb,
                    jsonb_build_object('run_at', '2020-01-01T00:00:00Z'), durable.current_time())]) as r
            )
            insert into durable.tasks (
                task_id, queue, task_name, input, status, priority, run_at, max_attempts,
                max_lost_leases, backoff, timeout_seconds, created_at, durable
            )
            select durable.uuidv7(), %(queue)s, m.task_name, jsonb_build_object('i', g.i), 'pending',
                   m.priority, m.run_at + make_interval(secs => g.i / 1000.0), m.max_attempts,
                   m.max_lost_leases, m.backoff, m.timeout_seconds, m.created_at, m.durable
            from model m cross join generate_series(%(first)s::integer, %(last)s::integer) as g (i)
            """,
            {"queue": queue, "first": first + 1, "last": min(first + 500_000, count)},
        )
    conn.execute("vacuum analyze durable.tasks")
    return time.perf_counter() - started


def add_sleepers(conn: psycopg.Connection[Any], queue: str, count: int) -> None:
    """``count`` durable tasks claimed and put to sleep for a day, and ``count`` delayed a day."""
    enqueue(conn, queue, "sleeper", count, '{"durable": true, "run_at": "2019-01-01T00:00:00Z"}')
    for _ in range(0, count, 1000):
        conn.execute(
            """
            select count(durable.sleep(c.task_id, c.lease_token, 1, 'nap', 86400))
            from durable.claim(%s, 'scale-loader', 1000, 60, array['sleeper']) as c
            """,
            (queue,),
        )
    enqueue(conn, queue, "delayed", count, '{"delay": 86400}')
    conn.execute("vacuum analyze durable.tasks")


# ------------------------------------------------------------------ timings


def timed(
    conn: psycopg.Connection[Any],
    calls: int,
    queries: dict[str, tuple[str, tuple[Any, ...]]],
    before: dict[str, str] | None = None,
) -> dict[str, float]:
    """Median milliseconds of each query (rolled back after each call), after 5 warm-up calls.

    The queries take turns, call after call, so that a burst of load elsewhere on the
    (shared) server falls on all of them alike. ``before``: a statement run first in the
    query's transaction (untimed), by label.
    """
    samples: dict[str, list[float]] = {label: [] for label in queries}
    for i in range(calls + 5):
        for label, (query, params) in queries.items():
            if before and label in before:
                conn.execute(before[label])
            started = time.perf_counter()
            conn.execute(query, params, prepare=True).fetchall()
            elapsed = time.perf_counter() - started
            conn.rollback()
            if i >= 5:
                samples[label].append(elapsed * 1000)
    return {label: statistics.median(values) for label, values in samples.items()}


CLAIM_KINDS: list[tuple[str, list[str] | None]] = [
    ("no name filter", None),
    ("names " + "+".join(WORKER_NAMES), WORKER_NAMES),
    ("name target", ["target"]),
]


TURN = "no name filter, its turn"


def claim_latencies(url: str, calls: int, queues: list[str]) -> dict[tuple[str, str], float]:
    """By (kind, queue): the claims as all but one a second per queue make them (the queue's
    turn for the once-a-second work just taken: durable.queues.swept_at is now), and one
    claim taking that turn (expired leases, the floors' raise: plpgsql/ready.sql). Each
    claim is rolled back, so without the first statement every claim would take the turn.
    Every kind on every queue takes its turn call after call (``timed``): the queues are
    compared under the same load, whatever else the machine does."""
    claim = "select task_id from durable.claim(%s, 'scale-bench', 1, 30, %s)"
    queries: dict[str, tuple[str, tuple[Any, ...]]] = {}
    before: dict[str, str] = {}
    for queue in queues:
        fresh = f"update durable.queues set swept_at = clock_timestamp() where queue = '{queue}'"
        due = f"update durable.queues set swept_at = '-infinity' where queue = '{queue}'"
        for kind, names in CLAIM_KINDS:
            queries[f"{kind}|{queue}"] = (claim, (queue, names))
            before[f"{kind}|{queue}"] = fresh
        queries[f"{TURN}|{queue}"] = (claim, (queue, None))
        before[f"{TURN}|{queue}"] = due
    with psycopg.connect(url) as conn:
        medians = timed(conn, calls, queries, before)
    return {(label.split("|")[0], label.split("|")[1]): ms for label, ms in medians.items()}


READS = ("queue_stats", "limit_usage")


def read_latencies(urls: dict[str, str], calls: int) -> dict[tuple[str, str], float]:
    """By (verb, database): median ms of the reads of the STATS queue in each database, the
    databases taking turns call after call (each call rolled back, after 5 warm-up calls)."""
    samples: dict[tuple[str, str], list[float]] = {(v, d): [] for v in READS for d in urls}
    with contextlib.ExitStack() as stack:
        conns = {d: stack.enter_context(psycopg.connect(url)) for d, url in urls.items()}
        for i in range(calls + 5):
            for verb in READS:
                for d, conn in conns.items():
                    started = time.perf_counter()
                    conn.execute(f"select * from durable.{verb}(%s)", (STATS,), prepare=True).fetchall()
                    elapsed = time.perf_counter() - started
                    conn.rollback()
                    if i >= 5:
                        samples[(verb, d)].append(elapsed * 1000)
    return {key: statistics.median(values) for key, values in samples.items()}


def load_stats(conn: psycopg.Connection[Any]) -> None:
    """The STATS queue: 1,000 tasks of one concurrency key, 20 of them running."""
    conn.execute(
        'select durable.create_queue(%s, \'{"concurrency_limit": 50, "concurrency_key_limit": 5}\')',
        (STATS,),
    )
    enqueue(conn, STATS, "stat", 1000, '{"concurrency_key": "k1"}')
    conn.execute("select count(*) from durable.claim(%s, 'scale-stats', 20)", (STATS,))


def pending(conn: psycopg.Connection[Any], queue: str) -> int:
    row = conn.execute(
        "select count(*) from durable.all_tasks where queue = %s and status = 'pending'", (queue,)
    ).fetchone()
    return int(row[0]) if row else 0


def table(title: str, columns: list[str], rows: dict[str, list[float]]) -> None:
    log(f"\n{title}")
    log("  " + " " * 26 + "".join(f"{c:>14s}" for c in columns))
    for label, values in rows.items():
        log(f"  {label:26s}" + "".join(f"{v:14.3f}" for v in values))


def report_processed(args: argparse.Namespace, runs: list[tuple[str, float]]) -> None:
    if not runs:
        return
    log(f"\nprocessed/s, one worker with {args.slots} slots, {args.processed:,} no-op tasks a phase")
    for label, value in runs:
        log(f"  {label:8s} {value:10,.0f}")
    free = statistics.mean(v for label, v in runs if label == "free")
    pinned = statistics.mean(v for label, v in runs if label == "pinned")
    log(f"  pinned / free: {pinned / free:.2f}x (target >= 0.8)")


def run(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        server_url = stack.enter_context(server(args.url))
        url = stack.enter_context(scratch_database(server_url, "durable_scale16"))
        migrate(url)
        log(f"scratch database ready; depth {args.depth:,}, processed over {args.processed:,} tasks")

        runs = processed(url, args.processed, args.slots, args.rounds) if args.processed else []
        if args.processed_only:
            report_processed(args, runs)
            return 0

        with psycopg.connect(url, autocommit=True) as conn:
            load_stats(conn)
            # three queues of SMALL ready tasks each: the backlog first (older run_at), then
            # the worker's names; the second gets the sleepers, the third the DEPTH backlog
            behind = 1000
            for queue in (SMALL, SLEEPY, DEEP):
                conn.execute("select durable.create_queue(%s)", (queue,))
                enqueue(conn, queue, "backlog", args.small - behind, '{"run_at": "2020-06-01T00:00:00Z"}')
                for name in WORKER_NAMES:
                    enqueue(conn, queue, name, behind // len(WORKER_NAMES), "{}")
            conn.execute("vacuum analyze durable.tasks")
            small_queued = pending(conn, SMALL)
        # the twin: a database with the same STATS queue beside one small queue only, whose
        # reads take turns with those of the STATS queue beside the deep queue
        twin = stack.enter_context(scratch_database(server_url, "durable_scale16_twin"))
        migrate(twin)
        with psycopg.connect(twin, autocommit=True) as conn:
            load_stats(conn)
            conn.execute("select durable.create_queue(%s)", (SMALL,))
            enqueue(conn, SMALL, "backlog", args.small, "{}")
            conn.execute("vacuum analyze durable.tasks")

        with psycopg.connect(url, autocommit=True) as conn:
            add_sleepers(conn, SLEEPY, args.sleepers)
            seconds = bulk_backlog(conn, DEEP, args.depth - small_queued)
            deep_queued = pending(conn, DEEP)
            log(f"loaded the backlog in {seconds:.0f} s: {deep_queued:,} pending in {DEEP}")
        settle(url)
        claims = claim_latencies(url, args.calls, [SMALL, SLEEPY, DEEP])
        settle(twin)
        reads = read_latencies({"twin": twin, "deep": url}, args.calls)
        # a claim as all but one a second make them: the queue's turn just taken
        plans = claim_plans(
            url,
            DEEP,
            1,
            WORKER_NAMES,
            f"update durable.queues set swept_at = clock_timestamp() where queue = '{DEEP}'",
        )

        report_processed(args, runs)
        table(
            f"claim latency, ms (median of {args.calls}; one task, rolled back; the three queues "
            "of one database, call after call)",
            [f"{small_queued:,}", f"+{args.sleepers:,}x2", f"{deep_queued:,}", "deep/small", "sleep/small"],
            {
                kind: [
                    claims[(kind, SMALL)],
                    claims[(kind, SLEEPY)],
                    claims[(kind, DEEP)],
                    claims[(kind, DEEP)] / claims[(kind, SMALL)],
                    claims[(kind, SLEEPY)] / claims[(kind, SMALL)],
                ]
                for kind in [k for k, _ in CLAIM_KINDS] + [TURN]
            },
        )
        table(
            f"reads of a queue of 1,000 tasks, ms (median of {args.calls}; the two databases, call "
            "after call)",
            ["beside small", "beside deep", "deep/small"],
            {
                verb: [
                    reads[(verb, "twin")],
                    reads[(verb, "deep")],
                    reads[(verb, "deep")] / reads[(verb, "twin")],
                ]
                for verb in READS
            },
        )
        log(f"\nplans of a claim with names {WORKER_NAMES} at {deep_queued:,} pending:")
        for plan in plans:
            log(plan)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--url", help="server URL (default: $DURABLE_DATABASE_URL or $DATABASE_URL, else embedded)"
    )
    parser.add_argument("--depth", type=int, default=5_000_000, help="ready tasks of the deep queue")
    parser.add_argument("--small", type=int, default=10_000, help="ready tasks of the shallow queue")
    parser.add_argument("--sleepers", type=int, default=20_000, help="sleeping (and as many delayed) tasks")
    parser.add_argument(
        "--processed", type=int, default=100_000, help="tasks per processed/s phase (0: skip)"
    )
    parser.add_argument(
        "--processed-only", action="store_true", help="measure processed/s only (no claim or read phases)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="free/pinned rounds of processed/s")
    parser.add_argument("--slots", type=int, default=16, help="the worker's slots")
    parser.add_argument("--calls", type=int, default=100, help="timed calls per latency")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
