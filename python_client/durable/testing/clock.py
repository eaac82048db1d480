"""The shared test clock of a test database: its commands, and the rule of a wait that skips.

The clock lives in SQL (plpgsql/test_clock.sql): a session whose ``durable.fake_now`` is
``'shared'`` reads ``clock_timestamp() + durable.settings.test_clock_offset`` in a database
marked as a test database; ``durable.skip_test_clock()`` moves it to the next time a task
is due when no task can run now, ``durable.advance_test_clock(seconds)`` by a duration.
:class:`SkippingWait` decides, without I/O, what a wait of the harness does after each look
at the database; :mod:`durable.testing.environment` drives it, sync or async.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..commands import Command
from ..errors import WaitTimeout
from ..task_info import TaskInfo
from ..waiting import Waiter

#: the value of durable.fake_now that reads the database's shared test clock
SHARED = "shared"


@dataclass(frozen=True, slots=True)
class ClockState:
    """The shared test clock, how many tasks could run now, when the next one is due."""

    now: datetime
    runnable: int
    next_due: datetime | None


def seconds_of(duration: float | timedelta) -> float:
    """Seconds of a duration given as a number or a timedelta."""
    return duration.total_seconds() if isinstance(duration, timedelta) else float(duration)


def advance(duration: float | timedelta) -> Command[datetime]:
    """Move the shared test clock forward by ``duration``; the new time."""
    return Command("select durable.advance_test_clock(%s)", (seconds_of(duration),), lambda rows: rows[0][0])


def skip() -> Command[datetime | None]:
    """Move the shared test clock to the next time a task is due, when no task can run now;
    the new time, or None (nothing moved)."""
    return Command("select durable.skip_test_clock()", (), lambda rows: rows[0][0])


def state() -> Command[ClockState]:
    """The shared test clock, how many tasks could run now, when the next one is due."""
    return Command(
        "select now, runnable, next_due from durable.test_clock()",
        (),
        lambda rows: ClockState(*rows[0]),
    )


class SkippingWait:
    """A wait of the harness for a task, or for the database to settle, within a deadline of
    real time. After each look it says whether the wait is over; between looks it sleeps a
    few milliseconds of real time (the worker runs meanwhile), never the time of a durable
    sleep: that the clock skips."""

    def __init__(
        self,
        what: str,
        timeout: float,
        *,
        interval: float = 0.002,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self._clock = clock
        self._deadline = clock() + timeout
        self._timeout = timeout
        self._interval = interval

    @staticmethod
    def outcome(info: TaskInfo) -> tuple[bool, Any]:
        """``(True, output)`` for a completed task, ``(False, None)`` for an unfinished one;
        TaskFailed for a task that ended failed or cancelled."""
        return Waiter.outcome(info)

    def pause(self) -> float:
        """Seconds of real time to let pass before the next look; WaitTimeout once the
        deadline has passed."""
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            raise WaitTimeout(
                f"durable.testing: {self.what} did not happen within {self._timeout:g} s of real time "
                "(is every task of the test database run by the harness's worker? a task that no "
                "worker runs holds the clock)"
            )
        return min(self._interval, remaining)
