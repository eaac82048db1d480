"""A pool of daemon threads that runs the worker's sync task functions.

Why not ``loop.run_in_executor`` with a ``ThreadPoolExecutor``:

* its threads are daemons, so a sync task that never returns cannot keep the process
  alive after the worker shut down (the task was released);
* it wakes as few threads as the work needs: a burst of short calls is run by one or two
  threads, not by one woken thread per call all fighting for the GIL. Only one idle
  thread is being woken at any time; a thread that takes a call and sees more waiting
  wakes the next, so calls that block still each get a thread at once;
* results go back to the event loop in batches: one ``call_soon_threadsafe`` (one write
  to the loop's self-pipe) for all the results that came in since the loop last looked.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Callable
from typing import Any

_Job = tuple["asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]
_Result = tuple["asyncio.Future[Any]", bool, Any]


class ThreadRunner:
    """Runs calls for one event loop in up to ``max_threads`` daemon threads, started on demand."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_threads: int, name: str = "durable-task") -> None:
        self._loop = loop
        self._max_threads = max_threads
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._jobs: collections.deque[_Job] = collections.deque()
        self._threads = 0
        self._idle = 0  # threads waiting for a job
        self._waking = 0  # threads notified or started that have not taken a job yet
        self._closed = False
        self._results: collections.deque[_Result] = collections.deque()
        self._results_lock = threading.Lock()
        self._drain_scheduled = False

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Call ``fn(*args)`` in a thread; the returned future gets its result or exception."""
        future: asyncio.Future[Any] = self._loop.create_future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the thread runner is closed")
            self._jobs.append((future, fn, args))
            self._wake_one()
        return future

    def _wake_one(self) -> None:
        """With the lock held: get a thread coming for the queued jobs, unless one is already."""
        if self._waking:
            return
        if self._idle:
            self._waking += 1
            self._cond.notify()
        elif self._threads < self._max_threads:
            self._threads += 1
            self._waking += 1
            thread = threading.Thread(target=self._work, name=f"{self._name}-{self._threads}", daemon=True)
            thread.start()

    def _work(self) -> None:
        cond = self._cond
        waking = True  # started by _wake_one, which counted it
        while True:
            with cond:
                if waking:
                    self._waking -= 1
                    waking = False
                while not self._jobs:
                    if self._closed:
                        self._threads -= 1
                        return
                    self._idle += 1
                    cond.wait()
                    self._idle -= 1
                    self._waking -= 1  # notified by _wake_one, which counted it
                future, fn, args = self._jobs.popleft()
                if self._jobs:
                    self._wake_one()
            try:
                result: _Result = (future, True, fn(*args))
            except BaseException as exc:
                result = (future, False, exc)
            self._post(result)
            del future, fn, args, result

    def _post(self, result: _Result) -> None:
        self._results.append(result)
        with self._results_lock:
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        # RuntimeError: the loop is closed, nobody waits for these results any more
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._results_lock:
            self._drain_scheduled = False
        results = self._results
        while results:
            future, ok, value = results.popleft()
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def close(self) -> None:
        """Let idle threads end; a thread still running a call ends after it (it is a daemon)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
