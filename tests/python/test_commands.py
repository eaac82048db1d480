"""The sans-IO layer: parameter building and the wait rule, without a database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from durable import InvalidArgument, TaskFailed, WaitTimeout, commands
from durable.task_info import TaskInfo
from durable.waiting import Waiter


def test_enqueue_options_keep_only_what_is_given() -> None:
    assert commands.enqueue_options() == {}
    assert commands.enqueue_options(
        priority=1,
        delay=timedelta(minutes=1),
        run_at=None,
        backoff={"kind": "none"},
        timeout=2,
        idempotency_key="k",
    ) == {"priority": 1, "delay": 60.0, "backoff": {"kind": "none"}, "timeout": 2.0, "idempotency_key": "k"}
    when = datetime(2030, 1, 1, tzinfo=UTC)
    assert commands.enqueue_options(run_at=when) == {"run_at": "2030-01-01T00:00:00+00:00"}
    assert commands.queue_options(retention=timedelta(days=1), max_attempts=3) == {
        "max_attempts": 3,
        "retention": 86400.0,
    }
    assert commands.enqueue_options(concurrency_key="tenant-1", concurrency_key_limit=2, durable=True) == {
        "concurrency_key": "tenant-1",
        "concurrency_key_limit": 2,
        "durable": True,
    }
    assert commands.queue_options(
        concurrency_limit=5, rate_limit={"limit": 10, "period": 1}, notify=False
    ) == {
        "concurrency_limit": 5,
        "rate_limit": {"limit": 10, "period": 1},
        "notify": False,
    }


def test_commands_carry_sql_and_json_parameters() -> None:
    command = commands.enqueue("q", "t", {"a": [1, 2]}, {"priority": 2})
    assert command.sql.startswith("select durable.enqueue(")
    assert command.params == ("q", "t", '{"a":[1,2]}', '{"priority":2}')
    spec = commands.TaskSpec("t", {"x": 1}, delay=5)
    assert (
        commands.enqueue_many("q", [spec]).params[1]
        == '[{"task_name":"t","input":{"x":1},"options":{"delay":5.0}}]'
    )
    with pytest.raises(InvalidArgument):
        commands.enqueue("q", "t", {"nan": float("nan")}, {})


def _info(status: str, output: object = None, error: dict[str, str] | None = None) -> TaskInfo:
    now = datetime.now(UTC).isoformat()
    return TaskInfo.from_json(
        {
            "task_id": str(uuid.uuid4()),
            "queue": "q",
            "task_name": "t",
            "input": {},
            "status": status,
            "priority": 0,
            "run_at": now,
            "attempt": 1,
            "failures": 0,
            "lost_leases": 0,
            "max_attempts": 5,
            "max_lost_leases": 10,
            "backoff": {"kind": "none"},
            "created_at": now,
            "output": output,
            "error": error,
            "attempts": [{"attempt": 1, "ended_at": now, "outcome": "failed", "error": error}],
        }
    )


def test_waiter_outcomes() -> None:
    assert Waiter.outcome(_info("completed", {"ok": 1})) == (True, {"ok": 1})
    assert Waiter.outcome(_info("running")) == (False, None)
    with pytest.raises(TaskFailed) as failed:
        Waiter.outcome(_info("failed", error={"type": "X", "message": "m"}))
    assert failed.value.error == {"type": "X", "message": "m"}


def test_waiter_sleeps_grow_and_stop_at_the_deadline() -> None:
    now = [100.0]
    waiter = Waiter("t", 1.0, first_interval=0.1, factor=2, max_interval=0.3, clock=lambda: now[0])
    assert [waiter.next_sleep(), waiter.next_sleep(), waiter.next_sleep()] == [0.1, 0.2, 0.3]
    now[0] = 100.9
    assert waiter.next_sleep() == pytest.approx(0.1)  # never past the deadline
    now[0] = 101.0
    with pytest.raises(WaitTimeout):
        waiter.next_sleep()
