"""Durable tasks with real worker processes: crash and resume, determinism, fork, replay."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from procs import WorkerProcesses, effects
from pyclient_support import wait_until

from durable import Client
from durable.errors import InvalidTransition

STEPS = ["one", "two", "three", "four", "five"]


def recorded_steps(wf_client: Client, task_id: uuid.UUID) -> list[str]:
    return [e.name for e in wf_client.history(task_id)]


def crash_after_three_steps(
    procs: WorkerProcesses, wf_client: Client, conn: psycopg.Connection[Any]
) -> uuid.UUID:
    """Run five_steps on a worker that hangs in step four, and kill -9 it there."""
    task_id = wf_client.enqueue("wf", "five_steps", {}, durable=True)
    doomed = procs.start("wf", env={"BLOCK_AT_STEP": "four"})
    wait_until(lambda: ("four", 1) in effects(conn, task_id), 30, "step four to start")
    assert recorded_steps(wf_client, task_id) == ["one", "two", "three"]
    procs.kill9(doomed)
    return task_id


def test_a_crashed_durable_task_resumes_without_repeating_recorded_steps(
    procs: WorkerProcesses, wf_client: Client, conn: psycopg.Connection[Any]
) -> None:
    task_id = crash_after_three_steps(procs, wf_client, conn)
    procs.start("wf")
    output = wf_client.wait(task_id, timeout=60)
    assert output == {"steps": STEPS}
    ran = effects(conn, task_id)
    # steps 1-3 ran once (attempt 1); the step in flight ran again; 5 ran once
    assert [s for s, _ in ran].count("one") == 1
    assert [s for s, _ in ran].count("two") == 1
    assert [s for s, _ in ran].count("three") == 1
    assert ("four", 1) in ran and ("four", 2) in ran
    assert ("five", 2) in ran and [s for s, _ in ran].count("five") == 1
    info = wf_client.get_task(task_id)
    assert info.status == "completed"
    assert [a.outcome for a in info.attempts] == ["lease_expired", "completed"]
    assert info.lost_leases == 1 and info.failures == 0
    assert recorded_steps(wf_client, task_id) == STEPS


def test_changed_code_after_a_crash_fails_with_a_nondeterminism_error_before_any_new_step(
    procs: WorkerProcesses, wf_client: Client, conn: psycopg.Connection[Any]
) -> None:
    task_id = crash_after_three_steps(procs, wf_client, conn)
    before = effects(conn, task_id)
    procs.start("wf", "--version", "2")  # step two was renamed
    wait_until(lambda: wf_client.get_task(task_id).finished, 60, "the task to end")
    info = wf_client.get_task(task_id)
    assert info.status == "failed"
    assert info.error is not None
    assert info.error["type"] == "NonDeterminismError"
    message = info.error["message"]
    assert "event 2" in message and '"two"' in message and '"two-renamed"' in message
    # nothing new ran: the check came before step four
    assert effects(conn, task_id) == before
    assert info.failures == 1 and info.max_attempts > 1  # failed at once, not retried
    assert recorded_steps(wf_client, task_id) == ["one", "two", "three"]


def test_fork_at_step_two_re_executes_steps_two_to_five_only(
    procs: WorkerProcesses, wf_client: Client, conn: psycopg.Connection[Any]
) -> None:
    procs.start("wf")
    original = wf_client.enqueue("wf", "five_steps", {}, durable=True)
    wf_client.wait(original, timeout=60)
    forked = wf_client.fork(original, 2)
    assert wf_client.wait(forked, timeout=60) == {"steps": STEPS}
    assert [s for s, _ in effects(conn, forked)] == ["two", "three", "four", "five"]
    assert [s for s, _ in effects(conn, original)] == STEPS  # untouched
    info = wf_client.get_task(forked)
    assert info.forked_from == original and info.forked_at_seq == 2


def test_replay_re_executes_every_step_and_keeps_the_old_history(
    procs: WorkerProcesses, wf_client: Client, conn: psycopg.Connection[Any]
) -> None:
    procs.start("wf")
    task_id = wf_client.enqueue("wf", "five_steps", {}, durable=True)
    wf_client.wait(task_id, timeout=60)
    assert wf_client.replay(task_id) == 2
    assert wf_client.wait(task_id, timeout=60) == {"steps": STEPS}
    assert [s for s, _ in effects(conn, task_id)] == STEPS + STEPS
    generations = [e.generation for e in wf_client.history(task_id, all_generations=True)]
    assert generations == [1] * 5 + [2] * 5


def test_retry_of_a_completed_task_is_refused(procs: WorkerProcesses, wf_client: Client) -> None:
    procs.start("wf")
    task_id = wf_client.enqueue("wf", "five_steps", {}, durable=True)
    wf_client.wait(task_id, timeout=60)
    with pytest.raises(InvalidTransition):
        wf_client.retry(task_id)
