"""Client.list_tasks / list_queues (and their AsyncClient twins), and the keys get_task
gained (next_run_at, waiting_for, children, parent_id), as the client role.

What a worker does here (claim, complete) goes through a connection of the worker role.
The SQL rules themselves (every filter, permissions, parked tasks) are tested in
tests/sql/test_read_listing.sql.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import durable
from durable import AsyncClient, Client, InvalidArgument, QueueRow, TaskInfo, TaskRow, commands
from durable.connections import execute


@pytest.fixture
def worker(worker_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection of the worker role, for the verbs of a worker."""
    with psycopg.connect(worker_url, autocommit=True) as c:
        yield c


def complete_one(worker: psycopg.Connection[Any], queue: str) -> uuid.UUID:
    """Claim one task of the queue and complete it, as a worker would; returns its id."""
    [claimed] = execute(worker, commands.claim(queue, "test-worker", 1, 30, None))
    execute(worker, commands.complete_many([claimed.task_id], [claimed.lease_token], ['"ok"']))
    return claimed.task_id


def test_list_tasks_returns_task_rows_newest_first_with_filters(
    client: Client, worker: psycopg.Connection[Any]
) -> None:
    client.create_queue("la")
    client.create_queue("lb")
    a1 = client.enqueue("la", "send", idempotency_key="k1")
    b1 = client.enqueue("lb", "send", priority=3)
    a2 = client.enqueue("la", "build")
    assert complete_one(worker, "la") == a1

    rows = client.list_tasks()
    assert [row.task_id for row in rows] == [a2, b1, a1]
    assert all(isinstance(row, TaskRow) for row in rows)
    done = rows[2]
    assert (done.queue, done.task_name, done.status, done.durable, done.attempt, done.priority) == (
        "la",
        "send",
        "completed",
        False,
        1,
        0,
    )
    assert done.idempotency_key == "k1" and done.parent_id is None
    assert isinstance(done.run_at, datetime) and done.run_at.tzinfo is not None
    assert done.started_at is not None and done.finished_at is not None
    assert done.created_at <= done.finished_at
    assert rows[1].priority == 3 and rows[1].started_at is None and rows[1].finished_at is None

    assert [r.task_id for r in client.list_tasks("la")] == [a2, a1]
    assert [r.task_id for r in client.list_tasks(status="pending")] == [a2, b1]
    assert [r.task_id for r in client.list_tasks(queue="la", status="completed")] == [a1]
    assert [r.task_id for r in client.list_tasks(task_name="send")] == [b1, a1]
    assert [r.task_id for r in client.list_tasks(idempotency_key="k1")] == [a1]
    assert [r.task_id for r in client.list_tasks(finished_since=done.finished_at)] == [a1]
    assert [r.task_id for r in client.list_tasks(created_since=rows[1].created_at)] == [a2, b1]
    assert client.list_tasks(created_since=datetime.now(UTC) + timedelta(hours=1)) == []
    assert [r.task_id for r in client.list_tasks(before=str(b1))] == [a1]
    assert [r.task_id for r in client.list_tasks(limit=1)] == [a2]
    assert client.list_tasks(parent=uuid.uuid4()) == []
    assert client.list_tasks("nope") == []


def test_list_tasks_pages_cover_every_task_once(client: Client) -> None:
    client.create_queue("pages")
    ids = client.enqueue_many("pages", [{"task_name": f"t{i}"} for i in range(7)])
    seen: list[uuid.UUID] = []
    sizes: list[int] = []
    before: uuid.UUID | None = None
    while page := client.list_tasks(queue="pages", before=before, limit=3):
        seen += [row.task_id for row in page]
        sizes.append(len(page))
        before = page[-1].task_id
    assert seen == sorted(ids, reverse=True)
    assert sizes == [3, 3, 1]


def test_list_tasks_bad_input_is_invalid_argument(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="limit must be between 1 and 1000"):
        client.list_tasks(limit=0)
    with pytest.raises(InvalidArgument, match="limit must be between 1 and 1000"):
        client.list_tasks(limit=1001)
    with pytest.raises(InvalidArgument, match="status must be one of"):
        client.list_tasks(status="done")
    with pytest.raises(InvalidArgument, match="created_since must be a timezone-aware datetime"):
        client.list_tasks(created_since=datetime(2030, 1, 1))
    with pytest.raises(InvalidArgument, match="finished_since must be a timezone-aware datetime"):
        client.list_tasks(finished_since=datetime(2030, 1, 1))


def test_list_queues_counts_tasks_by_status(client: Client, worker: psycopg.Connection[Any]) -> None:
    client.create_queue("qa", max_attempts=2)
    client.create_queue("qb")
    client.enqueue("qa", "x")
    client.enqueue("qa", "x")
    client.enqueue("qa", "x", delay=3600)
    complete_one(worker, "qa")
    later = client.enqueue("qb", "y", delay=3600)
    client.cancel(later)

    queues = {row.queue: row for row in client.list_queues()}
    assert list(queues) == ["qa", "qb"]
    qa, qb = queues["qa"], queues["qb"]
    assert isinstance(qa, QueueRow)
    assert qa.options == {"max_attempts": 2}
    assert (qa.pending, qa.running, qa.sleeping, qa.waiting, qa.completed, qa.failed, qa.cancelled) == (
        2,
        0,
        0,
        0,
        1,
        0,
        0,
    )
    # one ready pending task (the delayed one is not ready yet): it has waited a little
    assert qa.oldest_pending_seconds is not None and 0 <= qa.oldest_pending_seconds < 60
    assert (qb.pending, qb.cancelled, qb.oldest_pending_seconds) == (0, 1, None)


def test_get_task_says_when_a_task_runs_next(client: Client) -> None:
    client.create_queue("g")
    task_id = client.enqueue("g", "x", delay=60)
    info = client.get_task(task_id)
    assert info.next_run_at == info.run_at
    assert (info.waiting_for, info.children, info.parent_id) == (None, [], None)
    client.cancel(task_id)
    assert client.get_task(task_id).next_run_at is None


def test_task_info_of_an_older_server_parses_with_defaults() -> None:
    old = {
        "task_id": str(uuid.uuid4()),
        "queue": "q",
        "task_name": "x",
        "input": {},
        "status": "pending",
        "priority": 0,
        "run_at": "2030-01-01T00:00:00+00:00",
        "attempt": 0,
        "failures": 0,
        "lost_leases": 0,
        "max_attempts": 5,
        "max_lost_leases": 10,
        "backoff": {"kind": "none"},
        "created_at": "2030-01-01T00:00:00+00:00",
    }
    info = TaskInfo.from_json(old)
    assert (info.waiting_for, info.children, info.next_run_at, info.parent_id) == (None, [], None, None)
    parked = TaskInfo.from_json(
        old
        | {
            "status": "sleeping",
            "waiting_for": {"kind": "sleep", "until": "2030-01-01T00:01:00+00:00"},
            "next_run_at": "2030-01-01T00:01:00+00:00",
            "children": [{"task_id": old["task_id"], "queue": "q", "task_name": "y", "status": "pending"}],
        }
    )
    assert parked.next_run_at == datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
    assert parked.waiting_for == {"kind": "sleep", "until": "2030-01-01T00:01:00+00:00"}
    assert parked.children[0]["task_name"] == "y"


def test_the_rows_are_exported() -> None:
    assert durable.TaskRow is TaskRow and durable.QueueRow is QueueRow
    assert {"TaskRow", "QueueRow"} <= set(durable.__all__)


def test_async_client_lists_tasks_and_queues(db_url: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(db_url) as client:
            await client.create_queue("aq")
            first = await client.enqueue("aq", "x")
            second = await client.enqueue("aq", "y")
            rows = await client.list_tasks(queue="aq")
            assert [row.task_id for row in rows] == [second, first]
            assert [row.task_id for row in await client.list_tasks(task_name="x", limit=1)] == [first]
            [queue] = await client.list_queues()
            assert (queue.queue, queue.pending) == ("aq", 2)
            with pytest.raises(InvalidArgument):
                await client.list_tasks(limit=0)

    asyncio.run(scenario())
