"""Durable task definitions for the tests, runnable as a worker process.

    python tests/python/workflow_apps.py QUEUE [--version N] [--concurrency K] [--lease S]

The database is DURABLE_DATABASE_URL (in the tests, as the worker role). Steps write their
side effects to the table ``side_effects`` (made by the tests, which let the worker role
insert into it), so a test can count how often each step really ran.
``BLOCK_AT_STEP=name`` makes that step hang (until the process is killed) after it wrote
its side effect, which is how the tests crash a worker in the middle of a step.
``STEP_SECONDS=s`` makes every step take that long after writing its side effect.
Tasks that take a ``gate`` (a file path) wait, after their side effect, until the test
creates that file: how a test holds a task still while it restarts the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from durable import TaskContext, Worker
from durable.connections import connection_kwargs
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
                # (no named prepared statements under DURABLE_PREPARED_STATEMENTS=off: PgBouncer)
                conn = psycopg.connect(os.environ["DURABLE_DATABASE_URL"], **connection_kwargs())
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


def wait_for_gate(gate: Path, timeout: float = 300.0) -> None:
    """Until the test creates the file ``gate`` (a condition the test controls)."""
    deadline = time.monotonic() + timeout
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate} was never opened")
        time.sleep(0.01)


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

    @worker.durable_task
    async def gathered(input: dict[str, Any], ctx: DurableContext) -> dict[str, Any]:
        """Four steps run at once: "a" finishes only after "b" has (a barrier, no timing);
        "c" hangs under BLOCK_AT_STEP=c, so "d", which finished, cannot be recorded."""
        b_finished = threading.Event()

        def a() -> str:
            if not b_finished.wait(60):
                raise TimeoutError("step b never finished")
            side_effect(ctx.task_id, "a", ctx.attempt)
            return "A"

        def b() -> str:
            side_effect(ctx.task_id, "b", ctx.attempt)
            b_finished.set()
            return "B"

        def c() -> str:
            side_effect(ctx.task_id, "c", ctx.attempt)
            return "C"

        def d() -> str:
            side_effect(ctx.task_id, "d", ctx.attempt)
            return "D"

        results = await asyncio.gather(ctx.step("a", a), ctx.step("b", b), ctx.step("c", c), ctx.step("d", d))
        return {"results": results}

    @worker.durable_task
    def gated(input: dict[str, Any], ctx: SyncDurableContext) -> list[str]:
        """Steps input["steps"]; each waits for the file of its name in input["gates"]."""
        gates = Path(input["gates"])

        def run(name: str) -> str:
            side_effect(ctx.task_id, name, ctx.attempt)
            wait_for_gate(gates / name)
            return name

        return [ctx.step(name, run, name) for name in input["steps"]]

    @worker.task
    def fails_once(input: dict[str, Any], ctx: TaskContext) -> str:
        """Attempt 1 waits for input["gate"], then raises; attempt 2 completes."""
        if ctx.attempt == 1:
            side_effect(ctx.task_id, "fails_once", ctx.attempt)
            wait_for_gate(Path(input["gate"]))
            raise ValueError("the first attempt fails")
        return f"attempt {ctx.attempt}"

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
