"""The rule of ``Client.wait`` (poll ``get_task`` with a growing interval), without I/O."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from .errors import TaskFailed, WaitTimeout
from .task_info import TaskInfo


class Waiter:
    """Decides, after each poll of a task, whether the wait is over and how long to sleep.

    The sleep starts at ``first_interval`` and grows by ``factor`` up to ``max_interval``,
    never past the deadline ``timeout`` seconds after the waiter was made (None: no deadline).
    """

    def __init__(
        self,
        task_id: uuid.UUID | str,
        timeout: float | None,
        *,
        first_interval: float = 0.01,
        factor: float = 1.5,
        max_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.task_id = task_id
        self._clock = clock
        self._deadline = None if timeout is None else clock() + timeout
        self._interval = first_interval
        self._factor = factor
        self._max_interval = max_interval

    @staticmethod
    def outcome(info: TaskInfo) -> tuple[bool, Any]:
        """``(True, output)`` for a completed task, ``(False, None)`` for an unfinished one.

        Raises TaskFailed for a task that ended failed or cancelled.
        """
        if info.status == "completed":
            return True, info.output
        if info.finished:
            raise TaskFailed(str(info.task_id), info.status, info.error)
        return False, None

    def next_sleep(self) -> float:
        """Seconds to sleep before the next poll; WaitTimeout once the deadline has passed."""
        interval = self._interval
        self._interval = min(self._interval * self._factor, self._max_interval)
        if self._deadline is None:
            return interval
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            raise WaitTimeout(f"durable: task {self.task_id} did not finish in time")
        return min(interval, remaining)
