"""The deploy check's speed: ``durable check`` over N unfinished histories of E events.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/check_bench.py [N] [E]

Writes N waiting durable tasks of one task name, each with E recorded steps (through the
verbs: claim, checkpoint, then a wait that suspends), then times the dry runs of all of
them (``durable.dry_run.check_all``: the histories read page by page, the code replayed
in process, one ``durable.check_replay`` per task) as the superuser of DATABASE_URL, and
``durable.patch_usage`` of a patch none recorded. Runs on a database of its own, created
and dropped here.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from durable import DurableContext, Worker, migrate
from durable.dry_run import check_all
from durable.workflow_commands import patch_usage


def write_histories(url: str, n: int, events: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select durable.create_queue('bench')")
        block = sql.SQL(
            """
            do $$
            declare
                c record;
                i integer;
            begin
                for k in 1 .. {n} loop
                    perform durable.enqueue('bench', 'flow', jsonb_build_object('k', k),
                                            jsonb_build_object('durable', true));
                    select * into c from durable.claim('bench', 'w', 1, 3600);
                    for i in 1 .. {events} loop
                        perform durable.checkpoint(c.task_id, c.lease_token, i, 'step', 's' || i,
                                                   to_jsonb(i));
                    end loop;
                    perform durable.wait_event(c.task_id, c.lease_token, {last}, 'never');
                end loop;
            end;
            $$
            """
        ).format(n=sql.Literal(n), events=sql.Literal(events), last=sql.Literal(events + 1))
        conn.execute(block)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    server = os.environ["DATABASE_URL"]
    name = f"check_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"create database {name}")
    url = make_conninfo(server, dbname=name)
    try:
        migrate(url)
        started = time.perf_counter()
        write_histories(url, n, events)
        print(f"wrote {n} histories of {events} events in {time.perf_counter() - started:.1f} s")
        worker = Worker(url, queue="bench")

        @worker.durable_task
        async def flow(input: dict[str, Any], ctx: DurableContext) -> None:
            for i in range(1, events + 1):
                await ctx.step(f"s{i}", lambda: None)
            await ctx.wait_for_event("never")

        with psycopg.connect(url, autocommit=True) as conn:

            def run(command: Any) -> Any:
                return command.parse(conn.execute(command.sql, command.params).fetchall())

            started = time.perf_counter()
            verdicts = asyncio.run(check_all(run, worker, "bench"))
            took = time.perf_counter() - started
            assert len(verdicts) == n and all(v.outcome == "ok" for v in verdicts)
            print(f"checked {n} histories in {took:.2f} s: {1000 * took / n:.2f} ms a task")
            started = time.perf_counter()
            run(patch_usage("never-recorded"))
            print(f"patch_usage of an unknown patch: {1000 * (time.perf_counter() - started):.1f} ms")
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"drop database {name} with (force)")


if __name__ == "__main__":
    main()
