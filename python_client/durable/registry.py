"""A worker's entry in the worker registry (``plpgsql/workers.sql``).

The worker registers under the name it claims with, heartbeats every
``heartbeat_interval`` seconds, registers again if its entry is gone (it was found dead
and deleted, or its name was taken over), and unregisters when it stops. A worker whose
heartbeats stop for ``dead_after`` seconds (three heartbeats by default) is dead: the next
claim of its queue takes its running tasks back at once, as lost leases.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg

from . import commands
from .commands import Command
from .errors import DurableError

logger = logging.getLogger("durable.worker")

Call = Callable[[Command[Any]], Awaitable[Any]]


class Registration:
    """Registers a worker, keeps its entry alive, and removes it."""

    def __init__(
        self,
        call: Call,
        *,
        name: str,
        queues: Sequence[str],
        task_names: Sequence[str] | None,
        slots: int,
        heartbeat_interval: float,
        dead_after: float | None,
    ) -> None:
        self._call = call
        self.name = name
        self.queues = list(queues)
        self.task_names = None if task_names is None else list(task_names)
        self.slots = slots
        self.heartbeat_interval = heartbeat_interval
        self.dead_after = dead_after
        self.token: uuid.UUID | None = None

    async def register(self) -> None:
        """Register (raises WorkerNameInUse when a live worker has the name)."""
        token: uuid.UUID = await self._call(
            commands.register_worker(
                self.name,
                self.queues,
                self.task_names,
                self.slots,
                socket.gethostname()[:255] or None,
                os.getpid(),
                self.heartbeat_interval,
                self.dead_after,
            )
        )
        self.token = token

    async def run(self) -> None:
        """Heartbeat until cancelled; register again when the entry is gone."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                if self.token is None or not await self._call(
                    commands.worker_heartbeat(self.name, self.token)
                ):
                    logger.warning("worker %s: not registered any more; registering again", self.name)
                    await self.register()
            except (psycopg.Error, DurableError) as exc:
                logger.warning("worker %s: registry heartbeat failed (%s); retrying", self.name, exc)
            except Exception:
                logger.exception("worker %s: registry heartbeat error; retrying", self.name)

    async def unregister(self) -> None:
        """Remove the entry (best effort: a worker that cannot is found dead later)."""
        if self.token is None:
            return
        try:
            await self._call(commands.unregister_worker(self.name, self.token))
        except (psycopg.Error, DurableError) as exc:
            logger.warning("worker %s: could not unregister (%s)", self.name, exc)
        self.token = None
