"""What a worker logs at INFO (one line per claimed batch, one per ended attempt, with its
facts as extra fields), and durable.logs.configure's text and JSON lines."""

from __future__ import annotations

import io
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pyclient_support import ThreadedWorker, wait_until

from durable import Client, Worker, logs
from durable.workflow import DurableContext

StartWorker = Callable[[Worker], ThreadedWorker]


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Leaves the root logger as it found it (configure changes it)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def attempt_lines(records: list[logging.LogRecord], task_id: uuid.UUID) -> list[logging.LogRecord]:
    return [r for r in records if getattr(r, "task_id", None) == str(task_id)]


def test_a_worker_logs_each_claim_and_each_attempt_s_outcome(
    worker_url: str, client: Client, start_worker: StartWorker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="durable.worker")
    worker = Worker(worker_url, "q", poll_interval=0.1, name=f"test-{uuid.uuid4().hex[:6]}", lease_seconds=3)
    release = threading.Event()

    @worker.task
    def fine(input: dict[str, Any]) -> int:
        return 1

    @worker.task
    def flaky(input: dict[str, Any]) -> None:
        raise ValueError("not today")

    @worker.task
    def blocked(input: dict[str, Any]) -> None:
        release.wait(30)

    @worker.durable_task
    async def napper(input: dict[str, Any], ctx: DurableContext) -> str:
        await ctx.step("a", lambda: 1)
        await ctx.step("b", lambda: 2)
        await ctx.sleep(0.3, name="nap")
        return "rested"

    client.create_queue("q", backoff={"kind": "none"})
    fine_id = client.enqueue("q", "fine")
    flaky_id = client.enqueue("q", "flaky", max_attempts=2)
    nap_id = client.enqueue("q", "napper", durable=True)
    blocked_id = client.enqueue("q", "blocked")
    running = start_worker(worker)
    assert client.wait(fine_id, timeout=30) == 1
    assert client.wait(nap_id, timeout=30) == "rested"
    wait_until(lambda: client.get_task(flaky_id).finished)
    wait_until(lambda: client.get_task(blocked_id).status == "running")
    client.cancel(blocked_id)
    release.set()
    wait_until(lambda: attempt_lines(caplog.records, blocked_id), what="the cancelled attempt's line")
    running.stop()
    records = [r for r in caplog.records if r.name == "durable.worker"]

    claims = [vars(r) for r in records if hasattr(r, "claimed")]
    assert claims and all(c["levelno"] == logging.INFO and c["queue"] == "q" for c in claims)
    first = claims[0]
    assert first["claimed"] == sum(first["task_names"].values()) >= 1
    assert first["message"].startswith(f"claimed {first['claimed']} task(s) from queue q: ")
    claimed_names: dict[str, int] = {}
    for claim in claims:
        for name, count in claim["task_names"].items():
            claimed_names[name] = claimed_names.get(name, 0) + count
    assert claimed_names == {"fine": 1, "flaky": 2, "napper": 2, "blocked": 1}

    def lines(task_id: uuid.UUID) -> list[dict[str, Any]]:
        return [vars(r) for r in attempt_lines(records, task_id)]

    def outcomes(task_id: uuid.UUID) -> list[tuple[int, str]]:
        return [(line["attempt"], line["outcome"]) for line in lines(task_id)]

    assert outcomes(fine_id) == [(1, "completed")]
    assert outcomes(flaky_id) == [(1, "retrying"), (2, "failed")]
    assert outcomes(nap_id) == [(1, "suspended"), (2, "completed")]
    assert outcomes(blocked_id) == [(1, "cancelled")]

    (done,) = lines(fine_id)
    assert (done["levelno"], done["task_name"], done["queue"]) == (logging.INFO, "fine", "q")
    assert isinstance(done["duration_ms"], float) and done["duration_ms"] >= 0
    assert done["message"] == f"task {fine_id} (fine) attempt 1 completed after {done['duration_ms']} ms"

    retrying, failed = lines(flaky_id)
    assert retrying["error_type"] == "ValueError" and retrying["retry_at"]
    assert "ValueError: not today; next try at" in retrying["message"]
    assert failed["message"].endswith("ValueError: not today; no retry")

    slept, resumed = lines(nap_id)
    assert slept["suspended"] == "sleeping" and "sleeping ('nap', event 3)" in slept["message"]
    assert "replayed" not in slept  # the first attempt had no history
    assert resumed["replayed"] == 3 and resumed["message"].endswith("; replayed 3 recorded event(s)")


def test_configure_writes_json_objects_with_the_extra_fields(root_logging: None) -> None:
    out = io.StringIO()
    logs.configure("debug", "json", stream=out)
    log = logging.getLogger("durable.test")
    task_id = uuid.uuid4()
    log.info("task %s done", "t1", extra={"task_id": task_id, "attempt": 2, "duration_ms": 1.5})
    log.debug("plain")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("it failed")
    first, second, third = (json.loads(line) for line in out.getvalue().splitlines())
    assert set(first) == {"time", "level", "logger", "message", "task_id", "attempt", "duration_ms"}
    assert (first["level"], first["logger"], first["message"]) == ("INFO", "durable.test", "task t1 done")
    assert (first["task_id"], first["attempt"], first["duration_ms"]) == (str(task_id), 2, 1.5)
    assert first["time"].endswith("+00:00")
    assert (second["level"], second["message"]) == ("DEBUG", "plain")
    assert third["level"] == "ERROR" and "RuntimeError: boom" in third["exception"]


def test_configure_again_replaces_its_handler_and_checks_its_arguments(root_logging: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    logs.configure("INFO", "json", stream=first)
    logs.configure("WARNING", "text", stream=second)
    log = logging.getLogger("durable.test")
    log.info("hidden")
    log.warning("shown %d", 1)
    assert first.getvalue() == ""
    assert second.getvalue().endswith(" WARNING durable.test: shown 1\n")
    assert logging.getLogger().level == logging.WARNING
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        logs.configure("INFO", "xml")
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logs.configure("loud")
