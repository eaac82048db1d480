"""The SQL verbs of the task queue, without I/O.

Each function here returns a :class:`Command`: the SQL text of one call of a
``durable.*`` function, its parameters, and how to turn the rows it returns into a
Python value. The sync :class:`~durable.client.Client`, the
:class:`~durable.client.AsyncClient` and the :class:`~durable.worker.Worker` all run
these same commands (see :mod:`durable.connections`); none of them holds SQL or rules
of its own. Every rule (validation, defaults, state changes) stays in PL/pgSQL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, LiteralString, TypedDict, TypeVar, Unpack

from . import tracing
from .errors import InvalidArgument, UnknownTask
from .task_info import TaskInfo

T = TypeVar("T")
Row = tuple[Any, ...]
Seconds = float | int | timedelta


@dataclass(frozen=True, slots=True)
class Command(Generic[T]):
    """One SQL statement, its parameters, and the parser of its result rows."""

    sql: LiteralString
    params: tuple[Any, ...]
    parse: Callable[[list[Row]], T]


# ---------------------------------------------------------------------------------------
# parameter building


def to_seconds(value: Seconds | None) -> float | None:
    """Seconds as a float (a timedelta's total seconds); None stays None."""
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def to_json(value: Any, what: str) -> str:
    """JSON text for a payload; a value JSON cannot hold raises InvalidArgument."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"durable: {what} is not JSON-serialisable: {exc}") from exc


class QueueOptions(TypedDict, total=False):
    """The options of ``durable.create_queue`` (its COMMENT says each); seconds may be timedeltas.

    None means not given.
    """

    max_attempts: int | None
    max_lost_leases: int | None
    backoff: Mapping[str, Any] | None
    timeout: Seconds | None
    retention: Seconds | None
    notify: bool | None
    async_checkpoints: bool | None
    concurrency_limit: int | None
    concurrency_key_limit: int | None
    concurrency_strategy: str | None
    rate_limit: Mapping[str, Any] | None
    hold_slots_while_suspended: bool | None


class Debounce(TypedDict, total=False):
    """The enqueue option ``debounce``: an enqueue with the key of a pending, never started
    task of the queue pushes that task's run time to now + ``delay`` (never past its first
    enqueue + ``max_delay``; no cap without it) and replaces its input, instead of creating a
    task. ``key`` and ``delay`` are required (the SQL checks: DU001)."""

    key: str
    delay: Seconds
    max_delay: Seconds | None


class EnqueueOptions(TypedDict, total=False):
    """The options of ``durable.enqueue`` (its COMMENT says each); seconds may be timedeltas.

    None means not given.
    """

    priority: int | None
    delay: Seconds | None
    run_at: datetime | None
    max_attempts: int | None
    max_lost_leases: int | None
    backoff: Mapping[str, Any] | None
    timeout: Seconds | None
    schedule_timeout: Seconds | None
    idempotency_key: str | None
    durable: bool | None
    concurrency_key: str | None
    concurrency_key_limit: int | None
    #: the W3C trace context to store with the task; by default the caller's current span's
    #: (durable.tracing), {} for none
    trace_context: Mapping[str, str] | None
    debounce: Debounce | None


#: options given in seconds, which may also be timedeltas
_SECONDS = frozenset({"delay", "max_delay", "timeout", "schedule_timeout", "retention"})


def _options_json(options: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON form of options: None means not given; seconds as numbers; run_at as ISO text.

    Which keys exist and what values they take is checked by the SQL (DU001)."""
    result: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key in _SECONDS:
            value = to_seconds(value)
        elif key == "run_at":
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise InvalidArgument("durable: run_at must be a timezone-aware datetime")
            value = value.isoformat()
        elif key == "debounce" and isinstance(value, Mapping):
            value = _options_json(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        result[key] = value
    return result


def queue_options(**options: Unpack[QueueOptions]) -> dict[str, Any]:
    """The options object of ``durable.create_queue``: only the options given (None = not given)."""
    return _options_json(options)


def enqueue_options(**options: Unpack[EnqueueOptions]) -> dict[str, Any]:
    """The options object of ``durable.enqueue``: only the options given (None = not given)."""
    return _options_json(options)


class TaskSpec:
    """One task of :meth:`Client.enqueue_many`: a name, its input and its enqueue options."""

    __slots__ = ("input", "options", "task_name")

    def __init__(
        self, task_name: str, input: Mapping[str, Any] | None = None, **options: Unpack[EnqueueOptions]
    ) -> None:
        self.task_name = task_name
        self.input = input
        self.options = options

    def to_json(self) -> dict[str, Any]:
        return {
            "task_name": self.task_name,
            "input": dict(self.input or {}),
            "options": _options_json(self.options),
        }


# ---------------------------------------------------------------------------------------
# result parsing


def scalar(rows: list[Row]) -> Any:
    """The first column of the first row (None for no row): the parser of one-value commands."""
    return rows[0][0] if rows else None


def _first_column(rows: list[Row]) -> list[Any]:
    return [row[0] for row in rows]


# ---------------------------------------------------------------------------------------
# client verbs


def create_queue(queue: str, options: Mapping[str, Any]) -> Command[dict[str, Any]]:
    """Create a queue or merge options into it (idempotent); returns the queue's options."""
    return Command(
        "select durable.create_queue(%s, %s::jsonb)",
        (queue, to_json(dict(options), "queue options")),
        lambda rows: dict(scalar(rows) or {}),
    )


def enqueue(
    queue: str, task_name: str, input: Mapping[str, Any] | None, options: Mapping[str, Any]
) -> Command[uuid.UUID]:
    return Command(
        "select durable.enqueue(%s, %s, %s::jsonb, %s::jsonb)",
        (
            queue,
            task_name,
            to_json(dict(input or {}), "task input"),
            to_json(tracing.with_trace_context(dict(options), tracing.current_carrier()), "enqueue options"),
        ),
        scalar,
    )


def enqueue_many(queue: str, specs: Iterable[TaskSpec | Mapping[str, Any]]) -> Command[list[uuid.UUID]]:
    """Enqueue a batch; a spec is a TaskSpec or a mapping {"task_name", "input", "options"}."""
    batch = [spec.to_json() if isinstance(spec, TaskSpec) else dict(spec) for spec in specs]
    carrier = tracing.current_carrier()
    if carrier is not None:  # each task in the caller's trace, unless its options name another
        for spec in batch:
            options = spec.get("options", {})
            if isinstance(options, Mapping):
                spec["options"] = tracing.with_trace_context(dict(options), carrier)
    return Command(
        "select task_id from durable.enqueue_many(%s, %s::jsonb)",
        (queue, to_json(batch, "task specs")),
        _first_column,
    )


def _task_info(task_id: uuid.UUID | str) -> Callable[[list[Row]], TaskInfo]:
    def parse(rows: list[Row]) -> TaskInfo:
        data = scalar(rows)
        if data is None:
            raise UnknownTask(f"durable: unknown task {task_id}")
        return TaskInfo.from_json(data)

    return parse


def get_task(task_id: uuid.UUID | str) -> Command[TaskInfo]:
    """The task with its attempt history; UnknownTask when there is none."""
    return Command("select durable.get_task(%s::uuid)", (str(task_id),), _task_info(task_id))


def task_json(task_id: uuid.UUID | str) -> Command[dict[str, Any] | None]:
    """``durable.get_task`` as the JSON object it returns, every key included (None: no such
    task): what the command line and the dashboard show."""
    return Command("select durable.get_task(%s::uuid)", (str(task_id),), scalar)


def cancel(task_id: uuid.UUID | str, reason: str | None = None) -> Command[bool]:
    """Cancel an unfinished task; False when it was already cancelled."""
    return Command(
        "select durable.cancel(%s::uuid, %s)", (str(task_id), reason), lambda rows: bool(scalar(rows))
    )


def ensure_queue(queue: str) -> Command[bool]:
    """Create a queue with default options if it does not exist; True when it was created."""
    return Command("select durable.ensure_queue(%s)", (queue,), lambda rows: bool(scalar(rows)))


def purge(queue: str, older_than: Seconds | None = None, limit: int = 10000) -> Command[int]:
    """Delete finished tasks older than ``older_than`` seconds (default: the queue's retention)."""
    return Command(
        "select durable.purge(%s, %s, %s)",
        (queue, to_seconds(older_than), limit),
        lambda rows: int(scalar(rows) or 0),
    )


def queue_stats(queue: str) -> Command[dict[str, int]]:
    """How many tasks of the queue are in each status."""
    return Command(
        "select status, tasks from durable.queue_stats(%s)",
        (queue,),
        lambda rows: {status: int(count) for status, count in rows},
    )


@dataclass(frozen=True, slots=True)
class TaskRow:
    """A row of ``durable.list_tasks``: a task without its input, output and history."""

    task_id: uuid.UUID
    queue: str
    task_name: str
    #: pending, running, sleeping, waiting, completed, failed or cancelled
    status: str
    durable: bool
    attempt: int
    priority: int
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    parent_id: uuid.UUID | None
    idempotency_key: str | None


@dataclass(frozen=True, slots=True)
class QueueRow:
    """A row of ``durable.list_queues``: a queue, its options and its tasks counted by status."""

    queue: str
    options: dict[str, Any]
    pending: int
    running: int
    sleeping: int
    waiting: int
    completed: int
    failed: int
    cancelled: int
    #: how long the oldest ready pending task has waited since its run_at (None: none ready)
    oldest_pending_seconds: float | None


def _aware(value: datetime | None, what: str) -> datetime | None:
    if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
        raise InvalidArgument(f"durable: {what} must be a timezone-aware datetime")
    return value


def list_tasks(
    queue: str | None = None,
    status: str | None = None,
    task_name: str | None = None,
    parent: uuid.UUID | str | None = None,
    created_since: datetime | None = None,
    finished_since: datetime | None = None,
    idempotency_key: str | None = None,
    before: uuid.UUID | str | None = None,
    limit: int = 50,
) -> Command[list[TaskRow]]:
    """Tasks of the queues the caller may read, newest first, matching every filter given.

    At most ``limit`` (1 to 1000); the next page passes ``before`` = the last row's task_id.
    """
    return Command(
        "select task_id, queue, task_name, status, durable, attempt, priority, run_at, created_at,"
        " started_at, finished_at, parent_id, idempotency_key"
        " from durable.list_tasks(%s::text, %s::text, %s::text, %s::uuid, %s::timestamptz,"
        " %s::timestamptz, %s::text, %s::uuid, %s::integer)",
        (
            queue,
            status,
            task_name,
            None if parent is None else str(parent),
            _aware(created_since, "created_since"),
            _aware(finished_since, "finished_since"),
            idempotency_key,
            None if before is None else str(before),
            limit,
        ),
        lambda rows: [TaskRow(*row) for row in rows],
    )


def list_queues() -> Command[list[QueueRow]]:
    """Every queue the caller may read, by name, with its tasks counted by status."""
    return Command(
        "select queue, options, pending, running, sleeping, waiting, completed, failed, cancelled,"
        " oldest_pending_seconds from durable.list_queues()",
        (),
        lambda rows: [QueueRow(*row) for row in rows],
    )


# ---------------------------------------------------------------------------------------
# worker verbs


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    """A task handed to a worker by ``durable.claim``: its lease token fences every later call."""

    task_id: uuid.UUID
    task_name: str
    input: dict[str, Any]
    attempt: int
    lease_token: uuid.UUID
    lease_expires_at: datetime
    #: a durable task comes with its recorded events (see durable.workflow)
    durable: bool = False
    history: list[dict[str, Any]] | None = None
    #: the W3C trace context its enqueue or spawn stored ({"traceparent": ...}), or None
    trace_context: dict[str, str] | None = None


def claim(
    queue: str, worker: str, max_tasks: int, lease_seconds: int, task_names: Sequence[str] | None
) -> Command[list[ClaimedTask]]:
    """``durable.claim`` (which commits without waiting for its WAL flush: plpgsql/claim.sql)."""
    return Command(
        "select c.task_id, c.task_name, c.input, c.attempt, c.lease_token, c.lease_expires_at, c.durable,"
        " c.history, c.trace_context"
        " from durable.claim(%s, %s, %s, %s, %s::text[]) as c",
        (queue, worker, max_tasks, lease_seconds, None if task_names is None else list(task_names)),
        lambda rows: [ClaimedTask(*row) for row in rows],
    )


def heartbeat(
    task_id: uuid.UUID, lease_token: uuid.UUID, lease_seconds: int | None = None
) -> Command[datetime]:
    """Extend a lease; raises LeaseLost (DU010) or TaskCancelled (DU011)."""
    return Command(
        "select durable.heartbeat(%s, %s, %s::integer)", (task_id, lease_token, lease_seconds), scalar
    )


@dataclass(frozen=True, slots=True)
class Completion:
    """The answer of ``durable.complete_many`` for one task."""

    task_id: uuid.UUID
    ok: bool
    #: completed, lease_lost, cancelled, unknown_task, permission_denied, duplicate (the task
    #: was given earlier in the batch with the same token), or nondeterminism (a durable task
    #: whose code finished without going through its whole history: the task has been failed)
    reason: str


def complete_many(
    task_ids: Sequence[uuid.UUID], lease_tokens: Sequence[uuid.UUID], outputs: Sequence[str | None]
) -> Command[list[Completion]]:
    """Complete a batch of attempts; ``outputs`` are JSON texts (None for no output)."""
    return Command(
        "select task_id, ok, reason from durable.complete_many(%s::uuid[], %s::uuid[], %s::jsonb[])",
        (list(task_ids), list(lease_tokens), list(outputs)),
        lambda rows: [Completion(*row) for row in rows],
    )


@dataclass(frozen=True, slots=True)
class FailResult:
    """After ``durable.fail``: ``pending`` (retried at ``run_at``) or ``failed``."""

    status: str
    run_at: datetime | None


def fail(
    task_id: uuid.UUID, lease_token: uuid.UUID, error: Mapping[str, Any], retryable: bool = True
) -> Command[FailResult]:
    return Command(
        "select status, run_at from durable.fail(%s, %s, %s::jsonb, %s)",
        (task_id, lease_token, to_json(dict(error), "task error"), retryable),
        lambda rows: FailResult(*rows[0]),
    )


def release(
    task_id: uuid.UUID, lease_token: uuid.UUID, delay: Seconds = 0, reason: str | None = None
) -> Command[datetime]:
    """Hand a claimed task back without spending an attempt; returns when it runs again."""
    return Command(
        "select durable.release(%s, %s, %s, %s)", (task_id, lease_token, to_seconds(delay), reason), scalar
    )


# ---------------------------------------------------------------------------------------
# the worker registry (plpgsql/workers.sql)


def register_worker(
    worker: str,
    queues: Sequence[str],
    task_names: Sequence[str] | None,
    slots: int,
    host: str | None,
    pid: int | None,
    heartbeat_seconds: float,
    dead_after_seconds: float | None = None,
) -> Command[uuid.UUID]:
    """Register a worker; returns its secret token (DU023 when a live worker has the name)."""
    return Command(
        "select durable.register_worker(%s, %s::text[], %s::text[], %s, %s, %s,"
        " %s::double precision, %s::double precision)",
        (
            worker,
            list(queues),
            None if task_names is None else list(task_names),
            slots,
            host,
            pid,
            heartbeat_seconds,
            dead_after_seconds,
        ),
        scalar,
    )


def worker_heartbeat(worker: str, token: uuid.UUID) -> Command[bool]:
    """Tell the registry the worker is alive; False: it is not registered any more."""
    return Command(
        "select durable.worker_heartbeat(%s, %s)", (worker, token), lambda rows: bool(scalar(rows))
    )


def unregister_worker(worker: str, token: uuid.UUID) -> Command[bool]:
    """Remove a worker from the registry."""
    return Command(
        "select durable.unregister_worker(%s, %s)", (worker, token), lambda rows: bool(scalar(rows))
    )


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A row of ``durable.workers()``."""

    name: str
    login_role: str
    host: str | None
    pid: int | None
    queues: list[str]
    task_names: list[str] | None
    slots: int
    running: int
    started_at: datetime
    last_seen_at: datetime
    heartbeat_seconds: float
    dead_after_seconds: float
    alive: bool


def workers(queue: str | None = None) -> Command[list[WorkerInfo]]:
    """The registered workers (of one queue, or of every queue the caller may read)."""
    return Command(
        "select name, login_role, host, pid, queues, task_names, slots, running, started_at,"
        " last_seen_at, heartbeat_seconds, dead_after_seconds, alive from durable.workers(%s)",
        (queue,),
        lambda rows: [WorkerInfo(*row) for row in rows],
    )
