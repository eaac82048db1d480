"""Durable tasks with real worker processes: crash and resume, determinism, fork, replay."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from procs import WorkerProcesses, worker_processes
from pyclient_support import wait_until

from durable import Client
from durable.errors import InvalidTransition

STEPS = ["one", "two", "three", "four", "five"]


@pytest.fixture
def procs(db_url: str) -> Iterator[WorkerProcesses]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "create table side_effects (id bigserial, task_id uuid, step text, attempt int,"
            " at timestamptz default clock_timestamp())"
        )
    with worker_processes(db_url) as p:
        yield p


@pytest.fixture
def client(db_url: str) -> Iterator[Client]:
    with Client(db_url) as c:
        c.create_queue("wf", backoff={"kind": "none"})
        yield c


def effects(conn: psycopg.Connection[Any], task_id: uuid.UUID) -> list[tuple[str, int]]:
    rows = conn.execute(
        "select step, attempt from side_effects where task_id = %s order by id", (task_id,)
    ).fetchall()
    return [(step, attempt) for step, attempt in rows]


def recorded_steps(client: Client, task_id: uuid.UUID) -> list[str]:
    return [e.name for e in client.history(task_id)]


def crash_after_three_steps(
    procs: WorkerProcesses, client: Client, conn: psycopg.Connection[Any]
) -> uuid.UUID:
    """Run five_steps on a worker that hangs in step four, and kill -9 it there."""
    task_id = client.enqueue("wf", "five_steps", {}, durable=True)
    doomed = procs.start("wf", env={"BLOCK_AT_STEP": "four"})
    wait_until(lambda: ("four", 1) in effects(conn, task_id), 30, "step four to start")
    assert recorded_steps(client, task_id) == ["one", "two", "three"]
    procs.kill9(doomed)
    return task_id


def test_a_crashed_durable_task_resumes_without_repeating_recorded_steps(
    procs: WorkerProcesses, client: Client, conn: psycopg.Connection[Any]
) -> None:
    task_id = crash_after_three_steps(procs, client, conn)
    procs.start("wf")
    output = client.wait(task_id, timeout=60)
    assert output == {"steps": STEPS}
    ran = effects(conn, task_id)
    # steps 1-3 ran once (attempt 1); the step in flight ran again; 5 ran once
    assert [s for s, _ in ran].count("one") == 1
    assert [s for s, _ in ran].count("two") == 1
    assert [s for s, _ in ran].count("three") == 1
    assert ("four", 1) in ran and ("four", 2) in ran
    assert ("five", 2) in ran and [s for s, _ in ran].count("five") == 1
    info = client.get_task(task_id)
    assert info.status == "completed"
    assert [a.outcome for a in info.attempts] == ["lease_expired", "completed"]
    assert info.lost_leases == 1 and info.failures == 0
    assert recorded_steps(client, task_id) == STEPS


def test_changed_code_after_a_crash_fails_with_a_nondeterminism_error_before_any_new_step(
    procs: WorkerProcesses, client: Client, conn: psycopg.Connection[Any]
) -> None:
    task_id = crash_after_three_steps(procs, client, conn)
    before = effects(conn, task_id)
    procs.start("wf", "--version", "2")  # step two was renamed
    wait_until(lambda: client.get_task(task_id).finished, 60, "the task to end")
    info = client.get_task(task_id)
    assert info.status == "failed"
    assert info.error is not None
    assert info.error["type"] == "NonDeterminismError"
    message = info.error["message"]
    assert "event 2" in message and '"two"' in message and '"two-renamed"' in message
    # nothing new ran: the check came before step four
    assert effects(conn, task_id) == before
    assert info.failures == 1 and info.max_attempts > 1  # failed at once, not retried
    assert recorded_steps(client, task_id) == ["one", "two", "three"]


def test_fork_at_step_two_re_executes_steps_two_to_five_only(
    procs: WorkerProcesses, client: Client, conn: psycopg.Connection[Any]
) -> None:
    procs.start("wf")
    original = client.enqueue("wf", "five_steps", {}, durable=True)
    client.wait(original, timeout=60)
    forked = client.fork(original, 2)
    assert client.wait(forked, timeout=60) == {"steps": STEPS}
    assert [s for s, _ in effects(conn, forked)] == ["two", "three", "four", "five"]
    assert [s for s, _ in effects(conn, original)] == STEPS  # untouched
    info = client.get_task(forked)
    assert info.forked_from == original and info.forked_at_seq == 2


def test_replay_re_executes_every_step_and_keeps_the_old_history(
    procs: WorkerProcesses, client: Client, conn: psycopg.Connection[Any]
) -> None:
    procs.start("wf")
    task_id = client.enqueue("wf", "five_steps", {}, durable=True)
    client.wait(task_id, timeout=60)
    assert client.replay(task_id) == 2
    assert client.wait(task_id, timeout=60) == {"steps": STEPS}
    assert [s for s, _ in effects(conn, task_id)] == STEPS + STEPS
    generations = [e.generation for e in client.history(task_id, all_generations=True)]
    assert generations == [1] * 5 + [2] * 5


def test_retry_of_a_completed_task_is_refused(procs: WorkerProcesses, client: Client) -> None:
    procs.start("wf")
    task_id = client.enqueue("wf", "five_steps", {}, durable=True)
    client.wait(task_id, timeout=60)
    with pytest.raises(InvalidTransition):
        client.retry(task_id)
