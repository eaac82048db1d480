"""The context a durable task's code runs in: steps, recorded values, sleeps, waits, children.

Every durable call is event ``seq`` (1, 2, 3, ...) of the task's log. On a re-run the
calls whose seq is recorded get the recorded outcome instead of running again; they are
collected and presented to the database in one ``durable.replay_check`` call before the
code runs its first new event (or completes, fails or suspends), so the determinism check
is done by the SQL, before any new side effect, at one round trip per attempt.

The rules of every durable call are written once, without I/O, in :class:`EventLog`:
each call is a generator that yields what it needs done (a database
:class:`~durable.commands.Command`, a run of the step function, a pause between step
retries) and gets the outcome back. Two small drivers do the I/O:
:class:`DurableContext` for ``async def`` tasks (commands on the worker's async pool,
on its event loop) and :class:`SyncDurableContext` for plain ``def`` tasks (commands on a
sync connection, step functions called right in the task's own thread, so a step costs
no hop between the thread and the event loop).

Suspension (a sleep or wait that must wait) raises :class:`Suspended`, a
``BaseException``: user code's ``except Exception`` does not swallow it.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeAlias, TypeVar

from . import workflow_commands as wc
from .commands import Command, Seconds, to_json
from .errors import ChildFailed, EventTimeout, InvalidArgument, StepFailed

T = TypeVar("T")
#: runs a command on the async pool (DurableContext) or on a sync connection (SyncDurableContext)
Call = Callable[[Command[Any]], Awaitable[Any]]
SyncCall = Callable[[Command[Any]], Any]


class Suspended(BaseException):
    """The task now sleeps or waits in the database; the worker unwinds its code."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of one step inside an attempt: ``max_attempts`` tries, waits growing by ``factor``."""

    max_attempts: int = 1
    delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before try number ``attempt`` (2, 3, ...)."""
        return float(min(self.max_delay, self.delay * self.factor ** (attempt - 2)))


def _error_json(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__qualname__, "message": str(exc)}


@dataclass(frozen=True, slots=True)
class RunStep:
    """What a driver does for an :class:`EventLog` call: run the step function once.

    It sends back ``(True, value)``, or ``(False, exception)`` when the function raised
    an ``Exception``."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Pause:
    """What a driver does for an :class:`EventLog` call: wait ``seconds`` (between step retries)."""

    seconds: float


#: what an EventLog call yields: run this command and send back its result, or a RunStep, or a Pause
Op: TypeAlias = Command[Any] | RunStep | Pause
#: an EventLog call: yields Ops, returns T
Steps: TypeAlias = Generator[Op, Any, T]


@dataclass(frozen=True, slots=True)
class ChildHandle:
    """A child task spawned by a durable task."""

    task_id: uuid.UUID
    ctx: DurableContext

    async def result(self) -> Any:
        """Wait for the child (the parent suspends); its output, or ChildFailed if it did not complete."""
        outcomes = await self.ctx.wait_children([self], name="result")
        return _output_of(outcomes[0])


def _output_of(outcome: Mapping[str, Any]) -> Any:
    if outcome.get("status") != "completed":
        raise ChildFailed(str(outcome.get("task_id")), str(outcome.get("status")), outcome.get("error"))
    return outcome.get("output")


class EventLog:
    """The rules of a durable task's calls against its log, without I/O (see the module doc).

    Each public method is a generator of :data:`Op`; :class:`DurableContext` and
    :class:`SyncDurableContext` drive them."""

    def __init__(
        self,
        *,
        task_id: uuid.UUID,
        lease_token: uuid.UUID,
        queue: str,
        history: Sequence[Mapping[str, Any]] | None,
    ) -> None:
        self.task_id = task_id
        self.lease_token = lease_token
        self.queue = queue
        self._history = list(history or [])
        #: durable calls made so far by the code (the seq of the last one)
        self.seq = 0
        self._presented: list[dict[str, Any]] = []

    @property
    def replaying(self) -> bool:
        """True while the code is still going through recorded events."""
        return self.seq < len(self._history)

    def _next(self, kind: str, name: str, given: Any = None) -> tuple[int, Mapping[str, Any] | None]:
        """The next seq, and its recorded event when there is one (then presented for checking)."""
        self.seq += 1
        if self.seq <= len(self._history):
            call: dict[str, Any] = {"seq": self.seq, "kind": kind, "name": name}
            if given is not None:
                call["input"] = given
            self._presented.append(call)
            return self.seq, self._history[self.seq - 1]
        return self.seq, None

    def verify(self) -> Steps[None]:
        """Present the replayed calls not yet checked (one round trip; DU020 on a mismatch)."""
        if self._presented:
            presented, self._presented = self._presented, []
            yield wc.replay_check(self.task_id, self.lease_token, presented)

    def _checkpoint(self, seq: int, kind: str, name: str, result: str | None, error: str | None = None) -> Op:
        return wc.checkpoint(self.task_id, self.lease_token, seq, kind, name, result, error)

    def step(
        self,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: RetryPolicy | None,
    ) -> Steps[Any]:
        """Step ``name``: the recorded outcome, or ``fn`` run (with its retries) and recorded."""
        seq, recorded = self._next("step", name)
        if recorded is not None:
            return _recorded_outcome(name, recorded)
        yield from self.verify()
        policy = retry or RetryPolicy()
        for attempt in range(1, policy.max_attempts + 1):
            ok, value = yield RunStep(fn, args, kwargs)
            if ok:
                text = to_json(value, f"the result of step {name!r}")
                # the value as stored (jsonb): what a re-run gets from the history, so the
                # first run sees the same (a list for a tuple, jsonb's key order, 1e20 an int)
                recorded = yield self._checkpoint(seq, "step", name, text)
                return recorded["result"]
            if attempt >= policy.max_attempts:
                payload = _error_json(value)
                yield self._checkpoint(seq, "step", name, None, to_json(payload, "step error"))
                raise StepFailed(name, payload) from value
            yield Pause(policy.wait_before(attempt + 1))
        raise AssertionError("unreachable")

    def _value(self, kind: str, name: str, make: Callable[[], Any]) -> Steps[Any]:
        """A recorded value (random, uuid): the recorded one, or ``make()`` recorded."""
        seq, recorded = self._next(kind, name)
        if recorded is not None:
            return recorded["result"]
        text = to_json(make(), f"the result of {kind} {name!r}")
        yield from self.verify()
        recorded = yield self._checkpoint(seq, kind, name, text)
        return recorded["result"]

    def now(self) -> Steps[datetime]:
        """The database's clock, recorded: a re-run sees the same time."""
        seq, recorded = self._next("now", "now")
        if recorded is not None:
            return datetime.fromisoformat(str(recorded["result"]))
        yield from self.verify()
        answer = yield self._checkpoint(seq, "now", "now", None)
        return datetime.fromisoformat(str(answer["result"]))

    def random(self) -> Steps[float]:
        """A random float in [0, 1), recorded."""
        return float((yield from self._value("random", "random", random.random)))

    def uuid4(self) -> Steps[uuid.UUID]:
        """A random uuid, recorded."""
        return uuid.UUID(str((yield from self._value("uuid", "uuid4", lambda: str(uuid.uuid4())))))

    def sleep(self, name: str, seconds: Seconds | None, until: datetime | None) -> Steps[None]:
        """Sleep in the database (``seconds`` or ``until``): Suspended while time remains."""
        if until is not None and until.tzinfo is None:
            raise InvalidArgument("durable: sleep_until needs a timezone-aware datetime")
        seq, recorded = self._next("sleep", name)
        if recorded is not None and seq < len(self._history):
            return  # later events exist: this sleep was over
        # the last recorded event, or a new one: the database decides whether time remains
        if recorded is not None:
            self._presented.pop()
        yield from self.verify()
        answer = yield wc.sleep(self.task_id, self.lease_token, seq, name, seconds, until)
        if answer.get("suspended"):
            raise Suspended(f"sleeping until {answer.get('until')}")

    def wait_for_event(self, key: str, timeout: Seconds | None) -> Steps[Any]:
        """Wait (holding no worker) for the event ``key``; its payload. EventTimeout after ``timeout``."""
        seq, recorded = self._next("wait", key)
        if recorded is None:
            yield from self.verify()
            answer = yield wc.wait_event(self.task_id, self.lease_token, seq, key, timeout)
            if answer.get("suspended"):
                raise Suspended(f"waiting for event {key!r}")
        else:
            answer = dict(recorded.get("result") or {})
        if answer.get("timed_out"):
            raise EventTimeout(f"durable: no event {key!r} within the timeout")
        return answer.get("payload")

    def spawn(
        self, task_name: str, input: Mapping[str, Any] | None, queue: str | None, options: dict[str, Any]
    ) -> Steps[uuid.UUID]:
        """Spawn a child task exactly once; its id."""
        target = queue or self.queue
        given = {"queue": target, "input": dict(input or {})}
        seq, recorded = self._next("spawn", task_name, given)
        if recorded is not None:
            return uuid.UUID(str(recorded["result"]["task_id"]))
        yield from self.verify()
        child = yield wc.spawn(
            self.task_id,
            self.lease_token,
            seq,
            target,
            task_name,
            to_json(given["input"], "child input"),
            options,
        )
        return uuid.UUID(str(child))

    def wait_children(self, ids: Sequence[uuid.UUID], name: str) -> Steps[list[dict[str, Any]]]:
        """Wait (holding no worker) until every child ended; their outcomes, in order."""
        seq, recorded = self._next("children", name, [str(i) for i in ids])
        if recorded is not None:
            return [dict(o) for o in recorded["result"]]
        yield from self.verify()
        answer = yield wc.wait_children(self.task_id, self.lease_token, seq, list(ids), name)
        if answer.get("suspended"):
            raise Suspended(f"waiting for {len(ids)} child task(s)")
        return [dict(o) for o in answer["children"]]


class DurableContext:
    """The running attempt of a durable task, as seen by its (async) code."""

    def __init__(
        self,
        *,
        call: Call,
        task_id: uuid.UUID,
        lease_token: uuid.UUID,
        queue: str,
        task_name: str,
        attempt: int,
        history: Sequence[Mapping[str, Any]] | None,
    ) -> None:
        self._call = call
        self.log = EventLog(task_id=task_id, lease_token=lease_token, queue=queue, history=history)
        self.task_id = task_id
        self.lease_token = lease_token
        self.queue = queue
        self.task_name = task_name
        self.attempt = attempt

    async def _drive(self, steps: Steps[T]) -> T:
        """Run an EventLog call: its commands on the pool, its step function here or in a thread."""
        sent: Any = None
        while True:
            try:
                op = steps.send(sent)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(op, RunStep):
                try:
                    if inspect.iscoroutinefunction(op.fn):
                        sent = (True, await op.fn(*op.args, **op.kwargs))
                    else:
                        sent = (True, await asyncio.to_thread(op.fn, *op.args, **op.kwargs))
                except Exception as exc:
                    sent = (False, exc)
            elif isinstance(op, Pause):
                await asyncio.sleep(op.seconds)
                sent = None
            else:
                sent = await self._call(op)

    @property
    def seq(self) -> int:
        """Durable calls made so far by the code."""
        return self.log.seq

    @property
    def replaying(self) -> bool:
        """True while the code is still going through recorded events."""
        return self.log.replaying

    async def verify(self) -> None:
        """Present the replayed calls not yet checked (one round trip; DU020 on a mismatch)."""
        await self._drive(self.log.verify())

    async def step(
        self,
        name: str,
        fn: Callable[..., Any] | None = None,
        *args: Any,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` once as step ``name`` and record its result.

        On a re-run the recorded result is returned without calling ``fn``; a step that
        failed after its retries raises :class:`StepFailed` again. ``fn`` may be sync (run
        in a thread) or async. Without ``fn``, returns a decorator: ``@ctx.step("name")``.
        """
        if fn is None:
            return _step_decorator(self, name, retry)
        return await self._drive(self.log.step(name, fn, args, kwargs, retry))

    async def now(self) -> datetime:
        """The database's clock, recorded: a re-run sees the same time."""
        return await self._drive(self.log.now())

    async def random(self) -> float:
        """A random float in [0, 1), recorded."""
        return await self._drive(self.log.random())

    async def uuid4(self) -> uuid.UUID:
        """A random uuid, recorded."""
        return await self._drive(self.log.uuid4())

    async def sleep(self, duration: float | timedelta, *, name: str = "sleep") -> None:
        """Sleep in the database: the task holds no worker while it sleeps."""
        await self._drive(self.log.sleep(name, duration, None))

    async def sleep_until(self, when: datetime, *, name: str = "sleep") -> None:
        """Sleep until ``when`` (timezone-aware), on the database's clock."""
        await self._drive(self.log.sleep(name, None, when))

    async def wait_for_event(
        self,
        key: str,
        *,
        timeout: float | timedelta | None = None,  # noqa: ASYNC109 - kept by the database
    ) -> Any:
        """Wait (holding no worker) for the event ``key``; its payload. EventTimeout after ``timeout``."""
        return await self._drive(self.log.wait_for_event(key, timeout))

    async def spawn(
        self,
        task_name: str,
        input: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        **options: Any,
    ) -> ChildHandle:
        """Spawn a child task exactly once (``options`` as for enqueue, e.g. ``durable=True``)."""
        return ChildHandle(await self._drive(self.log.spawn(task_name, input, queue, options)), self)

    async def wait_children(
        self, handles: Sequence[ChildHandle], *, name: str = "children"
    ) -> list[dict[str, Any]]:
        """Wait (holding no worker) until every child ended; their outcomes, in order."""
        return await self._drive(self.log.wait_children([h.task_id for h in handles], name))

    async def gather(self, *handles: ChildHandle) -> list[Any]:
        """The outputs of several children (ChildFailed for the first that did not complete)."""
        outcomes = await self.wait_children(handles, name="gather")
        return [_output_of(o) for o in outcomes]


def _recorded_outcome(name: str, recorded: Mapping[str, Any]) -> Any:
    if recorded.get("outcome") == "error":
        raise StepFailed(name, dict(recorded.get("result") or {}))
    return recorded.get("result")


def _step_decorator(
    ctx: DurableContext | SyncDurableContext, name: str, retry: RetryPolicy | None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            return ctx.step(name, fn, *args, retry=retry, **kwargs)

        return run

    return decorate


class SyncDurableContext:
    """The same context for a durable task written as a plain ``def``.

    It runs in the task's own thread: its commands go to a sync connection (``call``),
    its step functions are called right here. It shares the attempt's :class:`EventLog`
    with the worker's :class:`DurableContext`.
    """

    def __init__(self, inner: DurableContext, call: SyncCall) -> None:
        self._call = call
        self.log = inner.log
        self.task_id = inner.task_id
        self.queue = inner.queue
        self.task_name = inner.task_name
        self.attempt = inner.attempt

    def _drive(self, steps: Steps[T]) -> T:
        """Run an EventLog call: its commands on the sync connection, its step function here."""
        sent: Any = None
        while True:
            try:
                op = steps.send(sent)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(op, RunStep):
                try:
                    sent = (True, op.fn(*op.args, **op.kwargs))
                except Exception as exc:
                    sent = (False, exc)
            elif isinstance(op, Pause):
                time.sleep(op.seconds)
                sent = None
            else:
                sent = self._call(op)

    @property
    def replaying(self) -> bool:
        return self.log.replaying

    def step(
        self,
        name: str,
        fn: Callable[..., Any] | None = None,
        *args: Any,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> Any:
        """As :meth:`DurableContext.step`; ``fn`` runs in this thread."""
        if fn is None:
            return _step_decorator(self, name, retry)
        return self._drive(self.log.step(name, fn, args, kwargs, retry))

    def now(self) -> datetime:
        return self._drive(self.log.now())

    def random(self) -> float:
        return self._drive(self.log.random())

    def uuid4(self) -> uuid.UUID:
        return self._drive(self.log.uuid4())

    def sleep(self, duration: float | timedelta, *, name: str = "sleep") -> None:
        self._drive(self.log.sleep(name, duration, None))

    def sleep_until(self, when: datetime, *, name: str = "sleep") -> None:
        self._drive(self.log.sleep(name, None, when))

    def wait_for_event(self, key: str, *, timeout: float | timedelta | None = None) -> Any:
        return self._drive(self.log.wait_for_event(key, timeout))

    def spawn(
        self,
        task_name: str,
        input: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        **options: Any,
    ) -> SyncChildHandle:
        return SyncChildHandle(self._drive(self.log.spawn(task_name, input, queue, options)), self)

    def wait_children(
        self, handles: Sequence[SyncChildHandle], *, name: str = "children"
    ) -> list[dict[str, Any]]:
        return self._drive(self.log.wait_children([h.task_id for h in handles], name))

    def gather(self, *handles: SyncChildHandle) -> list[Any]:
        return [_output_of(o) for o in self.wait_children(handles, name="gather")]


@dataclass(frozen=True, slots=True)
class SyncChildHandle:
    """A child task, seen from a sync durable task."""

    task_id: uuid.UUID
    ctx: SyncDurableContext

    def result(self) -> Any:
        """Wait for the child (the parent suspends); its output, or ChildFailed if it did not complete."""
        return _output_of(self.ctx.wait_children([self], name="result")[0])
