"""Durable task definitions for the tests, runnable as a worker process.

    python tests/python/workflow_apps.py QUEUE [--version N] [--concurrency K] [--lease S]

The database is DURABLE_DATABASE_URL (in the tests, as the worker role). Steps write their
side effects to the table ``side_effects`` (made by the tests, which let the worker role
insert into it), so a test can count how often each step really ran.
``BLOCK_AT_STEP=name`` makes that step hang (until the process is killed) after it wrote
its side effect, which is how the tests crash a worker in the middle of a step.
``STEP_SECONDS=s`` makes every step take that long after writing its side effect.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from typing import Any

import psycopg

from durable import Worker
from durable.errors import EventTimeout
from durable.workflow import DurableContext, SyncDurableContext

_local = threading.local()


def _record(task_id: uuid.UUID, step: str, attempt: int) -> None:
    """Insert the side effect row, reconnecting (for up to 60 s) while the server restarts."""
    deadline = time.monotonic() + 60
    while True:
        conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(os.environ["DURABLE_DATABASE_URL"], autocommit=True)
                _local.conn = conn
            conn.execute(
                "insert into side_effects (task_id, step, attempt) values (%s, %s, %s)",
                (task_id, step, attempt),
            )
            return
        except psycopg.OperationalError:
            _local.conn = None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def side_effect(task_id: uuid.UUID, step: str, attempt: int) -> None:
    """Record that a step ran; hang afterwards when this is the step to crash in."""
    _record(task_id, step, attempt)
    if os.environ.get("BLOCK_AT_STEP") == step:
        threading.Event().wait()  # until kill -9
    time.sleep(float(os.environ.get("STEP_SECONDS", "0")))


def build(queue: str, version: int, concurrency: int, lease: int) -> Worker:
    worker = Worker(
        queue=queue, concurrency=concurrency, lease_seconds=lease, poll_interval=0.2, shutdown_grace=5
    )
    names = ["one", "two", "three", "four", "five"]
    if version == 2:
        names[1] = "two-renamed"

    @worker.durable_task
    def five_steps(input: dict[str, Any], ctx: SyncDurableContext) -> dict[str, Any]:
        def run(name: str) -> str:
            side_effect(ctx.task_id, name, ctx.attempt)
            return name

        return {"steps": [ctx.step(name, run, name) for name in names]}

    @worker.task
    def child(input: dict[str, Any]) -> int:
        return int(input["n"]) * 10

    @worker.durable_task
    async def fan_out(input: dict[str, Any], ctx: DurableContext) -> int:
        handles = [await ctx.spawn("child", {"n": n}) for n in range(int(input["children"]))]
        outputs = await ctx.gather(*handles)
        return sum(outputs)

    @worker.durable_task
    async def nap(input: dict[str, Any], ctx: DurableContext) -> dict[str, Any]:
        before = await ctx.now()
        await ctx.sleep(float(input["seconds"]))
        after = await ctx.now()
        await ctx.step("after-nap", side_effect, ctx.task_id, "after-nap", ctx.attempt)
        return {"before": before.isoformat(), "after": after.isoformat()}

    @worker.durable_task
    async def swallow_everything(input: dict[str, Any], ctx: DurableContext) -> str:
        try:
            await ctx.sleep(float(input["seconds"]))
        except Exception:  # user code that catches everything must not swallow the suspension
            side_effect(ctx.task_id, "swallowed", ctx.attempt)
            return "swallowed"
        return "slept"

    @worker.durable_task
    def wait_for(input: dict[str, Any], ctx: SyncDurableContext) -> dict[str, Any]:
        try:
            payload = ctx.wait_for_event(input["key"], timeout=input.get("timeout"))
        except EventTimeout:
            return {"timed_out": True}
        return {"payload": payload}

    @worker.task
    def block(input: dict[str, Any]) -> None:
        side_effect(uuid.UUID(input["marker"]), "block", 1)
        threading.Event().wait(600)

    @worker.durable_task
    async def parent_of_sleepers(input: dict[str, Any], ctx: DurableContext) -> Any:
        running = await ctx.spawn("block", {"marker": input["marker"]})
        sleeping = await ctx.spawn("nap", {"seconds": 600}, durable=True)
        return await ctx.gather(running, sleeping)

    return worker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("queue")
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lease", type=int, default=2)
    args = parser.parse_args()
    build(args.queue, args.version, args.concurrency, args.lease).run()


if __name__ == "__main__":
    main()
