"""Worker processes of workflow_apps.py for the tests: start them, kill them (-9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

APPS = Path(__file__).with_name("workflow_apps.py")


class WorkerProcesses:
    """Starts worker processes of workflow_apps.py on one database; kills the rest at the end."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, queue: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        environment = {**os.environ, "DURABLE_DATABASE_URL": self.db_url, **(env or {})}
        environment.pop("DATABASE_URL", None)
        proc = subprocess.Popen([sys.executable, str(APPS), queue, *args], env=environment)
        self.procs.append(proc)
        return proc

    @staticmethod
    def kill9(proc: subprocess.Popen[Any]) -> None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@contextmanager
def worker_processes(db_url: str) -> Iterator[WorkerProcesses]:
    procs = WorkerProcesses(db_url)
    try:
        yield procs
    finally:
        procs.close()
