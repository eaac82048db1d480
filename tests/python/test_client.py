"""Client and AsyncClient against a real database: enqueue, get, cancel, wait, errors.

The clients connect as the client role; what a worker does here (claim, complete, fail)
goes through a connection of the worker role, as it would in a deployment.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from durable import (
    AsyncClient,
    Client,
    DebounceKeyHeld,
    InvalidArgument,
    InvalidTransition,
    MigrationError,
    PayloadTooLarge,
    TaskFailed,
    TaskSpec,
    UnknownQueue,
    UnknownTask,
    WaitTimeout,
    commands,
)
from durable.connections import execute, execute_async


@pytest.fixture
def queue(client: Client) -> str:
    client.create_queue("q")
    return "q"


@pytest.fixture
def worker(worker_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection of the worker role, for the verbs of a worker."""
    with psycopg.connect(worker_url, autocommit=True) as c:
        yield c


def claim_one(worker: psycopg.Connection[Any], queue: str) -> commands.ClaimedTask:
    """Claim through the SQL verb, as a worker would."""
    claimed = execute(worker, commands.claim(queue, "test-worker", 1, 30, None))
    assert len(claimed) == 1
    return claimed[0]


def test_enqueue_returns_a_uuid_and_get_task_shows_the_task(client: Client, queue: str) -> None:
    task_id = client.enqueue(queue, "send", {"to": "a@example.com"})
    assert isinstance(task_id, uuid.UUID)
    info = client.get_task(task_id)
    assert info.task_id == task_id
    assert (info.queue, info.task_name, info.input) == (queue, "send", {"to": "a@example.com"})
    assert info.status == "pending" and not info.finished
    assert (info.attempt, info.failures, info.lost_leases) == (0, 0, 0)
    assert info.max_attempts == 5
    assert info.backoff["kind"] == "exponential"
    assert info.attempts == []
    assert info.created_at.tzinfo is not None
    # a task id given as a string works too
    assert client.get_task(str(task_id)).task_id == task_id


def test_enqueue_without_input_stores_an_empty_object(client: Client, queue: str) -> None:
    assert client.get_task(client.enqueue(queue, "noop")).input == {}


def test_enqueue_options_are_stored_on_the_task(client: Client, queue: str) -> None:
    task_id = client.enqueue(
        queue,
        "send",
        priority=7,
        delay=timedelta(seconds=60),
        max_attempts=3,
        max_lost_leases=2,
        backoff={"kind": "none"},
        timeout=12.5,
        schedule_timeout=30,
        idempotency_key="k1",
    )
    info = client.get_task(task_id)
    assert info.priority == 7
    assert info.run_at - info.created_at == timedelta(seconds=60)
    assert info.schedule_deadline == info.run_at + timedelta(seconds=30)
    assert (info.max_attempts, info.max_lost_leases) == (3, 2)
    assert info.backoff == {"kind": "none"}
    assert info.timeout == 12.5
    assert info.idempotency_key == "k1"


def test_run_at_is_stored_and_must_be_timezone_aware(client: Client, queue: str) -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert client.get_task(client.enqueue(queue, "later", run_at=when)).run_at == when
    with pytest.raises(InvalidArgument):
        client.enqueue(queue, "later", run_at=datetime(2030, 1, 2))


def test_idempotency_key_returns_the_first_task(client: Client, queue: str) -> None:
    first = client.enqueue(queue, "send", {"n": 1}, idempotency_key="once")
    second = client.enqueue(queue, "send", {"n": 2}, idempotency_key="once")
    assert first == second
    assert client.get_task(first).input == {"n": 1}
    assert client.queue_stats(queue) == {"pending": 1}


def test_enqueue_many_returns_ids_in_order(client: Client, queue: str) -> None:
    existing = client.enqueue(queue, "a", idempotency_key="dup")
    ids = client.enqueue_many(
        queue,
        [
            TaskSpec("a", {"i": 0}),
            TaskSpec("b", {"i": 1}, priority=5, max_attempts=2),
            {"task_name": "c", "input": {"i": 2}},
            TaskSpec("a", {"i": 3}, idempotency_key="dup"),
            TaskSpec("a", {"i": 4}, idempotency_key="fresh"),
            TaskSpec("a", {"i": 5}, idempotency_key="fresh"),
        ],
    )
    assert len(ids) == 6
    assert ids[3] == existing
    assert ids[5] == ids[4]
    assert len(set(ids)) == 5
    infos = [client.get_task(i) for i in ids]
    assert [i.task_name for i in infos] == ["a", "b", "c", "a", "a", "a"]
    assert [i.input for i in (infos[0], infos[1], infos[2], infos[4])] == [
        {"i": 0},
        {"i": 1},
        {"i": 2},
        {"i": 4},
    ]
    assert (infos[1].priority, infos[1].max_attempts) == (5, 2)


def test_debounce_pushes_the_pending_task(client: Client, queue: str) -> None:
    first = client.enqueue(queue, "send", {"n": 1}, debounce={"key": "k", "delay": 60, "max_delay": 600})
    again = client.enqueue(
        queue, "send", {"n": 2}, debounce={"key": "k", "delay": timedelta(seconds=90), "max_delay": 600}
    )
    assert again == first
    info = client.get_task(first)
    assert info.input == {"n": 2}
    assert timedelta(seconds=85) < info.run_at - info.created_at <= timedelta(seconds=95)
    ids = client.enqueue_many(
        queue,
        [TaskSpec("send", {"n": 3}, debounce={"key": "k", "delay": 1}), TaskSpec("send", {"n": 4})],
    )
    assert ids[0] == first and ids[1] != first
    assert client.get_task(first).input == {"n": 3}
    with pytest.raises(DebounceKeyHeld):
        client.enqueue(queue, "other", debounce={"key": "k", "delay": 1})
    with pytest.raises(InvalidArgument):
        client.enqueue(queue, "send", debounce={"key": "k", "delay": 5, "max_delay": 1})
    assert client.queue_stats(queue) == {"pending": 2}


def test_enqueue_many_writes_nothing_when_one_spec_is_bad(client: Client, queue: str) -> None:
    with pytest.raises(InvalidArgument):
        client.enqueue_many(queue, [TaskSpec("ok"), TaskSpec("bad", max_attempts=0)])
    assert client.queue_stats(queue) == {}


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.enqueue("no-such-queue", "x"), UnknownQueue),
        (lambda c: c.enqueue("q", "x", max_attempts=0), InvalidArgument),
        (lambda c: c.enqueue("q", ""), InvalidArgument),
        (lambda c: c.enqueue("q", "x", backoff={"kind": "sometimes"}), InvalidArgument),
        (lambda c: c.enqueue("q", "x", delay=5, run_at=datetime.now(UTC)), InvalidArgument),
        (lambda c: c.enqueue("q", "x", {"when": datetime.now(UTC)}), InvalidArgument),
        (lambda c: c.enqueue("q", "x", {"blob": "x" * 2_000_000}), PayloadTooLarge),
        (lambda c: c.create_queue("q", max_attempts=-1), InvalidArgument),
        (lambda c: c.get_task(uuid.uuid4()), UnknownTask),
        (lambda c: c.get_task("not-a-uuid"), InvalidArgument),
        (lambda c: c.cancel(uuid.uuid4()), UnknownTask),
        (lambda c: c.purge("no-such-queue"), UnknownQueue),
        (lambda c: c.enqueue_many("no-such-queue", [TaskSpec("x")]), UnknownQueue),
    ],
    ids=[
        "unknown-queue",
        "bad-option",
        "empty-name",
        "bad-backoff",
        "delay-and-run-at",
        "input-not-json",
        "input-too-large",
        "bad-queue-option",
        "unknown-task",
        "malformed-uuid",
        "cancel-unknown-task",
        "purge-unknown-queue",
        "enqueue-many-unknown-queue",
    ],
)
def test_errors_map_to_their_exception_types(client: Client, queue: str, call: Any, error: type) -> None:
    with pytest.raises(error) as raised:
        call(client)
    assert type(raised.value) is error


def test_cancel_a_pending_task(client: Client, queue: str) -> None:
    task_id = client.enqueue(queue, "x")
    assert client.cancel(task_id, "no longer needed") is True
    assert client.cancel(task_id) is False
    info = client.get_task(task_id)
    assert info.status == "cancelled" and info.finished
    assert info.error == {"type": "Cancelled", "message": "no longer needed"}
    with pytest.raises(TaskFailed) as failed:
        client.wait(task_id, timeout=5)
    assert failed.value.status == "cancelled"


def test_cancel_a_finished_task_is_an_invalid_transition(
    client: Client, worker: psycopg.Connection[Any], queue: str
) -> None:
    task_id = client.enqueue(queue, "x")
    claimed = claim_one(worker, queue)
    execute(worker, commands.complete_many([claimed.task_id], [claimed.lease_token], ["1"]))
    with pytest.raises(InvalidTransition):
        client.cancel(task_id)


def test_wait_returns_the_output(client: Client, worker: psycopg.Connection[Any], queue: str) -> None:
    task_id = client.enqueue(queue, "x")
    claimed = claim_one(worker, queue)
    assert claimed.task_id == task_id
    [result] = execute(worker, commands.complete_many([task_id], [claimed.lease_token], ['{"answer": 42}']))
    assert result.ok and result.reason == "completed"
    assert client.wait(task_id, timeout=5) == {"answer": 42}


def test_wait_raises_task_failed_with_the_error(
    client: Client, worker: psycopg.Connection[Any], queue: str
) -> None:
    task_id = client.enqueue(queue, "x")
    claimed = claim_one(worker, queue)
    outcome = execute(
        worker, commands.fail(task_id, claimed.lease_token, {"type": "Boom", "message": "no"}, False)
    )
    assert outcome.status == "failed"
    with pytest.raises(TaskFailed) as failed:
        client.wait(task_id, timeout=5)
    assert failed.value.status == "failed"
    assert failed.value.error == {"type": "Boom", "message": "no"}


def test_wait_times_out(client: Client, queue: str) -> None:
    task_id = client.enqueue(queue, "x")
    with pytest.raises(WaitTimeout):
        client.wait(task_id, timeout=0.2)


def test_create_queue_merges_options(client: Client) -> None:
    assert client.create_queue("merge", max_attempts=3) == {"max_attempts": 3}
    assert client.create_queue("merge", retention=timedelta(hours=1)) == {
        "max_attempts": 3,
        "retention": 3600.0,
    }
    assert client.create_queue("merge") == {"max_attempts": 3, "retention": 3600.0}
    assert client.get_task(client.enqueue("merge", "x")).max_attempts == 3


def test_purge_deletes_finished_tasks(client: Client, worker: psycopg.Connection[Any], queue: str) -> None:
    done = client.enqueue(queue, "x")
    waiting = client.enqueue(queue, "y", delay=3600)
    claimed = claim_one(worker, queue)
    execute(worker, commands.complete_many([claimed.task_id], [claimed.lease_token], [None]))
    assert client.purge(queue) == 0  # no retention set and none given
    assert client.purge(queue, older_than=0) == 1
    with pytest.raises(UnknownTask):
        client.get_task(done)
    assert client.get_task(waiting).status == "pending"


def test_migrate_again_changes_nothing(admin_url: str) -> None:
    # as the superuser: migrating is the owner's (a member of durable_owner), not a client's
    with Client(admin_url) as admin:
        admin.migrate()  # the database is migrated already, unless the SQL files changed since
        result = admin.migrate()
    assert result.applied == []
    assert result.functions_reloaded is False


def test_a_client_may_not_migrate(client: Client) -> None:
    with pytest.raises(MigrationError, match="durable_test_client is not a member of durable_owner"):
        client.migrate()


def test_async_client_has_the_same_verbs(db_url: str, worker_url: str, admin_url: str) -> None:
    async def scenario() -> None:
        async with (
            AsyncClient(db_url) as client,
            await psycopg.AsyncConnection.connect(worker_url, autocommit=True) as worker,
        ):
            assert await client.create_queue("aq", max_attempts=2) == {"max_attempts": 2}
            task_id = await client.enqueue("aq", "x", {"a": 1}, idempotency_key="k")
            assert await client.enqueue("aq", "x", {"a": 2}, idempotency_key="k") == task_id
            ids = await client.enqueue_many("aq", [TaskSpec("y"), TaskSpec("z", {"b": 2})])
            info = await client.get_task(task_id)
            assert (info.status, info.input, info.max_attempts) == ("pending", {"a": 1}, 2)
            assert await client.queue_stats("aq") == {"pending": 3}

            [claimed] = await execute_async(worker, commands.claim("aq", "w", 1, 30, ["x"]))
            await execute_async(worker, commands.complete_many([task_id], [claimed.lease_token], ['"done"']))
            assert await client.wait(task_id, timeout=5) == "done"

            assert await client.cancel(ids[0]) is True
            with pytest.raises(TaskFailed):
                await client.wait(ids[0], timeout=5)
            with pytest.raises(WaitTimeout):
                await client.wait(ids[1], timeout=0.1)
            with pytest.raises(UnknownQueue):
                await client.enqueue("nope", "x")
            with pytest.raises(UnknownTask):
                await client.get_task(uuid.uuid4())
            with pytest.raises(InvalidTransition):
                await client.cancel(task_id)
            assert await client.purge("aq", older_than=0) == 2
        # as the superuser: migrating is the owner's, not a client's
        async with AsyncClient(admin_url) as admin:
            await admin.migrate()
            assert (await admin.migrate()).applied == []

    asyncio.run(scenario())
