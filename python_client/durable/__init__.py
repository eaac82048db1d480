"""durable: durable execution that lives in PostgreSQL."""

from __future__ import annotations

from .errors import (
    DurableError,
    InvalidArgument,
    InvalidTransition,
    LeaseLost,
    MigrationError,
    PayloadTooLarge,
    TaskCancelled,
    TaskFailed,
    UnknownQueue,
    UnknownTask,
    WaitTimeout,
)
from .migrate import migrate

__all__ = [
    "DurableError",
    "InvalidArgument",
    "InvalidTransition",
    "LeaseLost",
    "MigrationError",
    "PayloadTooLarge",
    "TaskCancelled",
    "TaskFailed",
    "UnknownQueue",
    "UnknownTask",
    "WaitTimeout",
    "migrate",
]
