"""durable: durable execution that lives in PostgreSQL.

The public API: :class:`Client` and :class:`AsyncClient` (enqueue, inspect, cancel, wait,
retry, replay, fork, emit events), :class:`Worker` (runs task and durable task functions),
:class:`TaskContext` (what a task function may receive), :class:`DurableContext` and
:class:`SyncDurableContext` (what a durable task function receives), :func:`migrate`, and
the exceptions of :mod:`durable.errors`.
"""

from __future__ import annotations

from . import errors
from .client import AsyncClient, Client
from .commands import QueueRow, TaskRow, TaskSpec, WorkerInfo
from .context import TaskContext
from .errors import (
    ChildFailed,
    CronNeverFires,
    DebounceKeyHeld,
    DurableError,
    EventTimeout,
    InvalidArgument,
    InvalidCron,
    InvalidTransition,
    LeaseLost,
    MigrationError,
    NonDeterminismError,
    NonRetryableError,
    NotATestDatabase,
    NotAwaited,
    PayloadTooLarge,
    PermissionDenied,
    StepFailed,
    TaskCancelled,
    TaskFailed,
    UnknownQueue,
    UnknownSchedule,
    UnknownTask,
    UnknownTimeZone,
    WaitTimeout,
    WorkerNameInUse,
)
from .migrate import migrate
from .schedule_commands import ScheduleRow
from .task_info import AttemptInfo, TaskInfo
from .worker import Worker, WorkerStats
from .workflow import DurableContext, RetryPolicy, SyncDurableContext

__all__ = [
    "AsyncClient",
    "AttemptInfo",
    "ChildFailed",
    "Client",
    "CronNeverFires",
    "DebounceKeyHeld",
    "DurableContext",
    "DurableError",
    "EventTimeout",
    "InvalidArgument",
    "InvalidCron",
    "InvalidTransition",
    "LeaseLost",
    "MigrationError",
    "NonDeterminismError",
    "NonRetryableError",
    "NotATestDatabase",
    "NotAwaited",
    "PayloadTooLarge",
    "PermissionDenied",
    "QueueRow",
    "RetryPolicy",
    "ScheduleRow",
    "StepFailed",
    "SyncDurableContext",
    "TaskCancelled",
    "TaskContext",
    "TaskFailed",
    "TaskInfo",
    "TaskRow",
    "TaskSpec",
    "UnknownQueue",
    "UnknownSchedule",
    "UnknownTask",
    "UnknownTimeZone",
    "WaitTimeout",
    "Worker",
    "WorkerInfo",
    "WorkerNameInUse",
    "WorkerStats",
    "errors",
    "migrate",
]
