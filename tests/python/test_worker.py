"""The Worker, run in a thread against a real database, as the worker role (``worker_url``)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from pyclient_support import ThreadedWorker, wait_until

from durable import Client, NonRetryableError, TaskContext, TaskSpec, UnknownQueue, UnknownTask, Worker
from durable.faults import infrastructure_fault
from durable.worker import describe
from durable.workflow import DurableContext

StartWorker = Callable[[Worker], ThreadedWorker]


def finished(client: Client, task_id: uuid.UUID) -> Callable[[], bool]:
    return lambda: client.get_task(task_id).finished


def make_worker(worker_url: str, queue: str = "q", **options: Any) -> Worker:
    options.setdefault("poll_interval", 0.1)
    options.setdefault("name", f"test-{uuid.uuid4().hex[:6]}")
    return Worker(worker_url, queue, **options)


def test_sync_and_async_functions_run_with_and_without_context(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url, concurrency=4)
    contexts: list[TaskContext] = []

    @worker.task
    def add(input: dict[str, Any]) -> dict[str, Any]:
        return {"sum": input["a"] + input["b"]}

    @worker.task(name="greet")
    async def greet_fn(input: dict[str, Any], ctx: TaskContext) -> str:
        contexts.append(ctx)
        await asyncio.sleep(0)
        return f"hello {input['who']}"

    @worker.task
    def nothing(input: dict[str, Any], ctx: TaskContext) -> None:
        contexts.append(ctx)

    start_worker(worker)  # creates the queue itself
    client.create_queue("q")
    add_id = client.enqueue("q", "add", {"a": 2, "b": 3})
    greet_id = client.enqueue("q", "greet", {"who": "you"})
    nothing_id = client.enqueue("q", "nothing")
    assert client.wait(add_id, timeout=30) == {"sum": 5}
    assert client.wait(greet_id, timeout=30) == "hello you"
    assert client.wait(nothing_id, timeout=30) is None
    by_name = {c.task_name: c for c in contexts}
    assert by_name["greet"].task_id == greet_id
    assert (by_name["greet"].queue, by_name["greet"].attempt, by_name["greet"].worker) == (
        "q",
        1,
        worker.name,
    )
    assert not by_name["nothing"].cancelled
    info = client.get_task(add_id)
    assert [(a.attempt, a.outcome, a.worker) for a in info.attempts] == [(1, "completed", worker.name)]


def test_a_raising_task_is_retried_per_backoff_and_then_completes(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)

    @worker.task
    def flaky(input: dict[str, Any], ctx: TaskContext) -> str:
        if ctx.attempt < 3:
            raise ValueError(f"attempt {ctx.attempt} fails")
        return "third time lucky"

    client.create_queue("q")
    task_id = client.enqueue("q", "flaky", backoff={"kind": "none"})
    start_worker(worker)
    assert client.wait(task_id, timeout=30) == "third time lucky"
    info = client.get_task(task_id)
    assert [(a.attempt, a.outcome) for a in info.attempts] == [(1, "failed"), (2, "failed"), (3, "completed")]
    assert (info.failures, info.lost_leases) == (2, 0)
    first_error = info.attempts[0].error
    assert first_error is not None
    assert (first_error["type"], first_error["message"]) == ("ValueError", "attempt 1 fails")
    assert "Traceback" in first_error["traceback"] and "in flaky" in first_error["traceback"]


def test_a_task_failing_every_attempt_ends_failed(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)

    class Broken(Exception):
        pass

    @worker.task
    async def always(input: dict[str, Any]) -> None:
        raise Broken("still broken")

    client.create_queue("q")
    task_id = client.enqueue("q", "always", max_attempts=2, backoff={"kind": "none"})
    start_worker(worker)
    wait_until(finished(client, task_id))
    info = client.get_task(task_id)
    assert (info.status, info.failures, info.attempt) == ("failed", 2, 2)
    assert info.error is not None
    assert info.error["type"] == Broken.__qualname__
    assert info.error["message"] == "still broken"


def test_non_retryable_error_fails_at_once(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)

    class BadInput(NonRetryableError):
        pass

    @worker.task
    def picky(input: dict[str, Any]) -> None:
        raise BadInput("no such user")

    client.create_queue("q")
    task_id = client.enqueue("q", "picky", max_attempts=5, backoff={"kind": "none"})
    start_worker(worker)
    wait_until(finished(client, task_id))
    info = client.get_task(task_id)
    assert (info.status, info.attempt, info.failures) == ("failed", 1, 1)
    assert info.error is not None
    assert (info.error["type"], info.error["message"]) == (BadInput.__qualname__, "no such user")


def test_a_result_that_is_not_json_fails_without_retry(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)

    @worker.task
    def odd(input: dict[str, Any]) -> Any:
        return {"when": object()}

    client.create_queue("q")
    task_id = client.enqueue("q", "odd", max_attempts=5, backoff={"kind": "none"})
    start_worker(worker)
    wait_until(finished(client, task_id))
    info = client.get_task(task_id)
    assert (info.status, info.attempt) == ("failed", 1)
    assert info.error is not None
    assert info.error["type"] == "ResultNotSerializable"
    assert "not JSON-serialisable" in info.error["message"]


def test_a_task_name_the_worker_does_not_know_is_never_claimed(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)

    @worker.task
    def known(input: dict[str, Any]) -> str:
        return "ok"

    client.create_queue("q")
    unknown_id = client.enqueue("q", "unknown")  # first in claim order
    known_id = client.enqueue("q", "known")
    start_worker(worker)
    assert client.wait(known_id, timeout=30) == "ok"
    info = client.get_task(unknown_id)
    assert (info.status, info.attempt, info.attempts) == ("pending", 0, [])


def test_cancelling_a_running_async_task_cancels_it(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url, lease_seconds=1)  # heartbeats every 1/3 s
    started = threading.Event()
    cancelled = threading.Event()

    @worker.task
    async def long(input: dict[str, Any]) -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "too late"

    client.create_queue("q")
    task_id = client.enqueue("q", "long")
    start_worker(worker)
    assert started.wait(30)
    assert client.cancel(task_id, "changed my mind")
    assert cancelled.wait(30)
    info = client.get_task(task_id)
    assert info.status == "cancelled"
    assert [(a.attempt, a.outcome) for a in info.attempts] == [(1, "cancelled")]


def test_cancelling_a_running_sync_task_sets_its_flag(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url, lease_seconds=1)
    started = threading.Event()
    saw_cancel = threading.Event()

    @worker.task
    def loop(input: dict[str, Any], ctx: TaskContext) -> str:
        started.set()
        if ctx.cancel_event.wait(60):
            saw_cancel.set()
            ctx.raise_if_cancelled()
        return "not cancelled"

    client.create_queue("q")
    task_id = client.enqueue("q", "loop")
    running = start_worker(worker)
    assert started.wait(30)
    client.cancel(task_id)
    assert saw_cancel.wait(30)
    wait_until(lambda: running.worker.stats.stopped == 1)
    info = client.get_task(task_id)
    assert info.status == "cancelled"
    assert info.error == {"type": "Cancelled", "message": "cancelled"}  # the raise was not reported


def test_heartbeats_keep_a_task_longer_than_its_lease(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url, lease_seconds=1)
    release = threading.Event()
    started = threading.Event()

    @worker.task
    def slow(input: dict[str, Any]) -> str:
        started.set()
        release.wait(30)
        return "done"

    client.create_queue("q")
    task_id = client.enqueue("q", "slow")
    start_worker(worker)
    assert started.wait(30)
    first_expiry = wait_until(lambda: client.get_task(task_id).lease_expires_at)
    assert first_expiry is not None

    def outlived_first_lease() -> bool:
        # renewed until the task has outlived its first lease by a whole lease
        expiry = client.get_task(task_id).lease_expires_at
        return expiry is not None and expiry > first_expiry + timedelta(seconds=1)

    wait_until(outlived_first_lease)
    release.set()
    assert client.wait(task_id, timeout=30) == "done"
    info = client.get_task(task_id)
    assert (info.attempt, info.lost_leases) == (1, 0)


def test_stop_releases_what_outlives_the_grace_period(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url, shutdown_grace=0.2)
    started = threading.Event()
    cancelled = threading.Event()

    @worker.task
    async def endless(input: dict[str, Any]) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    client.create_queue("q")
    task_id = client.enqueue("q", "endless")
    running = start_worker(worker)
    assert started.wait(30)
    running.stop()
    assert cancelled.is_set()
    info = client.get_task(task_id)
    assert (info.status, info.failures, info.lost_leases) == ("pending", 0, 0)
    [attempt] = info.attempts
    assert attempt.outcome == "released"
    assert attempt.error == {"type": "Released", "message": "worker shutdown"}
    assert worker.stats.released == 1


def test_many_tasks_are_completed_in_batches(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url, concurrency=50)

    @worker.task
    async def echo(input: dict[str, Any]) -> int:
        return int(input["i"])

    @worker.task
    def echo_sync(input: dict[str, Any]) -> int:
        return int(input["i"])

    client.create_queue("q")
    ids = client.enqueue_many("q", [TaskSpec("echo" if i % 2 else "echo_sync", {"i": i}) for i in range(600)])
    running = start_worker(worker)
    wait_until(lambda: client.queue_stats("q") == {"completed": 600})
    assert [client.get_task(i).output for i in ids[:10]] == list(range(10))
    wait_until(lambda: running.worker.stats.completed == 600)
    assert running.worker.stats.claimed == 600


@pytest.mark.parametrize("listen", [True, False], ids=["listen", "poll-only"])
def test_wakes_on_notify_or_on_polling(
    worker_url: str, client: Client, start_worker: StartWorker, listen: bool
) -> None:
    # listening: a poll interval far longer than the test; poll-only: a short one
    worker = make_worker(worker_url, listen=listen, poll_interval=120 if listen else 0.1)

    @worker.task
    def ping(input: dict[str, Any]) -> str:
        return "pong"

    client.create_queue("q")
    first = client.enqueue("q", "ping")
    start_worker(worker)
    assert client.wait(first, timeout=30) == "pong"
    # the worker is idle now, waiting for a notification (or its next poll)
    second = client.enqueue("q", "ping")
    assert client.wait(second, timeout=20) == "pong"


def test_task_registration_checks_signatures() -> None:
    worker = Worker("postgresql://unused", "q")

    @worker.task
    def one(input: dict[str, Any]) -> None: ...

    class Callable2:
        async def __call__(self, input: dict[str, Any], ctx: TaskContext) -> None: ...

    described = describe(Callable2(), "obj")
    assert (described.is_async, described.wants_context) == (True, True)
    assert (describe(one).is_async, describe(one).wants_context) == (False, False)
    with pytest.raises(ValueError, match="already registered"):
        worker.task(name="one")(lambda input: None)
    with pytest.raises(TypeError):
        worker.task(name="none")(lambda: None)
    with pytest.raises(TypeError):
        worker.task(name="three")(lambda a, b, c: None)
    assert worker.task_names == ["one"]
    with pytest.raises(RuntimeError, match="no task functions"):
        Worker("postgresql://unused").run()


def test_without_create_queue_the_queue_must_exist(worker_url: str) -> None:
    worker = make_worker(worker_url, queue="missing", create_queue=False)

    @worker.task
    def anything(input: dict[str, Any]) -> None: ...

    with pytest.raises(UnknownQueue):
        worker.run()


def test_an_attempt_whose_lease_was_lost_is_abandoned_and_not_reported(
    worker_url: str, client: Client, conn: psycopg.Connection[Any], start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url, lease_seconds=1)
    first_started = threading.Event()
    first_stopped = threading.Event()

    @worker.task
    async def stubborn(input: dict[str, Any], ctx: TaskContext) -> str:
        if ctx.attempt == 1:
            first_started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                first_stopped.set()
                raise
        return f"attempt {ctx.attempt}"

    client.create_queue("q")
    task_id = client.enqueue("q", "stubborn", backoff={"kind": "none"})
    start_worker(worker)
    assert first_started.wait(30)
    # the lease runs out behind the worker's back (as after a long pause) and is reclaimed,
    # in one transaction so that neither a heartbeat nor a claim of the worker comes between;
    # as the superuser (conn): no role may write the tasks table
    with conn.transaction():
        conn.execute(
            "update durable.tasks set lease_expires_at = clock_timestamp() where task_id = %s", (task_id,)
        )
        assert conn.execute("select durable.reclaim('q')").fetchone() == (1,)
    # the next heartbeat of attempt 1 meets DU010: the worker cancels it and reports nothing
    assert first_stopped.wait(30)
    assert client.wait(task_id, timeout=30) == "attempt 2"
    info = client.get_task(task_id)
    assert [(a.attempt, a.outcome) for a in info.attempts] == [(1, "lease_expired"), (2, "completed")]
    assert (info.lost_leases, info.failures) == (1, 0)


def test_the_claims_of_a_worker_apply_the_queue_retention(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url, "kept")

    @worker.task
    def job(input: dict[str, Any]) -> None:
        return None

    client.create_queue("kept", retention=0)
    done = client.enqueue("kept", "job")
    later = client.enqueue("kept", "job", delay=3600)
    start_worker(worker)
    wait_until(lambda: client.queue_stats("kept") == {"pending": 1}, what="the completed task to be purged")
    assert client.get_task(later).status == "pending"
    with pytest.raises(UnknownTask):
        client.get_task(done)


def test_a_task_whose_durability_differs_from_its_function_fails_before_any_code_runs(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)
    ran: list[str] = []

    @worker.durable_task
    async def flow(input: dict[str, Any], ctx: Any) -> None:
        ran.append("flow")

    @worker.task
    def plain(input: dict[str, Any]) -> None:
        ran.append("plain")

    client.create_queue("q")
    not_durable = client.enqueue("q", "flow", max_attempts=5, backoff={"kind": "none"})
    durable = client.enqueue("q", "plain", durable=True, max_attempts=5, backoff={"kind": "none"})
    start_worker(worker)
    for task_id, expected in ((not_durable, "durable=False"), (durable, "durable=True")):
        wait_until(finished(client, task_id))
        info = client.get_task(task_id)
        assert (info.status, info.attempt) == ("failed", 1)
        assert info.error is not None and expected in info.error["message"]
    assert ran == []


def test_a_durable_task_whose_output_is_too_large_fails_without_retry(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)

    @worker.durable_task
    async def huge(input: dict[str, Any], ctx: Any) -> str:
        return "x" * 1_100_000

    client.create_queue("q")
    task_id = client.enqueue("q", "huge", durable=True, max_attempts=5, backoff={"kind": "none"})
    start_worker(worker)
    wait_until(finished(client, task_id))
    info = client.get_task(task_id)
    assert (info.status, info.attempt) == ("failed", 1)
    assert info.error is not None and info.error["type"] == "PayloadTooLarge"


def test_an_exception_is_an_infrastructure_fault_only_if_it_or_its_cause_is_one() -> None:
    fault = psycopg.OperationalError("server closed the connection unexpectedly")
    faults: list[BaseException] = [fault]
    assert infrastructure_fault(fault, faults) is fault
    try:
        try:
            raise fault
        except psycopg.OperationalError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert infrastructure_fault(wrapped, faults) is fault
    try:
        try:
            raise fault
        except psycopg.OperationalError:
            raise ValueError("raised while handling it") from None  # __context__ still holds it
    except ValueError as handled:
        assert infrastructure_fault(handled, faults) is fault
    # the same class, not raised by a durable call of the attempt: the task's own
    assert infrastructure_fault(psycopg.OperationalError("another database"), faults) is None
    assert infrastructure_fault(fault, []) is None


def test_an_operational_error_of_the_task_s_own_making_is_its_failure(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = make_worker(worker_url)
    unreachable = "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=2"

    def query_elsewhere() -> None:
        with psycopg.connect(unreachable):
            pass

    @worker.durable_task
    async def step_elsewhere(input: dict[str, Any], ctx: DurableContext) -> None:
        await ctx.step("elsewhere", query_elsewhere)

    @worker.durable_task
    async def raise_elsewhere(input: dict[str, Any], ctx: DurableContext) -> None:
        await ctx.now()
        query_elsewhere()

    client.create_queue("q")
    in_step = client.enqueue("q", "step_elsewhere", durable=True, max_attempts=3, backoff={"kind": "none"})
    in_code = client.enqueue("q", "raise_elsewhere", durable=True, max_attempts=2, backoff={"kind": "none"})
    start_worker(worker)
    wait_until(finished(client, in_step))
    wait_until(finished(client, in_code))
    step_info = client.get_task(in_step)
    # a failed step is recorded and final: one failure, no retry, nothing released
    assert (step_info.status, step_info.failures) == ("failed", 1)
    assert [a.outcome for a in step_info.attempts] == ["failed"]
    assert step_info.error is not None and step_info.error["type"] == "StepFailed"
    assert "OperationalError" in step_info.error["message"]
    code_info = client.get_task(in_code)
    assert (code_info.status, code_info.failures) == ("failed", 2)
    assert [a.outcome for a in code_info.attempts] == ["failed", "failed"]
    assert code_info.error is not None and code_info.error["type"] == "OperationalError"
