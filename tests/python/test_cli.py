"""The ``durable`` command, called in-process (the worker subcommand runs in test_worker_process.py)."""

from __future__ import annotations

import json
import uuid

import pytest

from durable import Client
from durable.cli import load_worker, main


@pytest.fixture(autouse=True)
def _database(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # main() exports --database-url; monkeypatch puts the environment back afterwards
    monkeypatch.setenv("DURABLE_DATABASE_URL", db_url)


def test_migrate_reports_nothing_to_do_on_a_migrated_database(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--database-url", db_url, "migrate"]) == 0
    assert "migrations applied: none" in capsys.readouterr().out


def test_enqueue_task_and_stats(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["enqueue", "cli", "send", '{"to": "x"}', "--create-queue", "--priority", "3"]) == 0
    task_id = uuid.UUID(capsys.readouterr().out.strip())
    assert main(["task", str(task_id)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["task_id"], printed["task_name"], printed["input"], printed["priority"]) == (
        str(task_id),
        "send",
        {"to": "x"},
        3,
    )
    assert printed["status"] == "pending" and printed["attempts"] == []
    assert main(["stats", "cli"]) == 0
    assert json.loads(capsys.readouterr().out) == {"pending": 1}


def test_errors_are_printed_with_exit_code_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["task", str(uuid.uuid4())]) == 1
    assert "unknown task" in capsys.readouterr().err
    assert main(["enqueue", "no-such-queue", "x"]) == 1
    assert "unknown queue" in capsys.readouterr().err


def test_demo_runs_its_tasks_to_their_outcomes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--log-level", "warning", "demo"]) == 0
    out = capsys.readouterr().out
    assert 'completed: {"sum": 5}' in out
    assert "succeeded on attempt 2" in out
    assert "failed: NonRetryableError" in out
    assert "[(1, 'failed'), (2, 'completed')]" in out


def test_load_worker_rejects_what_is_not_a_worker() -> None:
    with pytest.raises(SystemExit):
        load_worker("json")
    with pytest.raises(SystemExit):
        load_worker("os:getcwd")
    assert load_worker("durable.cli:demo_worker").queue == "demo"
