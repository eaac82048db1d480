"""Worker processes of workflow_apps.py for the tests: start them, kill them (-9); the
side_effects table where their steps count what they did."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

APPS = Path(__file__).with_name("workflow_apps.py")


class WorkerProcesses:
    """Starts worker processes of workflow_apps.py on one database (``worker_url``: the
    worker role's URL of it); kills the rest at the end."""

    def __init__(self, worker_url: str) -> None:
        self.worker_url = worker_url
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, queue: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        environment = {**os.environ, "DURABLE_DATABASE_URL": self.worker_url, **(env or {})}
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
def worker_processes(worker_url: str) -> Iterator[WorkerProcesses]:
    procs = WorkerProcesses(worker_url)
    try:
        yield procs
    finally:
        procs.close()


def create_side_effects(admin_url: str, *roles: str) -> None:
    """The table workflow_apps.py's steps write a row to each time they really run, made by
    the superuser (the login roles may create nothing), readable and writable by ``roles``."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            "create table side_effects (id bigserial, task_id uuid, step text, attempt int,"
            " at timestamptz default clock_timestamp())"
        )
        for role in roles:
            conn.execute(sql.SQL("grant select, insert on side_effects to {}").format(sql.Identifier(role)))
            conn.execute(
                sql.SQL("grant usage on sequence side_effects_id_seq to {}").format(sql.Identifier(role))
            )


def effects(conn: psycopg.Connection[Any], task_id: uuid.UUID) -> list[tuple[str, int]]:
    """(step, attempt) of every side effect of a task, in order."""
    rows = conn.execute(
        "select step, attempt from side_effects where task_id = %s order by id", (task_id,)
    ).fetchall()
    return [(step, attempt) for step, attempt in rows]
