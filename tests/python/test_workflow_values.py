"""What a durable call returns on its first run is what a re-run gets from the history."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import psycopg

from durable import commands
from durable.commands import Command
from durable.connections import execute, execute_async
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
