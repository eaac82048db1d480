"""The durable calls of an attempt that were made but never started: a forgotten ``await``.

``ctx.step("x", f)`` without ``await`` makes a coroutine that never runs: the step is not
taken, and the task would complete without it. :class:`DurableContext` hands out each of
its calls through :class:`UnstartedCalls`, which holds the call until its coroutine starts
(awaited, or run as a task by ``asyncio.gather`` or ``create_task``). When the task's code
has ended, what is still held was never started: :meth:`UnstartedCalls.forgotten` names
those calls (and where the code made them) in a :class:`~durable.errors.NotAwaited`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from .errors import NotAwaited

T = TypeVar("T")

#: the package's folder: the frames of its own code are skipped to find where the code called
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _caller() -> str:
    """``file:line`` of the first frame outside this package (where the code made the call)."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


class UnstartedCalls:
    """The durable calls handed out to an attempt's code whose coroutines have not started."""

    __slots__ = ("_count", "_unstarted")

    def __init__(self) -> None:
        self._count = 0
        #: by call number: what the call is (and where it was made), and its coroutine
        self._unstarted: dict[int, tuple[str, Coroutine[Any, Any, Any]]] = {}

    def hand_out(self, what: str, body: Callable[[], Awaitable[T]]) -> Coroutine[Any, Any, T]:
        """A coroutine that runs ``body()``, held here until it starts; ``what`` names the
        call in the error (``step 'x'``)."""
        self._count += 1
        number = self._count
        coroutine = self._run(number, body)
        self._unstarted[number] = (f"{what} (made at {_caller()})", coroutine)
        return coroutine

    async def _run(self, number: int, body: Callable[[], Awaitable[T]]) -> T:
        del self._unstarted[number]
        return await body()

    def forgotten(self) -> NotAwaited | None:
        """Once the code ended: the error naming the calls never started (closed, so
        Python does not warn about them again), or None when every call started."""
        if not self._unstarted:
            return None
        names = [what for what, _ in self._unstarted.values()]
        self.close()
        advice = "await every durable call (or gather it) before the task returns"
        if len(names) == 1:
            return NotAwaited(f"durable: durable call {names[0]} was never awaited; {advice}")
        return NotAwaited(f"durable: durable calls {', '.join(names)} were never awaited; {advice}")

    def close(self) -> None:
        """Drop the calls never started (the attempt ended otherwise: suspended, stopped)."""
        unstarted = list(self._unstarted.values())
        self._unstarted.clear()
        for _, coroutine in unstarted:
            coroutine.close()
