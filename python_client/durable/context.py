"""``TaskContext``: what a task function taking two parameters gets besides its input."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field

from .errors import TaskCancelled


@dataclass(eq=False)
class TaskContext:
    """The running attempt of a task, as seen by its function.

    ``cancel_event`` is set when the attempt must stop: the task was cancelled (DU011 on a
    heartbeat), its lease was lost (DU010: another worker may run it now), or the worker is
    shutting down and handed it back. An ``async`` task function is also cancelled with
    ``asyncio`` cancellation; a sync one must look at :attr:`cancelled` (or call
    :meth:`raise_if_cancelled`) itself. Whatever a stopped attempt returns or raises is not
    reported.
    """

    task_id: uuid.UUID
    task_name: str
    queue: str
    #: 1 for the first attempt, then 2, 3, ... (lost leases and releases count too)
    attempt: int
    #: the name of the worker running it
    worker: str
    cancel_event: threading.Event = field(default_factory=threading.Event)
    #: why the attempt was stopped, once it was
    stop_reason: str | None = None

    @property
    def cancelled(self) -> bool:
        """True once the attempt must stop."""
        return self.cancel_event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise TaskCancelled when the attempt must stop (handy in loops of sync tasks)."""
        if self.cancel_event.is_set():
            raise TaskCancelled(f"durable: task {self.task_id} stopped: {self.stop_reason or 'cancelled'}")
