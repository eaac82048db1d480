"""The context a durable task's code runs in: steps, recorded values, sleeps, waits, children.

Every durable call is event ``seq`` (1, 2, 3, ...) of the task's log. On a re-run the
calls whose seq is recorded get the recorded outcome instead of running again; they are
collected and presented to the database in one ``durable.replay_check`` call before the
code runs its first new event (or completes, fails or suspends), so the determinism check
is done by the SQL, before any new side effect, at one round trip per attempt.

:class:`DurableContext` is the one implementation (async). A durable task written as a
plain ``def`` gets a :class:`SyncDurableContext`, which runs the same code on the
worker's event loop and calls the step functions in the task's own thread.

Suspension (a sleep or wait that must wait) raises :class:`Suspended`, a
``BaseException``: user code's ``except Exception`` does not swallow it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from . import workflow_commands as wc
from .commands import Command, to_json
from .errors import ChildFailed, EventTimeout, InvalidArgument, StepFailed

T = TypeVar("T")
Call = Callable[[Command[Any]], Awaitable[Any]]


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


def _json_roundtrip(value: Any, what: str) -> tuple[str, Any]:
    """The JSON text of a value, and the value as a re-run will see it (a list for a tuple...)."""
    text = to_json(value, what)
    return text, json.loads(text)


def _error_json(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__qualname__, "message": str(exc)}


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
        self.task_id = task_id
        self.lease_token = lease_token
        self.queue = queue
        self.task_name = task_name
        self.attempt = attempt
        self._history = list(history or [])
        #: durable calls made so far by the code (the seq of the last one)
        self.seq = 0
        self._presented: list[dict[str, Any]] = []

    # --- the log -------------------------------------------------------------------

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

    async def verify(self) -> None:
        """Present the replayed calls not yet checked (one round trip; DU020 on a mismatch)."""
        if self._presented:
            presented, self._presented = self._presented, []
            await self._call(wc.replay_check(self.task_id, self.lease_token, presented))

    async def _record(self, seq: int, kind: str, name: str, value: Any) -> Any:
        text, seen = _json_roundtrip(value, f"the result of {kind} {name!r}")
        await self.verify()
        await self._call(wc.checkpoint(self.task_id, self.lease_token, seq, kind, name, text))
        return seen

    # --- steps ---------------------------------------------------------------------

    async def begin_step(self, name: str) -> tuple[int, Mapping[str, Any] | None]:
        """Phase 1 of a step: its seq and recorded event (for a new one, the replayed prefix is verified)."""
        seq, recorded = self._next("step", name)
        if recorded is None:
            await self.verify()
        return seq, recorded

    async def end_step(
        self, seq: int, name: str, value: Any = None, error: BaseException | None = None
    ) -> Any:
        """Phase 2 of a new step: record its result, or its failure after its retries."""
        if error is not None:
            payload = _error_json(error)
            await self._call(
                wc.checkpoint(
                    self.task_id, self.lease_token, seq, "step", name, None, to_json(payload, "step error")
                )
            )
            raise StepFailed(name, payload) from error
        text, seen = _json_roundtrip(value, f"the result of step {name!r}")
        await self._call(wc.checkpoint(self.task_id, self.lease_token, seq, "step", name, text))
        return seen

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
        seq, recorded = await self.begin_step(name)
        if recorded is not None:
            return _recorded_outcome(name, recorded)
        policy = retry or RetryPolicy()
        for attempt in range(1, policy.max_attempts + 1):
            try:
                if inspect.iscoroutinefunction(fn):
                    value = await fn(*args, **kwargs)
                else:
                    value = await asyncio.to_thread(fn, *args, **kwargs)
            except Exception as exc:
                if attempt >= policy.max_attempts:
                    return await self.end_step(seq, name, error=exc)
                await asyncio.sleep(policy.wait_before(attempt + 1))
                continue
            return await self.end_step(seq, name, value)
        raise AssertionError("unreachable")

    # --- recorded values -------------------------------------------------------------

    async def now(self) -> datetime:
        """The database's clock, recorded: a re-run sees the same time."""
        seq, recorded = self._next("now", "now")
        if recorded is not None:
            return datetime.fromisoformat(str(recorded["result"]))
        await self.verify()
        answer = await self._call(wc.checkpoint(self.task_id, self.lease_token, seq, "now", "now", None))
        return datetime.fromisoformat(str(answer["result"]))

    async def random(self) -> float:
        """A random float in [0, 1), recorded."""
        seq, recorded = self._next("random", "random")
        if recorded is not None:
            return float(recorded["result"])
        return float(await self._record(seq, "random", "random", random.random()))

    async def uuid4(self) -> uuid.UUID:
        """A random uuid, recorded."""
        seq, recorded = self._next("uuid", "uuid4")
        if recorded is not None:
            return uuid.UUID(str(recorded["result"]))
        return uuid.UUID(str(await self._record(seq, "uuid", "uuid4", str(uuid.uuid4()))))

    # --- suspension --------------------------------------------------------------------

    async def sleep(self, duration: float | timedelta, *, name: str = "sleep") -> None:
        """Sleep in the database: the task holds no worker while it sleeps."""
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
        await self._sleep(name, seconds, None)

    async def sleep_until(self, when: datetime, *, name: str = "sleep") -> None:
        """Sleep until ``when`` (timezone-aware), on the database's clock."""
        if when.tzinfo is None:
            raise InvalidArgument("durable: sleep_until needs a timezone-aware datetime")
        await self._sleep(name, None, when)

    async def _sleep(self, name: str, seconds: float | None, until: datetime | None) -> None:
        seq, recorded = self._next("sleep", name)
        if recorded is not None and seq < len(self._history):
            return  # later events exist: this sleep was over
        # the last recorded event, or a new one: the database decides whether time remains
        if recorded is not None:
            self._presented.pop()
        await self.verify()
        answer = await self._call(wc.sleep(self.task_id, self.lease_token, seq, name, seconds, until))
        if answer.get("suspended"):
            raise Suspended(f"sleeping until {answer.get('until')}")

    async def wait_for_event(
        self,
        key: str,
        *,
        timeout: float | timedelta | None = None,  # noqa: ASYNC109 - kept by the database
    ) -> Any:
        """Wait (holding no worker) for the event ``key``; its payload. EventTimeout after ``timeout``."""
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        seq, recorded = self._next("wait", key)
        if recorded is None:
            await self.verify()
            answer = await self._call(wc.wait_event(self.task_id, self.lease_token, seq, key, seconds))
            if answer.get("suspended"):
                raise Suspended(f"waiting for event {key!r}")
        else:
            answer = dict(recorded.get("result") or {})
        if answer.get("timed_out"):
            raise EventTimeout(f"durable: no event {key!r} within the timeout")
        return answer.get("payload")

    # --- children ------------------------------------------------------------------

    async def spawn(
        self,
        task_name: str,
        input: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        **options: Any,
    ) -> ChildHandle:
        """Spawn a child task exactly once (``options`` as for enqueue, e.g. ``durable=True``)."""
        target = queue or self.queue
        given = {"queue": target, "input": dict(input or {})}
        seq, recorded = self._next("spawn", task_name, given)
        if recorded is not None:
            return ChildHandle(uuid.UUID(str(recorded["result"]["task_id"])), self)
        await self.verify()
        child = await self._call(
            wc.spawn(
                self.task_id,
                self.lease_token,
                seq,
                target,
                task_name,
                to_json(given["input"], "child input"),
                options,
            )
        )
        return ChildHandle(uuid.UUID(str(child)), self)

    async def wait_children(
        self, handles: Sequence[ChildHandle], *, name: str = "children"
    ) -> list[dict[str, Any]]:
        """Wait (holding no worker) until every child ended; their outcomes, in order."""
        ids = [h.task_id for h in handles]
        seq, recorded = self._next("children", name, [str(i) for i in ids])
        if recorded is not None:
            return [dict(o) for o in recorded["result"]]
        await self.verify()
        answer = await self._call(wc.wait_children(self.task_id, self.lease_token, seq, ids, name))
        if answer.get("suspended"):
            raise Suspended(f"waiting for {len(ids)} child task(s)")
        return [dict(o) for o in answer["children"]]

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

    It runs in one of the worker's threads: database calls go to the worker's event loop
    (the one implementation, :class:`DurableContext`), step functions run right here.
    """

    def __init__(self, inner: DurableContext, loop: asyncio.AbstractEventLoop) -> None:
        self._inner = inner
        self._loop = loop
        self.task_id = inner.task_id
        self.queue = inner.queue
        self.task_name = inner.task_name
        self.attempt = inner.attempt

    def _run(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(_await(coro), self._loop).result()

    @property
    def replaying(self) -> bool:
        return self._inner.replaying

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
        seq, recorded = self._run(self._inner.begin_step(name))
        if recorded is not None:
            return _recorded_outcome(name, recorded)
        policy = retry or RetryPolicy()
        for attempt in range(1, policy.max_attempts + 1):
            try:
                value = fn(*args, **kwargs)
            except Exception as exc:
                if attempt >= policy.max_attempts:
                    return self._run(self._inner.end_step(seq, name, error=exc))
                time.sleep(policy.wait_before(attempt + 1))
                continue
            return self._run(self._inner.end_step(seq, name, value))
        raise AssertionError("unreachable")

    def now(self) -> datetime:
        return self._run(self._inner.now())

    def random(self) -> float:
        return self._run(self._inner.random())

    def uuid4(self) -> uuid.UUID:
        return self._run(self._inner.uuid4())

    def sleep(self, duration: float | timedelta, *, name: str = "sleep") -> None:
        self._run(self._inner.sleep(duration, name=name))

    def sleep_until(self, when: datetime, *, name: str = "sleep") -> None:
        self._run(self._inner.sleep_until(when, name=name))

    def wait_for_event(self, key: str, *, timeout: float | timedelta | None = None) -> Any:
        return self._run(self._inner.wait_for_event(key, timeout=timeout))

    def spawn(
        self,
        task_name: str,
        input: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        **options: Any,
    ) -> SyncChildHandle:
        return SyncChildHandle(self._run(self._inner.spawn(task_name, input, queue=queue, **options)), self)

    def gather(self, *handles: SyncChildHandle) -> list[Any]:
        return self._run(self._inner.gather(*(h.handle for h in handles)))


@dataclass(frozen=True, slots=True)
class SyncChildHandle:
    """A child task, seen from a sync durable task."""

    handle: ChildHandle
    ctx: SyncDurableContext

    @property
    def task_id(self) -> uuid.UUID:
        return self.handle.task_id

    def result(self) -> Any:
        return self.ctx._run(self.handle.result())


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable
