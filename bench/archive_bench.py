"""The hot verbs with the archive of finished tasks (migration 0020), against main and against
more day partitions.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/archive_bench.py [K] [--ref main]

(without DATABASE_URL or --url: an embedded PostgreSQL; the bench needs a superuser)

Four scratch databases on one server:

- ``base``: migrated with the migrations/ and plpgsql/ of git ref ``--ref`` (default the
  commit of main this branch started from, so that the ratios are the archive's alone;
  finished tasks stay in durable.tasks there);
- ``archive``: this tree, as migrated (the day partitions of a fresh week, legacy, default);
- ``archive+30``: this tree with 30 more past day partitions of durable.finished_tasks,
  attempts and events (days -31 to -2), each holding ``--per-day`` finished tasks with their
  attempts;
- ``base+30``: the base with the same 30 more days of attempts and events (what grows with
  the days there: the reads of the history, migration 0018's, not the archive's).

durable.tasks holds the same live tasks in the four.

Each round runs, in every database in turn (interleaved, so that load elsewhere on the
machine falls on all three alike), one worker cycle of a durable task: ``claim`` (1 task),
``checkpoint`` (one step), ``complete``; then ``get_task`` of a live task and of a finished
one; then ``claim`` of 10 and ``complete_many`` of those 10. Each call is timed from the
client (a prepared statement on a warm connection, synchronous_commit off: the backend's
work and the round trip, the same in every figure, without the disk's flush) and the
medians of K rounds are printed, with the ratios archive / base and archive+30 / archive.

One run (PostgreSQL 15, 2 cores shared with another engineer's tests and benchmarks,
K = 1,000, --per-day 10,000, base: main at 70f2608, where this branch started):

    partitions of durable.events: base 10, base+30 40, archive 10, archive+30 40
    verb (median ms)          base  base+30  archive archive+30   archive/base  +30/archive  base+30/base
    claim                    1.249    1.232    1.179      1.173           0.94         0.99          0.99
    checkpoint               0.420    0.427    0.412      0.425           0.98         1.03          1.02
    get_task (live)          0.865    0.588    0.685      0.667           0.79         0.97          0.68
    complete                 0.702    0.874    0.695      0.901           0.99         1.30          1.24
    get_task (finished)      0.747    0.508    0.687      0.697           0.92         1.01          0.68
    claim of 10              1.448    1.382    1.346      1.345           0.93         1.00          0.95
    complete_many of 10      1.100    1.246    1.014      1.182           0.92         1.17          1.13

The same with the final code against main at 3e4c2de (merged in): claim 0.97, checkpoint
1.01, complete 1.00, complete_many of 10 0.95, get_task 0.82 and 0.94 of main's; with the
30 days 0.99, 1.02, 1.28, 1.14, 0.94, 0.99 (main with them: 1.01, 1.04, 1.25, 1.15, 0.68,
0.68).

complete's growth with the days was main's as well (base+30/base): its check that a durable
task went through its history read durable.events with a generic plan that set up a scan of
every partition of events (migration 0018's, not the archive's). That check is now a function
of the task's id (durable._history_gone_through), whose plan prunes to the task's day: a run
of 400 rounds (--per-day 2000, base 872e9c1, the code before it): complete +30/archive 1.01
(base+30/base 1.35), complete_many of 10 1.03 (1.19), the other verbs 1.00-1.03.

get_task reads the archive and the attempts with plans made for the task (one day's
partitions, a planning each call); main's generic plan locks every partition of attempts.
The get_task figures of that run are the noisiest (a small run: base 0.303, base+30 0.481,
archive 0.589, archive+30 0.576 ms; in a loop inside the server, get_task of a live durable
task takes 0.20 ms here against 0.05 to 0.12 ms on main: the planning of the archive's and
the attempts' reads, constant in the number of days).
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from durable.migrate import migrate
from queue_bench import scratch_database, server
from retention_bench import _partitions

REPO = Path(__file__).resolve().parents[1]

# 30 more past days of the partitioned tables (days -31 to -2), each with {per} tasks'
# attempts (and, in the archive, the finished tasks), listed in durable.history_partitions
# as the maintenance's own days. A fresh database's legacy partitions hold every id before
# its migration: they are made again (empty) to end 40 days ago.
MORE_DAYS = """
do $$
declare
    v_from timestamptz;
    v_to timestamptz;
    v_day date;
    v_table text;
begin
    foreach v_table in array array[{tables}] loop
        execute format('drop table durable.%I', v_table || '_legacy');
        execute format('create table durable.%I partition of durable.%I for values from (minvalue) to (%L)',
                       v_table || '_legacy', v_table, durable._uuid_floor(now() - interval '40 days'));
    end loop;
    for i in 2..31 loop
        v_day := (now() at time zone 'UTC')::date - i;
        v_from := v_day::timestamp at time zone 'UTC';
        v_to := (v_day + 1)::timestamp at time zone 'UTC';
        foreach v_table in array array[{tables}] loop
            execute format('create table durable.%I partition of durable.%I for values from (%L) to (%L)',
                           v_table || '_p' || to_char(v_day, 'YYYYMMDD'), v_table,
                           durable._uuid_floor(v_from), durable._uuid_floor(v_to));
        end loop;
        insert into durable.history_partitions (day, lo, hi)
        values (v_day, durable._uuid_floor(v_from), durable._uuid_floor(v_to));
    end loop;
end;
$$;
create temporary table old_ids as
select encode(substring(int8send((extract(epoch from (now() at time zone 'UTC')::date::timestamp
                                                   at time zone 'UTC') * 1000)::bigint
                                 - (2 + i / {per}) * 86400000::bigint + (i % {per}) * 1000)
                        from 3)
              || substring(uuid_send(gen_random_uuid()) from 7), 'hex')::uuid as task_id
from generate_series(0, 30 * {per} - 1) as i;
insert into durable.attempts (task_id, attempt, queue, worker, started_at, ended_at, outcome)
select task_id, 1, 'old', 'w', now(), now(), 'completed' from old_ids;
"""

# the archive's rows of those days (the archive+30 database)
MORE_FINISHED = """
insert into durable.finished_tasks (
    task_id, seq, queue, task_name, input, status, run_at, attempt, max_attempts,
    max_lost_leases, backoff, created_at, started_at, finished_at, durable, output
)
select task_id, 0, 'old', 'job', '{}', 'completed', now(), 1, 5, 10, '{"kind": "none"}', now(), now(), now(),
       true, '{}'
from old_ids;
"""


def more_days(conn: psycopg.Connection[Any], per_day: int, archive: bool) -> None:
    """30 more past days (-31 to -2) of the partitioned tables, per_day tasks each."""
    tables = "'attempts', 'events', 'finished_tasks'" if archive else "'attempts', 'events'"
    conn.execute(MORE_DAYS.replace("{tables}", tables).replace("{per}", str(per_day)).encode())
    if archive:
        conn.execute(MORE_FINISHED.encode())


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, check=True, text=True
    ).stdout.strip()


def _tree_at(ref: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref, "migrations", "plpgsql"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


class Db:
    def __init__(self, name: str, url: str, k: int) -> None:
        self.name = name
        self.conn = psycopg.connect(url, autocommit=True, prepare_threshold=0)
        # no wait for the WAL flush at each commit: what is left is the backend's work and the
        # round trip (the flush, the same in all, only adds the disk's noise)
        self.conn.execute("set synchronous_commit = off")
        self.times: dict[str, list[float]] = {}
        self.conn.execute("select durable.create_queue('q')")
        self.conn.execute(
            "select durable.enqueue_many('q', (select jsonb_agg(jsonb_build_object("
            "'task_name', 'job', 'options', jsonb_build_object('durable', true)))"
            " from generate_series(1, %s)))",
            (k * 12,),
        )
        self.conn.execute("vacuum analyze")
        self.done: Any = None

    def timed(self, verb: str, query: str, params: Any) -> Any:
        start = time.perf_counter()
        rows = self.conn.execute(query, params).fetchall()
        self.times.setdefault(verb, []).append(time.perf_counter() - start)
        return rows

    def round(self) -> None:
        [(task, token)] = self.timed(
            "claim", "select task_id, lease_token from durable.claim('q', 'w', 1, 60)", None
        )
        self.timed("checkpoint", "select durable.checkpoint(%s, %s, 1, 'step', 'one', '{}')", (task, token))
        self.timed("get_task (live)", "select durable.get_task(%s)", (task,))
        self.timed("complete", "select durable.complete(%s, %s, '{}')", (task, token))
        self.timed("get_task (finished)", "select durable.get_task(%s)", (task,))
        batch = self.timed(
            "claim of 10", "select task_id, lease_token from durable.claim('q', 'w', 10, 60)", None
        )
        tasks, tokens = [r[0] for r in batch], [r[1] for r in batch]
        # their histories are empty and unchecked: nothing to present before completing
        self.timed(
            "complete_many of 10",
            "select count(*) from durable.complete_many(%s::uuid[], %s::uuid[])",
            (tasks, tokens),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="the hot verbs with the archive of finished tasks")
    parser.add_argument("k", nargs="?", type=int, default=400, help="rounds")
    parser.add_argument(
        "--ref", help="git ref of the base (default: where this branch left main, git merge-base HEAD main)"
    )
    parser.add_argument("--per-day", type=int, default=10000, help="finished tasks in each extra day")
    parser.add_argument(
        "--url", help="server (default $DURABLE_DATABASE_URL or $DATABASE_URL, else embedded)"
    )
    options = parser.parse_args()
    with (
        server(options.url) as server_url,
        scratch_database(server_url, "arch_bench_base") as base_url,
        scratch_database(server_url, "arch_bench_base30") as base30_url,
        scratch_database(server_url, "arch_bench_new") as new_url,
        scratch_database(server_url, "arch_bench_more") as more_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        ref = options.ref or _git("merge-base", "HEAD", "main")
        print(f"base: {ref}")
        base_tree = _tree_at(ref, Path(tmp))
        # (url, tree, more days: none, of the history, of the history and the archive)
        for url, tree, more in [
            (base_url, base_tree, None),
            (base30_url, base_tree, False),
            (new_url, REPO, None),
            (more_url, REPO, True),
        ]:
            with psycopg.connect(url, autocommit=True) as conn:
                migrate(conn, tree)
                if more is not None:
                    more_days(conn, options.per_day, more)
        dbs = [
            Db("base", base_url, options.k),
            Db("base+30", base30_url, options.k),
            Db("archive", new_url, options.k),
            Db("archive+30", more_url, options.k),
        ]
        counts = {db.name: _partitions(db.conn) for db in dbs}
        for i in range(options.k):
            # a different database first each round
            for db in dbs[i % 4 :] + dbs[: i % 4]:
                db.round()
        med: Callable[[Db, str], float] = lambda db, verb: statistics.median(db.times[verb]) * 1000  # noqa: E731
        print(
            f"{options.k} rounds, interleaved; partitions of durable.events: "
            + ", ".join(f"{name} {n}" for name, n in counts.items())
            + f" (the +30 days hold {30 * options.per_day:,} tasks)"
        )
        print(
            f"{'verb (median ms)':22} {'base':>7} {'base+30':>8} {'archive':>8} {'archive+30':>10}"
            "   archive/base  +30/archive  base+30/base"
        )
        for verb in dbs[0].times:
            b, b30, a, m = (med(db, verb) for db in dbs)
            print(
                f"{verb:22} {b:7.3f} {b30:8.3f} {a:8.3f} {m:10.3f}"
                f"   {a / b:12.2f} {m / a:12.2f} {b30 / b:13.2f}"
            )
        for db in dbs:
            db.conn.close()


if __name__ == "__main__":
    main()
