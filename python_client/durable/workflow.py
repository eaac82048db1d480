"""The context a durable task's code runs in: steps, recorded values, sleeps, waits, children.

Every durable call is event ``seq`` (1, 2, 3, ...) of the task's log. On a re-run the
calls whose seq is recorded get the recorded outcome instead of running again; they are
collected, each with its own arguments (a spawn's queue and input, the children a wait is
for), and presented to the database in one ``durable.replay_check`` call before the code
runs its first new event (or completes, fails or suspends), so the determinism check is
done by the SQL (which hashes the arguments itself), before any new side effect, at one
round trip per attempt. The database records a new event only once the events before it
were checked in the attempt (DU022), and completes a durable task only once its whole
history was (the worker presents what the code replayed before completing, even when the
code made no new call).

Every durable verb answers one JSON object (the protocol, docs/protocol.md): the event
``{"seq", "kind", "name", "outcome", "result"}`` (new, or recorded: a re-run passing
through), ``{"seq", "kind", "name", "suspended": true}`` (the task now sleeps or waits),
or ``{"nondeterminism": {...}}``: the code no longer matches the history, and the database
has already failed the task (not retryable). The call then raises
:class:`~durable.errors.NonDeterminismError`, every later call of the attempt raises it
too without asking the database (which would answer DU020), and the worker reports
nothing more for the attempt (:attr:`EventLog.failed`). The values of ``now``, ``random``
and ``uuid4`` come from the database, never from the client.

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

**Concurrent calls** (``async def`` tasks)::

    a, b = await asyncio.gather(ctx.step("a", fetch_a), ctx.step("b", fetch_b))

* Every call takes its seq when it is made, so in call order: in a ``gather`` the order
  of its arguments (provided nothing that is not durable is awaited before the call). On a
  re-run each call gets the outcome recorded at its own seq, whatever order the calls
  finished in the first time.
* The step functions run concurrently; the events are recorded in seq order, since the
  log has no gaps (DU021): a call that finishes before an earlier one is recorded waits
  for it, then sends its own event. Should the worker die in between, the finished but
  unrecorded step runs again on the next attempt; a recorded step never does.
* ``now``, ``random``, ``uuid4`` and ``spawn`` wait for their turn the same way (``now``
  reads the database clock when its turn comes, not when it was called).
* A call that ends without its event recorded (its checkpoint failed, it was cancelled)
  leaves a gap no later call can fill in this attempt: the calls after it raise
  :class:`~durable.errors.HistoryGap` (caused by that call's exception) at their turn.
* A concurrent **suspension** (``sleep``, ``wait_for_event``, ``wait_children``,
  ``child.result()``) is a barrier for the calls made after it: they start their work (a
  step function, a spawn, a clock read) only once it has returned without suspending.
  The calls before it go on, and it waits for them to be recorded before it asks the
  database. When it suspends, the attempt ends: the calls after it never started (they
  raise :class:`Suspended`) and run after the task wakes up. So
  ``gather(ctx.step("a", f), ctx.sleep(60), ctx.step("b", g))`` runs ``a``, sleeps, and
  runs ``b`` on the attempt after the sleep: nothing runs while a task sleeps.
* Return only once every durable call has been awaited: a call still running when the
  task completes or fails is not recorded. A call made but never started (a forgotten
  ``await``: ``ctx.step("x", f)`` alone) never runs; the context notes each call it hands
  out until its coroutine starts (:mod:`durable.unstarted`), and when the code returns or
  raises with one left the attempt fails with :class:`~durable.errors.NotAwaited`, not
  retryable, naming the call and where it was made (:meth:`DurableContext.run`).

A :class:`SyncDurableContext` takes its calls one at a time, from the task's own thread.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn, TypeAlias, TypeVar, overload

from . import tracing
from . import workflow_commands as wc
from .commands import Command, Seconds, to_json
from .errors import (
    RESULT_NOT_SERIALIZABLE,
    ChildFailed,
    EventTimeout,
    HistoryGap,
    InvalidArgument,
    LeaseLost,
    NonDeterminismError,
    StepFailed,
    TaskCancelled,
)
from .unstarted import UnstartedCalls

T = TypeVar("T")
#: runs a command on the async pool (DurableContext) or on a sync connection (SyncDurableContext)
Call = Callable[[Command[Any]], Awaitable[Any]]
SyncCall = Callable[[Command[Any]], Any]


class Suspended(BaseException):
    """The task now sleeps or waits in the database; the worker unwinds its code.

    ``status`` is the task's status now: ``sleeping`` or ``waiting``."""

    def __init__(self, why: str, status: str = "waiting") -> None:
        super().__init__(why)
        self.status = status


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


def nondeterminism_error(mismatch: Mapping[str, Any]) -> NonDeterminismError:
    """The exception for a verb's ``{"nondeterminism": {task_id, seq, recorded, presented,
    message}}`` answer: its message, and the rest as JSON in ``detail`` (as DU020 has it)."""
    message = str(mismatch.get("message") or f"non-determinism at event {mismatch.get('seq')}")
    error = NonDeterminismError(f"durable: {message}")
    error.detail = json.dumps({k: v for k, v in mismatch.items() if k != "message"}, default=str)
    return error


@dataclass(frozen=True, slots=True)
class RunStep:
    """What a driver does for an :class:`EventLog` call: run the step function once.

    It sends back ``(True, value)``, or ``(False, exception)`` when the function raised
    an ``Exception``."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    #: the step's span: the current one while the function runs
    span: tracing.NoSpan = tracing.NO_SPAN


@dataclass(frozen=True, slots=True)
class Pause:
    """What a driver does for an :class:`EventLog` call: wait ``seconds`` (between step retries)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class WaitFor:
    """What a driver does for an :class:`EventLog` call: wait until ``ready()`` is true.

    ``ready`` can only become true when another call of the same attempt moves on (its
    event recorded, a replay check done, a call given up), so a driver re-checks it each
    time one of its calls has advanced."""

    ready: Callable[[], bool]


#: what an EventLog call yields: run this command and send back its result, or a RunStep,
#: a Pause or a WaitFor
Op: TypeAlias = Command[Any] | RunStep | Pause | WaitFor
#: an EventLog call: yields Ops, returns T
Steps: TypeAlias = Generator[Op, Any, T]


@dataclass(frozen=True, slots=True)
class ChildHandle:
    """A child task spawned by a durable task."""

    task_id: uuid.UUID
    ctx: DurableContext

    def result(self) -> Coroutine[Any, Any, Any]:
        """Wait for the child (the parent suspends); its output, or ChildFailed if it did not complete."""
        return self.ctx._hand_out("result of child", str(self.task_id), self._output())

    def _output(self) -> Steps[Any]:
        outcomes = yield from self.ctx.log.wait_children([self.task_id], "result")
        return _output_of(outcomes[0])


def _output_of(outcome: Mapping[str, Any]) -> Any:
    if outcome.get("status") != "completed":
        raise ChildFailed(str(outcome.get("task_id")), str(outcome.get("status")), outcome.get("error"))
    return outcome.get("output")


class EventLog:
    """The rules of a durable task's calls against its log, without I/O (see the module doc).

    Each public method is a generator of :data:`Op`; :class:`DurableContext` and
    :class:`SyncDurableContext` drive them. Several calls may be driven at once (a
    ``gather``): each takes its seq when made and records its event in seq order."""

    def __init__(
        self,
        *,
        task_id: uuid.UUID,
        lease_token: uuid.UUID,
        queue: str,
        history: Sequence[Mapping[str, Any]] | None,
        span: tracing.NoSpan = tracing.NO_SPAN,
    ) -> None:
        self.task_id = task_id
        self.lease_token = lease_token
        self.queue = queue
        #: the attempt's span (durable.tracing): its steps' spans are its children
        self.span = span
        self._history = list(history or [])
        #: durable calls made so far by the code (the seq of the last one)
        self.seq = 0
        #: the calls the code made at recorded seqs, from seq 1, each with its arguments
        self._presented: list[dict[str, Any]] = []
        #: how many of them the database has checked (durable.replay_check)
        self._checked = 0
        #: a replay check is on its way (the calls that need it wait for it)
        self._verifying = False
        #: the non-determinism the database found in this attempt (it failed the task)
        self._failed: NonDeterminismError | None = None
        #: every event up to this seq is recorded: the history, then this attempt's events
        self._recorded = len(self._history)
        #: the first call of this attempt that ended without its event recorded, and why
        self._lost: tuple[int, BaseException] | None = None
        #: set once a call of this attempt suspended the task: later calls record nothing
        self._suspended: Suspended | None = None
        #: the seqs of the sleeps and waits of this attempt that have not yet returned
        self._may_suspend: set[int] = set()

    @property
    def replaying(self) -> bool:
        """True while the code is still going through recorded events."""
        return self.seq < len(self._history)

    @property
    def failed(self) -> NonDeterminismError | None:
        """The non-determinism the database found in this attempt, if it did: the task has
        been failed (not retryable), and nothing more is to be reported for the attempt."""
        return self._failed

    def _next(
        self, kind: str, name: str, arguments: Mapping[str, Any] | None = None
    ) -> tuple[int, Mapping[str, Any] | None]:
        """The next seq, and its recorded event when there is one (then the call is presented
        for checking, with the ``arguments`` the database compares: a spawn's ``queue`` and
        ``input``, the ``children`` of a wait)."""
        self.seq += 1
        if self.seq <= len(self._history):
            call: dict[str, Any] = {"seq": self.seq, "kind": kind, "name": name}
            if arguments is not None:
                call.update(arguments)
            self._presented.append(call)
            return self.seq, self._history[self.seq - 1]
        return self.seq, None

    def _mismatch(self, error: NonDeterminismError) -> NonDeterminismError:
        """The database found a non-determinism (and failed the task): the attempt is over."""
        if self._failed is None:
            self._failed = error
        return error

    def _again(self) -> NonDeterminismError:
        """What a call raises once the attempt met a non-determinism (without asking the
        database, which would answer DU020)."""
        failed = self._failed
        assert failed is not None
        error = NonDeterminismError(str(failed))
        error.detail = failed.detail
        error.__cause__ = failed
        return error

    def _send(self, command: Command[dict[str, Any]]) -> Steps[dict[str, Any]]:
        """Send a durable verb; its answer: an event, or ``{"suspended": true, ...}``.

        A ``{"nondeterminism": ...}`` answer (or DU020: a call of this attempt met one)
        raises NonDeterminismError: the task has been failed."""
        if self._failed is not None:
            raise self._again()
        try:
            answer: dict[str, Any] = yield command
        except NonDeterminismError as exc:  # DU020: a call of this attempt met one
            self._mismatch(exc)
            raise
        mismatch = answer.get("nondeterminism")
        if mismatch is not None:
            raise self._mismatch(nondeterminism_error(mismatch))
        return answer

    def verify(self) -> Steps[None]:
        """Present the replayed calls not yet checked, in one round trip (NonDeterminismError
        on a mismatch: the database has failed the task).

        The database takes them as a prefix of the history, from seq 1: should the code have
        replayed more calls since an earlier check, the check is sent again with them all.
        A call that needs the check while another call's check is on its way waits for it;
        a check that failed leaves its calls to be presented by the next one."""
        if self._failed is not None:
            raise self._again()
        while len(self._presented) > self._checked or self._verifying:
            if self._verifying:
                yield WaitFor(lambda: not self._verifying)
                continue
            presented = list(self._presented)
            self._verifying = True
            try:
                yield from self._send(wc.replay_check(self.task_id, self.lease_token, presented))
            finally:
                self._verifying = False
            self._checked = max(self._checked, len(presented))

    def complete(self, output_json: str | None) -> Steps[None]:
        """Complete the task (its code returned ``output_json``): first present the replayed
        calls not yet checked (all of them, when the code made no new call), since the
        database completes a durable task only once its whole history was checked
        (NonDeterminismError otherwise: the code finished without going through it, and the
        task has been failed)."""
        yield from self.verify()
        yield from self._send(wc.complete_durable(self.task_id, self.lease_token, output_json))

    def _new(self, seq: int, body: Steps[T]) -> Steps[T]:
        """Run the body of new call ``seq``: should it end without its event recorded (and
        without suspending the task), no later call of this attempt can record one."""
        try:
            return (yield from body)
        except BaseException as exc:
            if (
                self._recorded < seq
                and not isinstance(exc, Suspended)
                and (self._lost is None or seq < self._lost[0])
            ):
                self._lost = (seq, exc)
            raise

    def _halted(self, seq: int) -> bool:
        return (
            self._failed is not None
            or self._suspended is not None
            or (self._lost is not None and self._lost[0] < seq)
        )

    def _stopped(self, seq: int) -> BaseException | None:
        """Why call ``seq`` can record nothing: a non-determinism failed the task, the task
        suspended, or a call before it was lost."""
        if self._failed is not None:
            return self._again()
        if self._suspended is not None:
            return Suspended(str(self._suspended), self._suspended.status)
        lost = self._lost
        if lost is not None and lost[0] < seq:
            gap = HistoryGap(
                f"durable: event {seq} cannot be recorded: event {lost[0]} before it was not"
                f" ({type(lost[1]).__name__}: {lost[1]})"
            )
            gap.__cause__ = lost[1]
            return gap
        return None

    def _pending(self, seq: int, body: Steps[T]) -> Steps[T]:
        """A new sleep or wait: the calls made after it wait until it returned (see _begin)."""
        self._may_suspend.add(seq)
        try:
            return (yield from self._new(seq, body))
        finally:
            self._may_suspend.discard(seq)

    def _begin(self, seq: int) -> Steps[None]:
        """Before new call ``seq`` does anything: the replayed prefix checked, and no sleep or
        wait made before it still pending (it may end the attempt)."""
        yield from self.verify()

        def ready() -> bool:
            return self._halted(seq) or all(s >= seq for s in self._may_suspend)

        while True:
            stopped = self._stopped(seq)
            if stopped is not None:
                raise stopped
            if ready():
                return
            yield WaitFor(ready)

    def _turn(self, seq: int) -> Steps[None]:
        """Until every event before ``seq`` is recorded: events are recorded in seq order."""

        def ready() -> bool:
            return self._recorded >= seq - 1 or self._halted(seq)

        while True:
            stopped = self._stopped(seq)
            if stopped is not None:
                raise stopped
            if self._recorded >= seq - 1:
                return
            yield WaitFor(ready)

    def _record(self, seq: int, command: Command[dict[str, Any]]) -> Steps[dict[str, Any]]:
        """Send the command that records event ``seq``, at its turn; its answer."""
        yield from self._turn(seq)
        answer = yield from self._send(command)
        self._recorded = max(self._recorded, seq)
        return answer

    def _suspend(self, why: str, status: str = "waiting") -> Suspended:
        self._suspended = Suspended(why, status)
        return Suspended(why, status)

    def _checkpoint(
        self, seq: int, kind: str, name: str, result: str | None = None, error: str | None = None
    ) -> Command[dict[str, Any]]:
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
            self.span.event(
                "durable.step", {"durable.step": name, "durable.seq": seq, "durable.replayed": True}
            )
            return _recorded_outcome(name, recorded)
        span = self.span.step(name, seq)
        try:
            return (yield from self._new(seq, self._run_step(seq, name, fn, args, kwargs, retry, span)))
        except BaseException as exc:
            if not isinstance(exc, (Suspended, GeneratorExit)):
                span.fail(exc)
            raise
        finally:
            span.end()

    def _run_step(
        self,
        seq: int,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: RetryPolicy | None,
        span: tracing.NoSpan,
    ) -> Steps[Any]:
        yield from self._begin(seq)
        policy = retry or RetryPolicy()
        for attempt in range(1, policy.max_attempts + 1):
            ok, value = yield RunStep(fn, args, kwargs, span)
            if ok:
                try:
                    text = to_json(value, f"the result of step {name!r}")
                except InvalidArgument as exc:
                    # not retried, here or by a retry of the task: the function would only
                    # return such a value again; the failure is recorded like any other
                    yield from self._step_failed(seq, name, exc, RESULT_NOT_SERIALIZABLE)
                # the value as stored (jsonb): what a re-run gets from the history, so the
                # first run sees the same (a list for a tuple, jsonb's key order, 1e20 an int)
                recorded = yield from self._record(seq, self._checkpoint(seq, "step", name, text))
                return recorded["result"]
            if attempt >= policy.max_attempts:
                yield from self._step_failed(seq, name, value)
            yield Pause(policy.wait_before(attempt + 1))
        raise AssertionError("unreachable")

    def _step_failed(
        self, seq: int, name: str, exc: BaseException, error_type: str | None = None
    ) -> Generator[Op, Any, NoReturn]:
        """Record step ``name`` as failed with ``exc`` (its error's ``type``: the exception's
        class, or ``error_type``) and raise StepFailed: a re-run raises it again."""
        payload = _error_json(exc)
        if error_type is not None:
            payload["type"] = error_type
        error = to_json(payload, "step error")
        yield from self._record(seq, self._checkpoint(seq, "step", name, None, error))
        raise StepFailed(name, payload) from exc

    def _value(self, kind: str, name: str) -> Steps[Any]:
        """A value the database supplies and records (now, random, uuid): the recorded one,
        or a new one (the checkpoint gives no result)."""
        seq, recorded = self._next(kind, name)
        if recorded is not None:
            return recorded.get("result")
        return (yield from self._new(seq, self._new_value(seq, kind, name)))

    def _new_value(self, seq: int, kind: str, name: str) -> Steps[Any]:
        yield from self._begin(seq)
        answer = yield from self._record(seq, self._checkpoint(seq, kind, name))
        return answer.get("result")

    def now(self) -> Steps[datetime]:
        """The database's clock, recorded: a re-run sees the same time."""
        return datetime.fromisoformat(str((yield from self._value("now", "now"))))

    def random(self) -> Steps[float]:
        """A random float in [0, 1) from the database, recorded."""
        return float((yield from self._value("random", "random")))

    def uuid4(self) -> Steps[uuid.UUID]:
        """A random uuid from the database, recorded."""
        return uuid.UUID(str((yield from self._value("uuid", "uuid4"))))

    def _at_marker(self) -> bool:
        """Whether the next recorded event (at seq + 1) is a patch marker."""
        return self.seq < len(self._history) and self._history[self.seq].get("kind") == "patch"

    def patched(self, patch_id: str) -> Steps[bool]:
        """Whether the code takes the branch of patch ``patch_id`` (docs/protocol.md, "Patches").

        A history the old code wrote (another event recorded here) takes the old branch:
        False, presenting nothing and taking no seq. A recorded marker is presented like any
        replayed call (checked at once when its id differs: the database finds that a
        non-determinism); no recorded event here (a new run, or the history ends here)
        records the marker. Both return True."""
        if self.seq < len(self._history) and not self._at_marker():
            return False
        seq, recorded = self._next("patch", patch_id)
        if recorded is not None:
            if recorded.get("name") != patch_id:
                yield from self.verify()  # the database decides (and fails the task)
            return True
        yield from self._new(seq, self._new_value(seq, "patch", patch_id))
        return True

    def deprecate_patch(self, patch_id: str) -> Steps[None]:
        """The second deploy of a patch's retirement: a recorded marker is presented (as
        :meth:`patched` does), nothing is recorded, and the code has no old branch left."""
        if self._at_marker():
            _, recorded = self._next("patch", patch_id)
            if recorded is not None and recorded.get("name") != patch_id:
                yield from self.verify()

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
        yield from self._pending(seq, self._sleep(seq, name, seconds, until))

    def _sleep(self, seq: int, name: str, seconds: Seconds | None, until: datetime | None) -> Steps[None]:
        yield from self._begin(seq)
        answer = yield from self._record(
            seq, wc.sleep(self.task_id, self.lease_token, seq, name, seconds, until)
        )  # recorded, whether it suspends or not
        self.span.event(
            "durable.sleep",
            {"durable.sleep": name, "durable.seq": seq, "durable.suspended": bool(answer.get("suspended"))},
        )
        if answer.get("suspended"):
            raise self._suspend(f"sleeping ({name!r}, event {seq})", "sleeping")

    def wait_for_event(self, key: str, timeout: Seconds | None) -> Steps[Any]:
        """Wait (holding no worker) for the event ``key``; its payload. EventTimeout after ``timeout``."""
        seq, recorded = self._next("wait", key)
        if recorded is None:
            answer = yield from self._pending(seq, self._wait_event(seq, key, timeout))
        else:
            answer = recorded.get("result") or {}
        if answer.get("timed_out"):
            raise EventTimeout(f"durable: no event {key!r} within the timeout")
        return answer.get("payload")

    def _wait_event(self, seq: int, key: str, timeout: Seconds | None) -> Steps[Mapping[str, Any]]:
        yield from self._begin(seq)
        yield from self._turn(seq)
        answer = yield from self._send(wc.wait_event(self.task_id, self.lease_token, seq, key, timeout))
        self.span.event(
            "durable.wait_event",
            {
                "durable.event_key": key,
                "durable.seq": seq,
                "durable.suspended": bool(answer.get("suspended")),
            },
        )
        if answer.get("suspended"):  # recorded when the event comes or the timeout passes
            raise self._suspend(f"waiting for event {key!r}")
        self._recorded = max(self._recorded, seq)
        return answer.get("result") or {}

    def spawn(
        self, task_name: str, input: Mapping[str, Any] | None, queue: str | None, options: dict[str, Any]
    ) -> Steps[uuid.UUID]:
        """Spawn a child task exactly once; its id."""
        target = queue or self.queue
        child_input = dict(input or {})
        seq, recorded = self._next("spawn", task_name, {"queue": target, "input": child_input})
        if recorded is not None:
            return _child_id(recorded)
        return (yield from self._new(seq, self._spawn(seq, target, task_name, child_input, options)))

    def _spawn(
        self, seq: int, target: str, task_name: str, input: dict[str, Any], options: dict[str, Any]
    ) -> Steps[uuid.UUID]:
        yield from self._begin(seq)
        # the child joins the trace as a child of this attempt's span (unless options name one)
        options = tracing.with_trace_context(options, self.span.carrier())
        command = wc.spawn(
            self.task_id, self.lease_token, seq, target, task_name, to_json(input, "child input"), options
        )
        return _child_id((yield from self._record(seq, command)))

    def wait_children(self, ids: Sequence[uuid.UUID], name: str) -> Steps[list[dict[str, Any]]]:
        """Wait (holding no worker) until every child ended; their outcomes, in order."""
        seq, recorded = self._next("children", name, {"children": [str(i) for i in ids]})
        if recorded is not None:
            return [dict(o) for o in recorded["result"]]
        return (yield from self._pending(seq, self._wait_children(seq, ids, name)))

    def _wait_children(self, seq: int, ids: Sequence[uuid.UUID], name: str) -> Steps[list[dict[str, Any]]]:
        yield from self._begin(seq)
        yield from self._turn(seq)
        answer = yield from self._send(wc.wait_children(self.task_id, self.lease_token, seq, list(ids), name))
        self.span.event(
            "durable.wait_children",
            {
                "durable.children": len(ids),
                "durable.seq": seq,
                "durable.suspended": bool(answer.get("suspended")),
            },
        )
        if answer.get("suspended"):
            raise self._suspend(f"waiting for {len(ids)} child task(s)")
        self._recorded = max(self._recorded, seq)
        return [dict(o) for o in answer["result"]]


class _Changes:
    """Wakes the calls of one attempt that wait for their turn (:class:`WaitFor`), on its loop."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def notify(self) -> None:
        """A call moved on: the waiting calls look at their condition again."""
        event, self._event = self._event, None
        if event is not None:
            event.set()

    async def wait(self, ready: Callable[[], bool]) -> None:
        while not ready():
            if self._event is None:
                self._event = asyncio.Event()
            await self._event.wait()


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
        span: tracing.NoSpan = tracing.NO_SPAN,
    ) -> None:
        self._call = call
        self.log = EventLog(task_id=task_id, lease_token=lease_token, queue=queue, history=history, span=span)
        self._changes = _Changes()
        self._unstarted = UnstartedCalls()
        self.task_id = task_id
        self.lease_token = lease_token
        self.queue = queue
        self.task_name = task_name
        self.attempt = attempt

    async def _drive(self, steps: Steps[T], handed_out: bool = False) -> T:
        """Run an EventLog call: its commands on the pool, its step function here or in a thread.

        An exception of a command (or a cancellation) is thrown into the call, so the log
        knows the call ended without its event. Several calls may be driven at once; after
        each moves on, the calls waiting for their turn look again."""
        if handed_out:
            self._unstarted.started(steps)
        sent: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    op = steps.send(sent) if error is None else steps.throw(error)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                finally:
                    self._changes.notify()
                sent, error = None, None
                try:
                    if isinstance(op, RunStep):
                        try:
                            with op.span.activate():
                                if inspect.iscoroutinefunction(op.fn):
                                    sent = (True, await op.fn(*op.args, **op.kwargs))
                                else:
                                    sent = (True, await asyncio.to_thread(op.fn, *op.args, **op.kwargs))
                        except Exception as exc:
                            sent = (False, exc)
                    elif isinstance(op, Pause):
                        await asyncio.sleep(op.seconds)
                    elif isinstance(op, WaitFor):
                        await self._changes.wait(op.ready)
                    else:
                        sent = await self._call(op)
                except BaseException as exc:  # thrown into the call, which re-raises it
                    error = exc
        finally:
            steps.close()

    def _hand_out(self, kind: str, name: str | None, steps: Steps[T]) -> Coroutine[Any, Any, T]:
        """The coroutine of a durable call the code made (``kind``, ``name``), noted until
        it starts, so that a forgotten ``await`` fails the attempt (see :meth:`run`)."""
        coroutine = self._drive(steps, True)
        self._unstarted.note(steps, kind, name, coroutine)
        return coroutine

    async def run(self, fn: Callable[[Any, DurableContext], Awaitable[T]], input: Any) -> T:
        """The worker's: run the task's code ``fn(input, ctx)``.

        When the code returns, or raises an Exception, leaving a durable call it made never
        started (a forgotten ``await``: that call never ran), it raises
        :class:`~durable.errors.NotAwaited` instead (from the code's exception, if any), a
        failure without retry. When the attempt ends otherwise (suspended, stopped,
        cancelled) the calls never started are dropped: the next attempt makes them again.
        """
        try:
            result = await fn(input, self)
        except (LeaseLost, TaskCancelled):
            self._unstarted.close()
            raise
        except Exception as exc:
            forgotten = self._unstarted.forgotten()
            if forgotten is not None:
                raise forgotten from exc
            raise
        except BaseException:
            self._unstarted.close()
            raise
        forgotten = self._unstarted.forgotten()
        if forgotten is not None:
            raise forgotten
        return result

    @property
    def seq(self) -> int:
        """Durable calls made so far by the code."""
        return self.log.seq

    @property
    def replaying(self) -> bool:
        """True while the code is still going through recorded events."""
        return self.log.replaying

    async def verify(self) -> None:
        """Present the replayed calls not yet checked (one round trip; NonDeterminismError on
        a mismatch: the database has failed the task)."""
        await self._drive(self.log.verify())

    async def complete(self, output_json: str | None) -> None:
        """The worker's: complete the task with the JSON text of its code's result, after
        presenting the replayed calls not yet checked (NonDeterminismError when the code did
        not go through its whole history: the database has failed the task)."""
        await self._drive(self.log.complete(output_json))

    @overload
    def step(
        self, name: str, fn: None = None, *, retry: RetryPolicy | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Coroutine[Any, Any, Any]]]: ...

    @overload
    def step(
        self, name: str, fn: Callable[..., Any], *args: Any, retry: RetryPolicy | None = None, **kwargs: Any
    ) -> Coroutine[Any, Any, Any]: ...

    def step(
        self,
        name: str,
        fn: Callable[..., Any] | None = None,
        *args: Any,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, Any] | Callable[[Callable[..., Any]], Callable[..., Coroutine[Any, Any, Any]]]:
        """Run ``fn(*args, **kwargs)`` once as step ``name`` and record its result.

        On a re-run the recorded result is returned without calling ``fn``; a step that
        failed after its retries raises :class:`StepFailed` again. A result JSON cannot hold
        fails the step at once, retries or not (recorded, type ``ResultNotSerializable``).
        ``fn`` may be sync (run in a thread) or async. Without ``fn``, returns a decorator:
        ``@ctx.step("name")``.
        """
        if fn is None:
            return _step_decorator(self, name, retry)
        return self._hand_out("step", name, self.log.step(name, fn, args, kwargs, retry))

    def now(self) -> Coroutine[Any, Any, datetime]:
        """The database's clock, recorded: a re-run sees the same time."""
        return self._hand_out("now", None, self.log.now())

    def random(self) -> Coroutine[Any, Any, float]:
        """A random float in [0, 1), recorded."""
        return self._hand_out("random", None, self.log.random())

    def uuid4(self) -> Coroutine[Any, Any, uuid.UUID]:
        """A random uuid, recorded."""
        return self._hand_out("uuid4", None, self.log.uuid4())

    def patched(self, patch_id: str) -> Coroutine[Any, Any, bool]:
        """Versioning: True where the code takes the new branch of patch ``patch_id`` (a new
        run, or a history that reached this point with the patch), False where a history
        the old code wrote goes on (the old branch). ``if await ctx.patched("id"): ...``"""
        return self._hand_out("patched", patch_id, self.log.patched(patch_id))

    def deprecate_patch(self, patch_id: str) -> Coroutine[Any, Any, None]:
        """Retiring a patch: accepts the marker ``patched(patch_id)`` recorded here, records
        nothing (README.md, "Versioning and deploy checks")."""
        return self._hand_out("deprecate_patch", patch_id, self.log.deprecate_patch(patch_id))

    def sleep(self, duration: float | timedelta, *, name: str = "sleep") -> Coroutine[Any, Any, None]:
        """Sleep in the database: the task holds no worker while it sleeps."""
        return self._hand_out("sleep", name, self.log.sleep(name, duration, None))

    def sleep_until(self, when: datetime, *, name: str = "sleep") -> Coroutine[Any, Any, None]:
        """Sleep until ``when`` (timezone-aware), on the database's clock."""
        return self._hand_out("sleep_until", name, self.log.sleep(name, None, when))

    def wait_for_event(
        self, key: str, *, timeout: float | timedelta | None = None
    ) -> Coroutine[Any, Any, Any]:
        """Wait (holding no worker) for the event ``key``; its payload. EventTimeout after ``timeout``."""
        return self._hand_out("wait_for_event", key, self.log.wait_for_event(key, timeout))

    def spawn(
        self,
        task_name: str,
        input: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        **options: Any,
    ) -> Coroutine[Any, Any, ChildHandle]:
        """Spawn a child task exactly once (``options`` as for enqueue, e.g. ``durable=True``)."""
        return self._hand_out("spawn", task_name, self._spawn(task_name, input, queue, options))

    def _spawn(
        self, task_name: str, input: Mapping[str, Any] | None, queue: str | None, options: dict[str, Any]
    ) -> Steps[ChildHandle]:
        return ChildHandle((yield from self.log.spawn(task_name, input, queue, options)), self)

    def wait_children(
        self, handles: Sequence[ChildHandle], *, name: str = "children"
    ) -> Coroutine[Any, Any, list[dict[str, Any]]]:
        """Wait (holding no worker) until every child ended; their outcomes, in order."""
        return self._hand_out(
            "wait_children", name, self.log.wait_children([h.task_id for h in handles], name)
        )

    def gather(self, *handles: ChildHandle) -> Coroutine[Any, Any, list[Any]]:
        """The outputs of several children (ChildFailed for the first that did not complete)."""
        return self._hand_out("gather", None, self._outputs(handles, "gather"))

    def _outputs(self, handles: Sequence[ChildHandle], name: str) -> Steps[list[Any]]:
        outcomes = yield from self.log.wait_children([h.task_id for h in handles], name)
        return [_output_of(o) for o in outcomes]


def _child_id(event: Mapping[str, Any]) -> uuid.UUID:
    """The id of the child a spawn event records."""
    return uuid.UUID(str(event["result"]["task_id"]))


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
    with the worker's :class:`DurableContext`. Its calls are made one at a time, from
    that thread (for steps that run at once, write the task as an ``async def`` and
    ``asyncio.gather`` them); a call that would have to wait for another one raises
    RuntimeError.
    """

    def __init__(self, inner: DurableContext, call: SyncCall) -> None:
        self._call = call
        self.log = inner.log
        self.task_id = inner.task_id
        self.queue = inner.queue
        self.task_name = inner.task_name
        self.attempt = inner.attempt

    def _drive(self, steps: Steps[T]) -> T:
        """Run an EventLog call: its commands on the sync connection, its step function here.

        Calls come one at a time, so a call never has to wait for another: a WaitFor that
        is not ready means two threads made calls at once, which is refused."""
        sent: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    op = steps.send(sent) if error is None else steps.throw(error)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                sent, error = None, None
                try:
                    if isinstance(op, RunStep):
                        try:
                            with op.span.activate():
                                sent = (True, op.fn(*op.args, **op.kwargs))
                        except Exception as exc:
                            sent = (False, exc)
                    elif isinstance(op, Pause):
                        time.sleep(op.seconds)
                    elif isinstance(op, WaitFor):
                        if not op.ready():
                            raise RuntimeError(
                                "durable: a SyncDurableContext takes its calls one at a time,"
                                " from the task's own thread"
                            )
                    else:
                        sent = self._call(op)
                except BaseException as exc:  # thrown into the call, which re-raises it
                    error = exc
        finally:
            steps.close()

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

    def patched(self, patch_id: str) -> bool:
        """As :meth:`DurableContext.patched`."""
        return self._drive(self.log.patched(patch_id))

    def deprecate_patch(self, patch_id: str) -> None:
        """As :meth:`DurableContext.deprecate_patch`."""
        self._drive(self.log.deprecate_patch(patch_id))

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
