"""durable: durable execution that lives in PostgreSQL.

The public API: :class:`Client` and :class:`AsyncClient` (enqueue, inspect, cancel and
wait for tasks), :class:`Worker` (runs task functions), :class:`TaskContext` (what a task
function may receive), :func:`migrate`, and the exceptions of :mod:`durable.errors`.
"""

from __future__ import annotations

from . import errors
from .client import AsyncClient, Client
from .commands import TaskSpec
from .context import TaskContext
from .errors import (
    DurableError,
    InvalidArgument,
    InvalidTransition,
    LeaseLost,
    MigrationError,
    NonRetryableError,
    PayloadTooLarge,
    TaskCancelled,
    TaskFailed,
    UnknownQueue,
    UnknownTask,
    WaitTimeout,
)
from .migrate import migrate
from .task_info import AttemptInfo, TaskInfo
from .worker import Worker, WorkerStats

__all__ = [
    "AsyncClient",
    "AttemptInfo",
    "Client",
    "DurableError",
    "InvalidArgument",
    "InvalidTransition",
    "LeaseLost",
    "MigrationError",
    "NonRetryableError",
    "PayloadTooLarge",
    "TaskCancelled",
    "TaskContext",
    "TaskFailed",
    "TaskInfo",
    "TaskSpec",
    "UnknownQueue",
    "UnknownTask",
    "WaitTimeout",
    "Worker",
    "WorkerStats",
    "errors",
    "migrate",
]
