"""Database outages during an attempt, for the worker: which exceptions are the
infrastructure's rather than the task's, and sending a report again until the database
answers. The rules are written out in :mod:`durable.worker`'s documentation."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import psycopg

from .commands import Command
from .workflow import Call, SyncCall

logger = logging.getLogger("durable.worker")

T = TypeVar("T")

#: the pause between two tries of a report the database did not get grows up to this
MAX_RETRY_PAUSE: Final = 2.0


def noting_faults(call: Call, sync_call: SyncCall, faults: list[BaseException]) -> tuple[Call, SyncCall]:
    """The durable calls of one attempt: ``call`` and ``sync_call``, which also append to
    ``faults`` the infrastructure faults (``psycopg.OperationalError``) they raise."""

    async def noting(command: Command[Any]) -> Any:
        try:
            return await call(command)
        except psycopg.OperationalError as exc:
            faults.append(exc)
            raise

    def sync_noting(command: Command[Any]) -> Any:
        try:
            return sync_call(command)
        except psycopg.OperationalError as exc:
            faults.append(exc)
            raise

    return noting, sync_noting


def infrastructure_fault(exc: BaseException, faults: list[BaseException]) -> BaseException | None:
    """The fault of ``faults`` that ``exc`` is, or was caused by (its ``__cause__`` and
    ``__context__`` chain); None when ``exc`` is the task's own."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if any(current is fault for fault in faults):
            return current
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


async def retrying(
    send: Callable[[], Awaitable[T]],
    *,
    task_id: uuid.UUID,
    what: str,
    for_seconds: float,
    stopping: Callable[[], bool],
) -> T:
    """``send()``, sent again while the database cannot be reached (OperationalError), with
    growing pauses, for up to ``for_seconds``, three tries once ``stopping()``; then its last
    error. Other errors are raised at once."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    tries = 0
    while True:
        try:
            return await send()
        except psycopg.OperationalError as exc:
            tries += 1
            if (stopping() and tries >= 3) or loop.time() - started > for_seconds:
                raise
            logger.warning("task %s: %s failed (%s); trying again", task_id, what, one_line(str(exc)))
            await asyncio.sleep(min(0.05 * 2**tries, MAX_RETRY_PAUSE))


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters (for logs and release reasons)."""
    return " ".join(text.split())[:limit]
