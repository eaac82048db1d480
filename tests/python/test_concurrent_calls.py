"""Concurrent durable calls in one task (``asyncio.gather``): numbered in call order,
recorded in that order whatever order they finish in, each given its own recorded outcome
on a re-run; a concurrent sleep is a barrier; a kill -9 between them loses only what was
not recorded."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from procs import WorkerProcesses, effects
from pyclient_support import ThreadedWorker, wait_until

from durable import Client, Worker
from durable.workflow import DurableContext

StartWorker = Callable[[Worker], ThreadedWorker]


def make_worker(worker_url: str) -> Worker:
    return Worker(worker_url, "q", poll_interval=0.1, name=f"test-{uuid.uuid4().hex[:6]}")


def test_gathered_calls_are_recorded_in_call_order_and_a_rerun_gets_each_its_own_outcome(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)
    ran: list[tuple[int, str]] = []  # (attempt, step) each time a step function really ran
    seen: list[tuple[int, list[Any]]] = []  # (attempt, what the gather returned)

    @worker.task
    def child(input: dict[str, Any]) -> int:
        return int(input["n"]) * 2

    @worker.durable_task
    async def fan(input: dict[str, Any], ctx: DurableContext) -> dict[str, Any]:
        fast_finished = asyncio.Event()

        async def slow() -> str:
            await fast_finished.wait()  # "slow" (seq 1) finishes after "fast" (seq 4)
            ran.append((ctx.attempt, "slow"))
            return "S"

        async def fast() -> str:
            ran.append((ctx.attempt, "fast"))
            fast_finished.set()
            return "F"

        slow_out, at, uid, fast_out, rnd, handle = await asyncio.gather(
            ctx.step("slow", slow),
            ctx.now(),
            ctx.uuid4(),
            ctx.step("fast", fast),
            ctx.random(),
            ctx.spawn("child", {"n": 21}),
        )
        values = [slow_out, at.isoformat(), str(uid), fast_out, rnd, str(handle.task_id)]
        seen.append((ctx.attempt, values))
        # the task suspends here until the child ended: the next attempt replays the gather
        return {"values": values, "child": await handle.result()}

    client.create_queue("q")
    task_id = client.enqueue("q", "fan", durable=True, max_attempts=1)
    start_worker(worker)
    output = client.wait(task_id, timeout=30)
    assert output["child"] == 42
    # the step functions ran once each, "fast" first; the re-run ran none of them
    assert ran == [(1, "fast"), (1, "slow")]
    assert len(seen) == 2, seen
    (first_attempt, first), (second_attempt, second) = seen
    assert first_attempt < second_attempt
    assert first == second == output["values"]  # each call got its own recorded outcome back
    history = client.history(task_id)
    assert [(e.seq, e.kind, e.name) for e in history] == [
        (1, "step", "slow"),
        (2, "now", "now"),
        (3, "uuid", "uuid4"),
        (4, "step", "fast"),
        (5, "random", "random"),
        (6, "spawn", "child"),
        (7, "children", "result"),
    ]
    assert [history[0].result, history[2].result, history[3].result, history[4].result] == [
        "S",
        first[2],
        "F",
        first[4],
    ]
    assert history[5].result["task_id"] == first[5]
    # recorded in seq order although "fast" finished first
    times = [e.recorded_at for e in history]
    assert times == sorted(times)
    assert client.get_task(task_id).failures == 0


def test_a_sleep_in_a_gather_is_a_barrier_for_the_calls_after_it(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)
    ran: list[tuple[int, str]] = []

    @worker.durable_task
    async def nap_between(input: dict[str, Any], ctx: DurableContext) -> list[Any]:
        def step(name: str) -> str:
            ran.append((ctx.attempt, name))
            return name

        return list(
            await asyncio.gather(
                ctx.step("before", step, "before"), ctx.sleep(0.5), ctx.step("after", step, "after")
            )
        )

    client.create_queue("q")
    task_id = client.enqueue("q", "nap_between", durable=True, max_attempts=1)
    start_worker(worker)
    assert client.wait(task_id, timeout=30) == ["before", None, "after"]
    # "after" waited for the sleep, which suspended the first attempt: it ran once, after it
    assert ran == [(1, "before"), (2, "after")]
    history = client.history(task_id)
    assert [(e.kind, e.name, e.attempt) for e in history] == [
        ("step", "before", 1),
        ("sleep", "sleep", 1),
        ("step", "after", 2),
    ]
    assert [a.outcome for a in client.get_task(task_id).attempts] == ["suspended", "completed"]


def test_a_kill_9_between_gathered_steps_reruns_only_the_unrecorded_ones(
    procs: WorkerProcesses, wf_client: Client, conn: psycopg.Connection[Any]
) -> None:
    task_id = wf_client.enqueue("wf", "gathered", {}, durable=True)
    doomed = procs.start("wf", env={"BLOCK_AT_STEP": "c"})
    # "b" finished before "a" and both are recorded, in call order; "c" hangs, so "d",
    # which finished too, waits for it and is not recorded
    wait_until(
        lambda: (
            [e.name for e in wf_client.history(task_id)] == ["a", "b"] and ("d", 1) in effects(conn, task_id)
        ),
        30,
        "a and b recorded, d finished",
    )
    before = effects(conn, task_id)
    assert before.index(("b", 1)) < before.index(("a", 1))
    assert ("c", 1) in before
    assert [e.name for e in wf_client.history(task_id)] == ["a", "b"]
    procs.kill9(doomed)

    procs.start("wf")
    assert wf_client.wait(task_id, timeout=60) == {"results": ["A", "B", "C", "D"]}
    ran = effects(conn, task_id)
    # the recorded steps never ran again; the unrecorded ones ran on the next attempt
    assert sorted(ran) == sorted([("a", 1), ("b", 1), ("c", 1), ("d", 1), ("c", 2), ("d", 2)])
    history = wf_client.history(task_id)
    assert [(e.seq, e.name, e.attempt) for e in history] == [
        (1, "a", 1),
        (2, "b", 1),
        (3, "c", 2),
        (4, "d", 2),
    ]
    info = wf_client.get_task(task_id)
    assert [a.outcome for a in info.attempts] == ["lease_expired", "completed"]
    assert info.failures == 0


def test_ten_gathered_steps_finishing_in_reverse_order_are_recorded_in_call_order(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)
    finished: list[int] = []

    @worker.durable_task
    async def reverse(input: dict[str, Any], ctx: DurableContext) -> list[Any]:
        done = [asyncio.Event() for _ in range(10)]

        async def step(i: int) -> int:
            if i < 9:
                await done[i + 1].wait()  # step i finishes after step i + 1
            finished.append(i)
            done[i].set()
            return i * i

        return list(await asyncio.gather(*(ctx.step(f"s{i}", step, i) for i in range(10))))

    client.create_queue("q")
    task_id = client.enqueue("q", "reverse", durable=True, max_attempts=1)
    start_worker(worker)
    assert client.wait(task_id, timeout=30) == [i * i for i in range(10)]
    assert finished == list(range(9, -1, -1))
    history = client.history(task_id)
    assert [(e.seq, e.name, e.result) for e in history] == [(i + 1, f"s{i}", i * i) for i in range(10)]
