"""A worker completes its durable tasks with the others, in the flusher's batches
(durable.complete_many, not durable.complete one by one): the slot is free at once, the
completion commits later. complete_many completes a durable task only once its whole
history was checked: a code that finishes short of its history is failed there
(non-determinism, no retry), and the worker logs that attempt as failed."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from pyclient_support import ThreadedWorker, wait_until

from durable import Client, TaskSpec, Worker
from durable.errors import TaskFailed
from durable.workflow import DurableContext

StartWorker = Callable[[Worker], ThreadedWorker]


def _worker(worker_url: str, concurrency: int = 4) -> Worker:
    return Worker(
        worker_url, "q", concurrency=concurrency, poll_interval=0.1, name=f"test-{uuid.uuid4().hex[:6]}"
    )


def test_durable_tasks_complete_in_the_batches_of_complete_many(
    admin_url: str, worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        dbname = conn.info.dbname
        conn.execute(f'alter database "{dbname}" set track_functions = pl')
    worker = _worker(worker_url)

    @worker.durable_task
    async def one_step(input: dict[str, Any], ctx: DurableContext) -> dict[str, Any]:
        value = await ctx.step("s", lambda: input["i"] * 2)
        return {"i": input["i"], "twice": value}

    client.create_queue("q")
    ids = client.enqueue_many("q", [TaskSpec("one_step", {"i": i}, durable=True) for i in range(8)])
    running = start_worker(worker)
    assert [client.wait(t, timeout=60) for t in ids] == [{"i": i, "twice": 2 * i} for i in range(8)]
    running.stop()  # its connections close: their function counts reach the statistics
    with psycopg.connect(admin_url, autocommit=True) as conn:

        def calls() -> dict[str, int] | None:
            conn.execute("select pg_stat_clear_snapshot()")
            rows = conn.execute(
                "select funcname, calls from pg_stat_user_functions"
                " where schemaname = 'durable' and funcname in ('complete', 'complete_many')"
            ).fetchall()
            counts = {str(name): int(n) for name, n in rows}
            return counts if counts.get("complete_many", 0) > 0 else None

        counted = wait_until(calls, timeout=10, what="the statistics of complete_many")
        assert counted is not None
        assert counted.get("complete", 0) == 0, "no durable task was completed one by one"
        assert 1 <= counted["complete_many"] <= 8


def test_a_code_that_finishes_short_of_its_history_is_failed_by_its_completion(
    worker_url: str, client: Client, start_worker: StartWorker, caplog: pytest.LogCaptureFixture
) -> None:
    client.create_queue("q")
    task = client.enqueue("q", "shorter", {}, durable=True)
    # an earlier attempt recorded two steps, then handed the task back
    with psycopg.connect(worker_url, autocommit=True) as conn:
        row = conn.execute("select task_id, lease_token from durable.claim('q', 'earlier', 1, 60)").fetchone()
        assert row is not None and row[0] == task
        for seq, name in ((1, "a"), (2, "b")):
            conn.execute(
                "select durable.checkpoint(%s, %s, %s, 'step', %s, '1'::jsonb)", (task, row[1], seq, name)
            )
        conn.execute("select durable.release(%s, %s, 0, 'handed back')", (task, row[1]))
    worker = _worker(worker_url, concurrency=1)
    ran: list[str] = []

    @worker.durable_task
    async def shorter(input: dict[str, Any], ctx: DurableContext) -> str:
        await ctx.step("a", lambda: ran.append("a"))  # replayed: recorded
        return "done before step b"

    with caplog.at_level(logging.INFO, logger="durable.worker"):
        start_worker(worker)
        with pytest.raises(TaskFailed):
            client.wait(task, timeout=60)
        info = client.get_task(task)
        assert info.status == "failed"
        assert info.error is not None and info.error["type"] == "NonDeterminismError"
        assert ran == [], "the recorded step was not run again"

        def logged() -> list[logging.LogRecord]:
            return [r for r in caplog.records if getattr(r, "task_id", None) == str(task)]

        records = wait_until(logged, timeout=10, what="the attempt's line")
    assert getattr(records[-1], "outcome", None) == "failed"


def test_the_slot_of_a_durable_task_is_free_before_its_completion_commits(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = Worker(
        worker_url,
        "q",
        concurrency=1,
        poll_interval=0.05,
        flush_interval=3600,  # completions wait for flush_size (or the shutdown)
        flush_size=2,
        name=f"test-{uuid.uuid4().hex[:6]}",
    )
    started: list[int] = []
    # the first task ends once the second is enqueued (a worker with nothing left to claim
    # sends its completions at once); the second holds its slot until the test has looked
    # (else it could end, and its completion fill the batch, before the look)
    gates = {1: threading.Event(), 2: threading.Event()}

    @worker.durable_task
    async def quick(input: dict[str, Any], ctx: DurableContext) -> int:
        started.append(input["i"])
        assert await asyncio.to_thread(gates[input["i"]].wait, 30)
        await ctx.step("s", lambda: None)
        return int(input["i"])

    client.create_queue("q")
    first = client.enqueue("q", "quick", {"i": 1}, durable=True)
    running = start_worker(worker)
    wait_until(lambda: started == [1], timeout=30, what="the first task to start")
    second = client.enqueue("q", "quick", {"i": 2}, durable=True)
    gates[1].set()
    # one slot: the second starts while the first's completion still waits in the batch
    wait_until(lambda: started == [1, 2], timeout=30, what="the second task to start")
    assert client.get_task(first).status == "running", "its completion had not committed yet"
    gates[2].set()
    assert [client.wait(t, timeout=30) for t in (first, second)] == [1, 2]
    running.stop()


def test_a_worker_with_nothing_left_to_claim_sends_its_completions_at_once(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    # the batch would wait an hour for more completions; none can come: nothing runs, and
    # the claim after the tasks came back short
    worker = Worker(
        worker_url,
        "q",
        concurrency=2,
        poll_interval=0.05,
        flush_interval=3600,
        flush_size=100,
        name=f"test-{uuid.uuid4().hex[:6]}",
    )

    @worker.task
    async def plain(input: dict[str, Any]) -> int:
        return int(input["i"])

    @worker.durable_task
    async def steps(input: dict[str, Any], ctx: DurableContext) -> int:
        await ctx.step("s", lambda: None)
        return int(input["i"])

    client.create_queue("q")
    tasks = [
        client.enqueue("q", "plain", {"i": 1}),
        client.enqueue("q", "steps", {"i": 2}, durable=True),
        client.enqueue("q", "plain", {"i": 3}),
    ]
    running = start_worker(worker)
    assert [client.wait(t, timeout=30) for t in tasks] == [1, 2, 3]
    running.stop()
