"""The durable calls of an attempt that were made but never started: a forgotten ``await``.

``ctx.step("x", f)`` without ``await`` makes a coroutine that never runs: the step is not
taken, and the task would complete without it. :class:`DurableContext` notes each call it
hands out in :class:`UnstartedCalls` (:meth:`~UnstartedCalls.note`), and the call's
coroutine says so when it starts (:meth:`~UnstartedCalls.started`: awaited, or run as a
task by ``asyncio.gather`` or ``create_task``). When the task's code has ended, what is
still noted was never started: :meth:`UnstartedCalls.forgotten` names those calls (and
where the code made them) in a :class:`~durable.errors.NotAwaited`.

Noting a call costs a counter, a few frame hops and a dict entry (a replay of recorded
calls makes thousands a second); the error's text is written only when there is one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Coroutine
from types import CodeType
from typing import Any

from .errors import NotAwaited

#: the package's folder: the frames of its own code are skipped to find where the code called
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class UnstartedCalls:
    """The durable calls handed out to an attempt's code whose coroutines have not started."""

    __slots__ = ("_unstarted",)

    def __init__(self) -> None:
        #: by the id of the call's work (its EventLog generator, alive as long as the call):
        #: kind, name, the code and instruction where the code made it, its coroutine
        self._unstarted: dict[int, tuple[str, str | None, CodeType, int, Coroutine[Any, Any, Any]]] = {}

    def note(self, work: object, kind: str, name: str | None, coroutine: Coroutine[Any, Any, Any]) -> None:
        """The call doing ``work`` (``kind`` ``name``, e.g. step 'x') was handed out as
        ``coroutine``. Called from ``DurableContext._hand_out``, called by one of the
        context's methods, called by the code (or by a helper of this package, whose frames
        are skipped): the code's frame is three up, or more."""
        frame = sys._getframe(3)
        while frame.f_code.co_filename.startswith(_PACKAGE) and frame.f_back is not None:
            frame = frame.f_back
        self._unstarted[id(work)] = (kind, name, frame.f_code, frame.f_lasti, coroutine)

    def started(self, work: object) -> None:
        """The coroutine of the call doing ``work`` started."""
        self._unstarted.pop(id(work), None)

    def forgotten(self) -> NotAwaited | None:
        """Once the code ended: the error naming the calls never started (closed, so
        Python does not warn about them again), or None when every call started."""
        if not self._unstarted:
            return None
        names = [
            f"{kind}{'' if name is None else f' {name!r}'} (made at {_where(code, instruction)})"
            for kind, name, code, instruction, _ in self._unstarted.values()
        ]
        self.close()
        advice = "await every durable call (or gather it) before the task returns"
        if len(names) == 1:
            return NotAwaited(f"durable: durable call {names[0]} was never awaited; {advice}")
        return NotAwaited(f"durable: durable calls {', '.join(names)} were never awaited; {advice}")

    def close(self) -> None:
        """Drop the calls never started (the attempt ended otherwise: suspended, stopped)."""
        unstarted = list(self._unstarted.values())
        self._unstarted.clear()
        for *_, coroutine in unstarted:
            coroutine.close()


def _where(code: CodeType, instruction: int) -> str:
    """``file:line`` of the instruction at offset ``instruction`` of ``code``."""
    line = next(
        (number for start, end, number in code.co_lines() if start <= instruction < end),
        code.co_firstlineno,
    )
    return f"{os.path.basename(code.co_filename)}:{line}"
