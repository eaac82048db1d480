"""Helpers of the Python client tests: waiting on conditions, workers in threads, roles."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from psycopg.conninfo import conninfo_to_dict

from durable import Worker

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], timeout: float = 30.0, what: str | None = None, interval: float = 0.02
) -> T:
    """Poll ``condition`` until it returns a truthy value (returned); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


def role_of(url: str) -> str:
    """The role a connection string logs in as."""
    user = conninfo_to_dict(url).get("user")
    assert isinstance(user, str), f"no user in {url!r}"
    return user


class ThreadedWorker:
    """A Worker running ``run()`` in a background thread."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"worker-{worker.name}", daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:
            self.error = exc

    def start(self) -> ThreadedWorker:
        self.thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.worker.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not stop"
        if self.error is not None:
            raise self.error
