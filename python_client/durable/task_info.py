"""What ``durable.get_task`` returns, as typed dataclasses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

#: the statuses a task never leaves
FINISHED_STATUSES: Final = frozenset({"completed", "failed", "cancelled"})


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class AttemptInfo:
    """One ended attempt of a task (a row of ``durable.attempts``)."""

    attempt: int
    worker: str | None
    started_at: datetime | None
    ended_at: datetime
    #: completed, failed, timed_out, lease_expired, cancelled or released
    outcome: str
    error: dict[str, Any] | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AttemptInfo:
        ended_at = _time(data["ended_at"])
        assert ended_at is not None
        return cls(
            attempt=data["attempt"],
            worker=data.get("worker"),
            started_at=_time(data.get("started_at")),
            ended_at=ended_at,
            outcome=data["outcome"],
            error=data.get("error"),
        )


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A task: its current state, options, outcome and the history of its ended attempts."""

    task_id: uuid.UUID
    queue: str
    task_name: str
    input: dict[str, Any]
    #: pending, running, sleeping, waiting, completed, failed or cancelled
    status: str
    priority: int
    run_at: datetime
    #: attempts started so far (claims)
    attempt: int
    #: failures counted against max_attempts (raised errors, timeouts)
    failures: int
    #: leases that ran out (crashed or stalled workers), counted against max_lost_leases
    lost_leases: int
    max_attempts: int
    max_lost_leases: int
    backoff: dict[str, Any]
    #: seconds one attempt may run, or None
    timeout: float | None
    schedule_deadline: datetime | None
    idempotency_key: str | None
    worker: str | None
    lease_expires_at: datetime | None
    started_at: datetime | None
    output: Any
    error: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None
    attempts: list[AttemptInfo] = field(default_factory=list)
    #: a durable task (event log), its history generation, and where a fork came from
    durable: bool = False
    generation: int = 1
    forked_from: uuid.UUID | None = None
    forked_at_seq: int | None = None
    #: the durable task that spawned this one
    parent_id: uuid.UUID | None = None
    #: what a sleeping or waiting task waits for, as JSON: {"kind": "sleep", "until"},
    #: {"kind": "event", "key", "timeout_at"} or {"kind": "children", "children": [ids of
    #: the unfinished ones], "timeout_at"}; None for a task in any other status
    waiting_for: dict[str, Any] | None = None
    #: its child tasks, oldest first, the first 1000: {"task_id", "queue", "task_name", "status"}
    children: list[dict[str, Any]] = field(default_factory=list)
    #: when it may run next: run_at of a pending task, the wake time of a sleeping one or the
    #: timeout of a waiting one; None otherwise
    next_run_at: datetime | None = None
    #: the W3C trace context stored with it ({"traceparent", "tracestate"}), or None
    trace_context: dict[str, str] | None = None

    @property
    def finished(self) -> bool:
        """True once the task is completed, failed or cancelled."""
        return self.status in FINISHED_STATUSES

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskInfo:
        run_at = _time(data["run_at"])
        created_at = _time(data["created_at"])
        assert run_at is not None and created_at is not None
        return cls(
            task_id=uuid.UUID(data["task_id"]),
            queue=data["queue"],
            task_name=data["task_name"],
            input=data["input"],
            status=data["status"],
            priority=data["priority"],
            run_at=run_at,
            attempt=data["attempt"],
            failures=data["failures"],
            lost_leases=data["lost_leases"],
            max_attempts=data["max_attempts"],
            max_lost_leases=data["max_lost_leases"],
            backoff=data["backoff"],
            timeout=data.get("timeout"),
            schedule_deadline=_time(data.get("schedule_deadline")),
            idempotency_key=data.get("idempotency_key"),
            worker=data.get("worker"),
            lease_expires_at=_time(data.get("lease_expires_at")),
            started_at=_time(data.get("started_at")),
            output=data.get("output"),
            error=data.get("error"),
            created_at=created_at,
            finished_at=_time(data.get("finished_at")),
            attempts=[AttemptInfo.from_json(a) for a in data.get("attempts") or []],
            durable=bool(data.get("durable", False)),
            generation=int(data.get("generation") or 1),
            forked_from=uuid.UUID(data["forked_from"]) if data.get("forked_from") else None,
            forked_at_seq=data.get("forked_at_seq"),
            parent_id=uuid.UUID(data["parent_id"]) if data.get("parent_id") else None,
            waiting_for=data.get("waiting_for"),
            children=list(data.get("children") or []),
            next_run_at=_time(data.get("next_run_at")),
            trace_context=data.get("trace_context"),
        )
