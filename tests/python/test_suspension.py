"""Waiting without holding a worker, with real worker processes: children, sleep, events, cancel."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg
from procs import WorkerProcesses, effects
from pyclient_support import wait_until

from durable import Client


def status(wf_client: Client, task_id: uuid.UUID) -> str:
    return wf_client.get_task(task_id).status


def test_a_waiting_parent_holds_no_slot_so_its_children_run_on_a_one_slot_worker(
    procs: WorkerProcesses, wf_client: Client
) -> None:
    procs.start("wf", "--concurrency", "1")
    parent = wf_client.enqueue("wf", "fan_out", {"children": 10}, durable=True)
    assert wf_client.wait(parent, timeout=60) == sum(n * 10 for n in range(10))
    history = wf_client.history(parent)
    assert [e.kind for e in history] == ["spawn"] * 10 + ["children"]
    outcomes = history[-1].result
    assert [o["status"] for o in outcomes] == ["completed"] * 10
    assert [o["output"] for o in outcomes] == [n * 10 for n in range(10)]


def test_a_sleep_survives_kill_9_and_ends_on_time_on_another_worker(
    procs: WorkerProcesses, wf_client: Client, conn: psycopg.Connection[Any]
) -> None:
    first = procs.start("wf")
    task_id = wf_client.enqueue("wf", "nap", {"seconds": 2}, durable=True)
    wait_until(lambda: status(wf_client, task_id) == "sleeping", 30, "the task to sleep")
    procs.kill9(first)
    procs.start("wf")
    output = wf_client.wait(task_id, timeout=30)
    before = datetime.fromisoformat(output["before"])
    after = datetime.fromisoformat(output["after"])
    slept = (after - before).total_seconds()
    assert slept >= 2.0, slept
    assert slept < 2.0 + 3.0, f"woke {slept - 2:.2f} s late"
    info = wf_client.get_task(task_id)
    assert [a.outcome for a in info.attempts] == ["suspended", "completed"]
    # the step after the sleep ran once, on the second worker's attempt
    assert effects(conn, task_id) == [("after-nap", 2)]


def test_an_event_emitted_before_the_wait_is_received(procs: WorkerProcesses, wf_client: Client) -> None:
    assert wf_client.emit_event("wf", "order-1:approved", {"by": "alice"}) == 0
    procs.start("wf")
    task_id = wf_client.enqueue("wf", "wait_for", {"key": "order-1:approved"}, durable=True)
    assert wf_client.wait(task_id, timeout=30) == {"payload": {"by": "alice"}}
    assert [a.outcome for a in wf_client.get_task(task_id).attempts] == ["completed"]


def test_an_event_emitted_later_wakes_the_waiting_task(procs: WorkerProcesses, wf_client: Client) -> None:
    procs.start("wf")
    task_id = wf_client.enqueue("wf", "wait_for", {"key": "order-2:approved"}, durable=True)
    wait_until(lambda: status(wf_client, task_id) == "waiting", 30, "the task to wait")
    assert wf_client.emit_event("wf", "order-2:approved", {"by": "bob"}) == 1
    assert wf_client.wait(task_id, timeout=30) == {"payload": {"by": "bob"}}
    assert [a.outcome for a in wf_client.get_task(task_id).attempts] == ["suspended", "completed"]


def test_a_wait_that_times_out_raises_in_the_task(procs: WorkerProcesses, wf_client: Client) -> None:
    procs.start("wf")
    task_id = wf_client.enqueue("wf", "wait_for", {"key": "never", "timeout": 0.5}, durable=True)
    assert wf_client.wait(task_id, timeout=30) == {"timed_out": True}
    assert wf_client.history(task_id)[0].result == {"payload": None, "timed_out": True}


def test_cancel_cascades_to_running_and_sleeping_children(
    procs: WorkerProcesses, wf_client: Client, conn: psycopg.Connection[Any]
) -> None:
    procs.start("wf")
    marker = uuid.uuid4()
    parent = wf_client.enqueue("wf", "parent_of_sleepers", {"marker": str(marker)}, durable=True)

    def children() -> dict[str, str]:
        # the table, as the superuser (conn): no read verb lists a task's children
        rows = conn.execute(
            "select task_name, status from durable.all_tasks where parent_id = %s", (parent,)
        ).fetchall()
        return dict(rows)

    wait_until(
        lambda: (
            children() == {"block": "running", "nap": "sleeping"} and status(wf_client, parent) == "waiting"
        ),
        30,
        "a running and a sleeping child",
    )
    assert wf_client.cancel(parent) is True
    assert status(wf_client, parent) == "cancelled"
    assert children() == {"block": "cancelled", "nap": "cancelled"}
    running_child = conn.execute(
        "select task_id from durable.all_tasks where parent_id = %s and task_name = 'block'", (parent,)
    ).fetchone()
    assert running_child is not None
    info = wf_client.get_task(running_child[0])
    assert info.error is not None and "was cancelled" in info.error["message"]
    assert [a.outcome for a in info.attempts] == ["cancelled"]


def test_except_exception_in_user_code_does_not_swallow_the_suspension(
    procs: WorkerProcesses, wf_client: Client, conn: psycopg.Connection[Any]
) -> None:
    procs.start("wf")
    task_id = wf_client.enqueue("wf", "swallow_everything", {"seconds": 1}, durable=True)
    wait_until(lambda: status(wf_client, task_id) == "sleeping", 30, "the task to sleep")
    assert wf_client.wait(task_id, timeout=30) == "slept"
    assert [a.outcome for a in wf_client.get_task(task_id).attempts] == ["suspended", "completed"]
    # the except branch never ran: the suspension went past it
    swallowed = conn.execute(
        "select count(*) from side_effects where task_id = %s and step = 'swallowed'", (task_id,)
    ).fetchone()
    assert swallowed == (0,)
