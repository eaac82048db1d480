"""A forgotten ``await``: a durable call made but never started fails the attempt, without
retry, instead of letting the task complete without it."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from pyclient_support import ThreadedWorker, wait_until

from durable import Client, NotAwaited, Worker
from durable.commands import Command
from durable.workflow import DurableContext

StartWorker = Callable[[Worker], ThreadedWorker]


def make_worker(worker_url: str) -> Worker:
    return Worker(worker_url, "q", poll_interval=0.1, name=f"test-{uuid.uuid4().hex[:6]}")


def ended(client: Client, task_id: uuid.UUID) -> Callable[[], bool]:
    return lambda: client.get_task(task_id).finished


def test_a_step_never_awaited_fails_the_task_without_retry(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)
    ran: list[str] = []

    @worker.durable_task
    async def forgets(input: dict[str, Any], ctx: DurableContext) -> str:
        await ctx.step("first", ran.append, "first")
        ctx.step("x", ran.append, "x")  # type: ignore[unused-coroutine]
        return "done"

    @worker.durable_task
    async def forgets_then_raises(input: dict[str, Any], ctx: DurableContext) -> None:
        ctx.now()  # type: ignore[unused-coroutine]
        raise ValueError("something else went wrong")

    client.create_queue("q", backoff={"kind": "none"})
    returns = client.enqueue("q", "forgets", durable=True, max_attempts=5)
    raises = client.enqueue("q", "forgets_then_raises", durable=True, max_attempts=5)
    start_worker(worker)
    wait_until(ended(client, returns))
    wait_until(ended(client, raises))

    info = client.get_task(returns)
    assert (info.status, info.attempt, info.failures) == ("failed", 1, 1)
    assert info.error is not None and info.error["type"] == "NotAwaited"
    message = info.error["message"]
    assert "durable call step 'x' (made at test_not_awaited.py:" in message
    assert "was never awaited" in message
    assert ran == ["first"]  # the step never ran
    assert [e.name for e in client.history(returns)] == ["first"]

    info = client.get_task(raises)
    assert (info.status, info.attempt, info.failures) == ("failed", 1, 1)
    assert info.error is not None and info.error["type"] == "NotAwaited"
    assert "durable call now (made at" in info.error["message"]
    assert "ValueError: something else went wrong" in info.error["traceback"]


def test_calls_started_late_or_dropped_by_a_suspension_are_not_forgotten(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)
    ran: list[str] = []

    @worker.durable_task
    async def deferred(input: dict[str, Any], ctx: DurableContext) -> list[Any]:
        # made first, awaited later: a call takes its seq when it starts
        calls = [ctx.step("a", ran.append, "a"), ctx.sleep(0.2), ctx.step("b", ran.append, "b")]
        for call in calls:
            await call  # the sleep suspends the first attempt: step b is dropped, not forgotten
        both = await asyncio.gather(ctx.step("c", lambda: 3), ctx.random())
        task = asyncio.create_task(ctx.step("d", lambda: 4))

        @ctx.step("e")
        def e(n: int) -> int:
            return n + 1

        return [both[0], await task, await e(4)]

    client.create_queue("q", backoff={"kind": "none"})
    task_id = client.enqueue("q", "deferred", durable=True, max_attempts=1)
    start_worker(worker)
    assert client.wait(task_id, timeout=30) == [3, 4, 5]
    assert ran == ["a", "b"]
    assert [e.name for e in client.history(task_id)] == ["a", "sleep", "b", "c", "random", "d", "e"]


def test_every_call_never_started_is_named_and_closed() -> None:
    async def call(command: Command[Any]) -> Any:
        raise AssertionError("no call reaches the database")

    ctx = DurableContext(
        call=call,
        task_id=uuid.uuid4(),
        lease_token=uuid.uuid4(),
        queue="q",
        task_name="t",
        attempt=1,
        history=None,
    )
    made: list[Any] = []

    async def code(input: Any, ctx: DurableContext) -> None:
        made.extend([ctx.sleep(5, name="nap"), ctx.spawn("child"), ctx.wait_for_event("k")])

    with pytest.raises(NotAwaited) as caught:
        asyncio.run(ctx.run(code, None))
    message = str(caught.value)
    line = code.__code__.co_firstlineno + 1  # the line of the calls
    assert f"durable calls sleep 'nap' (made at test_not_awaited.py:{line})" in message
    assert "spawn 'child' (made at" in message and "wait_for_event 'k' (made at" in message
    assert message.endswith(
        "were never awaited; await every durable call (or gather it) before the task returns"
    )
    # closed: Python does not warn about them when they are collected
    assert [inspect.getcoroutinestate(c) for c in made] == [inspect.CORO_CLOSED] * 3
