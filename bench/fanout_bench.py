#!/usr/bin/env python3
"""Fan-out/fan-in benchmark (not a test): the cost per child of a parent with N children.

For each N of --sizes (default 100, 1,000 and 10,000), on one server:

* fan-out: a durable parent task is enqueued and claimed, then spawns N children, one
  ``durable.spawn`` call per child (autocommit, as ``ctx.spawn`` does): the time per
  spawn (mean, p50, p99, and the first tenth against the last: does a spawn cost more as
  the parent's log grows?);
* the wait: ``durable.wait_children`` with the N ids, which suspends the parent: one
  statement, holding the parent's row lock throughout;
* fan-in: the children are claimed (``durable.claim``, --claim-batch at a time) and
  completed by ``durable.complete_many`` in batches of --batch; each child's end locks
  its parent and checks whether it was the last, and the last one wakes the parent
  (records the N outcomes in its log). Each batch holds the parent's row lock from its
  first child's end to its commit: the slowest batch is the longest such hold. The same
  claims and completions of N plain tasks (no parent) are timed alongside, in the same
  batches: the difference per child is what the parent costs its children's ends;
* the parent wakes: it is claimed with its history (N spawns and the N outcomes) and
  completed.

Then the ratios that matter: each cost per child at the largest N over the same at the
smallest (linear fan-out and fan-in: target at most 1.5), and the longest statement that
holds the parent's row lock.

Ratios matter more than absolute times (the machine is shared). The server is
$DURABLE_DATABASE_URL or $DATABASE_URL (or --url), else an embedded PostgreSQL started
for this run; everything happens in a scratch database of its own, dropped at the end
(helpers of bench/queue_bench.py).

    python bench/fanout_bench.py                          # N = 100, 1000, 10000
    python bench/fanout_bench.py --sizes 100 2000 --batch 200
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from queue_bench import Phases, bench_database, log, settle

PARENT_TASK = "parent"
CHILD_TASK = "child"
PLAIN_TASK = "plain"
LEASE_SECONDS = 3600


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of values, nearest rank."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ms(seconds: float | None, digits: int = 2) -> str:
    return "n/a" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:,.{digits}f} ms"


def us(seconds: float | None) -> str:
    return "n/a" if seconds is None or math.isnan(seconds) else f"{seconds * 1e6:,.1f} us"


@dataclass
class Batches:
    """Claims and completions of a set of tasks, batch by batch."""

    claims: list[float] = field(default_factory=list)
    completions: list[float] = field(default_factory=list)

    @property
    def claim_total(self) -> float:
        return sum(self.claims)

    @property
    def completion_total(self) -> float:
        return sum(self.completions)


@dataclass
class Size:
    """What one N measured (seconds)."""

    n: int
    spawns: list[float] = field(default_factory=list)
    wait_children: float = math.nan
    children: Batches = field(default_factory=Batches)
    plain: Batches = field(default_factory=Batches)
    wake_claim: float = math.nan
    wake_complete: float = math.nan
    history_events: int = 0
    history_bytes: int = 0

    def per_child(self, total: float) -> float:
        return total / self.n

    @property
    def spawn_per_child(self) -> float:
        return statistics.fmean(self.spawns) if self.spawns else math.nan

    @property
    def wait_per_child(self) -> float:
        return self.per_child(self.wait_children)

    @property
    def completion_per_child(self) -> float:
        return self.per_child(self.children.completion_total)

    @property
    def overhead_per_child(self) -> float:
        """What completing a child costs more than completing a plain task."""
        return self.per_child(self.children.completion_total - self.plain.completion_total)

    @property
    def longest_hold(self) -> tuple[float, str]:
        """The longest statement holding the parent's row lock, and which."""
        holds = [
            (self.wait_children, "wait_children"),
            (max(self.children.completions, default=math.nan), "slowest complete_many batch"),
            (max(self.spawns, default=math.nan), "slowest spawn"),
        ]
        return max(((t, what) for t, what in holds if not math.isnan(t)), default=(math.nan, "n/a"))


def claim_all(
    conn: psycopg.Connection[Any], queue: str, n: int, claim_batch: int, into: Batches
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Claims the n tasks of the queue, claim_batch at a time: [(task_id, lease_token)]."""
    claimed: list[tuple[uuid.UUID, uuid.UUID]] = []
    while len(claimed) < n:
        started = time.perf_counter()
        rows = conn.execute(
            "select task_id, lease_token from durable.claim(%s, 'bench-fanout', %s, %s)",
            (queue, min(claim_batch, n - len(claimed)), LEASE_SECONDS),
            prepare=True,
        ).fetchall()
        into.claims.append(time.perf_counter() - started)
        if not rows:
            raise RuntimeError(f"{queue}: nothing to claim after {len(claimed)} of {n} tasks")
        claimed += [(row[0], row[1]) for row in rows]
    return claimed


def complete_all(
    conn: psycopg.Connection[Any], claimed: list[tuple[uuid.UUID, uuid.UUID]], batch: int, into: Batches
) -> None:
    """Completes the claimed tasks by durable.complete_many, batch at a time."""
    for first in range(0, len(claimed), batch):
        part = claimed[first : first + batch]
        started = time.perf_counter()
        rows = conn.execute(
            "select ok, reason from durable.complete_many(%s::uuid[], %s::uuid[])",
            ([t for t, _ in part], [k for _, k in part]),
            prepare=True,
        ).fetchall()
        into.completions.append(time.perf_counter() - started)
        refused = [reason for ok, reason in rows if not ok]
        if refused:
            raise RuntimeError(f"complete_many refused {len(refused)} of {len(part)}: {refused[:3]}")


def bench_size(url: str, n: int, batch: int, claim_batch: int) -> Size:
    out = Size(n)
    parent_queue, child_queue, plain_queue = f"fan_{n}_parent", f"fan_{n}_child", f"fan_{n}_plain"
    with psycopg.connect(url, autocommit=True) as conn:
        for queue in (parent_queue, child_queue, plain_queue):
            conn.execute("select durable.create_queue(%s)", (queue,))
        conn.execute(
            "select durable.enqueue(%s, %s, '{}', '{\"durable\": true}')", (parent_queue, PARENT_TASK)
        )
        row = conn.execute(
            "select task_id, lease_token from durable.claim(%s, 'bench-fanout', 1, %s)",
            (parent_queue, LEASE_SECONDS),
        ).fetchone()
        assert row is not None
        parent, token = row

        # fan-out: one durable.spawn call per child, as ctx.spawn does
        children: list[uuid.UUID] = []
        for i in range(n):
            started = time.perf_counter()
            row = conn.execute(
                "select durable.spawn(%s, %s, %s, %s, %s, %s::jsonb, '{}'::jsonb)",
                (parent, token, i + 1, child_queue, CHILD_TASK, json.dumps({"i": i})),
                prepare=True,
            ).fetchone()
            out.spawns.append(time.perf_counter() - started)
            assert row is not None
            # the spawn returns its event: {"seq", "kind", "name", "outcome", "result": {"task_id", "queue"}}
            children.append(uuid.UUID(row[0]["result"]["task_id"]))

        # the plain tasks of the reference: as many, queued before the wait
        conn.execute(
            """
            select count(*) from durable.enqueue_many(
                %s,
                (select jsonb_agg(jsonb_build_object(
                            'task_name', %s::text, 'input', jsonb_build_object('i', g.i)))
                 from generate_series(1, %s::integer) as g (i))
            )
            """,
            (plain_queue, PLAIN_TASK, n),
        )
        conn.execute("analyze durable.tasks")
        conn.execute("analyze durable.events")
        settle(url)

        # the wait: one statement, the parent's row locked throughout
        started = time.perf_counter()
        row = conn.execute(
            "select durable.wait_children(%s, %s, %s, %s::uuid[])", (parent, token, n + 1, children)
        ).fetchone()
        out.wait_children = time.perf_counter() - started
        assert row is not None
        if not row[0].get("suspended"):
            raise RuntimeError(f"wait_children did not suspend the parent: {str(row[0])[:200]}")

        # fan-in, and the same claims and completions of plain tasks, alternating by batch
        # so that both see the same load
        child_claims = claim_all(conn, child_queue, n, claim_batch, out.children)
        plain_claims = claim_all(conn, plain_queue, n, claim_batch, out.plain)
        for first in range(0, n, batch):
            complete_all(conn, plain_claims[first : first + batch], batch, out.plain)
            complete_all(conn, child_claims[first : first + batch], batch, out.children)

        # the parent wakes
        status = conn.execute("select status from durable.all_tasks where task_id = %s", (parent,)).fetchone()
        if status is None or status[0] != "pending":
            raise RuntimeError(f"the parent is {status and status[0]} after its children ended, not pending")
        started = time.perf_counter()
        row = conn.execute(
            "select task_id, lease_token, history::text from durable.claim(%s, 'bench-fanout', 1, %s)",
            (parent_queue, LEASE_SECONDS),
        ).fetchone()
        out.wake_claim = time.perf_counter() - started
        assert row is not None and row[0] == parent
        history = json.loads(row[2])
        out.history_events, out.history_bytes = len(history), len(row[2].encode())
        outcomes = history[-1]["result"]
        if len(outcomes) != n or any(o["status"] != "completed" for o in outcomes):
            raise RuntimeError("the parent's log does not hold the N children completed")
        # the re-run presents its calls (the spawns and the wait: the history it was handed),
        # then completes (docs/protocol.md)
        presented: list[dict[str, Any]] = [
            {"seq": i + 1, "kind": "spawn", "name": CHILD_TASK, "queue": child_queue, "input": {"i": i}}
            for i in range(n)
        ]
        presented.append(
            {"seq": n + 1, "kind": "children", "name": "children", "children": [str(c) for c in children]}
        )
        started = time.perf_counter()
        checked = conn.execute(
            "select durable.replay_check(%s, %s, %s::jsonb)", (parent, row[1], json.dumps(presented))
        ).fetchone()
        if checked is None or checked[0] != {"checked": n + 1}:
            raise RuntimeError(f"the parent's replay check: {checked and str(checked[0])[:200]}")
        done = conn.execute(
            "select durable.complete(%s, %s, '{\"children\": true}')", (parent, row[1])
        ).fetchone()
        if done is None or done[0] != {"completed": True}:
            raise RuntimeError(f"the parent's completion: {done and str(done[0])[:200]}")
        out.wake_complete = time.perf_counter() - started
    return out


def report_size(s: Size) -> None:
    hold, what = s.longest_hold
    log(
        f"   spawn: {ms(s.spawn_per_child, 3)} per child (p50 {ms(percentile(s.spawns, 50), 3)},"
        f" p99 {ms(percentile(s.spawns, 99), 3)}; first tenth {ms(tenth(s.spawns, False), 3)},"
        f" last tenth {ms(tenth(s.spawns, True), 3)})"
    )
    log(f"   wait_children: {ms(s.wait_children)} ({us(s.wait_per_child)} per child)")
    log(
        f"   children: claims {ms(s.children.claim_total)}, complete_many {ms(s.children.completion_total)}"
        f" ({us(s.completion_per_child)} per child; slowest batch {ms(max(s.children.completions))})"
    )
    log(
        f"   plain tasks: claims {ms(s.plain.claim_total)}, complete_many {ms(s.plain.completion_total)}"
        f" ({us(s.per_child(s.plain.completion_total))} per task)"
    )
    log(f"   a child's end costs {us(s.overhead_per_child)} more than a plain task's")
    log(
        f"   parent wakes: claim with its history {ms(s.wake_claim)} ({s.history_events:,} events,"
        f" {s.history_bytes / 1e6:.1f} MB), complete {ms(s.wake_complete)}"
    )
    log(f"   longest statement holding the parent's row lock: {ms(hold)} ({what})")


def tenth(values: list[float], last: bool) -> float:
    k = max(1, len(values) // 10)
    return statistics.fmean(values[-k:] if last else values[:k])


def ratio_row(label: str, value: float, base: float, target: bool) -> tuple[str, str]:
    if math.isnan(value) or math.isnan(base) or base <= 0:
        return (label, "n/a")
    r = value / base
    verdict = f"  (target <= 1.5: {'met' if r <= 1.5 else 'NOT met'})" if target else ""
    return (label, f"{r:.2f}{verdict}")


def summary(args: argparse.Namespace, server: str, sizes: list[Size]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = [
        ("server", server),
        ("sizes", f"N = {', '.join(f'{s.n:,}' for s in sizes)}; complete_many batches of {args.batch}"),
    ]
    for s in sizes:
        hold, what = s.longest_hold
        rows += [
            (f"N={s.n:,}: spawn per child", ms(s.spawn_per_child, 3)),
            (f"N={s.n:,}: wait_children", f"{ms(s.wait_children)} ({us(s.wait_per_child)} per child)"),
            (
                f"N={s.n:,}: complete_many per child",
                f"{us(s.completion_per_child)} (plain task {us(s.per_child(s.plain.completion_total))};"
                f" the parent's part {us(s.overhead_per_child)})",
            ),
            (f"N={s.n:,}: slowest complete_many batch", ms(max(s.children.completions, default=math.nan))),
            (f"N={s.n:,}: parent wakes (claim + complete)", ms(s.wake_claim + s.wake_complete)),
            (f"N={s.n:,}: longest hold of the parent's row lock", f"{ms(hold)} ({what})"),
        ]
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        per = f"per child at N={large.n:,} / at N={small.n:,}"
        rows += [
            ratio_row(f"RATIO spawn {per}", large.spawn_per_child, small.spawn_per_child, True),
            ratio_row(f"RATIO wait_children {per}", large.wait_per_child, small.wait_per_child, True),
            ratio_row(
                f"RATIO complete_many {per}",
                large.completion_per_child,
                small.completion_per_child,
                True,
            ),
            # (no target: at small N the parent's part is a small difference of two totals)
            ratio_row(
                f"  (the parent's part of a child's end, the same: {per})",
                large.overhead_per_child,
                small.overhead_per_child,
                False,
            ),
            ratio_row(
                f"  (plain tasks, the same: {per})",
                large.per_child(large.plain.completion_total),
                small.per_child(small.plain.completion_total),
                False,
            ),
            ratio_row(
                f"RATIO parent wakes {per}",
                (large.wake_claim + large.wake_complete) / large.n,
                (small.wake_claim + small.wake_complete) / small.n,
                True,
            ),
        ]
    return rows


def run(args: argparse.Namespace) -> int:
    sizes: list[Size] = []
    notes: list[str] = []
    with bench_database(args.url) as (url, server):
        phase = Phases(url, notes)
        for n in args.sizes:
            measured = phase(
                f"N={n:,}: a parent spawns {n:,} children (one durable.spawn each), waits for them;"
                f" they are claimed ({args.claim_batch} at a time) and completed (complete_many of"
                f" {args.batch}), with as many plain tasks alongside; the parent wakes",
                functools.partial(bench_size, url, n, args.batch, args.claim_batch),
            )
            if measured is not None:
                report_size(measured)
                sizes.append(measured)
    rows = summary(args, server, sizes)
    log("\n== summary")
    width = max(len(label) for label, _ in rows) + 1
    for label, value in rows:
        log(f"{label + ':':<{width}} {value}")
    for note in notes:
        log(f"note: {note}")
    return 1 if phase.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", help="the server (default: $DATABASE_URL, else an embedded PostgreSQL)")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[100, 1_000, 10_000],
        help="numbers of children (default 100 1000 10000); the ratios compare the largest with the smallest",
    )
    parser.add_argument(
        "-b", "--batch", type=int, default=500, help="children per complete_many (default 500)"
    )
    parser.add_argument(
        "--claim-batch",
        type=int,
        default=1000,
        help="children per claim (default 1000, the most a claim takes)",
    )
    args = parser.parse_args(argv)
    if min(args.sizes) < 1 or args.batch < 1 or not 1 <= args.claim_batch <= 1000:
        parser.error("--sizes and --batch must be at least 1, --claim-batch between 1 and 1000")
    args.sizes = sorted(set(args.sizes))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
