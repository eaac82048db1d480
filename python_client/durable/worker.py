"""``Worker``: claims tasks of one queue and runs the functions registered for them.

Usage::

    worker = Worker(queue="emails", concurrency=16)

    @worker.task
    def send(input: dict) -> dict: ...

    @worker.task(name="render")
    async def render_page(input: dict, ctx: TaskContext) -> str: ...

    worker.run()  # blocking; SIGTERM/SIGINT stop it gracefully

How it works (all rules are SQL functions; the worker only calls them):

* **Claiming.** One asyncio loop claims up to its free slots (``concurrency`` plus
  ``prefetch`` minus the attempts it holds) with
  ``durable.claim(queue, worker, n, lease_seconds, task_names)``,
  passing the names of its registered functions, so it never claims a task it cannot
  run. While claims come back full it claims again as soon as slots free; when a claim
  comes back short it sleeps until a ``NOTIFY durable`` carrying its queue's name
  (``durable.enqueue`` sends one) or ``poll_interval`` seconds. At most ``concurrency``
  attempts run at once. With ``prefetch=n`` (default 0) up to n more wait for a slot,
  claimed ahead so that a slot that frees does not wait for a claim's round trip, and so
  that each claim brings more tasks (short tasks: more tasks per second). Their leases
  run (and are heartbeated) while they wait, and so does their ``timeout``; their attempt
  is counted at the claim; at shutdown those that never started are released at once (no
  attempt spent). Claims commit without waiting for the disk flush (see
  :func:`durable.commands.claim`). It LISTENs on
  ``listen_url`` (``DURABLE_LISTEN_URL``) when given, a direct connection beside a pooled
  ``dsn``, else on ``dsn``, and checks with a probe that notifications arrive (behind
  PgBouncer in transaction mode they do not: it then says so once and polls; see
  :mod:`durable.wakeups`). ``listen=False`` only polls. Should it ever hold a task whose
  name it does not know, it hands it back with ``durable.release`` (no attempt spent).
* **Registry.** It registers in the worker registry under its ``name`` and heartbeats
  every ``heartbeat_interval`` seconds (:mod:`durable.registry`); once it misses
  ``dead_after`` seconds of them (three heartbeats by default) it is dead, and the next
  claim of its queue by another worker takes its tasks back at once, as lost leases.
* **Connections.** A pool of ``pool_size`` connections (default ``min(concurrency, 16)
  + 3``: the claim loop, the completions, the heartbeats, and the durable calls of
  running tasks, which are short), plus the LISTEN connection. ``prepared_statements=False``
  (or ``DURABLE_PREPARED_STATEMENTS=off``) sends every statement unnamed, as PgBouncer in
  transaction mode without prepared-statement support needs.
* **Running.** ``async`` functions run on the loop; sync functions run in a pool of up to
  ``concurrency`` daemon threads. A function taking two parameters also gets a
  :class:`~durable.context.TaskContext`.
* **Heartbeats.** A background loop renews the lease of every running attempt every
  ``lease_seconds / 3`` seconds with ``durable.heartbeat``. DU011 (the task was
  cancelled), DU010 (the lease is no longer ours) or DU020 (one of the attempt's durable
  calls met a non-determinism, which failed the task, and its code went on) stops the
  attempt: an async function is cancelled, ``ctx.cancelled`` is set for a sync one, and
  nothing is reported for it.
* **Completions** are batched: results queue up and a background flusher sends them with
  one ``durable.complete_many`` per batch, as soon as ``flush_size`` are waiting, nothing is
  running and the last claim came back short (none could join the batch soon), or
  ``flush_interval`` seconds after the first one.
* **Failures** are reported at once with ``durable.fail``: the error is
  ``{"type", "message", "traceback"}``; :class:`~durable.errors.NonRetryableError` makes
  it final, so does a result that is not JSON-serialisable (``ResultNotSerializable``; a
  durable step's such result is recorded as the step's failure, :mod:`durable.workflow`).
* **Checkpoints** of the ``async def`` durable tasks running at once are sent together:
  those made in one turn of the loop, or while two calls are on their way, go in one
  ``durable.checkpoint_many`` (one round trip, one commit; each fenced by its own lease,
  each step's result used only once the batch committed; :mod:`durable.checkpoints`).
* **Durable tasks** complete with the others (the batched ``durable.complete_many``),
  after presenting the calls their code replayed that were not yet checked
  (``durable.replay_check``). A non-determinism is found by the database: the durable
  call or replay check that meets it answers ``{"nondeterminism": ...}``, and the
  completion of a code that finished short of its history answers ``nondeterminism``,
  each having failed the task (not retryable), so the worker reports nothing more for
  that attempt (no ``durable.fail``).
* **Database outages.** What the worker sends about an attempt once its code has ended (a
  failure, a durable task's completion and replay check, a release) is sent again while
  the database cannot be reached (``psycopg.OperationalError``: connection lost, server
  restarting, pool timeout), with growing pauses, for up to ``lease_seconds`` (after that
  the lease is gone anyway; three tries once the worker is stopping). Batched completions
  are retried the same way. The attempt keeps its heartbeats meanwhile, so a report that
  gets through after a restart is still fenced by the live lease.
* **Infrastructure faults spend no attempt.** The rule: an exception is the
  infrastructure's, not the task's, when one of the attempt's own durable calls (the
  ``checkpoint``, ``replay_check``, ``sleep``, ``wait_event``, ``spawn``,
  ``wait_children`` its context sends) raised it and it is a ``psycopg.OperationalError``
  (connection lost, server shutting down or starting up, pool timeout, query cancelled,
  deadlock or serialization failure). When the code of a durable task ends with such an
  exception, or with one caused by it (its ``__cause__``/``__context__`` chain holds it:
  a re-raise, a wrapper, the :class:`~durable.errors.HistoryGap` of the calls after it),
  the worker does not call ``durable.fail``: it hands the task back with
  ``durable.release`` (no attempt spent, ``INFRASTRUCTURE_RELEASE_DELAY`` seconds), sent
  again until the server is back, or leaves it to its lease. Anything else the code
  raises is the task's failure, whatever its class: a step whose own function raises
  ``OperationalError`` against some other database fails like any step (its exception
  never came out of a durable call of the attempt), and so does a plain task, which
  makes no durable calls.
* **Logging** (logger ``durable.worker``; :mod:`durable.logs` sets up text or JSON lines):
  at INFO one line per claimed batch (how many, their names) and one per ended attempt
  (task, attempt, outcome, duration, and for a resumed durable task how many recorded
  events it replayed), each with its facts as ``extra`` fields (:mod:`durable.attempt_log`).
* **Retention** needs nothing from the worker: its claims apply the queue's ``retention``
  option (``durable.claim`` purges finished tasks at most once a minute), so a worker
  role needs no operator rights.
* **Shutdown** (``stop()``, SIGTERM or SIGINT when ``run()`` is on the main thread):
  stop claiming, give running attempts up to ``shutdown_grace`` seconds to finish
  (a second signal or ``stop()`` ends the wait), release the rest with
  ``durable.release(task, token, 0, 'worker shutdown')``, flush completions, close the pool.

``create_queue=True`` (the default) calls ``durable.ensure_queue(queue)`` at start, which
creates the queue with default options if it is missing and changes nothing otherwise.
With ``create_queue=False`` the queue must exist (``UnknownQueue`` otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import secrets
import signal
import socket
import threading
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar, overload

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from . import attempt_log, commands, workflow_commands
from .attempt_log import AttemptLog
from .checkpoints import CheckpointBatcher
from .commands import ClaimedTask, Command, to_json
from .connections import async_pool, execute, execute_async, resolve_dsn, sync_pool
from .context import TaskContext
from .errors import (
    RESULT_NOT_SERIALIZABLE,
    ChildFailed,
    DurableError,
    InvalidArgument,
    LeaseLost,
    NonDeterminismError,
    NonRetryableError,
    NotAwaited,
    PayloadTooLarge,
    StepFailed,
    TaskCancelled,
    UnknownTask,
)
from .faults import infrastructure_fault, noting_faults, one_line, retrying
from .registry import Registration
from .threads import ThreadRunner
from .wakeups import listen_loop
from .workflow import DurableContext, Suspended, SyncDurableContext
from .workflow_commands import Checkpoint

logger = logging.getLogger("durable.worker")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

#: the most tasks one claim or one complete_many handles
MAX_BATCH: Final = 1000
#: delay before a task this worker cannot run may be claimed again
UNKNOWN_TASK_RELEASE_DELAY: Final = 1.0
#: delay before a task whose attempt an infrastructure fault ended may be claimed again
#: (a fault that persists then costs a claim a second, not a busy loop)
INFRASTRUCTURE_RELEASE_DELAY: Final = 1.0

#: what ends a durable task's code for good: a re-run would meet it again
_FINAL_IN_DURABLE_CODE: Final = (
    NonRetryableError,
    NonDeterminismError,
    StepFailed,
    ChildFailed,
    PayloadTooLarge,
    NotAwaited,
)

# states of a running attempt
_RUNNING: Final = "running"
_CANCELLED: Final = "cancelled"
_LOST: Final = "lost"
_RELEASED: Final = "released"
#: the outcome of an attempt stopped in each state
_STOPPED_OUTCOMES: Final = {
    _CANCELLED: attempt_log.CANCELLED,
    _LOST: attempt_log.LOST,
    _RELEASED: attempt_log.RELEASED,
}


@dataclass(frozen=True, slots=True)
class TaskFunction:
    """A registered task function and how to call it."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    wants_context: bool
    #: a durable task: called as fn(input, ctx) with a durable.workflow context
    durable: bool = False


@dataclass(slots=True)
class WorkerStats:
    """Counters of one worker since it started."""

    claimed: int = 0
    completed: int = 0
    failed: int = 0
    released: int = 0
    stopped: int = 0


class _Attempt:
    """A claimed task this worker is running."""

    __slots__ = ("claimed", "context", "faults", "function", "log", "next_beat", "started", "state", "task")

    def __init__(
        self,
        claimed: ClaimedTask,
        function: TaskFunction,
        context: TaskContext | None,
        next_beat: float,
        log: AttemptLog,
    ) -> None:
        self.claimed = claimed
        self.function = function
        self.context = context
        self.next_beat = next_beat
        self.state: str = _RUNNING
        #: it got a slot and its code started (a prefetched attempt waits for one first)
        self.started = False
        self.task: asyncio.Task[None] | None = None
        #: the infrastructure faults the attempt's own durable calls raised (see the module doc)
        self.faults: list[BaseException] = []
        #: its outcome, logged when it ends (see durable.attempt_log)
        self.log = log


def describe(fn: Callable[..., Any], name: str | None = None, *, durable: bool = False) -> TaskFunction:
    """Check a task function's signature: ``(input)`` or ``(input, ctx)``, sync or async."""
    if not callable(fn):
        raise TypeError(f"a task function must be callable, got {fn!r}")
    task_name = name or getattr(fn, "__name__", None)
    if not task_name:
        raise ValueError(f"give a name for the task function {fn!r}")
    parameters = list(inspect.signature(fn).parameters.values())
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    var_positional = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
    if len(required) > 2 or (not positional and not var_positional):
        raise TypeError(f"task function {task_name!r} must take (input) or (input, ctx)")
    is_async = inspect.iscoroutinefunction(fn) or (
        not inspect.isroutine(fn) and inspect.iscoroutinefunction(type(fn).__call__)
    )
    wants_context = len(positional) >= 2 or var_positional
    if durable and not wants_context:
        raise TypeError(f"durable task function {task_name!r} must take (input, ctx)")
    return TaskFunction(task_name, fn, is_async, wants_context, durable)


def _error_of(exc: BaseException) -> dict[str, Any]:
    error = {
        "type": type(exc).__qualname__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }
    if isinstance(exc, DurableError) and exc.detail:
        error["detail"] = exc.detail
    return error


class Worker:
    """Runs the task functions registered with :meth:`task` for the tasks of one queue.

    ``dsn`` None: ``DURABLE_DATABASE_URL``/``DATABASE_URL`` or the embedded server.
    See the module documentation for claiming, heartbeats, batching and shutdown.
    """

    def __init__(
        self,
        dsn: str | None = None,
        queue: str = "default",
        *,
        concurrency: int = 10,
        name: str | None = None,
        lease_seconds: int = 30,
        poll_interval: float = 1.0,
        shutdown_grace: float = 30.0,
        listen: bool = True,
        listen_url: str | None = None,
        create_queue: bool = True,
        flush_interval: float = 0.002,
        flush_size: int = 100,
        pool_size: int | None = None,
        prepared_statements: bool | None = None,
        heartbeat_interval: float = 2.0,
        dead_after: float | None = None,
        prefetch: int = 0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 0 <= prefetch <= MAX_BATCH:
            raise ValueError(f"prefetch must be between 0 and {MAX_BATCH}")
        if not 1 <= lease_seconds <= 86400:
            raise ValueError("lease_seconds must be between 1 and 86400")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        if not 0.1 <= heartbeat_interval <= 3600:
            raise ValueError("heartbeat_interval must be between 0.1 and 3600 seconds")
        if dead_after is not None and not 2 * heartbeat_interval <= dead_after <= 86400:
            raise ValueError("dead_after must be at least twice heartbeat_interval and at most 86400 seconds")
        self.dsn = dsn
        self.queue = queue
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(6)}"
        self.lease_seconds = int(lease_seconds)
        self.poll_interval = poll_interval
        self.shutdown_grace = shutdown_grace
        self.listen = listen
        self.listen_url = listen_url or os.environ.get("DURABLE_LISTEN_URL") or None
        self.create_queue = create_queue
        self.flush_interval = flush_interval
        self.flush_size = flush_size
        self.pool_size = max(pool_size if pool_size is not None else min(concurrency, 16) + 3, 3)
        self.prepared_statements = prepared_statements
        self.heartbeat_interval = heartbeat_interval
        self.dead_after = dead_after
        self.stats = WorkerStats()
        self._functions: dict[str, TaskFunction] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_early = False
        # set up by run_async, inside its loop
        self._pool: AsyncConnectionPool | None = None
        # the commands of plain-def durable tasks, sent from their own threads
        self._sync_pool: ConnectionPool | None = None
        self._threads: ThreadRunner | None = None
        # the checkpoints of async durable tasks, sent in batches (durable.checkpoints)
        self._checkpoints = CheckpointBatcher(self._call)
        # running attempts by lease token (one task may be here twice: a lost attempt and its retry)
        self._attempts: dict[uuid.UUID, _Attempt] = {}
        #: plain tasks' results waiting for complete_many: task, lease token, output, log
        self._completed: list[tuple[uuid.UUID, uuid.UUID, str | None, AttemptLog]] = []
        # the last claim came back short: nothing more to run for now
        self._idle = False
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._closing = False

    # -- registration --------------------------------------------------------------------

    @overload
    def task(self, fn: F, /) -> F: ...

    @overload
    def task(self, *, name: str | None = None) -> Callable[[F], F]: ...

    def task(self, fn: F | None = None, /, *, name: str | None = None) -> F | Callable[[F], F]:  # type: ignore[misc]
        """Register a task function under its ``__name__`` (or ``name``); use as a decorator."""

        return self._register(fn, name, durable=False)

    @overload
    def durable_task(self, fn: F, /) -> F: ...

    @overload
    def durable_task(self, *, name: str | None = None) -> Callable[[F], F]: ...

    def durable_task(  # type: ignore[misc]
        self, fn: F | None = None, /, *, name: str | None = None
    ) -> F | Callable[[F], F]:
        """Register a durable task function ``(input, ctx)``: its progress is an event log.

        ``ctx`` is a :class:`~durable.workflow.DurableContext` for an ``async def`` and a
        :class:`~durable.workflow.SyncDurableContext` for a plain ``def``. Enqueue its tasks
        with ``durable=True``.
        """
        return self._register(fn, name, durable=True)

    def _register(self, fn: F | None, name: str | None, *, durable: bool) -> F | Callable[[F], F]:
        def register(f: F) -> F:
            described = describe(f, name, durable=durable)
            if described.name in self._functions:
                raise ValueError(f"a task named {described.name!r} is already registered")
            self._functions[described.name] = described
            return f

        return register if fn is None else register(fn)

    @property
    def task_names(self) -> list[str]:
        """The names of the registered task functions."""
        return sorted(self._functions)

    def function(self, name: str) -> TaskFunction | None:
        """The task function registered under ``name`` (None: none is)."""
        return self._functions.get(name)

    # -- running and stopping ------------------------------------------------------------

    def run(self) -> None:
        """Run until stopped (blocking). On the main thread, SIGTERM and SIGINT stop it gracefully."""
        asyncio.run(self.run_async(handle_signals=threading.current_thread() is threading.main_thread()))

    def stop(self) -> None:
        """Stop gracefully (from any thread); a second call skips the rest of the grace period."""
        loop = self._loop
        if loop is None:
            self._stop_early = True
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._request_stop()
        else:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(self._request_stop)

    async def run_async(self, *, handle_signals: bool = False) -> None:
        """Run in the current event loop until stopped."""
        if not self._functions:
            raise RuntimeError("no task functions are registered on this worker")
        if self._loop is not None:
            raise RuntimeError("this worker is already running")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.concurrency)
        self._slot_freed = asyncio.Event()
        self._grace_over = asyncio.Event()
        self._flush_wanted = asyncio.Event()
        self._flush_full = asyncio.Event()
        self._attempts = {}
        self._completed = []
        self._idle = False
        self._stopping = self._stop_early
        self._closing = False
        installed: list[signal.Signals] = []
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError):  # loops without signal support
                    loop.add_signal_handler(sig, self._on_signal, sig)
                    installed.append(sig)
        try:
            await self._serve()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            self._loop = None
            self._stop_early = False

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping:
            logger.warning("%s again: not waiting for running tasks any longer", sig.name)
        else:
            logger.info("%s: stopping (send it again to skip the grace period)", sig.name)
        self._request_stop()

    def _request_stop(self) -> None:
        if self._stopping:
            self._grace_over.set()
        self._stopping = True
        self._wake.set()
        self._slot_freed.set()

    async def _serve(self) -> None:
        dsn = self.dsn if self.dsn else await asyncio.to_thread(resolve_dsn, None)
        self._pool = await async_pool(
            dsn,
            min_size=2,
            max_size=self.pool_size,
            name=f"durable-{self.name}",
            prepared_statements=self.prepared_statements,
        )
        if any(f.durable and not f.is_async for f in self._functions.values()):
            self._sync_pool = sync_pool(
                dsn,
                min_size=1,
                max_size=self.pool_size,
                name=f"durable-{self.name}-sync",
                open=False,
                prepared_statements=self.prepared_statements,
            )
            self._sync_pool.open(wait=False)  # connects in its own threads
        self._threads = ThreadRunner(
            asyncio.get_running_loop(), self.concurrency, name=f"durable-{self.name}"
        )
        helpers: list[asyncio.Task[None]] = []
        flusher: asyncio.Task[None] | None = None
        registration = Registration(
            self._call,
            name=self.name,
            queues=[self.queue],
            task_names=self.task_names,
            slots=self.concurrency,
            heartbeat_interval=self.heartbeat_interval,
            dead_after=self.dead_after,
        )
        try:
            if self.create_queue:
                await self._call(commands.ensure_queue(self.queue))
            await registration.register()
            logger.info(
                "worker %s: queue %s, tasks %s, concurrency %d",
                self.name,
                self.queue,
                ", ".join(self.task_names),
                self.concurrency,
            )
            flusher = asyncio.create_task(self._flush_loop(), name="durable-flusher")
            helpers.append(asyncio.create_task(self._heartbeat_loop(), name="durable-heartbeat"))
            helpers.append(asyncio.create_task(registration.run(), name="durable-registry"))
            if self.listen:
                helpers.append(
                    asyncio.create_task(
                        listen_loop(
                            self.listen_url or dsn, self.queue, self._wake, self._call, self.poll_interval
                        ),
                        name="durable-listener",
                    )
                )
            else:
                logger.info("worker %s: polling every %.1f s (listen=False)", self.name, self.poll_interval)
            try:
                await self._claim_loop()
            finally:
                await self._drain()
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if flusher is not None:
                self._closing = True
                self._flush_wanted.set()
                self._flush_full.set()
                await flusher
            if self._background:
                await asyncio.gather(*self._background, return_exceptions=True)
            await registration.unregister()
            self._threads.close()
            if self._sync_pool is not None:
                await asyncio.to_thread(self._sync_pool.close)
            await self._pool.close()
            logger.info("worker %s stopped (%s)", self.name, self.stats)

    async def _call(self, command: Command[T]) -> T:
        assert self._pool is not None
        async with self._pool.connection() as conn:
            return await execute_async(conn, command)

    async def _durable_call(self, command: Command[T]) -> T:
        """A durable call of an async durable task: a checkpoint goes with the others
        (group commit, :mod:`durable.checkpoints`), the rest is sent as it comes."""
        if isinstance(command, Checkpoint):
            return await self._checkpoints.checkpoint(command)  # type: ignore[return-value]
        return await self._call(command)

    def _sync_call(self, command: Command[T]) -> T:
        """Run a command from a task's thread (plain-def durable tasks)."""
        assert self._sync_pool is not None
        with self._sync_pool.connection() as conn:
            return execute(conn, command)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- claiming ------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        names = self.task_names
        errors_in_a_row = 0
        while not self._stopping:
            free = min(self.concurrency + self.prefetch - len(self._attempts), MAX_BATCH)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            self._wake.clear()
            try:
                claimed = await self._call(
                    commands.claim(self.queue, self.name, free, self.lease_seconds, names)
                )
            except psycopg.Error as exc:
                errors_in_a_row += 1
                delay = min(self.poll_interval * 2 ** min(errors_in_a_row, 5), 30.0)
                logger.warning("claim failed (%s); retrying in %.1f s", exc, delay)
                await self._wait_for_work(delay)
                continue
            errors_in_a_row = 0
            if claimed:
                self.stats.claimed += len(claimed)
                attempt_log.claimed(self.queue, claimed)
                for task in claimed:
                    self._start(task)
                # one turn of the loop: the tasks just started run up to their first wait
                # before the next round trip (the idle wait's next_wake) is sent
                await asyncio.sleep(0)
            # a claim that comes back short: the queue has nothing more for now
            self._idle = len(claimed) < free
            if self._idle:
                self._flush_if_nothing_comes()
                await self._wait_for_work(await self._idle_wait())

    async def _idle_wait(self) -> float:
        """How long to wait for work: ``poll_interval``, or less when a sleeping task or the
        queue's next schedule tick (``durable.next_wake``) is due sooner: the claim then
        wakes the sleeper or enqueues the tick."""
        try:
            due_in = await self._call(workflow_commands.seconds_until_wake(self.queue))
        except (psycopg.Error, DurableError):
            return self.poll_interval
        if due_in is None:
            return self.poll_interval
        return min(self.poll_interval, max(due_in, 0.001))

    async def _wait_for_work(self, seconds: float) -> None:
        """Until a notification for this queue, a stop, or ``seconds`` have passed."""
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _start(self, claimed: ClaimedTask) -> None:
        function = self._functions.get(claimed.task_name)
        if function is None:
            # durable.claim only hands out the names we pass it; this is a safety net
            logger.error("task %s: no function named %r; releasing it", claimed.task_id, claimed.task_name)
            self._spawn(
                self._release(
                    claimed,
                    UNKNOWN_TASK_RELEASE_DELAY,
                    f"worker {self.name} has no task {claimed.task_name!r}",
                )
            )
            return
        context = (
            TaskContext(claimed.task_id, claimed.task_name, self.queue, claimed.attempt, self.name)
            if function.wants_context and not function.durable  # a durable task gets its own context
            else None
        )
        loop = asyncio.get_running_loop()
        attempt = _Attempt(
            claimed, function, context, loop.time() + self.lease_seconds / 3, AttemptLog(claimed, self.queue)
        )
        self._attempts[claimed.lease_token] = attempt
        attempt.task = loop.create_task(self._run_attempt(attempt))

    async def _retrying(self, send: Callable[[], Awaitable[T]], task_id: uuid.UUID, what: str) -> T:
        """``send()``, again while the database cannot be reached (see the module doc)."""
        return await retrying(
            send, task_id=task_id, what=what, for_seconds=self.lease_seconds, stopping=lambda: self._stopping
        )

    async def _release(self, claimed: ClaimedTask, delay: float, reason: str) -> bool:
        """Hand the task back (no attempt spent); whether it was."""
        command = commands.release(claimed.task_id, claimed.lease_token, delay, reason)
        try:
            await self._retrying(lambda: self._call(command), claimed.task_id, "release")
            self.stats.released += 1
            return True
        except (LeaseLost, TaskCancelled, UnknownTask) as exc:
            logger.info("task %s: not released (%s)", claimed.task_id, exc)
        except (psycopg.Error, DurableError) as exc:
            logger.warning("task %s: release failed (%s); its lease will expire", claimed.task_id, exc)
        return False

    # -- running -------------------------------------------------------------------------

    async def _run_attempt(self, attempt: _Attempt) -> None:
        try:
            async with self._slots:  # a prefetched attempt waits here for a slot
                if attempt.state != _RUNNING:  # stopped (or released) while it waited
                    return
                attempt.started = True
                # the attempt's span is the current one in its asyncio task (and, through
                # wrap, in its thread): the parent of the spans its code makes
                with attempt.log.span.activate():
                    await self._run_attempt_traced(attempt)
        finally:
            if not attempt.started:  # it never ran: nothing to report
                self._attempts.pop(attempt.claimed.lease_token, None)
                self._slot_freed.set()
                attempt.log.write()

    async def _run_attempt_traced(self, attempt: _Attempt) -> None:
        function, claimed = attempt.function, attempt.claimed
        queued = False
        try:
            if function.durable != claimed.durable:
                # the code and the task disagree on the event log: running it would do side
                # effects that cannot be recorded (or complete a task whose log it ignored)
                await self._fail(
                    attempt,
                    NonRetryableError(
                        f"task {claimed.task_name!r} was enqueued with durable={claimed.durable}, but its"
                        f" function is registered with {'durable_task' if function.durable else 'task'}"
                    ),
                    retryable=False,
                )
                return
            if function.durable:
                queued = await self._run_durable(attempt)
                return
            try:
                if function.is_async:
                    if attempt.context is None:
                        result = await function.fn(claimed.input)
                    else:
                        result = await function.fn(claimed.input, attempt.context)
                else:
                    assert self._threads is not None
                    fn = attempt.log.span.wrap(function.fn)
                    if attempt.context is None:
                        result = await self._threads.run(fn, claimed.input)
                    else:
                        result = await self._threads.run(fn, claimed.input, attempt.context)
            except asyncio.CancelledError as exc:
                if attempt.state != _RUNNING:
                    return  # we stopped it: nothing to report
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the loop is going away
                await self._fail(attempt, exc, retryable=True)  # raised by the function itself
                return
            except BaseException as exc:
                if attempt.state == _RUNNING:
                    await self._fail(attempt, exc, retryable=not isinstance(exc, NonRetryableError))
                return
            if attempt.state != _RUNNING:
                return
            serialisable, output = await self._output_json(attempt, result)
            if not serialisable:
                return
            self._complete(claimed, output, attempt.log)
            queued = True  # its line is written once complete_many has answered
        finally:
            del self._attempts[claimed.lease_token]
            self._slot_freed.set()
            self._flush_if_nothing_comes()
            if not queued:
                attempt.log.write()

    def _complete(self, claimed: ClaimedTask, output: str | None, log: AttemptLog) -> None:
        """Queue the completion of an attempt for the flusher (``durable.complete_many``)."""
        self._completed.append((claimed.task_id, claimed.lease_token, output, log))
        self._flush_wanted.set()
        if len(self._completed) >= self.flush_size:
            self._flush_full.set()

    async def _run_durable(self, attempt: _Attempt) -> bool:
        """A durable task: its code runs against its history (see :mod:`durable.workflow`);
        True when its completion was queued (its line is written once it is answered).

        A sleep or wait that suspends ends the attempt in the database: nothing to report.
        Before reporting a failure or completing, the replayed calls not yet presented are
        checked, so a non-determinism is what ends the task. The completion then goes with
        the others (the flusher's ``durable.complete_many``, which completes a durable task
        only once its whole history was checked, and fails it otherwise), and the slot is
        free at once. A non-determinism is found by
        the database, which fails the task itself (not retryable): once one of the
        attempt's calls met it, nothing more is reported. A recorded step failure and a
        failed child end the task without retry: a re-run would meet them again.
        """
        function, claimed = attempt.function, attempt.claimed
        # its durable calls note the infrastructure faults they raise (see the module doc)
        call, sync_call = noting_faults(self._durable_call, self._sync_call, attempt.faults)
        ctx = DurableContext(
            call=call,
            task_id=claimed.task_id,
            lease_token=claimed.lease_token,
            queue=self.queue,
            task_name=claimed.task_name,
            attempt=claimed.attempt,
            history=claimed.history,
            span=attempt.log.span,
        )
        try:
            try:
                if function.is_async:
                    result = await ctx.run(function.fn, claimed.input)
                else:
                    assert self._threads is not None
                    sync_ctx = SyncDurableContext(ctx, sync_call)
                    result = await self._threads.run(
                        attempt.log.span.wrap(function.fn), claimed.input, sync_ctx
                    )
            except Suspended as suspended:
                attempt.log.end(attempt_log.SUSPENDED, str(suspended), suspended=suspended.status)
                return False
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if attempt.state != _RUNNING or (current is not None and current.cancelling()):
                    raise
                if ctx.log.failed is not None:
                    self._failed_by_nondeterminism(attempt, ctx.log.failed)
                    return False
                await self._fail(
                    attempt, asyncio.CancelledError("cancelled by the task itself"), retryable=True
                )
                return False
            except BaseException as exc:
                if attempt.state != _RUNNING or isinstance(exc, (LeaseLost, TaskCancelled)):
                    raise
                if ctx.log.failed is not None:  # whatever the code made of it
                    self._failed_by_nondeterminism(attempt, ctx.log.failed)
                    return False
                fault = infrastructure_fault(exc, attempt.faults)
                if fault is not None:
                    await self._release_after_fault(attempt, fault)
                    return False
                # a mismatch earlier in the history explains the failure (NonDeterminismError
                # from here: the database failed the task)
                await self._retrying(ctx.verify, claimed.task_id, "replay check")
                await self._fail(attempt, exc, retryable=not isinstance(exc, _FINAL_IN_DURABLE_CODE))
                return False
            if attempt.state != _RUNNING:
                return False
            if ctx.log.failed is not None:  # the code caught it and returned
                self._failed_by_nondeterminism(attempt, ctx.log.failed)
                return False
            serialisable, output = await self._output_json(attempt, result)
            if not serialisable:
                return False
            await self._retrying(ctx.verify, claimed.task_id, "replay check")
            self._complete(claimed, output, attempt.log)
            return True
        except NonDeterminismError as exc:  # from verify
            self._failed_by_nondeterminism(attempt, exc)
        except (LeaseLost, TaskCancelled, UnknownTask) as exc:
            attempt.log.end(attempt_log.stopped(exc), str(exc))
        except (psycopg.Error, DurableError) as exc:
            attempt.log.end(attempt_log.LOST, f"could not be reported ({exc}); its lease will expire")
        except asyncio.CancelledError:
            if attempt.state == _RUNNING:
                raise
        finally:
            if claimed.history:
                attempt.log.replayed = min(ctx.log.seq, len(claimed.history))
        return False

    def _failed_by_nondeterminism(self, attempt: _Attempt, error: NonDeterminismError) -> None:
        """One of the attempt's durable calls met a non-determinism: the database failed the
        task (not retryable) then; there is nothing to report (a fail would raise DU020)."""
        self.stats.failed += 1
        attempt.log.end(attempt_log.FAILED, f"{error}; no retry", error_type=type(error).__name__)

    async def _release_after_fault(self, attempt: _Attempt, fault: BaseException) -> None:
        """The attempt's code ended with an infrastructure fault: hand the task back (no attempt
        spent) once the server answers again, instead of failing it."""
        claimed = attempt.claimed
        logger.warning(
            "task %s: attempt %d ended by a database fault (%s); handing it back without spending an attempt",
            claimed.task_id,
            claimed.attempt,
            one_line(str(fault)),
        )
        reason = one_line(f"the database failed during the attempt: {type(fault).__name__}: {fault}")
        released = await self._release(claimed, INFRASTRUCTURE_RELEASE_DELAY, reason)
        attempt.log.end(attempt_log.RELEASED if released else attempt_log.LOST, reason)

    async def _output_json(self, attempt: _Attempt, result: Any) -> tuple[bool, str | None]:
        """(True, the JSON text of a task's result); (False, None) when JSON cannot hold the
        result, after failing the task for good."""
        if result is None:
            return True, None
        try:
            return True, to_json(result, f"the result of task {attempt.claimed.task_name!r}")
        except InvalidArgument as exc:
            await self._report_failure(
                attempt, {"type": RESULT_NOT_SERIALIZABLE, "message": str(exc)}, retryable=False
            )
            return False, None

    async def _fail(self, attempt: _Attempt, exc: BaseException, *, retryable: bool) -> None:
        attempt.log.span.fail(exc)
        await self._report_failure(attempt, _error_of(exc), retryable=retryable)

    async def _report_failure(self, attempt: _Attempt, error: dict[str, Any], *, retryable: bool) -> None:
        claimed = attempt.claimed
        command = commands.fail(claimed.task_id, claimed.lease_token, error, retryable)
        try:
            result = await self._retrying(lambda: self._call(command), claimed.task_id, "failure report")
        except (LeaseLost, TaskCancelled, UnknownTask) as exc:
            attempt.log.end(attempt_log.stopped(exc), f"failure not recorded ({exc})")
            return
        except (psycopg.Error, DurableError) as exc:
            attempt.log.end(attempt_log.LOST, f"could not report its failure ({exc}); its lease will expire")
            return
        self.stats.failed += 1
        attempt.log.note(attempt_log.failure(error, result))

    def _stop_attempt(self, attempt: _Attempt, state: str, reason: str) -> None:
        """Give up an attempt: nothing will be reported for it."""
        attempt.state = state
        attempt.log.end(_STOPPED_OUTCOMES[state], reason)
        self.stats.stopped += 1
        if attempt.context is not None:
            attempt.context.stop_reason = reason
            attempt.context.cancel_event.set()
        if attempt.function.is_async and attempt.task is not None:
            attempt.task.cancel()

    # -- heartbeats ----------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = self.lease_seconds / 3
        tick = min(max(interval / 4, 0.05), 1.0)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            due = [a for a in self._attempts.values() if a.state == _RUNNING and a.next_beat <= now]
            if not due:
                continue
            try:
                assert self._pool is not None
                async with self._pool.connection() as conn:
                    for attempt in due:
                        if attempt.state != _RUNNING:
                            continue
                        await self._beat(conn, attempt)
                        attempt.next_beat = now + interval
            except (psycopg.Error, DurableError) as exc:
                logger.warning("heartbeat failed (%s); retrying", exc)
            except Exception:
                logger.exception("heartbeat loop error; retrying")

    async def _beat(self, conn: psycopg.AsyncConnection[Any], attempt: _Attempt) -> None:
        claimed = attempt.claimed
        try:
            await execute_async(conn, commands.heartbeat(claimed.task_id, claimed.lease_token))
        except TaskCancelled:
            logger.info("task %s was cancelled; stopping it", claimed.task_id)
            self._stop_attempt(attempt, _CANCELLED, "the task was cancelled")
        except (LeaseLost, UnknownTask) as exc:
            logger.warning("task %s: lease lost (%s); abandoning the attempt", claimed.task_id, exc)
            self._stop_attempt(attempt, _LOST, "the lease was lost")
        except NonDeterminismError as exc:
            # a durable call of the attempt met a non-determinism, and the database failed the
            # task; its code went on regardless (it caught the exception): stop it
            logger.info("task %s was failed (%s); stopping it", claimed.task_id, exc)
            attempt.log.end(attempt_log.FAILED, f"{exc}; no retry", error_type=type(exc).__name__)
            self._stop_attempt(attempt, _LOST, "the task was failed: non-determinism")

    # -- completions ---------------------------------------------------------------------

    def _nothing_comes(self) -> bool:
        """Nothing runs and the last claim came back short: no completion can join a batch
        soon, so the completions waiting go now."""
        return not self._attempts and self._idle

    def _flush_if_nothing_comes(self) -> None:
        if self._nothing_comes():
            self._flush_full.set()  # wakes _flush_loop's wait for a full batch

    async def _flush_loop(self) -> None:
        while True:
            if not self._completed:
                if self._closing:
                    return
                self._flush_wanted.clear()
                await self._flush_wanted.wait()
                continue
            if (
                not self._nothing_comes()
                and len(self._completed) < self.flush_size
                and not self._closing
                and self.flush_interval > 0
            ):
                self._flush_full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush_full.wait(), self.flush_interval)
            batch = self._completed[:MAX_BATCH]
            del self._completed[:MAX_BATCH]
            try:
                await self._send_completions(batch)
            except Exception:
                logger.exception("completing %d tasks failed; their leases will expire", len(batch))
                attempt_log.not_completed([b[3] for b in batch], "completion failed")

    async def _send_completions(
        self, batch: list[tuple[uuid.UUID, uuid.UUID, str | None, AttemptLog]]
    ) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        tries = 0
        while True:
            try:
                results = await self._call(
                    commands.complete_many(
                        [b[0] for b in batch], [b[1] for b in batch], [b[2] for b in batch]
                    )
                )
                break
            except PayloadTooLarge as exc:
                if len(batch) > 1:  # find the culprit: complete the others one by one
                    for item in batch:
                        await self._send_completions([item])
                    return
                task_id, token, _, log = batch[0]
                await self._fail_raw(task_id, token, {"type": "PayloadTooLarge", "message": str(exc)}, log)
                return
            except DurableError as exc:
                logger.error("completing %d tasks failed (%s)", len(batch), exc)
                attempt_log.not_completed([b[3] for b in batch], f"completion failed ({exc})")
                return
            except psycopg.Error as exc:
                tries += 1
                if (self._closing and tries >= 3) or loop.time() - started > self.lease_seconds:
                    logger.error(
                        "could not complete %d tasks (%s); their leases will expire and they will run again",
                        len(batch),
                        exc,
                    )
                    attempt_log.not_completed([b[3] for b in batch], "completion not sent")
                    return
                logger.warning("completing %d tasks failed (%s); retrying", len(batch), exc)
                await asyncio.sleep(min(0.05 * 2**tries, 2.0))
        self.stats.completed += sum(1 for result in results if result.ok)
        self.stats.failed += sum(1 for result in results if result.reason == "nondeterminism")
        attempt_log.completions([b[3] for b in batch], results)

    async def _fail_raw(
        self, task_id: uuid.UUID, token: uuid.UUID, error: dict[str, Any], log: AttemptLog
    ) -> None:
        command = commands.fail(task_id, token, error, False)
        try:
            result = await self._retrying(lambda: self._call(command), task_id, "failure report")
            self.stats.failed += 1
            log.write(attempt_log.failure(error, result))
        except (psycopg.Error, DurableError) as exc:
            log.write(attempt_log.Ending(attempt_log.LOST, f"could not report its failure ({exc})"))

    # -- shutdown ------------------------------------------------------------------------

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        if self._attempts:
            logger.info(
                "waiting up to %.1f s for %d running task(s)", self.shutdown_grace, len(self._attempts)
            )
        # the prefetched attempts that never started go back at once
        for attempt in [a for a in self._attempts.values() if not a.started and a.state == _RUNNING]:
            self._stop_attempt(attempt, _RELEASED, "worker shutdown")
            if attempt.task is not None:
                attempt.task.cancel()
            await self._release(attempt.claimed, 0, "worker shutdown")
        deadline = loop.time() + self.shutdown_grace
        while self._attempts and not self._grace_over.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), remaining)
        leftovers = list(self._attempts.values())
        for attempt in leftovers:
            if attempt.state == _RUNNING:
                self._stop_attempt(attempt, _RELEASED, "worker shutdown")
                await self._release(attempt.claimed, 0, "worker shutdown")
        tasks = [a.task for a in leftovers if a.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
