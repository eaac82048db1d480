"""durable.logs.configure's text and JSON lines."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator

import pytest
from pyclient_support import ThreadedWorker

from durable import Worker, logs

StartWorker = Callable[[Worker], ThreadedWorker]


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Leaves the root logger as it found it (configure changes it)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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
