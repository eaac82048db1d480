"""A worker of your own on a test database whose clock skips over durable time.

:class:`AsyncTestEnvironment` holds the logic: it runs the user's :class:`~durable.Worker`
in the current event loop on a test database (its ``dsn`` swapped for the database's
while it runs), and its waits (:meth:`~AsyncTestEnvironment.result`,
:meth:`~AsyncTestEnvironment.settle`) look at the database every few milliseconds and, when
no task can run now, move the shared test clock to the next time one is due
(``durable.skip_test_clock()``, :mod:`durable.testing.clock`). The verb notifies the queues
where a task came due, so the worker claims at once. :class:`TestEnvironment` is the same
for plain (sync) tests: it runs the async one in an event loop of its own, in a thread.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

from ..client import AsyncClient
from ..commands import EnqueueOptions
from ..task_info import TaskInfo
from ..worker import Worker
from ..workflow_commands import Event
from . import clock
from .clock import ClockState, SkippingWait
from .history import Expected, assert_history

T = TypeVar("T")

#: how long (real time) a wait of the harness gives a task by default
DEFAULT_TIMEOUT = 30.0


class AsyncTestEnvironment:
    """``worker`` running on the test database ``url`` (see :mod:`durable.testing`), with
    helpers that start tasks, wait for them skipping durable time, emit events, move the
    clock and read histories. Use ``async with``."""

    def __init__(self, worker: Worker, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.worker = worker
        self.url = url
        self.queue = worker.queue
        self.timeout = timeout
        self.client = AsyncClient(url)
        self._task: asyncio.Task[None] | None = None
        self._saved_dsn: str | None = None

    async def __aenter__(self) -> Self:
        self._saved_dsn = self.worker.dsn
        self.worker.dsn = self.url
        try:
            await self.client.ensure_queue(self.queue)
        except BaseException:
            self.worker.dsn = self._saved_dsn
            await self.client.close()
            raise
        self._task = asyncio.create_task(self.worker.run_async(), name="durable-testing-worker")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._task is not None:
                self.worker.stop()
                self.worker.stop()  # the second stop skips the grace period
                await asyncio.gather(self._task, return_exceptions=exc is not None)
        finally:
            self.worker.dsn = self._saved_dsn
            await self.client.close()

    def _check_worker(self) -> None:
        """Raise what ended the worker, if it ended."""
        if self._task is not None and self._task.done():
            error = None if self._task.cancelled() else self._task.exception()
            raise RuntimeError(f"durable.testing: the worker stopped ({error!r})") from error

    async def start(
        self, task_name: str, input: Mapping[str, Any] | None = None, **options: Unpack[EnqueueOptions]
    ) -> uuid.UUID:
        """Enqueue a task in the worker's queue; its id. A task the worker registered as
        durable is enqueued durable unless ``durable`` is given."""
        function = self.worker.function(task_name)
        if "durable" not in options and function is not None:
            options["durable"] = function.durable
        return await self.client.enqueue(self.queue, task_name, input, **options)

    async def run(
        self,
        task_name: str,
        input: Mapping[str, Any] | None = None,
        *,
        wait_timeout: float | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> Any:
        """Start a task and return its output (:meth:`result`, with ``wait_timeout`` as its
        ``timeout``: ``timeout`` is the enqueue option, the task's attempt timeout)."""
        return await self.result(await self.start(task_name, input, **options), timeout=wait_timeout)

    async def result(self, task_id: uuid.UUID | str, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """The task's output once it completes, skipping the clock over its sleeps and
        timeouts; TaskFailed when it ends failed or cancelled; WaitTimeout after ``timeout``
        seconds of real time (default ``self.timeout``)."""
        wait = SkippingWait(f"task {task_id}", self.timeout if timeout is None else timeout)
        while True:
            self._check_worker()
            done, output = wait.outcome(await self.client.get_task(task_id))
            if done:
                return output
            pause = wait.pause()
            if await self.client.run(clock.skip()) is None:
                await asyncio.sleep(pause)

    async def settle(self, *, timeout: float | None = None) -> ClockState:  # noqa: ASYNC109
        """Wait until no task can run now (each one finished, sleeping, waiting, or pending
        for later), without moving the clock: a workflow has gone as far as it can before
        an event or a time. The clock's state then."""
        wait = SkippingWait("settling", self.timeout if timeout is None else timeout)
        while True:
            self._check_worker()
            state = await self.client.run(clock.state())
            if state.runnable == 0:
                return state
            await asyncio.sleep(wait.pause())

    async def emit(self, key: str, payload: Any = None, *, queue: str | None = None) -> int:
        """Emit the event ``key`` (in the worker's queue unless ``queue``); how many tasks woke."""
        return await self.client.emit_event(queue or self.queue, key, payload)

    async def advance(self, duration: float | timedelta) -> datetime:
        """Move the clock forward by ``duration`` (seconds or a timedelta); the new time."""
        return await self.client.run(clock.advance(duration))

    async def now(self) -> datetime:
        """The test clock."""
        return (await self.client.run(clock.state())).now

    async def task(self, task_id: uuid.UUID | str) -> TaskInfo:
        """The task: its status, output, error, attempts (no waiting)."""
        return await self.client.get_task(task_id)

    async def history(self, task_id: uuid.UUID | str) -> list[Event]:
        """The task's event log."""
        return await self.client.history(task_id)

    async def assert_history(self, task_id: uuid.UUID | str, expected: Sequence[Expected]) -> None:
        """Assert that the task's event log is ``expected`` (:func:`durable.testing.assert_history`)."""
        assert_history(await self.history(task_id), expected)


class TestEnvironment:
    """:class:`AsyncTestEnvironment` for plain tests: the same methods, not awaited. The
    worker and the helpers run in an event loop of its own, in a thread. Use ``with``."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, worker: Worker, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.env = AsyncTestEnvironment(worker, url, timeout=timeout)
        self.worker = worker
        self.url = url
        self.queue = worker.queue
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="durable-testing", daemon=True)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> Self:
        self._thread.start()
        try:
            self._call(self.env.__aenter__())
        except BaseException:
            self._close_loop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._call(self.env.__aexit__(exc_type, exc, tb))
        finally:
            self._close_loop()

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def start(
        self, task_name: str, input: Mapping[str, Any] | None = None, **options: Unpack[EnqueueOptions]
    ) -> uuid.UUID:
        """Enqueue a task in the worker's queue (see :meth:`AsyncTestEnvironment.start`)."""
        return self._call(self.env.start(task_name, input, **options))

    def run(
        self,
        task_name: str,
        input: Mapping[str, Any] | None = None,
        *,
        wait_timeout: float | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> Any:
        """Start a task and return its output, skipping durable time."""
        return self._call(self.env.run(task_name, input, wait_timeout=wait_timeout, **options))

    def result(self, task_id: uuid.UUID | str, *, timeout: float | None = None) -> Any:
        """The task's output, skipping durable time (see :meth:`AsyncTestEnvironment.result`)."""
        return self._call(self.env.result(task_id, timeout=timeout))

    def settle(self, *, timeout: float | None = None) -> ClockState:
        """Wait until no task can run now, without moving the clock."""
        return self._call(self.env.settle(timeout=timeout))

    def emit(self, key: str, payload: Any = None, *, queue: str | None = None) -> int:
        """Emit the event ``key`` (in the worker's queue unless ``queue``); how many tasks woke."""
        return self._call(self.env.emit(key, payload, queue=queue))

    def advance(self, duration: float | timedelta) -> datetime:
        """Move the clock forward by ``duration`` (seconds or a timedelta); the new time."""
        return self._call(self.env.advance(duration))

    def now(self) -> datetime:
        """The test clock."""
        return self._call(self.env.now())

    def task(self, task_id: uuid.UUID | str) -> TaskInfo:
        """The task: its status, output, error, attempts (no waiting)."""
        return self._call(self.env.task(task_id))

    def history(self, task_id: uuid.UUID | str) -> list[Event]:
        """The task's event log."""
        return self._call(self.env.history(task_id))

    def assert_history(self, task_id: uuid.UUID | str, expected: Sequence[Expected]) -> None:
        """Assert that the task's event log is ``expected``."""
        self._call(self.env.assert_history(task_id, expected))
