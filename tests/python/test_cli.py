"""The ``durable`` command, called in-process (the worker subcommand runs in test_worker_process.py)."""

from __future__ import annotations

import json
import uuid

import pytest

from durable import Client
from durable.cli import load_worker, main


@pytest.fixture(autouse=True)
def _database(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # as the client role; main() exports --database-url, monkeypatch puts the environment back
    monkeypatch.setenv("DURABLE_DATABASE_URL", db_url)


def test_migrate_reports_nothing_to_do_on_a_migrated_database(
    admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # as the superuser: migrating is the owner's (a member of durable_owner), not a client's
    assert main(["--database-url", admin_url, "migrate"]) == 0
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


def test_demo_kills_its_worker_and_the_second_one_finishes_without_repeating_steps(
    admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # as the superuser: the demo runs everything on one URL, and it starts by migrating,
    # which neither login role may (its worker and client calls are the roles' own verbs)
    assert main(["--database-url", admin_url, "--log-level", "warning", "demo"]) == 0
    out = capsys.readouterr().out
    assert "worker 1 killed with SIGKILL" in out
    assert "status: completed; 2 worker processes made tool calls" in out
    assert "#1 lease_expired" in out and "completed" in out
    # the plan step was recorded before the kill: worker 1 ran it once, worker 2 never
    assert out.count(": plan(") == 1 and "worker 1: plan(" in out
    log = out.split("event log of", 1)[1].split("attempts:", 1)[0]
    kinds = [line.split()[1] for line in log.splitlines()[2:] if line.strip()]
    assert kinds == ["step", "step", "step", "step", "step", "sleep", "step"]


def test_load_worker_rejects_what_is_not_a_worker() -> None:
    with pytest.raises(SystemExit):
        load_worker("json")
    with pytest.raises(SystemExit):
        load_worker("os:getcwd")
    assert load_worker("durable.demo:build_worker").queue == "demo-agent"
