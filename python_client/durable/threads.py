"""A pool of daemon threads that runs the worker's sync task functions.

Unlike ``concurrent.futures.ThreadPoolExecutor`` its threads are daemons, so a sync task
that never returns cannot keep the process alive after the worker shut down (it was
released), and a call hands its result straight to an asyncio future, with no
intermediate future to chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class ThreadRunner:
    """Runs calls in up to ``max_threads`` daemon threads, started as the load needs them."""

    def __init__(self, max_threads: int, name: str = "durable-task") -> None:
        self._max_threads = max_threads
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._queued = 0
        self._closed = False

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Call ``fn(*args)`` in a thread; the returned future (of the running loop) gets its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the thread runner is closed")
            self._queued += 1
            # every queued call has an idle thread waiting for it, or gets a new thread
            if self._queued > self._idle and len(self._threads) < self._max_threads:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                self._idle += 1
                thread.start()
        self._jobs.put((loop, future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with self._lock:
                self._idle -= 1
                self._queued -= 1
            loop, future, fn, args = job
            try:
                result = fn(*args)
            except BaseException as exc:
                # RuntimeError: the loop is closed, nobody waits for this result any more
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_set_exception, future, exc)
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_set_result, future, result)
            del job, future, fn, args
            with self._lock:
                self._idle += 1

    def close(self) -> None:
        """Let idle threads end; a thread still running a call ends after it (it is a daemon)."""
        with self._lock:
            self._closed = True
            count = len(self._threads)
        for _ in range(count):
            self._jobs.put(None)
