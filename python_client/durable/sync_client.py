"""``Client``: enqueue, inspect, cancel and wait for tasks, blocking.

Written by ``scripts/async_to_sync.py`` from ``aio_client.py`` (the asyncio client): do
not edit it, edit that file and run the script. Each method builds a command of
:mod:`durable.commands` and runs it on a pooled autocommit connection.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

from psycopg_pool import ConnectionPool

from . import commands, schedule_commands, workflow_commands
from .commands import Command, EnqueueOptions, QueueOptions, Seconds, TaskSpec
from .connections import execute, resolve_dsn, sync_pool
from .migrate import MigrationResult, migrate
from .schedule_commands import ScheduleOptions, ScheduleRow
from .task_info import TaskInfo
from .waiting import Waiter
from .workflow_commands import Event

T = TypeVar("T")


class Client:
    """A blocking client. ``dsn`` None: ``DURABLE_DATABASE_URL``/``DATABASE_URL`` or the embedded server.

    ``prepared_statements=False`` (or ``DURABLE_PREPARED_STATEMENTS=off``) sends every
    statement unnamed, for PgBouncer in transaction mode (docs/deploy.md).

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        min_size: int = 1,
        max_size: int = 4,
        pool: ConnectionPool | None = None,
        prepared_statements: bool | None = None,
    ) -> None:
        self._own_pool = pool is None
        self._pool = (
            pool
            if pool is not None
            else sync_pool(
                resolve_dsn(dsn),
                min_size=min_size,
                max_size=max_size,
                prepared_statements=prepared_statements,
            )
        )

    def __enter__(self) -> Self:
        self._get_pool()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _get_pool(self) -> ConnectionPool:
        return self._pool

    def close(self) -> None:
        """Close the pool (unless it was passed in)."""
        if self._own_pool:
            self._pool.close()

    def run(self, command: Command[T]) -> T:
        """Run any command of :mod:`durable.commands`."""
        pool = self._get_pool()
        with pool.connection() as conn:
            return execute(conn, command)

    def migrate(self) -> MigrationResult:
        """Bring the schema up to date (safe to call concurrently and repeatedly)."""
        with self._pool.connection() as conn:
            return migrate(conn)

    def create_queue(self, queue: str, **options: Unpack[QueueOptions]) -> dict[str, Any]:
        """Create a queue, or merge the given options into an existing one; returns its options."""
        return self.run(commands.create_queue(queue, commands.queue_options(**options)))

    def ensure_queue(self, queue: str) -> bool:
        """Create the queue with default options if it is missing (True); never changes options."""
        return self.run(commands.ensure_queue(queue))

    def enqueue(
        self,
        queue: str,
        task_name: str,
        input: Mapping[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> uuid.UUID:
        """Enqueue one task; returns its id (the existing task's id for a known idempotency key)."""
        return self.run(commands.enqueue(queue, task_name, input, commands.enqueue_options(**options)))

    def enqueue_many(self, queue: str, specs: Iterable[TaskSpec | Mapping[str, Any]]) -> list[uuid.UUID]:
        """Enqueue a batch in one statement (all or nothing); returns the ids in order."""
        return self.run(commands.enqueue_many(queue, specs))

    def get_task(self, task_id: uuid.UUID | str) -> TaskInfo:
        """The task and its attempt history; raises UnknownTask."""
        return self.run(commands.get_task(task_id))

    def cancel(self, task_id: uuid.UUID | str, reason: str | None = None) -> bool:
        """Cancel an unfinished task (False if it was already cancelled); InvalidTransition if it ended."""
        return self.run(commands.cancel(task_id, reason))

    def purge(self, queue: str, older_than: Seconds | None = None, limit: int = 10000) -> int:
        """Delete finished tasks that ended more than ``older_than`` seconds ago; returns how many."""
        return self.run(commands.purge(queue, older_than, limit))

    def queue_stats(self, queue: str) -> dict[str, int]:
        """Task counts by status."""
        return self.run(commands.queue_stats(queue))

    def workers(self, queue: str | None = None) -> list[commands.WorkerInfo]:
        """The registered workers (of one queue, or of every queue the caller may read)."""
        return self.run(commands.workers(queue))

    def list_tasks(
        self,
        queue: str | None = None,
        status: str | None = None,
        task_name: str | None = None,
        parent: uuid.UUID | str | None = None,
        created_since: datetime | None = None,
        finished_since: datetime | None = None,
        idempotency_key: str | None = None,
        before: uuid.UUID | str | None = None,
        limit: int = 50,
    ) -> list[commands.TaskRow]:
        """Tasks of the queues the caller may read, newest first, matching every filter given;
        at most ``limit`` (1 to 1000). The next page: ``before`` = the last row's task_id."""
        command = commands.list_tasks(
            queue=queue,
            status=status,
            task_name=task_name,
            parent=parent,
            created_since=created_since,
            finished_since=finished_since,
            idempotency_key=idempotency_key,
            before=before,
            limit=limit,
        )
        return self.run(command)

    def list_queues(self) -> list[commands.QueueRow]:
        """Every queue the caller may read, with its tasks counted by status (counts them all)."""
        return self.run(commands.list_queues())

    def create_schedule(
        self, name: str, queue: str, task_name: str, cron: str, **options: Unpack[ScheduleOptions]
    ) -> datetime:
        """Create schedule ``name`` on the queue (re-creating a name replaces it): each tick of
        ``cron`` enqueues ``task_name`` once. Options: tz, input, enqueue_options, catch_up
        (skip, once, all), catch_up_max, catch_up_grace, paused. Returns the next tick."""
        return self.run(schedule_commands.create_schedule(name, queue, task_name, cron, options))

    def pause_schedule(self, name: str, queue: str) -> bool:
        """Pause a schedule; False when it was paused already."""
        return self.run(schedule_commands.pause_schedule(name, queue))

    def resume_schedule(self, name: str, queue: str) -> datetime:
        """Resume a schedule from now (the ticks of the pause are not caught up); its next tick."""
        return self.run(schedule_commands.resume_schedule(name, queue))

    def delete_schedule(self, name: str, queue: str) -> bool:
        """Delete a schedule; False when there was none of that name."""
        return self.run(schedule_commands.delete_schedule(name, queue))

    def list_schedules(self, queue: str | None = None) -> list[ScheduleRow]:
        """The schedules of the queue, or of every queue the caller may read."""
        return self.run(schedule_commands.list_schedules(queue))

    def cron_next(self, cron: str, tz: str, after: datetime) -> datetime | None:
        """The first firing of ``cron`` in zone ``tz`` strictly after ``after``."""
        return self.run(schedule_commands.cron_next(cron, tz, after))

    def retry(self, task_id: uuid.UUID | str) -> None:
        """Run a failed or cancelled task again, keeping its history (recorded steps are not re-run)."""
        self.run(workflow_commands.retry(task_id))

    def replay(self, task_id: uuid.UUID | str) -> int:
        """Run a finished task again from scratch; returns the new history generation."""
        return self.run(workflow_commands.replay(task_id))

    def fork(self, task_id: uuid.UUID | str, at_seq: int) -> uuid.UUID:
        """A new task whose history is this one's events before ``at_seq``; returns its id."""
        return self.run(workflow_commands.fork(task_id, at_seq))

    def history(self, task_id: uuid.UUID | str, *, all_generations: bool = False) -> list[Event]:
        """The event log of a durable task."""
        return self.run(workflow_commands.history(task_id, all_generations))

    def emit_event(self, queue: str, key: str, payload: Any = None) -> int:
        """Emit the event ``key`` in the scope of ``queue``: the tasks of that queue waiting
        for it wake with ``payload``; returns how many woke."""
        return self.run(workflow_commands.emit_event(queue, key, payload))

    def wait(self, task_id: uuid.UUID | str, timeout: float | None = None) -> Any:
        """The output of the task once it completes.

        Raises TaskFailed when it ends failed or cancelled, WaitTimeout after ``timeout`` seconds.
        """
        waiter = Waiter(task_id, timeout)
        while True:
            done, output = waiter.outcome(self.get_task(task_id))
            if done:
                return output
            time.sleep(waiter.next_sleep())
