"""What a durable call returns on its first run is what a re-run gets from the history; a
re-run's completion presents the calls it replayed (the database completes a durable task
only once its whole history was checked, and fails it otherwise)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import pytest
from pyclient_support import ThreadedWorker, wait_until

from durable import Client, Worker, commands
from durable.commands import Command
from durable.connections import execute, execute_async
from durable.errors import DurableError, NonDeterminismError
from durable.workflow import DurableContext

T = TypeVar("T")

#: jsonb changes such a value: it orders keys by length then bytes, keeps the last of
#: duplicate keys, stores 1e20 as an integer, and a tuple is a list
RESULT = {"zz": 1, "a": 2, "big": 1e20, "pair": (1, 2)}


def run_attempt(worker_url: str, queue: str, calls: list[str]) -> tuple[Any, float, int]:
    """Claim the queue's one task (as the worker role), run a step, random() and the seq
    through a DurableContext, hand the task back; the step's value, the random value and the
    events in the history."""

    def step() -> dict[str, Any]:
        calls.append("step")
        return RESULT

    async def attempt() -> tuple[Any, float, int]:
        async with await psycopg.AsyncConnection.connect(worker_url, autocommit=True) as conn:

            async def call(command: Command[T]) -> T:
                return await execute_async(conn, command)

            (claimed,) = await call(commands.claim(queue, "w", 1, 60, None))
            ctx = DurableContext(
                call=call,
                task_id=claimed.task_id,
                lease_token=claimed.lease_token,
                queue=queue,
                task_name=claimed.task_name,
                attempt=claimed.attempt,
                history=claimed.history,
            )
            value = await ctx.step("step", step)
            drawn = await ctx.random()
            await ctx.verify()
            await call(commands.release(claimed.task_id, claimed.lease_token))
            return value, drawn, len(claimed.history or [])

    return asyncio.run(attempt())


def test_a_re_run_sees_the_recorded_values_exactly_as_the_first_run_did(db_url: str, worker_url: str) -> None:
    queue = "values"
    with psycopg.connect(db_url, autocommit=True) as conn:  # the client role
        execute(conn, commands.create_queue(queue, {}))
        execute(conn, commands.enqueue(queue, "t", {}, {"durable": True}))
    calls: list[str] = []
    first, first_random, recorded_before = run_attempt(worker_url, queue, calls)
    again, again_random, recorded = run_attempt(worker_url, queue, calls)

    assert (recorded_before, recorded) == (0, 2)
    assert calls == ["step"]  # the re-run took the recorded result
    assert again == first and list(again) == list(first)  # same value, same key order
    assert isinstance(first["big"], int) and first["pair"] == [1, 2]
    assert again_random == first_random


def run_code(worker_url: str, queue: str, code: Callable[[DurableContext], Awaitable[Any]]) -> Any:
    """Claim the queue's one task (as the worker role) and run ``code`` with its context."""

    async def attempt() -> Any:
        async with await psycopg.AsyncConnection.connect(worker_url, autocommit=True) as conn:

            async def call(command: Command[T]) -> T:
                return await execute_async(conn, command)

            (claimed,) = await call(commands.claim(queue, "w", 1, 60, None))
            ctx = DurableContext(
                call=call,
                task_id=claimed.task_id,
                lease_token=claimed.lease_token,
                queue=queue,
                task_name=claimed.task_name,
                attempt=claimed.attempt,
                history=claimed.history,
            )
            try:
                return await code(ctx)
            finally:
                if ctx.log.failed is None:
                    with contextlib.suppress(DurableError):
                        await call(commands.release(claimed.task_id, claimed.lease_token))

    return asyncio.run(attempt())


def test_a_re_run_with_no_new_call_presents_its_history_when_it_completes(
    db_url: str, worker_url: str
) -> None:
    queue = "rerun"
    with psycopg.connect(db_url, autocommit=True) as conn:
        execute(conn, commands.create_queue(queue, {}))
        task_id = execute(conn, commands.enqueue(queue, "t", {}, {"durable": True}))

    async def first(ctx: DurableContext) -> None:  # records its events, then is lost
        await ctx.step("a", lambda: 1)
        await ctx.now()

    async def again(ctx: DurableContext) -> None:  # replays them and completes: no new call
        assert await ctx.step("a", lambda: pytest.fail("ran again")) == 1
        await ctx.now()
        await ctx.complete('"done"')

    run_code(worker_url, queue, first)
    run_code(worker_url, queue, again)
    with psycopg.connect(db_url, autocommit=True) as conn:
        info = execute(conn, commands.get_task(task_id))
    assert (info.status, info.output) == ("completed", "done")


def test_a_re_run_that_ends_before_its_history_does_is_failed_by_the_database(
    db_url: str, worker_url: str
) -> None:
    queue = "shorter"
    with psycopg.connect(db_url, autocommit=True) as conn:
        execute(conn, commands.create_queue(queue, {"max_attempts": 5}))
        task_id = execute(conn, commands.enqueue(queue, "t", {}, {"durable": True}))

    async def first(ctx: DurableContext) -> None:
        await ctx.step("a", lambda: 1)
        await ctx.step("b", lambda: 2)

    async def shorter(ctx: DurableContext) -> None:  # step "b" was removed
        await ctx.step("a", lambda: 1)
        with pytest.raises(NonDeterminismError) as raised:
            await ctx.complete(None)
        assert "event 2" in str(raised.value)
        assert ctx.log.failed is raised.value

    run_code(worker_url, queue, first)
    run_code(worker_url, queue, shorter)
    with psycopg.connect(db_url, autocommit=True) as conn:
        info = execute(conn, commands.get_task(task_id))
    assert info.status == "failed"  # at once, not retried
    assert info.error is not None and info.error["type"] == "NonDeterminismError"


def test_code_that_goes_on_after_a_non_determinism_is_stopped_at_its_next_heartbeat(
    db_url: str, worker_url: str, client: Client, start_worker: Callable[[Worker], ThreadedWorker]
) -> None:
    queue = "goes-on"
    client.create_queue(queue, backoff={"kind": "none"})
    task_id = client.enqueue(queue, "t", {}, durable=True)

    async def first(ctx: DurableContext) -> None:
        await ctx.step("a", lambda: 1)

    run_code(worker_url, queue, first)
    name = f"test-{uuid.uuid4().hex[:6]}"
    worker = Worker(worker_url, queue, lease_seconds=2, poll_interval=0.1, name=name)
    caught: list[NonDeterminismError] = []

    @worker.durable_task(name="t")
    async def renamed(input: dict[str, Any], ctx: DurableContext) -> None:
        await ctx.step("b", lambda: 2)  # step "a" renamed: its first new call finds it
        try:
            await ctx.step("c", lambda: 3)
        except NonDeterminismError as exc:
            caught.append(exc)
        await asyncio.sleep(60)  # and goes on regardless

    @worker.task
    async def slow(input: dict[str, Any]) -> str:
        await asyncio.sleep(4)  # outlives its lease: heartbeats keep it
        return "done"

    slow_id = client.enqueue(queue, "slow")
    start_worker(worker)
    wait_until(lambda: worker.stats.stopped == 1, 20, "the attempt to be stopped")
    info = client.get_task(task_id)
    assert info.status == "failed" and info.failures == 1  # by the database, at once
    assert info.error is not None and info.error["type"] == "NonDeterminismError"
    assert len(caught) == 1 and '"b"' in str(caught[0])
    # the other attempt's heartbeats went on
    assert client.wait(slow_id, timeout=30) == "done"
