"""A worker for the process tests, built from the environment.

Run it as a script (``python worker_app.py``) or through the CLI
(``durable worker worker_app:build``). The environment gives the database
(``DURABLE_DATABASE_URL``) and the worker's settings: ``WORKER_QUEUE``, ``WORKER_NAME``,
``WORKER_CONCURRENCY``, ``WORKER_LEASE_SECONDS``, ``WORKER_SHUTDOWN_GRACE``.

Its one task, ``hold``, records that it started in the table ``started`` (which the test
creates and lets the worker's role insert into), then sleeps ``input["seconds"]`` or,
without it, blocks for ever.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import psycopg

from durable import TaskContext, Worker


def build() -> Worker:
    env = os.environ
    worker = Worker(
        None,
        env.get("WORKER_QUEUE", "default"),
        name=env.get("WORKER_NAME"),
        concurrency=int(env.get("WORKER_CONCURRENCY", "1")),
        lease_seconds=int(env.get("WORKER_LEASE_SECONDS", "30")),
        shutdown_grace=float(env.get("WORKER_SHUTDOWN_GRACE", "30")),
        poll_interval=0.1,
    )

    @worker.task
    def hold(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        with psycopg.connect(env["DURABLE_DATABASE_URL"], autocommit=True) as conn:
            conn.execute(
                "insert into started (task_id, attempt, pid) values (%s, %s, %s)",
                (ctx.task_id, ctx.attempt, os.getpid()),
            )
        seconds = input.get("seconds")
        if seconds is None:
            threading.Event().wait()  # until the process is killed
            raise AssertionError("unreachable")
        time.sleep(float(seconds))
        return {"pid": os.getpid(), "slept": seconds}

    return worker


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    build().run()
