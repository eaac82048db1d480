"""Dry runs of durable tasks' code against their recorded histories (``durable check``).

Before a deploy, the new code of a worker is run against the histories of the unfinished
(and, if asked, recently finished) durable tasks of its queue, the way a worker would
re-run it after the deploy, but running nothing: each durable call at a recorded seq
gets the recorded outcome (:class:`~durable.workflow.EventLog`'s own replay), and the
first call past the recorded history, which would be the first new effect, ends the dry
run of that task. The calls the code made are then presented to ``durable.check_replay``,
which compares them by the very rule of the real replay check, as a reader, writing
nothing, with no lease. What it finds is a :class:`Verdict`.

A task whose name the worker does not register is reported as such and is not a failure:
another worker may serve it.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import workflow_commands as wc
from .commands import Command, Seconds
from .worker import Worker
from .workflow import DurableContext, EventLog, Steps, SyncDurableContext

#: outcomes of a dry run that mean the new code cannot take over the task
PROBLEMS = ("nondeterminism", "raised", "not durable", "timed out")


class _DryRunEnd(BaseException):
    """The code made its first call past the recorded history: the dry run ends there."""


class DryRunLog(EventLog):
    """An event log that replays its history and ends at the first new call.

    Every new call (and every replay check, which a real run makes before its first new
    call or when a recorded marker's id differs) ends the dry run; nothing is sent."""

    def verify(self) -> Steps[None]:
        raise _DryRunEnd
        yield  # a generator, as EventLog.verify is

    def sleep(self, name: str, seconds: Seconds | None, until: datetime | None) -> Steps[None]:
        # a recorded sleep, the last event included (a task sleeping now), is presented
        # like any replayed call: the real sleep verb checks it the same way
        _, recorded = self._next("sleep", name)
        if recorded is None:
            raise _DryRunEnd
        return
        yield

    @property
    def presented(self) -> list[dict[str, Any]]:
        """The calls the code made at recorded seqs, from seq 1, with their arguments."""
        return list(self._presented)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the dry run of one task found."""

    task_id: uuid.UUID
    task_name: str
    #: the task's status
    status: str
    #: ok, nondeterminism, raised (the code raised before the end of its history), not
    #: durable (the worker registers the name as a plain task), timed out, unknown task name
    outcome: str
    #: recorded calls the code went through, and the length of the history
    checked: int
    recorded: int
    #: for nondeterminism: {"seq", "recorded", "presented", "message"} (the database's)
    mismatch: dict[str, Any] | None = None
    #: for raised and timed out: what happened
    error: str | None = None

    @property
    def problem(self) -> bool:
        return self.outcome in PROBLEMS


def _no_command(command: Command[Any]) -> Any:
    raise AssertionError(f"a dry run sends no command ({command.sql})")


async def _no_command_async(command: Command[Any]) -> Any:
    return _no_command(command)


async def _in_daemon_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a daemon thread: one that does not end in time is left behind
    without holding up the exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: BaseException | None, value: Any) -> None:
        if done.done():
            return
        if outcome is None:
            done.set_result(value)
        else:
            done.set_exception(outcome)

    def run() -> None:
        try:
            value = fn(*args)
        except BaseException as exc:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(settle, exc, None)
        else:
            loop.call_soon_threadsafe(settle, None, value)

    threading.Thread(target=run, name="durable-dry-run", daemon=True).start()
    return await done


async def replay(
    fn: Callable[..., Any], is_async: bool, task: wc.RecordedHistory, queue: str, time_limit: float
) -> tuple[list[dict[str, Any]], bool, BaseException | None]:
    """Run ``fn`` against the task's history: the calls it presented, whether it returned
    (rather than ending at a new call), and the exception it raised, if any."""
    ctx = DurableContext(
        call=_no_command_async,
        task_id=task.task_id,
        lease_token=uuid.UUID(int=0),
        queue=queue,
        task_name=task.task_name,
        attempt=0,
        history=task.history,
    )
    log = DryRunLog(task_id=task.task_id, lease_token=uuid.UUID(int=0), queue=queue, history=task.history)
    ctx.log = log
    try:
        if is_async:
            await asyncio.wait_for(ctx.run(fn, task.input), time_limit)
        else:
            await asyncio.wait_for(
                _in_daemon_thread(fn, task.input, SyncDurableContext(ctx, _no_command)), time_limit
            )
    except _DryRunEnd:
        return log.presented, False, None
    except (Exception, asyncio.CancelledError) as exc:
        return log.presented, False, exc
    return log.presented, True, None


def verdict(
    task: wc.RecordedHistory,
    presented: list[dict[str, Any]],
    raised: BaseException | None,
    answer: dict[str, Any],
) -> Verdict:
    """The verdict on a task from its dry run and ``durable.check_replay``'s answer."""
    recorded = len(task.history)
    mismatch = answer.get("nondeterminism")
    if mismatch is not None:
        found = dict(mismatch)
        checked = int(found.get("seq") or 1) - 1  # the calls before the mismatch
        return Verdict(task.task_id, task.task_name, task.status, "nondeterminism", checked, recorded, found)
    checked = int(answer.get("checked", len(presented)))
    if isinstance(raised, TimeoutError):
        return Verdict(
            task.task_id, task.task_name, task.status, "timed out", checked, recorded,
            error="the code neither made a new durable call nor returned in time",
        )  # fmt: skip
    if raised is not None and checked < recorded:
        return Verdict(
            task.task_id, task.task_name, task.status, "raised", checked, recorded,
            error=f"{type(raised).__name__}: {raised} (at event {checked + 1} of {recorded})",
        )  # fmt: skip
    return Verdict(task.task_id, task.task_name, task.status, "ok", checked, recorded)


def histories(
    run: Callable[[Command[Any]], Any], queue: str, finished_since: datetime | None, page: int = 100
) -> Iterator[wc.RecordedHistory]:
    """Every history to check, page by page."""
    after: uuid.UUID | None = None
    while True:
        rows: list[wc.RecordedHistory] = run(wc.replay_histories(queue, finished_since, after, page))
        yield from rows
        if len(rows) < page:
            return
        after = rows[-1].task_id


async def check_all(
    run: Callable[[Command[Any]], Any],
    worker: Worker,
    queue: str,
    finished_since: datetime | None = None,
    time_limit: float = 10.0,
) -> list[Verdict]:
    """The verdicts on every history of ``queue`` to check, against ``worker``'s code;
    ``run`` runs a command (a reader's connection is enough)."""
    verdicts: list[Verdict] = []
    for task in histories(run, queue, finished_since):
        function = worker.function(task.task_name)
        if function is None or not function.durable:
            outcome = "unknown task name" if function is None else "not durable"
            verdicts.append(Verdict(task.task_id, task.task_name, task.status, outcome, 0, len(task.history)))
            continue
        presented, finished, raised = await replay(function.fn, function.is_async, task, queue, time_limit)
        answer: dict[str, Any] = run(wc.check_replay(task.task_id, presented, finished))
        verdicts.append(verdict(task, presented, raised, answer))
    return verdicts
