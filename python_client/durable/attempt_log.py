"""What a worker says about its work (logger ``durable.worker``): one line per claimed batch,
one line per ended attempt.

Each line also carries its facts as ``extra`` fields, which :class:`durable.logs.JsonFormatter`
writes out: a claim ``queue``, ``claimed`` and ``task_names`` (how many of each name); an
attempt ``queue``, ``task_id``, ``task_name``, ``attempt``, ``outcome``, ``duration_ms``
(from the claim to the outcome), and as it applies ``detail``, ``error_type``,
``retry_at``, ``suspended`` (``sleeping`` or ``waiting``) and ``replayed`` (how many
recorded events a resumed durable task went through).

The outcomes: ``completed``, ``failed`` (for good), ``retrying`` (failed, to run again),
``suspended`` (the task sleeps or waits), ``released`` (handed back, no attempt spent),
``cancelled``, ``lost`` (the lease is no longer ours, or the outcome could not be reported:
the lease will expire). A lost attempt is a WARNING, the others INFO.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from . import tracing
from .commands import ClaimedTask, Completion, FailResult
from .errors import TaskCancelled
from .faults import one_line

logger = logging.getLogger("durable.worker")

COMPLETED: Final = "completed"
FAILED: Final = "failed"
RETRYING: Final = "retrying"
SUSPENDED: Final = "suspended"
RELEASED: Final = "released"
CANCELLED: Final = "cancelled"
LOST: Final = "lost"


def claimed(queue: str, tasks: Sequence[ClaimedTask]) -> None:
    """One line for a claimed batch: how many, and their names."""
    if not tasks or not logger.isEnabledFor(logging.INFO):
        return
    names = Counter(task.task_name for task in tasks)
    listed = ", ".join(name if count == 1 else f"{name} x{count}" for name, count in sorted(names.items()))
    logger.info(
        "claimed %d task(s) from queue %s: %s",
        len(tasks),
        queue,
        listed,
        extra={"queue": queue, "claimed": len(tasks), "task_names": dict(sorted(names.items()))},
    )


@dataclass(slots=True)
class Ending:
    """How an attempt ended, as the worker learnt it."""

    outcome: str
    detail: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


class AttemptLog:
    """The log of one attempt: when it was claimed, and the first outcome given to it."""

    __slots__ = ("claimed", "ending", "queue", "replayed", "span", "started")

    def __init__(self, claimed: ClaimedTask, queue: str) -> None:
        self.claimed = claimed
        self.queue = queue
        self.started = time.monotonic()
        #: the attempt's span (durable.tracing), ended with its outcome by write()
        self.span = tracing.attempt_span(claimed, queue)
        self.ending: Ending | None = None
        #: recorded events a resumed durable task went through (None: no history)
        self.replayed: int | None = None

    def end(self, outcome: str, detail: str | None = None, **fields: Any) -> None:
        """Note the outcome (the first one given counts: a stopped attempt stays stopped)."""
        self.note(Ending(outcome, detail, fields))

    def note(self, ending: Ending) -> None:
        """Note ``ending``, unless an outcome was noted before."""
        if self.ending is None:
            self.ending = ending

    def write(self, ending: Ending | None = None) -> None:
        """The attempt's line: ``ending``, or the outcome noted (``lost`` when none was)."""
        ending = ending or self.ending or Ending(LOST, "ended without an outcome")
        self.span.end(ending.outcome, ending.detail)
        level = logging.WARNING if ending.outcome == LOST else logging.INFO
        if not logger.isEnabledFor(level):
            return
        claimed = self.claimed
        duration_ms = round((time.monotonic() - self.started) * 1000, 1)
        message = (
            f"task {claimed.task_id} ({claimed.task_name}) attempt {claimed.attempt} {ending.outcome}"
            f" after {duration_ms} ms"
        )
        if ending.detail:
            message += f": {ending.detail}"
        extra: dict[str, Any] = {
            "queue": self.queue,
            "task_id": str(claimed.task_id),
            "task_name": claimed.task_name,
            "attempt": claimed.attempt,
            "outcome": ending.outcome,
            "duration_ms": duration_ms,
        }
        if ending.detail:
            extra["detail"] = ending.detail
        extra.update(ending.fields)
        if self.replayed is not None:
            message += f"; replayed {self.replayed} recorded event(s)"
            extra["replayed"] = self.replayed
        logger.log(level, "%s", message, extra=extra)


def failure(error: dict[str, Any], result: FailResult) -> Ending:
    """``durable.fail`` recorded an attempt's ``error``: retrying, or failed for good."""
    detail = one_line(f"{error.get('type')}: {error.get('message')}")
    if result.status == "pending":
        at = result.run_at.isoformat() if result.run_at is not None else None
        return Ending(
            RETRYING, f"{detail}; next try at {at}", {"error_type": error.get("type"), "retry_at": at}
        )
    return Ending(FAILED, f"{detail}; no retry", {"error_type": error.get("type")})


def stopped(exc: BaseException) -> str:
    """The outcome of an attempt the database no longer lets report (DU011, DU010, DU004)."""
    return CANCELLED if isinstance(exc, TaskCancelled) else LOST


def completions(logs: Sequence[AttemptLog], results: Sequence[Completion]) -> None:
    """``durable.complete_many`` answered for these attempts (its results are in order)."""
    for log, result in zip(logs, results, strict=False):
        if result.ok:
            log.write(Ending(COMPLETED))
        elif result.reason == "nondeterminism":
            # a durable task whose code finished without going through its whole history:
            # the database failed it (not retryable)
            log.write(
                Ending(
                    FAILED,
                    "non-determinism: the code finished without going through its whole history; no retry",
                    {"error_type": "NonDeterminismError"},
                )
            )
        else:
            outcome = CANCELLED if result.reason == "cancelled" else LOST
            log.write(Ending(outcome, f"completion not recorded ({result.reason})"))


def not_completed(logs: Sequence[AttemptLog], detail: str) -> None:
    """Their completions could not be sent: their leases will expire."""
    for log in logs:
        log.write(Ending(LOST, f"{detail}; its lease will expire"))
