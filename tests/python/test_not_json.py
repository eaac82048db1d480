"""One policy for a result JSON cannot hold: a failure without retry, of the step (recorded
in the log) or of the task, and the function is never run again."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from pyclient_support import ThreadedWorker, wait_until

from durable import Client, Worker
from durable.errors import RESULT_NOT_SERIALIZABLE
from durable.workflow import DurableContext, RetryPolicy, SyncDurableContext

StartWorker = Callable[[Worker], ThreadedWorker]


def make_worker(worker_url: str) -> Worker:
    return Worker(worker_url, "q", poll_interval=0.1, name=f"test-{uuid.uuid4().hex[:6]}")


def ended(client: Client, task_id: uuid.UUID) -> Callable[[], bool]:
    return lambda: client.get_task(task_id).finished


def assert_failed_once(client: Client, task_id: uuid.UUID, error_type: str) -> dict[str, Any]:
    info = client.get_task(task_id)
    assert (info.status, info.attempt, info.failures) == ("failed", 1, 1)
    assert [a.outcome for a in info.attempts] == ["failed"]
    assert info.error is not None and info.error["type"] == error_type
    return info.error


def assert_step_recorded_as_failed(client: Client, task_id: uuid.UUID, step: str) -> None:
    (event,) = client.history(task_id)
    assert (event.kind, event.name, event.outcome) == ("step", step, "error")
    assert event.result["type"] == RESULT_NOT_SERIALIZABLE
    assert "not JSON-serialisable" in event.result["message"]


def test_a_step_returning_what_json_cannot_hold_fails_once_and_is_recorded(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)
    calls: list[str] = []

    def a_set(kind: str) -> set[int]:
        calls.append(kind)
        return {1, 2}

    @worker.durable_task
    async def async_code(input: dict[str, Any], ctx: DurableContext) -> None:
        # even a step allowed several tries is not tried again
        await ctx.step("odd", a_set, "async", retry=RetryPolicy(max_attempts=3, delay=0.01))

    @worker.durable_task
    def sync_code(input: dict[str, Any], ctx: SyncDurableContext) -> None:
        ctx.step("odd", a_set, "sync")

    client.create_queue("q", backoff={"kind": "none"})
    async_id = client.enqueue("q", "async_code", durable=True, max_attempts=5)
    sync_id = client.enqueue("q", "sync_code", durable=True, max_attempts=5)
    start_worker(worker)
    wait_until(ended(client, async_id))
    wait_until(ended(client, sync_id))
    assert sorted(calls) == ["async", "sync"]  # each step function ran once
    for task_id in (async_id, sync_id):
        error = assert_failed_once(client, task_id, "StepFailed")
        assert RESULT_NOT_SERIALIZABLE in error["message"] and "'odd'" in error["message"]
        assert_step_recorded_as_failed(client, task_id, "odd")

    # a retry of the task keeps the recorded failure: the function does not run again
    client.retry(async_id)
    wait_until(lambda: client.get_task(async_id).failures == 1 and ended(client, async_id)())
    info = client.get_task(async_id)
    assert (info.status, info.attempt) == ("failed", 2)
    assert sorted(calls) == ["async", "sync"]


def test_a_task_returning_what_json_cannot_hold_fails_without_retry(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)
    calls: list[str] = []

    @worker.task
    def plain(input: dict[str, Any]) -> set[int]:
        calls.append("plain")
        return {1}

    @worker.durable_task
    async def durable_code(input: dict[str, Any], ctx: DurableContext) -> object:
        calls.append("durable")
        await ctx.step("fine", lambda: 1)
        return object()

    client.create_queue("q", backoff={"kind": "none"})
    plain_id = client.enqueue("q", "plain", max_attempts=5)
    durable_id = client.enqueue("q", "durable_code", durable=True, max_attempts=5)
    start_worker(worker)
    wait_until(ended(client, plain_id))
    wait_until(ended(client, durable_id))
    assert sorted(calls) == ["durable", "plain"]
    for task_id in (plain_id, durable_id):
        error = assert_failed_once(client, task_id, RESULT_NOT_SERIALIZABLE)
        assert "not JSON-serialisable" in error["message"]
